-- Operators' look-ups: the dashboard's search box and job page (through the API
-- handlers GET /queues/{name}/jobs/search and GET /jobs/{id}/events).

-- name: job_search
-- A tenant's jobs in a queue whose type or idempotency key equals the term,
-- live ones newest first, then finished ones newest first, whole rows named
-- as job_get names them (read by name). Not a hot path, but bounded: the finished side
-- looks at the newest `window` jobs of each finished status only (three
-- ordered walks of finished_jobs_listing_idx), so a term that matches
-- nothing costs the same with 200 or 2 M finished jobs; older ones are found
-- by id. The live side filters the queue's unfinished jobs.
(SELECT
     -- include: live_job_columns
 FROM jobs
 WHERE queue = %(queue)s AND tenant_id = %(tenant)s
   AND (type = %(term)s OR idempotency_key = %(term)s)
 ORDER BY created_at DESC, id DESC
 LIMIT %(limit)s)
UNION ALL
(SELECT
     -- include: finished_job_columns
 FROM ((SELECT * FROM finished_jobs
        WHERE tenant_id = %(tenant)s AND queue = %(queue)s AND status = 'completed'
        ORDER BY finished_at DESC, id DESC LIMIT %(window)s)
       UNION ALL
       (SELECT * FROM finished_jobs
        WHERE tenant_id = %(tenant)s AND queue = %(queue)s AND status = 'failed'
        ORDER BY finished_at DESC, id DESC LIMIT %(window)s)
       UNION ALL
       (SELECT * FROM finished_jobs
        WHERE tenant_id = %(tenant)s AND queue = %(queue)s AND status = 'cancelled'
        ORDER BY finished_at DESC, id DESC LIMIT %(window)s)) AS recent
 WHERE type = %(term)s OR idempotency_key = %(term)s
 ORDER BY finished_at DESC, id DESC
 LIMIT %(limit)s)

-- name: job_trace_context
-- The W3C context a job was enqueued under (set only when tracing was on),
-- live or finished, within a tenant: the job page's trace id.
SELECT trace_context FROM jobs WHERE id = %(id)s AND tenant_id = %(tenant)s
UNION ALL
SELECT trace_context FROM finished_jobs WHERE id = %(id)s AND tenant_id = %(tenant)s
LIMIT 1
