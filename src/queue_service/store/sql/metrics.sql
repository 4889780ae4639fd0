-- Metrics: the database-true gauges read at scrape time, and the per-minute
-- snapshots (queue_metrics). Nothing here reads finished_jobs except by a
-- one-minute range of finished_at (its retention index): that table may hold
-- tens of millions of rows.

-- name: metrics_live_jobs
-- Live jobs per queue for one tenant or all (NULL): waiting (due), delayed
-- (waiting, due later: backoff, snooze, run_at), active, and the age of the
-- oldest due waiting job (since it became due). One pass over `jobs`, which
-- holds only live jobs (decision 0002), so its size is the backlog, not the
-- history.
SELECT queue,
       count(*) FILTER (WHERE status = 'waiting' AND run_at <= now()) AS waiting,
       count(*) FILTER (WHERE status = 'waiting' AND run_at > now()) AS delayed,
       count(*) FILTER (WHERE status = 'active') AS active,
       extract(epoch FROM now() - min(run_at) FILTER (
           WHERE status = 'waiting' AND run_at <= now()))::double precision
           AS oldest_waiting_age_seconds
FROM jobs
WHERE %(tenant)s::text IS NULL OR tenant_id = %(tenant)s
GROUP BY queue
ORDER BY queue

-- name: metrics_dead_letters
-- Dead letters not yet replayed, per queue, for one tenant or all (NULL): an
-- index-only scan of dead_letter_jobs_unreplayed_idx for the platform view.
SELECT queue, count(*) AS dead_letters
FROM dead_letter_jobs
WHERE replayed_job_id IS NULL
  AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
GROUP BY queue
ORDER BY queue

-- name: metrics_snapshot_written
-- Whether this minute's snapshot exists: one probe of queue_metrics_at_idx,
-- asked first because computing the snapshot scans the live jobs (measured:
-- 36 ms with 100,000 of them, even when every row then conflicts).
SELECT EXISTS (SELECT 1 FROM queue_metrics WHERE at = date_trunc('minute', now()))

-- name: metrics_snapshot_take
-- The leader's per-minute snapshot: live figures now and what finished in
-- the full minute before, per tenant and queue, stamped with the current
-- minute. The duty looks several times a minute so that none is missed;
-- NOT EXISTS and ON CONFLICT keep it to one write per minute even if two
-- writers ever raced. Returns the rows written.
WITH minute AS (
    SELECT date_trunc('minute', now()) AS at
),
live AS (
    SELECT tenant_id, queue,
           count(*) FILTER (WHERE status = 'waiting' AND run_at <= now()) AS waiting,
           count(*) FILTER (WHERE status = 'waiting' AND run_at > now()) AS delayed,
           count(*) FILTER (WHERE status = 'active') AS active,
           extract(epoch FROM now() - min(run_at) FILTER (
               WHERE status = 'waiting' AND run_at <= now()))::double precision AS oldest
    FROM jobs
    GROUP BY tenant_id, queue
),
done AS (
    SELECT f.tenant_id, f.queue,
           count(*) FILTER (WHERE f.status = 'completed') AS completed,
           count(*) FILTER (WHERE f.status = 'failed') AS failed,
           count(*) FILTER (WHERE f.status = 'cancelled') AS cancelled
    FROM finished_jobs f, minute m
    WHERE f.finished_at >= m.at - interval '1 minute' AND f.finished_at < m.at
    GROUP BY f.tenant_id, f.queue
),
written AS (
    INSERT INTO queue_metrics (at, tenant_id, queue, waiting, delayed, active, completed,
                               failed, cancelled, oldest_waiting_age_seconds)
    SELECT m.at, coalesce(l.tenant_id, d.tenant_id), coalesce(l.queue, d.queue),
           coalesce(l.waiting, 0), coalesce(l.delayed, 0), coalesce(l.active, 0),
           coalesce(d.completed, 0), coalesce(d.failed, 0), coalesce(d.cancelled, 0),
           l.oldest
    FROM minute m
    CROSS JOIN (live l FULL JOIN done d ON d.tenant_id = l.tenant_id AND d.queue = l.queue)
    WHERE NOT EXISTS (SELECT 1 FROM queue_metrics q WHERE q.at = m.at)
    ON CONFLICT (tenant_id, queue, at) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM written

-- name: metrics_history
-- Snapshots of the last `seconds` per minute and queue, summed over the tenants the
-- caller sees (one tenant, or all for NULL), oldest first: the sparklines'
-- series. Uses queue_metrics_at_idx (platform) or the primary key (tenant).
SELECT at, queue,
       sum(waiting)::integer AS waiting,
       sum(delayed)::integer AS delayed,
       sum(active)::integer AS active,
       sum(completed)::integer AS completed,
       sum(failed)::integer AS failed,
       sum(cancelled)::integer AS cancelled,
       max(oldest_waiting_age_seconds) AS oldest_waiting_age_seconds
FROM queue_metrics
WHERE at >= date_trunc('minute', now() - make_interval(secs => %(seconds)s))
  AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
GROUP BY at, queue
ORDER BY at, queue

-- name: metrics_snapshot_purge
-- Delete up to `limit` snapshots older than `days` (retention: 30 days);
-- returns how many. Oldest first through queue_metrics_at_idx, in batches
-- that never hold many locks.
WITH gone AS (
    DELETE FROM queue_metrics
    WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM queue_metrics
        WHERE at < now() - make_interval(days => %(days)s)
        ORDER BY at
        LIMIT %(limit)s))
    RETURNING 1
)
SELECT count(*) FROM gone
