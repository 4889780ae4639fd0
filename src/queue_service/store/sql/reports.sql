-- Reports over finished work (report.generate).
-- `-- name: x` starts a statement; the line after it says what it does.

-- name: report_finished_by_type
-- Per queue, type and final status over the period: how many, and the median
-- and p95 run time of the last attempt. Bounded by finished_jobs_retention_idx
-- (finished_at), so the cost follows the period's rows, not the history's.
SELECT queue, type, status, count(*)::bigint,
       percentile_cont(0.5) WITHIN GROUP (
           ORDER BY extract(epoch FROM finished_at - started_at))::double precision,
       percentile_cont(0.95) WITHIN GROUP (
           ORDER BY extract(epoch FROM finished_at - started_at))::double precision,
       sum(attempts - 1)::bigint
FROM finished_jobs
WHERE finished_at >= now() - make_interval(secs => %(seconds)s)
  AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
GROUP BY queue, type, status
ORDER BY queue, type, status

-- name: report_dead_letters_by_type
-- Dead letters of the period per type, with how many were replayed and the
-- most frequent error text (truncated: error texts are already redacted).
SELECT type, count(*)::bigint, count(replayed_job_id)::bigint,
       left(mode() WITHIN GROUP (ORDER BY error), 300)
FROM dead_letter_jobs
WHERE failed_at >= now() - make_interval(secs => %(seconds)s)
  AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
GROUP BY type
ORDER BY count(*) DESC, type
