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
-- Take one token and one in-flight slot for a call; or book this holder the
-- next token nobody was promised (a reservation) and say when it is due; or
-- say why not. One statement, one transaction: no process reads a figure
-- another is about to change.
--
-- The bound. `tokens` is a plain token bucket (refilled by elapsed time on
-- the database clock, never above capacity) and every call made takes a
-- whole token from it at the moment it is admitted, reserved or not. So the
-- calls admitted in any window are at most capacity + refill * window,
-- whatever becomes of reservations: booking one takes nothing from `tokens`;
-- it only raises `reserved`, the tokens promised to waiting holders, which
-- callers without a reservation must leave alone (they take one only when
-- tokens - reserved >= 1). A reservation is due when the bucket will hold its
-- tokens on top of everyone's booked before it: (reserved + want - tokens) /
-- refill from now, so waiters are spaced 1/refill apart in booking order.
-- A holder back at or after its due time uses a token of its own booking
-- when one is whole (tokens >= 1: the bucket, not the promise, decides);
-- one back early uses it only if a token is spare beyond every promise.
-- A reservation never used lapses at expires_at; the next acquire deletes it
-- and lowers `reserved` by its unused tokens in this same statement (so the
-- count stays exact); it took nothing from `tokens`, so lapsing cannot let
-- more calls through than the bucket allows: it only lets others have them.
--
-- Locks and order. Every row lock on slots and reservations is taken with
-- SKIP LOCKED; the one lock waited for is the service row's. So acquires
-- queue on that row only and never deadlock with one another, a release
-- (which locks one slot and nothing else) or a reset (SKIP LOCKED too).
--   free     one slot, unused or expired. FOR UPDATE re-checks the predicate
--            on the newest version, so a slot taken since this statement's
--            snapshot is never taken twice.
--   mine     this holder's live reservation (one row at most in practice:
--            a job runs in one place at a time). A row another statement
--            holds is skipped: it is being deleted as lapsed (from a clock a
--            moment later than ours), and this holder is treated as having
--            none; the other statement gives its tokens back.
--   lapsed   deletes the service's expired reservations no one else holds,
--            returning their unused tokens; each is deleted exactly once
--            (a row deleted by a transaction that committed meanwhile is gone
--            for FOR UPDATE; one locked by a transaction in progress is
--            skipped and that one deletes it).
--   locked   the service row, FOR NO KEY UPDATE: waits for the acquires ahead
--            and, under READ COMMITTED, returns the version the last of them
--            committed, not this statement's snapshot. Every decision below
--            is made from it, so no token or promise is counted twice.
--   verdict  what this acquire does, from locked, mine, lapsed and free:
--            refused  emergency stop, or the breaker lets nothing through
--                     (open in its period; half-open with its probe out)
--            used     mine is due (or a token is spare) and whole: use it
--            held     mine is due, but no token is whole yet (a holder ahead
--                     came late) or every slot is busy: keep it, wait a bit
--            early    mine is not due yet
--            taken    no reservation, a token free of promises, a slot
--            busy     no reservation, a token free of promises, no slot
--            reserved booked `want` tokens, due in `wait` seconds
--            beyond   the booking would be due past the horizon: not booked
--            A half-open breaker books nothing: the first token through is
--            its probe. `want` is 1, or one more than the holder's last
--            booking used when that booking was used up moments ago (its row
--            is kept until it expires): a job making several calls per run
--            would otherwise use its booking on the first call and book
--            again for the second on every run, for ever.
--   settled  writes the service row when anything changed (a token taken, a
--            booking made or used, lapsed ones given back).
--   booked, rebooked, spent, kept  write this holder's reservation row.
--   claimed  marks the slot as this call's, only if a token was taken.
-- The final row answers from the locked version either way.
WITH free AS (
    SELECT slot FROM outbound_slots
    WHERE service = %(service)s AND (holder IS NULL OR expires_at <= now())
    ORDER BY slot
    LIMIT 1
    FOR UPDATE SKIP LOCKED
),
mine AS (
    SELECT id, due_at, tokens, used FROM outbound_reservations
    WHERE service = %(service)s AND holder = %(holder)s AND expires_at > now()
    ORDER BY due_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
),
lapsed AS (
    DELETE FROM outbound_reservations
    WHERE id IN (SELECT id FROM outbound_reservations
                 WHERE service = %(service)s AND expires_at <= now()
                 FOR UPDATE SKIP LOCKED)
    RETURNING tokens
),
locked AS (
    SELECT * FROM outbound_services WHERE service = %(service)s FOR NO KEY UPDATE
),
bucket AS (
    SELECT l.*,
           outbound_refilled(l.tokens, l.capacity, l.refill_per_second, l.refilled_at, now())
               AS now_tokens,
           l.reserved - g.freed AS promised,
           g.freed,
           l.breaker_state = 'closed'
           OR (l.breaker_state = 'open'
               AND l.opened_at + make_interval(secs => l.breaker_open_seconds) <= now())
           OR (l.breaker_state = 'half_open'
               AND (l.probe_expires_at IS NULL OR l.probe_expires_at <= now())) AS passes
    FROM locked AS l,
         (SELECT coalesce(sum(tokens), 0)::integer AS freed FROM lapsed) AS g
),
verdict AS (
    SELECT b.*, m.id AS mine_id, m.due_at AS mine_due, w.want,
           (b.promised + w.want - b.now_tokens) / b.refill_per_second AS wait,
           CASE
               WHEN b.stopped_at IS NOT NULL OR NOT b.passes THEN 'refused'
               WHEN m.tokens > 0 THEN
                   CASE WHEN b.now_tokens >= 1
                             AND (m.due_at <= now() OR b.now_tokens - b.promised >= 1)
                        THEN CASE WHEN EXISTS (SELECT 1 FROM free) THEN 'used' ELSE 'held' END
                        WHEN m.due_at > now() THEN 'early'
                        ELSE 'held' END
               WHEN b.now_tokens >= 1 AND b.now_tokens - b.promised >= 1 THEN
                   CASE WHEN EXISTS (SELECT 1 FROM free) THEN 'taken' ELSE 'busy' END
               WHEN b.breaker_state <> 'closed' THEN 'refused'
               WHEN (b.promised + w.want - b.now_tokens) / b.refill_per_second
                    > %(horizon_seconds)s THEN 'beyond'
               ELSE 'reserved'
           END AS verdict
    FROM bucket AS b
    LEFT JOIN mine AS m ON true
    CROSS JOIN LATERAL (SELECT CASE WHEN m.tokens = 0 THEN m.used + 1 ELSE 1 END AS want) AS w
),
settled AS (
    UPDATE outbound_services AS s SET
        tokens = CASE WHEN v.verdict IN ('taken', 'used') THEN v.now_tokens - 1 ELSE s.tokens END,
        refilled_at = CASE WHEN v.verdict IN ('taken', 'used')
                           THEN greatest(s.refilled_at, now()) ELSE s.refilled_at END,
        reserved = v.promised
                   - CASE WHEN v.verdict = 'used' THEN 1 ELSE 0 END
                   + CASE WHEN v.verdict = 'reserved' THEN v.want ELSE 0 END,
        breaker_state = CASE WHEN v.verdict IN ('taken', 'used') AND s.breaker_state <> 'closed'
                             THEN 'half_open' ELSE s.breaker_state END,
        probe_holder = CASE WHEN v.verdict NOT IN ('taken', 'used') THEN s.probe_holder
                            WHEN s.breaker_state = 'closed' THEN NULL
                            ELSE %(holder)s END,
        probe_expires_at = CASE WHEN v.verdict NOT IN ('taken', 'used') THEN s.probe_expires_at
                                WHEN s.breaker_state = 'closed' THEN NULL
                                ELSE now() + make_interval(secs => %(slot_seconds)s) END,
        updated_at = now()
    FROM verdict AS v
    WHERE s.service = %(service)s
      AND (v.verdict IN ('taken', 'used', 'reserved') OR v.freed > 0)
    RETURNING s.service
),
-- Due a millisecond after the exact time: the interval is rounded to the
-- microsecond, and a holder back on time must find its token whole.
booked AS (
    INSERT INTO outbound_reservations (service, holder, due_at, expires_at, tokens)
    SELECT %(service)s, %(holder)s, d.due_at,
           d.due_at + make_interval(secs => %(grace_seconds)s), v.want
    FROM verdict AS v
    CROSS JOIN LATERAL (SELECT now() + make_interval(secs => v.wait + 0.001) AS due_at) AS d
    WHERE v.verdict = 'reserved' AND v.mine_id IS NULL AND EXISTS (SELECT 1 FROM settled)
),
rebooked AS (
    UPDATE outbound_reservations AS r SET
        due_at = now() + make_interval(secs => v.wait + 0.001),
        expires_at = now() + make_interval(secs => v.wait + 0.001 + %(grace_seconds)s),
        tokens = v.want,
        used = 0
    FROM verdict AS v
    WHERE r.id = v.mine_id AND v.verdict = 'reserved' AND EXISTS (SELECT 1 FROM settled)
),
-- A used-up booking stays as the memory of how many calls this run made,
-- for as long as a call may last and the grace after it.
spent AS (
    UPDATE outbound_reservations AS r SET
        tokens = r.tokens - 1,
        used = r.used + 1,
        expires_at = greatest(r.expires_at,
                              now() + make_interval(secs => %(slot_seconds)s + %(grace_seconds)s))
    FROM verdict AS v
    WHERE r.id = v.mine_id AND v.verdict = 'used' AND EXISTS (SELECT 1 FROM settled)
),
-- A due booking kept while its holder waits for a slot or a late token.
kept AS (
    UPDATE outbound_reservations AS r SET
        expires_at = greatest(r.expires_at, now() + make_interval(secs => %(grace_seconds)s))
    FROM verdict AS v
    WHERE r.id = v.mine_id AND v.verdict = 'held'
),
claimed AS (
    UPDATE outbound_slots AS o SET
        holder = %(holder)s,
        lease = %(lease)s,
        taken_at = now(),
        expires_at = now() + make_interval(secs => %(slot_seconds)s)
    FROM free, verdict AS v
    WHERE o.service = %(service)s AND o.slot = free.slot
      AND v.verdict IN ('taken', 'used') AND EXISTS (SELECT 1 FROM settled)
    RETURNING o.slot
)
SELECT (SELECT slot FROM claimed) AS slot,
       v.verdict,
       v.verdict IN ('taken', 'used') AND v.breaker_state <> 'closed' AS probe,
       EXISTS (SELECT 1 FROM free) AS slot_free,
       v.now_tokens AS tokens,
       v.promised AS reserved,
       v.refill_per_second,
       CASE WHEN v.verdict IN ('reserved', 'beyond') THEN v.wait + 0.001
            WHEN v.verdict = 'early'
            THEN extract(epoch FROM v.mine_due - now())::double precision
       END AS due_in,
       v.stopped_at IS NOT NULL AS stopped,
       v.stopped_by,
       v.stop_reason,
       v.breaker_state,
       v.consecutive_failures,
       CASE WHEN v.breaker_state = 'open'
            THEN extract(epoch FROM v.opened_at
                         + make_interval(secs => v.breaker_open_seconds) - now())::double precision
       END AS seconds_to_half_open
FROM verdict AS v

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
-- Refill the bucket, end an emergency stop, close the breaker and drop every
-- reservation (their holders find none when they come back and start over).
-- Slots of running calls stay theirs (the cap holds); expired ones are free
-- already. Reservations an acquire holds at this moment (SKIP LOCKED, as in
-- outbound_acquire, so neither waits for the other) are left to it; `reserved`
-- loses exactly the tokens of the rows deleted here, so the count stays true.
WITH cleared AS (
    DELETE FROM outbound_reservations
    WHERE id IN (SELECT id FROM outbound_reservations WHERE service = %(service)s
                 FOR UPDATE SKIP LOCKED)
    RETURNING tokens
)
UPDATE outbound_services
SET tokens = capacity, refilled_at = now(),
    reserved = reserved - (SELECT coalesce(sum(tokens), 0) FROM cleared)::integer,
    stopped_at = NULL, stopped_by = NULL, stop_reason = NULL,
    breaker_state = 'closed', consecutive_failures = 0, opened_at = NULL,
    probe_holder = NULL, probe_expires_at = NULL, last_failure = NULL,
    updated_at = now()
WHERE service = %(service)s
RETURNING service

-- name: outbound_states
-- Every service's state now (or one service's), for status, metrics and the
-- dashboard: tokens refilled to now on read (nothing written; `tokens`
-- includes those promised to reservations, `reserved` says how many), live
-- slots and reservations only (expired ones count for nothing), and an open
-- breaker whose period has passed shown as half_open (the next call is its
-- probe).
SELECT s.service,
       s.capacity AS size,
       s.refill_per_second,
       s.max_in_flight,
       outbound_refilled(s.tokens, s.capacity, s.refill_per_second, s.refilled_at, now())
           AS tokens,
       (SELECT count(*) FROM outbound_slots AS o
        WHERE o.service = s.service AND o.holder IS NOT NULL AND o.expires_at > now())::integer
           AS in_flight,
       (SELECT coalesce(sum(r.tokens), 0) FROM outbound_reservations AS r
        WHERE r.service = s.service AND r.expires_at > now())::integer AS reserved,
       (SELECT max(r.due_at) FROM outbound_reservations AS r
        WHERE r.service = s.service AND r.expires_at > now() AND r.tokens > 0)
           AS reserved_until,
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
