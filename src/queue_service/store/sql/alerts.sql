-- Alerts (SPEC §8): the measurements the leader's evaluator reads, and the
-- alert_history rows it writes (firing, cooldown, resolution) and the API
-- reads and acknowledges.
-- `-- name: x` starts a statement; the line after it says what it does.

-- name: alert_queue_measures
-- Per queue, every tenant: jobs ready to run (waiting, run_at due) and how
-- long the oldest of them has waited since its run_at. One pass over
-- jobs_fetch_idx (queue, priority, run_at) WHERE status = 'waiting', so the
-- cost is the backlog, never the finished history (a queue with no ready
-- job returns no row). Measured ~25 ms for 50,052 ready jobs (docs/decisions/0013).
SELECT queue, count(*) AS depth,
       extract(epoch FROM now() - min(run_at))::double precision AS oldest_seconds
FROM jobs
WHERE status = 'waiting' AND run_at <= now() AND queue = ANY(%(queues)s::text[])
GROUP BY queue

-- name: alert_failure_count
-- Attempts of a queue's jobs that ended in failure (a retry scheduled, or
-- failed for good) in the last `window` seconds. job_events_at_idx bounds the
-- scan to the window, never the millions of older rows; only the failure
-- events are then looked up by primary key in jobs (still retrying) or
-- finished_jobs (failed), whichever holds the job now, for its queue.
-- MATERIALIZED: inlined, the planner priced a lookup per event of the window
-- and crossed jit_above_cost (355 ms of JIT compiling for 70 ms of work with
-- 98,810 events in the window); this way 60-90 ms (docs/decisions/0013).
WITH failed AS MATERIALIZED (
    SELECT job_id FROM job_events
    WHERE at > now() - make_interval(secs => %(window)s)
      AND event IN ('retry_scheduled', 'failed')
)
SELECT count(*)
FROM failed x
WHERE EXISTS (SELECT 1 FROM jobs j WHERE j.id = x.job_id AND j.queue = %(queue)s)
   OR EXISTS (SELECT 1 FROM finished_jobs f WHERE f.id = x.job_id AND f.queue = %(queue)s)

-- name: alert_observe
-- The open firing of `fire_key`, opened now if there is none (the partial
-- unique index makes it one, whichever evaluator gets there first), with the
-- value just observed. `opened` says whether this call opened it.
INSERT INTO alert_history AS a (id, rule, fire_key, severity, value, threshold, message)
VALUES (%(id)s, %(rule)s, %(fire_key)s, %(severity)s, %(value)s, %(threshold)s, %(message)s)
ON CONFLICT (fire_key) WHERE resolved_at IS NULL DO UPDATE
SET observed_at = now(), value = EXCLUDED.value, threshold = EXCLUDED.threshold,
    severity = EXCLUDED.severity, message = EXCLUDED.message
RETURNING a.id, a.rule, a.severity, a.fired_at, a.notifications, a.last_notified_at,
          a.acknowledged_at, (a.xmax = 0) AS opened

-- name: alert_claim_notification
-- Take the right to notify for an open, unacknowledged firing whose key has
-- not been notified within `cooldown` seconds (this firing or an earlier one:
-- a flapping condition pages once per cooldown). The firing's own column is
-- tested on the row itself, so a concurrent claim re-checks it after the
-- first commits and gets nothing. Returns the round's number, or no row.
UPDATE alert_history a
SET notifications = a.notifications + 1, last_notified_at = now()
WHERE a.id = %(id)s
  AND a.resolved_at IS NULL
  AND a.acknowledged_at IS NULL
  AND (a.last_notified_at IS NULL
       OR a.last_notified_at <= now() - make_interval(secs => %(cooldown)s))
  AND NOT EXISTS (
      SELECT 1 FROM alert_history p
      WHERE p.fire_key = a.fire_key AND p.id <> a.id
        AND p.last_notified_at > now() - make_interval(secs => %(cooldown)s))
RETURNING a.notifications

-- name: alert_record_channels
-- What each channel did in the latest notification round.
UPDATE alert_history SET channels = %(channels)s::text::jsonb WHERE id = %(id)s

-- name: alert_resolve
-- The condition cleared: close the open firing of `fire_key`, if any.
UPDATE alert_history
SET resolved_at = now()
WHERE fire_key = %(fire_key)s AND resolved_at IS NULL
RETURNING id, rule, fired_at

-- name: alert_list
-- Firings newest first, keyset-paginated on (fired_at, id); status is
-- derived: resolved, else acknowledged, else firing.
SELECT id, rule, fire_key, severity, fired_at, observed_at, value, threshold, message,
       notifications, last_notified_at, channels, acknowledged_at, acknowledged_by,
       resolved_at
FROM alert_history
WHERE (%(rule)s::text IS NULL OR rule = %(rule)s)
  AND (%(severity)s::text IS NULL OR severity = %(severity)s)
  AND (%(status)s::text IS NULL
       OR (%(status)s = 'resolved' AND resolved_at IS NOT NULL)
       OR (%(status)s = 'acknowledged' AND resolved_at IS NULL AND acknowledged_at IS NOT NULL)
       OR (%(status)s = 'firing' AND resolved_at IS NULL AND acknowledged_at IS NULL))
  AND (fired_at, id) < (%(before_at)s, %(before_id)s)
ORDER BY fired_at DESC, id DESC
LIMIT %(limit)s

-- name: alert_get
-- One firing.
SELECT id, rule, fire_key, severity, fired_at, observed_at, value, threshold, message,
       notifications, last_notified_at, channels, acknowledged_at, acknowledged_by,
       resolved_at
FROM alert_history
WHERE id = %(id)s

-- name: alert_acknowledge
-- Acknowledge a firing: no more notification rounds for it. Idempotent: the
-- first acknowledgement's time and author stay.
UPDATE alert_history
SET acknowledged_at = coalesce(acknowledged_at, now()),
    acknowledged_by = coalesce(acknowledged_by, %(by)s)
WHERE id = %(id)s
RETURNING id, rule, fire_key, severity, fired_at, observed_at, value, threshold, message,
          notifications, last_notified_at, channels, acknowledged_at, acknowledged_by,
          resolved_at

-- name: alert_purge
-- Delete up to `limit` firings resolved more than `days` ago (alerts are
-- kept 7 days); open firings stay whatever their age. Returns how many.
WITH gone AS (
    DELETE FROM alert_history
    WHERE id IN (
        SELECT id FROM alert_history
        WHERE resolved_at < now() - make_interval(days => %(days)s)
        ORDER BY resolved_at
        LIMIT %(limit)s)
    RETURNING 1
)
SELECT count(*) FROM gone
