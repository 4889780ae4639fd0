-- Statements of the outbound rate limits and circuit breakers (SPEC §5,
-- decision 0009). Every time is the database's: processes on several hosts
-- share one clock. Each statement is one autocommit transaction.

-- name: outbound_configure
-- Create a service's bucket from configuration, or bring an existing one to
-- it (the last process to start with a new configuration wins); a new bucket
-- starts full, a shrunk one keeps at most its new size. Slot rows
-- 1..max_in_flight exist afterwards; slots above it go. Idle when unchanged:
-- the DO UPDATE's WHERE writes nothing when the configuration is the same.
WITH svc AS (
    INSERT INTO outbound_services AS s (service, capacity, refill_per_second, max_in_flight,
                                        tokens, breaker_failures, breaker_open_seconds)
    VALUES (%(service)s, %(size)s, %(refill)s, %(max_in_flight)s, %(size)s,
            %(failures)s, %(open_seconds)s)
    ON CONFLICT (service) DO UPDATE SET
        capacity = EXCLUDED.capacity,
        refill_per_second = EXCLUDED.refill_per_second,
        max_in_flight = EXCLUDED.max_in_flight,
        tokens = least(s.tokens, EXCLUDED.capacity),
        breaker_failures = EXCLUDED.breaker_failures,
        breaker_open_seconds = EXCLUDED.breaker_open_seconds,
        updated_at = now()
    WHERE (s.capacity, s.refill_per_second, s.max_in_flight, s.breaker_failures,
           s.breaker_open_seconds)
          IS DISTINCT FROM
          (EXCLUDED.capacity, EXCLUDED.refill_per_second, EXCLUDED.max_in_flight,
           EXCLUDED.breaker_failures, EXCLUDED.breaker_open_seconds)
    RETURNING service
),
trimmed AS (
    DELETE FROM outbound_slots WHERE service = %(service)s AND slot > %(max_in_flight)s
)
-- The foreign key is checked at the end of the statement, when svc's row is there.
INSERT INTO outbound_slots (service, slot)
SELECT %(service)s, n FROM generate_series(1, %(max_in_flight)s) AS n
ON CONFLICT (service, slot) DO NOTHING

-- name: outbound_acquire
-- Take one token and one in-flight slot for a call, or nothing. One
-- statement, so no process can read a count another is about to change:
--   free   locks one slot that is unused or expired. SKIP LOCKED: a slot
--          another acquire is taking is passed over, not waited for; and
--          FOR UPDATE re-checks the predicate on the newest row version, so
--          a slot taken after this statement's snapshot is never taken twice.
--   taken  refills the bucket by the time elapsed on the database clock and
--          takes a token, only if a slot was found, the service is not
--          stopped, a whole token is there and the breaker lets the call
--          through (closed; open past its period, or half-open with its probe
--          gone: this call becomes the probe). Concurrent acquires queue on
--          this one row lock; READ COMMITTED re-evaluates the WHERE and SET
--          on the row version the previous holder committed, so tokens are
--          never counted twice. greatest(refilled_at, now()): a statement
--          that waited for the lock started before its predecessor, and time
--          must not run backwards (it adds no refill instead).
--   claimed marks the slot as this call's, only if the token was taken.
-- The final row answers either way; when nothing was taken, its figures
-- (from the snapshot) say why and for how long.
WITH free AS (
    SELECT slot FROM outbound_slots
    WHERE service = %(service)s AND (holder IS NULL OR expires_at <= now())
    ORDER BY slot
    LIMIT 1
    FOR UPDATE SKIP LOCKED
),
taken AS (
    UPDATE outbound_services AS s SET
        tokens = outbound_refilled(s.tokens, s.capacity, s.refill_per_second,
                                   s.refilled_at, now()) - 1,
        refilled_at = greatest(s.refilled_at, now()),
        breaker_state = CASE WHEN s.breaker_state = 'closed' THEN 'closed' ELSE 'half_open' END,
        probe_holder = CASE WHEN s.breaker_state = 'closed' THEN NULL ELSE %(holder)s END,
        probe_expires_at = CASE WHEN s.breaker_state = 'closed' THEN NULL
                                ELSE now() + make_interval(secs => %(slot_seconds)s) END,
        updated_at = now()
    WHERE s.service = %(service)s
      AND EXISTS (SELECT 1 FROM free)
      AND s.stopped_at IS NULL
      AND outbound_refilled(s.tokens, s.capacity, s.refill_per_second,
                            s.refilled_at, now()) >= 1
      AND (s.breaker_state = 'closed'
           OR (s.breaker_state = 'open'
               AND s.opened_at + make_interval(secs => s.breaker_open_seconds) <= now())
           OR (s.breaker_state = 'half_open'
               AND (s.probe_expires_at IS NULL OR s.probe_expires_at <= now())))
    RETURNING s.breaker_state
),
claimed AS (
    UPDATE outbound_slots AS o SET
        holder = %(holder)s,
        lease = %(lease)s,
        taken_at = now(),
        expires_at = now() + make_interval(secs => %(slot_seconds)s)
    FROM free
    WHERE o.service = %(service)s AND o.slot = free.slot AND EXISTS (SELECT 1 FROM taken)
    RETURNING o.slot
)
SELECT (SELECT slot FROM claimed) AS slot,
       (SELECT breaker_state = 'half_open' FROM taken) IS TRUE AS probe,
       EXISTS (SELECT 1 FROM free) AS slot_free,
       outbound_refilled(s.tokens, s.capacity, s.refill_per_second, s.refilled_at, now())
           AS tokens,
       s.refill_per_second,
       s.stopped_at IS NOT NULL AS stopped,
       s.stopped_by,
       s.stop_reason,
       s.breaker_state,
       s.consecutive_failures,
       CASE WHEN s.breaker_state = 'open'
            THEN extract(epoch FROM s.opened_at
                         + make_interval(secs => s.breaker_open_seconds) - now())::double precision
       END AS seconds_to_half_open
FROM outbound_services AS s
WHERE s.service = %(service)s

-- name: outbound_slot_extend
-- Keep a running call's slot from expiring (the gate calls this every third
-- of the expiry while the call runs). Fenced by the lease: returns nothing
-- when the slot was taken over, i.e. this holder looked dead for too long.
UPDATE outbound_slots
SET expires_at = now() + make_interval(secs => %(slot_seconds)s)
WHERE service = %(service)s AND slot = %(slot)s AND lease = %(lease)s
RETURNING slot

-- name: outbound_release
-- Give a slot back when its call ends, fenced by the lease (a slot that
-- expired and was taken over is the new holder's). Touches only the slot
-- row, never the service row: a statement holding locks on both could
-- deadlock against an acquire, which locks a slot and then the service.
UPDATE outbound_slots
SET holder = NULL, lease = NULL, taken_at = NULL, expires_at = NULL
WHERE service = %(service)s AND slot = %(slot)s AND lease = %(lease)s

-- name: outbound_breaker_success
-- The service answered: close the breaker and forget the failures. Writes
-- (and locks) nothing when the breaker is already closed and clean, which is
-- nearly always, so a success costs a read.
UPDATE outbound_services
SET breaker_state = 'closed', consecutive_failures = 0, opened_at = NULL,
    probe_holder = NULL, probe_expires_at = NULL, updated_at = now()
WHERE service = %(service)s AND (consecutive_failures > 0 OR breaker_state <> 'closed')
RETURNING breaker_state

-- name: outbound_breaker_failure
-- A call met a retryable failure (network, 5xx, timeout): count it; the
-- threshold-th in a row, or a failed probe, opens the breaker. An open
-- breaker keeps the time it opened (late failures of calls that started
-- before it opened do not prolong it). Returns the state after.
UPDATE outbound_services AS s SET
    consecutive_failures = s.consecutive_failures + 1,
    breaker_state = CASE
        WHEN s.breaker_state = 'half_open' OR s.consecutive_failures + 1 >= s.breaker_failures
        THEN 'open' ELSE s.breaker_state END,
    opened_at = CASE
        WHEN s.breaker_state = 'open' THEN s.opened_at
        WHEN s.breaker_state = 'half_open' OR s.consecutive_failures + 1 >= s.breaker_failures
        THEN now() END,
    probe_holder = NULL,
    probe_expires_at = NULL,
    last_failure = %(error)s,
    updated_at = now()
WHERE s.service = %(service)s
RETURNING s.breaker_state, s.consecutive_failures

-- name: outbound_stop
-- Emergency stop: every caller snoozes until a reset. Keeps the first stop's
-- time when stopped again (who and why are the latest).
UPDATE outbound_services
SET stopped_at = coalesce(stopped_at, now()), stopped_by = %(by)s, stop_reason = %(reason)s,
    updated_at = now()
WHERE service = %(service)s
RETURNING service

-- name: outbound_reset
-- Refill the bucket, end an emergency stop and close the breaker. Slots of
-- running calls stay theirs (the cap holds); expired ones are free already.
UPDATE outbound_services
SET tokens = capacity, refilled_at = now(),
    stopped_at = NULL, stopped_by = NULL, stop_reason = NULL,
    breaker_state = 'closed', consecutive_failures = 0, opened_at = NULL,
    probe_holder = NULL, probe_expires_at = NULL, last_failure = NULL,
    updated_at = now()
WHERE service = %(service)s
RETURNING service

-- name: outbound_states
-- Every service's state now (or one service's), for status, metrics and the
-- dashboard: tokens refilled to now on read (nothing written), live slots
-- only (expired ones count for nothing), and an open breaker whose period
-- has passed shown as half_open (the next call is its probe).
SELECT s.service,
       s.capacity AS size,
       s.refill_per_second,
       s.max_in_flight,
       outbound_refilled(s.tokens, s.capacity, s.refill_per_second, s.refilled_at, now())
           AS tokens,
       (SELECT count(*) FROM outbound_slots AS o
        WHERE o.service = s.service AND o.holder IS NOT NULL AND o.expires_at > now())::integer
           AS in_flight,
       s.stopped_at,
       s.stopped_by,
       s.stop_reason,
       CASE WHEN s.breaker_state = 'open'
                 AND s.opened_at + make_interval(secs => s.breaker_open_seconds) <= now()
            THEN 'half_open' ELSE s.breaker_state END AS breaker_state,
       s.consecutive_failures,
       s.breaker_failures,
       s.breaker_open_seconds,
       s.opened_at,
       CASE WHEN s.opened_at IS NOT NULL
            THEN s.opened_at + make_interval(secs => s.breaker_open_seconds) END
           AS half_open_at,
       s.last_failure,
       now() AS read_at
FROM outbound_services AS s
WHERE %(service)s::text IS NULL OR s.service = %(service)s
ORDER BY s.service
