-- Cron schedules and the record of their ticks.
-- `-- name: x` starts a statement; the line after it says what it does.

-- name: schedule_insert
-- A new schedule; no row back when the tenant already has one of that name
-- (the caller says so rather than silently replacing it).
INSERT INTO schedules (id, tenant_id, name, cron, timezone, type, data, active, misfire,
                       next_run_at, created_by)
VALUES (%(id)s, %(tenant)s, %(name)s, %(cron)s, %(timezone)s, %(type)s, %(data)s::text::jsonb,
        %(active)s, %(misfire)s, %(next_run_at)s, %(created_by)s)
ON CONFLICT (tenant_id, name) DO NOTHING
RETURNING id, tenant_id, name, cron, timezone, type, data, active, misfire, next_run_at,
          last_fired_at, created_at, created_by

-- name: schedule_replace
-- Change a schedule in place (same id, its run history kept); the ticks
-- start afresh from the new expression's next one.
UPDATE schedules
SET cron = %(cron)s, timezone = %(timezone)s, type = %(type)s, data = %(data)s::text::jsonb,
    active = %(active)s, misfire = %(misfire)s, next_run_at = %(next_run_at)s
WHERE tenant_id = %(tenant)s AND name = %(name)s
RETURNING id, tenant_id, name, cron, timezone, type, data, active, misfire, next_run_at,
          last_fired_at, created_at, created_by

-- name: schedule_find
-- One schedule by id or by name, of one tenant (NULL: any tenant).
SELECT id, tenant_id, name, cron, timezone, type, data, active, misfire, next_run_at,
       last_fired_at, created_at, created_by
FROM schedules
WHERE (id = %(id)s OR name = %(name)s)
  AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
ORDER BY tenant_id, name

-- name: schedule_list
-- A tenant's schedules (NULL: every tenant's), oldest first, a page after
-- the keyset (created_at, id).
SELECT id, tenant_id, name, cron, timezone, type, data, active, misfire, next_run_at,
       last_fired_at, created_at, created_by
FROM schedules
WHERE (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
  AND (%(after_at)s::timestamptz IS NULL OR (created_at, id) > (%(after_at)s, %(after_id)s::uuid))
ORDER BY created_at, id
LIMIT %(limit)s

-- name: schedule_delete
-- Remove a schedule of a tenant (NULL: any); its runs go with it, the jobs
-- it enqueued stay.
DELETE FROM schedules
WHERE id = %(id)s AND (%(tenant)s::text IS NULL OR tenant_id = %(tenant)s)
RETURNING id, tenant_id, name, cron, timezone, type, data, active, misfire, next_run_at,
          last_fired_at, created_at, created_by

-- name: schedule_claim_due
-- The leader's pass: active schedules whose next tick has come, locked for
-- this transaction (SKIP LOCKED: a second leader racing it takes others or
-- none), with the clock every tick is judged by: the database's (a test's
-- fake clock when given).
SELECT id, tenant_id, name, cron, timezone, type, data, active, misfire, next_run_at,
       last_fired_at, created_at, created_by,
       coalesce(%(now)s::timestamptz, statement_timestamp()) AS now
FROM schedules
WHERE active AND next_run_at <= coalesce(%(now)s::timestamptz, statement_timestamp())
ORDER BY next_run_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: schedule_runs_record
-- Record a pass's ticks; a tick already recorded (another leader's pass)
-- conflicts and is not returned, so its job is not enqueued twice.
INSERT INTO schedule_runs (schedule_id, tenant_id, fire_at, status)
SELECT %(schedule_id)s, %(tenant)s, t.fire_at, t.status
FROM unnest(%(fire_at)s::timestamptz[], %(status)s::text[]) AS t (fire_at, status)
ON CONFLICT (schedule_id, fire_at) DO NOTHING
RETURNING fire_at

-- name: schedule_runs_link
-- Attach the enqueued jobs (or why none was) to the ticks they cover.
UPDATE schedule_runs AS r
SET job_id = t.job_id, note = t.note,
    status = CASE WHEN t.job_id IS NULL THEN 'skipped' ELSE r.status END
FROM unnest(%(fire_at)s::timestamptz[], %(job_id)s::uuid[], %(note)s::text[])
     AS t (fire_at, job_id, note)
WHERE r.schedule_id = %(schedule_id)s AND r.fire_at = t.fire_at

-- name: schedule_advance
-- Move a claimed schedule to its next tick; one that never fires again
-- becomes inactive.
UPDATE schedules
SET next_run_at = %(next_run_at)s,
    last_fired_at = coalesce(%(fired_at)s, last_fired_at),
    active = active AND %(next_run_at)s::timestamptz IS NOT NULL
WHERE id = %(id)s

-- name: schedule_runs_list
-- A schedule's recorded ticks, newest first.
SELECT fire_at, status, job_id, note, recorded_at
FROM schedule_runs
WHERE schedule_id = %(schedule_id)s
ORDER BY fire_at DESC
LIMIT %(limit)s

-- name: schedule_runs_purge
-- Forget up to `limit` run records older than `days` (the jobs keep their own history).
DELETE FROM schedule_runs
WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM schedule_runs
    WHERE recorded_at < now() - make_interval(days => %(days)s)
    LIMIT %(limit)s
))
