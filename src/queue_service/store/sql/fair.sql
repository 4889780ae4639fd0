-- Fair tenants (docs/decisions/0020-fair-tenants.md). Only queues declared
-- fair (QUEUE_SERVICE_FAIR_QUEUES, or a cap in QUEUE_SERVICE_TENANT_CONCURRENCY)
-- use anything in this file, and only they pay for it: their indexes are
-- partial on `queue = '<that queue>'`, so an insert or claim in any other
-- queue never writes them (PostgreSQL checks a partial index's predicate,
-- two comparisons, and skips it).
--
-- These statements are templates: `{queue}` is the queue's name as an SQL
-- literal and `{index}` an index name, filled in by store/fair.py with
-- psycopg.sql (Literal, Identifier), never by string formatting. The literal
-- is what lets a prepared statement's generic plan use the queue's own
-- partial index: with `queue = $1` the planner cannot prove the index's
-- predicate and would never pick it. So each fair queue has its own
-- statement text (and its own prepared statement).

-- name: fair_index_create
-- The fair claim's index for one queue: its waiting rows in (priority,
-- tenant, run_at, id) order, so the claim can walk the (priority, tenant)
-- pairs with waiting work one descent each and probe each pair's ready rows
-- bounded by run_at. CONCURRENTLY: built while the queue keeps working (no
-- lock that blocks inserts); run outside a transaction.
--
-- The predicate says `status ^@ 'wait'` (starts with), the same rows as
-- `status = 'waiting'` (the column's check allows only 'waiting' and
-- 'active'), written so that the planner proves neither from the other: the
-- fair claim (which says `^@ 'wait'`) can never fall back on jobs_fetch_idx
-- and filter it on tenant_id (walking the big tenant's backlog for the small
-- one), and nothing that says `= 'waiting'` ever reads this index.
CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON jobs (priority, tenant_id, run_at, id)
    WHERE queue = {queue} AND status ^@ 'wait'

-- name: fair_active_index_create
-- For a queue with a per-tenant cap: its active rows by tenant, so the claim
-- counts a tenant's held and running jobs (across every worker process) in
-- at most `cap` index entries. Active rows of other queues never enter it.
CREATE INDEX CONCURRENTLY IF NOT EXISTS {index} ON jobs (tenant_id)
    WHERE queue = {queue} AND status = 'active'

-- name: fair_index_valid
-- Whether an index exists and is valid. A CREATE INDEX CONCURRENTLY that
-- failed half-way (cancelled, a deadlock, a crash) leaves an invalid index
-- that IF NOT EXISTS would keep forever; store/fair.py drops and rebuilds it.
SELECT i.indisvalid
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relname = %(name)s AND c.relnamespace = current_schema()::regnamespace

-- name: fair_index_drop
-- Drop an invalid fair index before rebuilding it (see fair_index_valid).
DROP INDEX CONCURRENTLY IF EXISTS {index}

-- name: fair_index_lock
-- One process builds a queue's fair indexes at a time (a second builder
-- waits, then finds them there); a session lock, released by fair_index_unlock.
SELECT pg_advisory_lock(hashtext('queue_service.fair_index'), hashtext(%(queue)s))

-- name: fair_index_unlock
SELECT pg_advisory_unlock(hashtext('queue_service.fair_index'), hashtext(%(queue)s))

-- name: fair_claim_lock
-- A queue with a per-tenant cap claims one process at a time, so that each
-- claim counts the active rows every earlier claim made (the lock is taken
-- before the claim statement starts, so the claim's snapshot sees them: READ
-- COMMITTED takes a snapshot per statement). Released at commit. Queues
-- without a cap never take it.
SELECT pg_advisory_xact_lock(hashtext('queue_service.fair_claim'), hashtext(%(queue)s))

-- name: job_claim_fair
-- job_claim for a fair queue: one tenant's backlog cannot starve the
-- others. Same order rules as job_claim: priorities ascend (a higher-priority
-- job of any tenant comes before lower-priority ones), FIFO (run_at, id)
-- within a tenant and priority, SKIP LOCKED, the type filter in the probe.
-- The pause check is made once per tenant, in `ready` (every row of a probe
-- is the same tenant's; per row it was a scan of queue_pauses per job), so a
-- paused tenant neither gets rows nor counts in the share. The batch is shared: each tenant with ready work gets
-- at most ceil(limit / tenants with ready work). When there are more such
-- tenants than `limit`, the ones after %(after)s (the last tenant the worker
-- was given) come first, so the turn goes round instead of always serving
-- the alphabetically first ones.
--
-- Per-tenant cap (%(cap)s, NULL = none): a tenant's room is the cap minus
-- its active rows in the queue, counted on the queue's active index (at
-- most `cap` entries); a capped tenant is served from its first ready
-- priority only, so one claim never gives it more than its room. Counting is
-- exact across processes because capped queues claim under fair_claim_lock.
--
-- Plans. `pairs` is a loose index scan on the queue's fair index: the row
-- comparison `(priority, tenant_id) > (p.priority, p.tenant_id)` is one
-- descent per (priority, tenant) pair with waiting rows, whatever the
-- backlog, and it lands on the pair's first live row, whose run_at says
-- whether the pair has anything due (the index orders a pair's rows by
-- run_at). The probe starts at that row (`(run_at, id) >= ...` in the index
-- condition) instead of at the pair's start: the rows claimed and finished
-- since the last vacuum leave dead entries there, which the walk has
-- already stepped over once; reading them again per probe made a fair
-- claim ~1.4x the plain one (measured), starting past them makes it no
-- dearer. Every read of waiting rows says `status ^@ 'wait'`, the fair
-- index's predicate, so none can use jobs_fetch_idx (see fair_index_create).
-- The update reaches the picked rows through `id = ANY (ARRAY(...))`, a
-- primary-key probe per id: joined FROM picked, a generic plan may
-- hash-join a sequential scan. Cost: one descent per (priority, tenant)
-- pair with waiting rows plus one per probe, not per row; the outer LIMIT
-- stops the probes once the batch is full.
WITH RECURSIVE pairs AS (
    (SELECT j.priority, j.tenant_id, j.run_at, j.id FROM jobs j
     WHERE j.queue = {queue} AND j.status ^@ 'wait'
     ORDER BY j.priority, j.tenant_id, j.run_at, j.id
     LIMIT 1)
    UNION ALL
    SELECT n.priority, n.tenant_id, n.run_at, n.id
    FROM pairs p
    CROSS JOIN LATERAL (
        SELECT j.priority, j.tenant_id, j.run_at, j.id FROM jobs j
        WHERE j.queue = {queue} AND j.status ^@ 'wait'
          AND (j.priority, j.tenant_id) > (p.priority, p.tenant_id)
        ORDER BY j.priority, j.tenant_id, j.run_at, j.id
        LIMIT 1
    ) n
),
ready AS (
    SELECT p.priority, p.tenant_id, p.run_at, p.id,
           row_number() OVER (PARTITION BY p.tenant_id ORDER BY p.priority) AS nth
    FROM pairs p
    WHERE p.run_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM queue_pauses q
          WHERE q.queue = {queue} AND q.tenant_id IN (p.tenant_id, '*'))
),
share AS (
    SELECT ceil(%(limit)s::numeric / greatest(count(DISTINCT tenant_id), 1))::int AS n
    FROM ready
),
turns AS (
    SELECT r.priority, r.tenant_id, r.run_at, r.id,
           CASE WHEN %(cap)s::int IS NULL THEN s.n
                WHEN r.nth > 1 THEN 0
                ELSE least(s.n, %(cap)s::int - (
                    SELECT count(*)::int FROM (
                        SELECT 1 FROM jobs a
                        WHERE a.queue = {queue} AND a.status = 'active'
                          AND a.tenant_id = r.tenant_id
                        LIMIT %(cap)s::int) held))
           END AS take
    FROM ready r CROSS JOIN share s
    -- COLLATE "C": code point order, the order the runner picks `after` in.
    ORDER BY r.priority, r.tenant_id COLLATE "C" <= %(after)s::text COLLATE "C",
             r.tenant_id COLLATE "C"
),
picked AS (
    SELECT probe.id
    FROM turns t
    CROSS JOIN LATERAL (
        SELECT j.id
        FROM jobs j
        WHERE j.queue = {queue}
          AND j.status ^@ 'wait'
          AND j.priority = t.priority
          AND j.tenant_id = t.tenant_id
          AND (j.run_at, j.id) >= (t.run_at, t.id)
          AND j.run_at <= now()
          AND j.type = ANY(%(types)s::text[])
        ORDER BY j.run_at, j.id
        LIMIT greatest(t.take, 0)
        FOR UPDATE SKIP LOCKED
    ) probe
    LIMIT %(limit)s
)
-- include: claim_picked
