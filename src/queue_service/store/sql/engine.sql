-- The engine's statements: jobs, queues, DLQ, retention, workers, leader.
-- `-- name: x` starts a statement; the line after it says what it does.
-- Every time decision uses the database clock (now()), never a process's.

-- name: job_insert
-- Insert jobs with the one insert rule (queue_service_insert_jobs, migration
-- 0015, decision 0018): a job with an idempotency key goes in only when its
-- key is new or expired. One row per job sent, read by name: `ord` (1-based
-- position in the arrays), `created`, and either the job's created_at and
-- run_at or, for a live key, the job it names and that job's payload hash.
-- `scope`, when given, sets the caller's tenant for row-level security
-- first. Joins the caller's transaction; the wake-up hint, one per queue, is
-- delivered at commit.
SELECT ord, job_id, created, payload_hash, created_at, run_at
FROM queue_service_insert_jobs(
    %(scope)s, %(ids)b::uuid[], %(tenants)b::text[], %(queues)b::text[], %(types)b::text[],
    %(priorities)b::smallint[], %(data)b::text[], %(max_attempts)b::integer[],
    %(max_stalled)b::integer[], %(leases)b::integer[], %(keys)b::text[], %(ttls)b::integer[],
    %(hashes)b::text[], %(delays)b::double precision[], %(run_ats)b::timestamptz[],
    %(created_by)b::text[], %(request_ids)b::text[], %(traces)b::text[], %(replay_of)b::uuid[])

-- name: job_insert_keyless
-- One job without an idempotency key, the common single enqueue: job_insert
-- with nothing to resolve, as a plain INSERT (no key means the insert rule
-- has nothing to decide), so no function call and nothing returned but the
-- wake-up hint (measured: the cost of the bare INSERT, where the PL/pgSQL
-- function adds ~50-80 µs of server time a job). Joins the caller's
-- transaction like job_insert: the hint is delivered at commit.
WITH inserted AS (
    INSERT INTO jobs (id, tenant_id, queue, type, priority, data, max_attempts, max_stalled,
                      lease_seconds, created_by, request_id, trace_context, replay_of, run_at)
    VALUES (%(id)s, %(tenant)s, %(queue)s, %(type)s, %(priority)s::smallint, %(data)s::jsonb,
            %(max_attempts)s, %(max_stalled)s, %(lease)s, %(created_by)s, %(request_id)s,
            %(trace)s::jsonb, %(replay_of)s::uuid,
            coalesce(%(run_at)s::timestamptz, now() + make_interval(secs => %(delay)s)))
    RETURNING queue, run_at
)
SELECT pg_notify('queue_service_jobs', queue) FROM inserted WHERE run_at <= now()

-- name: jobs_staging_prepare
-- A session's staging table for bulk loads. COPY cannot write to a table
-- under row-level security, so batches COPY here (the fastest way in) and
-- move to jobs with one INSERT, which RLS checks. Run as one simple query;
-- IF NOT EXISTS would otherwise NOTICE on every batch.
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS jobs_staging (LIKE jobs INCLUDING DEFAULTS)
    ON COMMIT DELETE ROWS

-- name: job_copy_immediate
-- Bulk load keyless jobs that run now; run_at and created_at take the
-- database clock from their defaults.
COPY jobs_staging (id, tenant_id, queue, type, priority, data, max_attempts, max_stalled,
                   lease_seconds, created_by, request_id, trace_context)
FROM STDIN

-- name: jobs_from_staging
-- Move what was staged into jobs and wake the given queues' workers at
-- commit. For a transaction of the store's own, which stages one batch:
-- ON COMMIT DELETE ROWS empties the stage (measured: emptying it here with
-- DELETE ... RETURNING costs ~3 µs a job).
WITH moved AS (INSERT INTO jobs SELECT * FROM jobs_staging)
SELECT pg_notify('queue_service_jobs', q) FROM unnest(%(queues)s::text[]) AS q

-- name: jobs_from_staging_emptying
-- The same inside a caller's transaction, which may stage several batches:
-- the stage is emptied as it is moved, so the next batch starts empty.
WITH staged AS (DELETE FROM jobs_staging RETURNING *),
moved AS (INSERT INTO jobs SELECT * FROM staged)
SELECT pg_notify('queue_service_jobs', q) FROM unnest(%(queues)s::text[]) AS q

-- name: idempotency_key_purge_expired
-- Delete up to `limit` expired keys; returns how many went.
WITH gone AS (
    DELETE FROM queue_idempotency_keys
    WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM queue_idempotency_keys
        WHERE expires_at <= now() LIMIT %(limit)s))
    RETURNING 1
)
SELECT count(*) FROM gone

-- name: job_claim
-- Claim up to `limit` runnable jobs of a queue for one worker: priority, then
-- run_at, then id. SKIP LOCKED lets workers claim side by side; the pause
-- check sits in the claim itself, so a pause takes effect on the very next
-- claim of every worker. Each claim draws a fresh fencing token.
--
-- Planner pitfall (decision 0017): jobs_fetch_idx is (queue, priority, run_at,
-- id), so `run_at <= now()` bounds the scan only under an *equality* on
-- priority. A plain `ORDER BY priority, run_at, id LIMIT n` walks the queue's
-- whole stretch of the index, every delayed row of every priority, to find
-- nothing: 98 ms and ~6,000 buffers per idle poll at 1 M delayed rows. So the
-- claim walks priorities instead: `priorities` skips from one distinct
-- priority to the next (one index descent each: a loose index scan), and for
-- each the lateral probe reads only that priority's ready rows in (run_at, id)
-- order, stopping at the first delayed one. The outer LIMIT stops pulling as
-- soon as `limit` rows are locked, so a full batch from the first priority
-- never probes the next. The order is exactly the old one: priorities ascend,
-- and within one the index order is (run_at, id). Cost: two descents per
-- priority present, whatever the backlog. Nothing here lets the planner pick
-- otherwise: the lateral probe is parameterised by its priority.
-- The update reaches the picked rows through `id = ANY (ARRAY(...))`, one
-- primary-key probe per id: written as a join FROM picked, a generic plan made
-- from statistics of a busy queue hash-joins a sequential scan of jobs (57 ms
-- per claim at 35,000 rows; test_plans.py reproduces it).
WITH RECURSIVE priorities AS (
    (SELECT j.priority FROM jobs j
     WHERE j.queue = %(queue)s AND j.status = 'waiting'
     ORDER BY j.priority
     LIMIT 1)
    UNION ALL
    SELECT (SELECT j.priority FROM jobs j
            WHERE j.queue = %(queue)s AND j.status = 'waiting' AND j.priority > p.priority
            ORDER BY j.priority
            LIMIT 1)
    FROM priorities p
    WHERE p.priority IS NOT NULL
),
picked AS (
    SELECT ready.id
    FROM priorities p
    CROSS JOIN LATERAL (
        SELECT j.id
        FROM jobs j
        WHERE j.queue = %(queue)s
          AND j.status = 'waiting'
          AND j.priority = p.priority
          AND j.run_at <= now()
          AND j.type = ANY(%(types)s::text[])
          AND NOT EXISTS (
              SELECT 1 FROM queue_pauses q
              WHERE q.queue = j.queue AND q.tenant_id IN (j.tenant_id, '*'))
        ORDER BY j.run_at, j.id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) ready
    WHERE p.priority IS NOT NULL
    LIMIT %(limit)s
)
-- include: claim_picked

-- fragment: finished_job_columns
-- A finished (or archived) job as a caller sees it: the names of
-- live_job_columns, read by job_from_row, from finished_jobs or job_archive.
id, tenant_id, queue, type, status, priority, data, attempts, max_attempts,
idempotency_key, created_by, created_at, run_at, started_at, finished_at,
last_error, result, request_id, replay_of

-- fragment: live_job_columns
-- A live job as a caller sees it (job_from_row reads these names): `delayed`
-- is derived from run_at (decision 0003), and the columns only a finished
-- job has are NULL. For job_get_many, job_page_live and job_search; their
-- finished side reads finished_job_columns.
id, tenant_id, queue, type,
CASE WHEN status = 'waiting' AND run_at > now() THEN 'delayed' ELSE status END AS status,
priority, data, attempts, max_attempts, idempotency_key, created_by, created_at,
run_at, started_at, NULL::timestamptz AS finished_at, last_error, NULL::jsonb AS result,
request_id, replay_of

-- fragment: claim_picked
-- How a claim takes the jobs its `picked` CTE chose (job_claim and the fair
-- claims of fair.sql): one attempt more, a fresh lease token and expiry,
-- the worker named; by primary key, once per id (decision 0017: a join
-- against `picked` could hash-join a scan of jobs under a generic plan).
-- The columns are those claimed_jobs reads by name.
UPDATE jobs j
SET status = 'active',
    attempts = j.attempts + 1,
    started_at = now(),
    lease_token = nextval('job_lease_token_seq'),
    lease_expires_at = now() + make_interval(secs => j.lease_seconds),
    worker_id = %(worker)s
WHERE j.id = ANY (ARRAY(SELECT id FROM picked))
RETURNING j.id, j.tenant_id, j.queue, j.type, j.data, j.attempts, j.max_attempts,
          j.lease_token, j.lease_seconds, j.request_id, j.trace_context, j.started_at,
          j.priority, j.run_at

-- fragment: finished_from_done
-- How a job row becomes a finished_jobs row: the one rule of every statement
-- that ends a job (job_complete_many, job_finish_many, job_cancel_waiting,
-- queue_clear), each taking it with `-- include: finished_from_done` inside
-- its `moved` CTE. The loader (store/queries.py) copies it there when the
-- statements are loaded, so each runs as if written out, with the same plan
-- (decision 0028). The job keeps every column finished_jobs has; finished_at
-- is the database clock. The statement's `done` CTE returns the job row it
-- deleted (`*`) and what the ending decides, under these names:
-- final_status ('completed', 'failed' or 'cancelled'), final_error (the
-- finished row's last_error) and final_result (jsonb; NULL unless completed).
-- The column list is finished_jobs' own, in table order:
-- tests/integration/test_finishing.py holds it against the migrated table.
INSERT INTO finished_jobs (id, tenant_id, queue, type, status, priority, data, attempts,
                           max_attempts, stalled_count, max_stalled, lease_seconds,
                           idempotency_key, created_by, request_id, trace_context,
                           replay_of, created_at, run_at, started_at, finished_at,
                           last_error, result)
SELECT id, tenant_id, queue, type, final_status, priority, data, attempts, max_attempts,
       stalled_count, max_stalled, lease_seconds, idempotency_key, created_by,
       request_id, trace_context, replay_of, created_at, run_at, started_at, now(),
       final_error, final_result
FROM done

-- name: job_complete_many
-- Finish attempts that succeeded, fenced by their lease tokens: move each to
-- finished_jobs with its result (finished_from_done; last_error stays the
-- last failed attempt's) and write its history row. Returns the ids
-- finished; an id missing from the answer had lost its lease.
--
-- Planner pitfall (decision 0017), shared by every statement that acts on
-- jobs a worker holds (heartbeat, complete, finish, release, rescue): the
-- only sane access to `jobs` is the primary key, once per input id.
-- Migration 0014 took away the index that tempted the planner otherwise: a
-- partial index WHERE status = 'active' matched these statements' own
-- `status = 'active'`, and a generic plan made while statistics said almost
-- nothing was active (a backlog's normal state) scanned that whole index and
-- re-read the batch for every row: active rows x batch, 17.6 s for one
-- statement at 1 M delayed rows. tests/integration/test_plans.py reads every
-- hot plan under force_generic_plan after an ANALYZE at that worst moment.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(tokens)s::bigint[], %(results)s::text[])
        AS t(id, token, result)
),
done AS (
    DELETE FROM jobs j
    USING input i
    WHERE j.id = i.id AND j.lease_token = i.token AND j.status = 'active'
    RETURNING j.*, 'completed' AS final_status, j.last_error AS final_error,
              i.result::jsonb AS final_result
),
moved AS (
    -- include: finished_from_done
),
history AS (
    INSERT INTO job_events (job_id, tenant_id, event, attempt, worker_id, started_at)
    SELECT id, tenant_id, 'completed', attempts, worker_id, started_at FROM done
)
SELECT id FROM done

-- name: job_retry_later
-- A failed attempt with attempts left: back to waiting at now() + delay,
-- fenced by the lease token. Returns the id when it applied.
WITH done AS (
    UPDATE jobs
    SET status = 'waiting',
        run_at = now() + make_interval(secs => %(delay)s),
        last_error = %(error)s,
        lease_token = NULL,
        lease_expires_at = NULL,
        worker_id = NULL,
        cancel_requested = false
    WHERE id = %(id)s AND lease_token = %(token)s AND status = 'active'
    RETURNING id, tenant_id, attempts, started_at, %(worker)s::text AS worker_id
),
history AS (
    INSERT INTO job_events (job_id, tenant_id, event, attempt, worker_id, started_at, error)
    SELECT id, tenant_id, 'retry_scheduled', attempts, worker_id, started_at, %(error)s
    FROM done
)
SELECT id FROM done

-- name: job_snooze
-- Not now: back to waiting at now() + delay with the attempt given back (a
-- snooze is not a failure and must never exhaust max_attempts), fenced by
-- the lease token; the history keeps the reason. Returns the id when it applied.
WITH done AS (
    UPDATE jobs
    SET status = 'waiting',
        attempts = greatest(attempts - 1, 0),
        run_at = now() + make_interval(secs => %(delay)s),
        lease_token = NULL,
        lease_expires_at = NULL,
        worker_id = NULL,
        cancel_requested = false
    WHERE id = %(id)s AND lease_token = %(token)s AND status = 'active'
    RETURNING id, tenant_id, attempts, started_at, %(worker)s::text AS worker_id
),
history AS (
    INSERT INTO job_events (job_id, tenant_id, event, attempt, worker_id, started_at, error)
    SELECT id, tenant_id, 'snoozed', attempts + 1, worker_id, started_at, %(reason)s
    FROM done
)
SELECT id FROM done

-- name: job_finish_many
-- End attempts for good, fenced by lease tokens: `failed` (with a
-- dead_letter_jobs row) or `cancelled`, moved to finished_jobs with the
-- error as last_error and no result (finished_from_done). Used by workers,
-- the rescuer and cancellation alike. Returns the ids finished.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(tokens)s::bigint[], %(errors)s::text[],
                         %(dlq_ids)s::uuid[])
        AS t(id, token, error, dlq_id)
),
done AS (
    DELETE FROM jobs j
    USING input i
    WHERE j.id = i.id AND j.lease_token = i.token
    RETURNING j.*, %(status)s AS final_status, i.error AS final_error,
              NULL::jsonb AS final_result, i.dlq_id
),
moved AS (
    -- include: finished_from_done
),
dead AS (
    INSERT INTO dead_letter_jobs (id, tenant_id, original_job_id, queue, type, data, error,
                                  attempts, created_by)
    SELECT dlq_id, tenant_id, id, queue, type, data, final_error, attempts, created_by
    FROM done
    WHERE %(status)s = 'failed'
),
history AS (
    INSERT INTO job_events (job_id, tenant_id, event, attempt, worker_id, started_at, error)
    SELECT id, tenant_id, %(status)s, attempts, worker_id, started_at, final_error FROM done
)
SELECT id FROM done

-- name: job_release_many
-- Give claimed jobs back (shutdown, or a claim the worker could not start):
-- waiting again at once, and the interrupted attempt does not count.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(tokens)s::bigint[]) AS t(id, token)
),
done AS (
    UPDATE jobs j
    SET status = 'waiting',
        attempts = greatest(j.attempts - 1, 0),
        run_at = now(),
        lease_token = NULL,
        lease_expires_at = NULL,
        worker_id = NULL
    FROM input i
    WHERE j.id = i.id AND j.lease_token = i.token AND j.status = 'active'
    RETURNING j.id, j.tenant_id, j.attempts, j.started_at, j.queue, %(worker)s::text AS worker_id
),
history AS (
    INSERT INTO job_events (job_id, tenant_id, event, attempt, worker_id, started_at)
    SELECT id, tenant_id, 'released', attempts + 1, worker_id, started_at FROM done
),
wake AS (
    SELECT pg_notify('queue_service_jobs', queue) FROM (SELECT DISTINCT queue FROM done) q
)
-- The wake-ups run once, as an InitPlan (a subquery in FROM was re-read per row).
SELECT id FROM done WHERE (SELECT count(*) FROM wake) >= 0

-- name: job_heartbeat_many
-- Extend the leases a worker still holds; answers which it holds and whether
-- cancellation was asked for. A held job missing from the answer was lost.
UPDATE jobs j
SET lease_expires_at = now() + make_interval(secs => j.lease_seconds)
FROM unnest(%(ids)s::uuid[], %(tokens)s::bigint[]) AS i(id, token)
WHERE j.id = i.id AND j.lease_token = i.token AND j.status = 'active'
RETURNING j.id, j.cancel_requested

-- name: job_expired_leases
-- Active jobs whose worker stopped heart-beating, locked for the rescuer:
-- with what decides between another try and the DLQ.
SELECT id, lease_token, stalled_count, max_stalled, attempts, max_attempts, worker_id
FROM jobs
WHERE status = 'active' AND lease_expires_at < now()
ORDER BY lease_expires_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: job_rescue_many
-- Put stalled jobs back to waiting, counting the stall; the history names
-- the worker that held the lease.
WITH input AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(tokens)s::bigint[], %(workers)s::text[])
        AS t(id, token, worker_id)
),
done AS (
    UPDATE jobs j
    SET status = 'waiting',
        stalled_count = j.stalled_count + 1,
        run_at = now(),
        last_error = 'stalled: lease expired on worker ' || coalesce(j.worker_id, '?'),
        lease_token = NULL,
        lease_expires_at = NULL,
        worker_id = NULL
    FROM input i
    WHERE j.id = i.id AND j.lease_token = i.token AND j.status = 'active'
    RETURNING j.id, j.tenant_id, j.attempts, j.started_at, j.queue, j.last_error,
              i.worker_id
),
history AS (
    INSERT INTO job_events (job_id, tenant_id, event, attempt, worker_id, started_at, error)
    SELECT id, tenant_id, 'rescued', attempts, worker_id, started_at, last_error FROM done
),
wake AS (
    SELECT pg_notify('queue_service_jobs', queue) FROM (SELECT DISTINCT queue FROM done) q
)
-- The wake-ups run once, as an InitPlan (a subquery in FROM was re-read per row).
SELECT id FROM done WHERE (SELECT count(*) FROM wake) >= 0

-- name: job_get_many
-- Jobs by id, live or finished or archived, within a tenant (NULL: any): one
-- primary-key probe per id and table, whatever the number of ids (a batch's
-- answer is one statement, not one per job). A job is in exactly one table in
-- any snapshot: every move between them is one transaction.
SELECT
    -- include: live_job_columns
FROM jobs WHERE id = ANY(%(ids)s::uuid[]) AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
UNION ALL
SELECT
    -- include: finished_job_columns
FROM finished_jobs
WHERE id = ANY(%(ids)s::uuid[]) AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
UNION ALL
SELECT
    -- include: finished_job_columns
FROM job_archive
WHERE id = ANY(%(ids)s::uuid[]) AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)

-- name: job_events_list
-- A job's history, oldest first.
SELECT event, attempt, worker_id, started_at, at, error
FROM job_events WHERE job_id = %(id)s ORDER BY id

-- name: job_cancel_waiting
-- Cancel a job that has not started: straight to finished as `cancelled`,
-- the reason as its last_error (finished_from_done).
WITH done AS (
    DELETE FROM jobs
    WHERE id = %(id)s AND tenant_id = %(tenant)s AND status = 'waiting'
    RETURNING *, 'cancelled' AS final_status, %(reason)s AS final_error,
              NULL::jsonb AS final_result
),
moved AS (
    -- include: finished_from_done
),
history AS (
    INSERT INTO job_events (job_id, tenant_id, event, attempt, error)
    SELECT id, tenant_id, 'cancelled', attempts, final_error FROM done
)
SELECT id FROM done

-- name: job_request_cancel
-- Ask the worker holding an active job to stop it; the worker's next
-- heartbeat (or the control notification) delivers the request.
WITH done AS (
    UPDATE jobs SET cancel_requested = true
    WHERE id = %(id)s AND tenant_id = %(tenant)s AND status = 'active'
    RETURNING id, tenant_id, attempts, worker_id
),
history AS (
    INSERT INTO job_events (job_id, tenant_id, event, attempt, worker_id, error)
    SELECT id, tenant_id, 'cancel_requested', attempts, worker_id, %(reason)s FROM done
),
wake AS (
    SELECT pg_notify('queue_service_control', 'cancel:' || id::text) FROM done
)
SELECT id FROM done, (SELECT count(*) FROM wake) w

-- name: job_retry_finished
-- Re-run a failed or cancelled job: back from finished_jobs to waiting with
-- a fresh attempt budget, keeping its id and history.
WITH done AS (
    DELETE FROM finished_jobs
    WHERE id = %(id)s AND tenant_id = %(tenant)s AND status IN ('failed', 'cancelled')
    RETURNING *
),
moved AS (
    INSERT INTO jobs (id, tenant_id, queue, type, priority, data, max_attempts, max_stalled,
                      lease_seconds, idempotency_key, created_by, request_id, trace_context,
                      replay_of, created_at, run_at)
    SELECT id, tenant_id, queue, type, priority, data, max_attempts, max_stalled,
           lease_seconds, idempotency_key, created_by, request_id, trace_context, replay_of,
           created_at, now()
    FROM done
),
history AS (
    INSERT INTO job_events (job_id, tenant_id, event, attempt, error)
    SELECT id, tenant_id, 'retried', attempts, %(actor)s FROM done
)
SELECT id FROM done

-- name: job_page_live
-- A page of a queue's live jobs for one tenant by status, keyset-paginated
-- on (run_at, id), whole rows named as job_get_many's: one statement per
-- page, never one per job (issue 8, item 9).
SELECT
    -- include: live_job_columns
FROM jobs
WHERE queue = %(queue)s AND tenant_id = %(tenant)s
  AND CASE WHEN status = 'waiting' AND run_at > now() THEN 'delayed' ELSE status END = %(status)s
  AND (run_at, id) > (%(after_at)s, %(after_id)s)
ORDER BY run_at, id
LIMIT %(limit)s

-- name: job_page_finished
-- A page of a queue's finished jobs for one tenant by status, newest first,
-- whole rows named as job_get_many's (finished_jobs_listing_idx).
SELECT
    -- include: finished_job_columns
FROM finished_jobs
WHERE tenant_id = %(tenant)s AND queue = %(queue)s AND status = %(status)s
  AND (finished_at, id) < (%(before_at)s, %(before_id)s)
ORDER BY finished_at DESC, id DESC
LIMIT %(limit)s

-- name: queue_counts
-- Per queue and status, the true counts (live from jobs, history from
-- finished_jobs) for one tenant or all (NULL), and the oldest waiting age.
WITH live AS (
    SELECT queue,
           count(*) FILTER (WHERE status = 'waiting' AND run_at <= now()) AS waiting,
           count(*) FILTER (WHERE status = 'waiting' AND run_at > now()) AS delayed,
           count(*) FILTER (WHERE status = 'active') AS active,
           extract(epoch FROM now() - min(run_at) FILTER (
               WHERE status = 'waiting' AND run_at <= now()))::double precision AS oldest
    FROM jobs
    WHERE %(tenant)s::text IS NULL OR tenant_id = %(tenant)s
    GROUP BY queue
),
done AS (
    SELECT queue,
           count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled
    FROM finished_jobs
    WHERE %(tenant)s::text IS NULL OR tenant_id = %(tenant)s
    GROUP BY queue
)
SELECT coalesce(l.queue, d.queue),
       coalesce(l.waiting, 0), coalesce(l.delayed, 0), coalesce(l.active, 0),
       coalesce(d.completed, 0), coalesce(d.failed, 0), coalesce(d.cancelled, 0),
       l.oldest
FROM live l FULL JOIN done d ON d.queue = l.queue

-- name: queue_pause
-- Pause a queue for one tenant, or for all ('*'). Idempotent.
INSERT INTO queue_pauses (queue, tenant_id, paused_by) VALUES (%(queue)s, %(tenant)s, %(actor)s)
ON CONFLICT (queue, tenant_id) DO NOTHING

-- name: queue_resume
-- Lift a pause and wake the queue's workers.
WITH gone AS (
    DELETE FROM queue_pauses WHERE queue = %(queue)s AND tenant_id = %(tenant)s RETURNING queue
)
SELECT pg_notify('queue_service_jobs', queue) FROM gone

-- name: queue_pauses_list
-- Every pause in force.
SELECT queue, tenant_id, paused_by, paused_at FROM queue_pauses ORDER BY queue, tenant_id

-- name: queue_clear
-- Cancel every waiting and delayed job of a queue for a tenant (NULL: all),
-- keeping them in finished_jobs as `cancelled` for the audit trail, who
-- cleared it as their last_error (finished_from_done).
WITH done AS (
    DELETE FROM jobs
    WHERE queue = %(queue)s AND status = 'waiting'
      AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
    RETURNING *, 'cancelled' AS final_status, 'queue cleared by ' || %(actor)s AS final_error,
              NULL::jsonb AS final_result
),
moved AS (
    -- include: finished_from_done
),
history AS (
    INSERT INTO job_events (job_id, tenant_id, event, attempt, error)
    SELECT id, tenant_id, 'cancelled', attempts, final_error FROM done
)
SELECT count(*) FROM done

-- name: dlq_list
-- Dead letters of a tenant (NULL: all), newest first, keyset-paginated.
SELECT id, tenant_id, original_job_id, queue, type, data, error, attempts, created_by,
       failed_at, replayed_job_id, replayed_at
FROM dead_letter_jobs
WHERE (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(type)s::text IS NULL OR type = %(type)s)
  AND (%(error)s::text IS NULL OR strpos(lower(error), lower(%(error)s)) > 0)
  AND (%(after)s::timestamptz IS NULL OR failed_at >= %(after)s)
  AND (%(until)s::timestamptz IS NULL OR failed_at < %(until)s)
  AND (NOT %(unreplayed)s OR replayed_job_id IS NULL)
  AND (failed_at, id) < (%(before_at)s, %(before_id)s)
ORDER BY failed_at DESC, id DESC
LIMIT %(limit)s

-- name: dlq_get
-- One dead letter.
SELECT id, tenant_id, original_job_id, queue, type, data, error, attempts, created_by,
       failed_at, replayed_job_id, replayed_at
FROM dead_letter_jobs
WHERE id = %(id)s AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)

-- name: dlq_mark_replayed
-- Claim the right to replay an entry: only the first caller gets a row, so a
-- replay runs once however many ask at the same moment.
UPDATE dead_letter_jobs
SET replayed_job_id = %(job_id)s, replayed_at = now()
WHERE id = %(id)s AND replayed_job_id IS NULL
  AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
RETURNING id, tenant_id, original_job_id, queue, type, data, error, attempts, created_by,
          failed_at, replayed_job_id, replayed_at

-- name: dlq_delete
-- Remove a dead letter.
DELETE FROM dead_letter_jobs
WHERE id = %(id)s AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
RETURNING id

-- name: dlq_purge
-- Delete up to `limit` dead letters older than the retention window.
WITH gone AS (
    DELETE FROM dead_letter_jobs
    WHERE id = ANY(ARRAY(
        SELECT id FROM dead_letter_jobs
        WHERE failed_at < now() - make_interval(days => %(days)s) LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED))
    RETURNING 1
)
SELECT count(*) FROM gone

-- name: finished_purge
-- Delete up to `limit` finished jobs of the given type prefixes older than
-- the window, archiving them first when asked. Returns how many moved. One
-- short statement per batch; rows another transaction holds (a retry or a
-- replay in flight) are skipped, never waited for (decision 0016).
WITH gone AS (
    DELETE FROM finished_jobs
    WHERE id = ANY(ARRAY(
        SELECT id FROM finished_jobs
        WHERE finished_at < now() - make_interval(days => %(days)s)
          AND (cardinality(%(prefixes)s::text[]) = 0
               OR split_part(type, '.', 1) = ANY(%(prefixes)s::text[]))
          AND NOT (split_part(type, '.', 1) = ANY(%(exclude)s::text[]))
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED))
    RETURNING *
),
archived AS (
    INSERT INTO job_archive
    SELECT * FROM gone WHERE %(archive)s
)
SELECT count(*) FROM gone

-- name: job_events_purge
-- Delete up to `limit` history rows of jobs no longer kept anywhere.
WITH gone AS (
    DELETE FROM job_events
    WHERE id = ANY(ARRAY(
        SELECT e.id FROM job_events e
        WHERE e.at < now() - make_interval(days => %(days)s)
          AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = e.job_id)
          AND NOT EXISTS (SELECT 1 FROM finished_jobs f WHERE f.id = e.job_id)
          AND NOT EXISTS (SELECT 1 FROM job_archive a WHERE a.id = e.job_id)
        LIMIT %(limit)s
        FOR UPDATE OF e SKIP LOCKED))
    RETURNING 1
)
SELECT count(*) FROM gone

-- name: worker_upsert
-- Register a worker process or refresh its heartbeat, with the queues and
-- job types it serves (the leader's unserved-types check reads them).
INSERT INTO workers (id, host, pid, queues, types)
VALUES (%(id)s, %(host)s, %(pid)s, %(queues)s, %(types)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), queues = EXCLUDED.queues,
                               types = EXCLUDED.types

-- name: worker_delete
-- Unregister a worker process on clean shutdown.
DELETE FROM workers WHERE id = %(id)s

-- name: worker_prune
-- Forget workers silent for longer than `seconds`.
DELETE FROM workers WHERE heartbeat_at < now() - make_interval(secs => %(seconds)s)

-- name: job_types_unserved
-- Ready jobs of a (queue, type) that no live worker serves: none that
-- registered within `live_seconds` lists both the queue and the type, and
-- the oldest has been due for over `grace_seconds` (a worker starting beside
-- the leader registers first). Without a word such jobs would wait forever.
-- It reads every ready job as the queue gauges do, on the leader's slower
-- cadence; the workers subquery runs once per (queue, type) group.
SELECT j.queue, j.type, count(*) AS waiting,
       EXTRACT(EPOCH FROM now() - min(j.run_at))::float8 AS oldest_seconds
FROM jobs j
WHERE j.status = 'waiting' AND j.run_at <= now()
GROUP BY j.queue, j.type
HAVING min(j.run_at) < now() - make_interval(secs => %(grace_seconds)s)
   AND NOT EXISTS (
       SELECT 1 FROM workers w
       WHERE w.heartbeat_at > now() - make_interval(secs => %(live_seconds)s)
         AND j.queue = ANY (w.queues) AND j.type = ANY (w.types))
ORDER BY j.queue, j.type

-- name: worker_list
-- Live workers, newest heartbeat first.
SELECT id, host, pid, queues, started_at, heartbeat_at FROM workers ORDER BY heartbeat_at DESC

-- name: leader_try_lock
-- Take the leader lock on this session if no one holds it.
SELECT pg_try_advisory_lock(%(lock)s)

-- name: leader_unlock
-- Give the leader lock up.
SELECT pg_advisory_unlock(%(lock)s)

-- name: db_now
-- The database clock.
SELECT now()

-- name: bench_seed_delayed
-- The drain benchmark's backlog (--delayed): `rows` waiting jobs of the
-- benchmark's queue and type, due in a day so no claim of the run may take
-- them, priorities 1..10 in turn so that every priority's stretch of the
-- fetch index holds delayed rows ahead of the ready ones. One INSERT ...
-- SELECT: about a million rows in ~15 s, no round trips.
INSERT INTO jobs (id, tenant_id, queue, type, priority, data, max_attempts, max_stalled,
                  lease_seconds, created_by, run_at)
SELECT gen_random_uuid(), %(tenant)s, %(queue)s, %(type)s, 1 + i %% 10, jsonb_build_object('i', i),
       3, 3, 30, 'bench-seed', now() + interval '1 day' + make_interval(secs => i / 1000.0)
FROM generate_series(1, %(rows)s) AS i

-- name: bench_analyze
-- Fresh statistics for the live and finished tables, taken when the
-- benchmark wants them (everything waiting, nothing active: the moment a
-- cached generic plan is most wrong). Needs the tables' owner, not the
-- engine role.
ANALYZE jobs, finished_jobs

-- name: bench_window
-- The benchmark's measure, on the database clock: first pick-up, last
-- completion, and how many jobs of a type finished.
SELECT min(started_at), max(finished_at), count(*)
FROM finished_jobs WHERE type = %(type)s AND status = 'completed'

-- name: bench_event_count
-- How many history events of a kind (e.g. snoozed) the finished jobs of a
-- type had: the payments benchmark's count of bucket waits.
SELECT count(*)
FROM job_events e JOIN finished_jobs f ON f.id = e.job_id
WHERE f.type = %(type)s AND e.event = %(event)s

-- name: bench_latencies
-- Enqueue-to-start of each attempt of a type, in milliseconds.
SELECT extract(epoch FROM started_at - created_at) * 1000
FROM finished_jobs WHERE type = %(type)s AND status = 'completed'

-- name: claim_session_settings
-- Run once on each connection of the claim pool (Database.claim_connection):
-- its prepared claims run their generic plans, with no JIT (decision 0030).
-- PostgreSQL re-planned both claims on every execution: their custom plans
-- look cheaper than the generic one (a generic plan cannot see the LIMIT or,
-- in the fair claim, that the cap is NULL), so every claim paid 0.2 ms
-- (job_claim) or 0.3 ms (job_claim_fair) of planning. Their generic plans
-- are the ones test_plans.py and test_fairness.py read and bound after the
-- worst-moment ANALYZE. No JIT: a generic plan's estimate grows with the
-- table and, past jit_above_cost, compiling it took 15 ms of a 0.5 ms claim
-- (the fair claim at 50,000 waiting jobs). Only claims run on these
-- connections; every other statement keeps PostgreSQL's own choice.
SET plan_cache_mode = force_generic_plan; SET jit = off
