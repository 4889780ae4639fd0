-- Money: the payment and refund ledgers and the per-order lock (0007_money,
-- docs/money-safety.md). `-- name: x` starts a statement; the line after it
-- says what it does. Ages come from the database clock, never a process's.

-- name: money_logical_key
-- The idempotency key a money job stands for: its own, or (a DLQ replay
-- carries data but no key) that of the job it replays, following replay_of.
-- Each table is probed by primary key; a CTE shared by both branches would be
-- materialised, i.e. a scan of every job.
WITH RECURSIVE chain (key, replay_of, depth) AS (
    SELECT idempotency_key, replay_of, 0
    FROM (SELECT idempotency_key, replay_of FROM jobs WHERE id = %(job_id)s
          UNION ALL
          SELECT idempotency_key, replay_of FROM finished_jobs WHERE id = %(job_id)s
          UNION ALL
          SELECT idempotency_key, replay_of FROM job_archive WHERE id = %(job_id)s) AS j
    UNION ALL
    SELECT j.idempotency_key, j.replay_of, c.depth + 1
    FROM chain c
    CROSS JOIN LATERAL (
          SELECT idempotency_key, replay_of FROM jobs WHERE id = c.replay_of
          UNION ALL
          SELECT idempotency_key, replay_of FROM finished_jobs WHERE id = c.replay_of
          UNION ALL
          SELECT idempotency_key, replay_of FROM job_archive WHERE id = c.replay_of) AS j
    WHERE c.key IS NULL AND c.replay_of IS NOT NULL AND c.depth < 50
)
SELECT key FROM chain WHERE key IS NOT NULL ORDER BY depth LIMIT 1

-- name: money_lock_take
-- Take (or extend) the order's money lock for an operation (`holder`, its
-- provider key); returns a row only if it holds the lock now. A lock whose
-- holder died expires by itself; the same operation (a retry, rescue or
-- replay of it) takes its own lock back at once.
INSERT INTO money_locks AS l (tenant_id, order_id, holder_key, holder_job_id, job_type,
                              expires_at)
VALUES (%(tenant)s, %(order_id)s, %(holder)s, %(job_id)s, %(job_type)s,
        now() + make_interval(secs => %(seconds)s))
ON CONFLICT (tenant_id, order_id) DO UPDATE
SET holder_key = EXCLUDED.holder_key, holder_job_id = EXCLUDED.holder_job_id,
    job_type = EXCLUDED.job_type, acquired_at = now(), expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= now() OR l.holder_key = EXCLUDED.holder_key
RETURNING true

-- name: money_lock_holder
-- Who holds the order's lock and for how many more seconds (after a refused take).
SELECT holder_job_id, job_type, greatest(extract(epoch FROM expires_at - now()), 0)::float8
FROM money_locks
WHERE tenant_id = %(tenant)s AND order_id = %(order_id)s

-- name: money_lock_release
-- Release the order's lock if this operation still holds it (in the completing
-- transaction, so the effect record and the release commit together).
DELETE FROM money_locks
WHERE tenant_id = %(tenant)s AND order_id = %(order_id)s AND holder_key = %(holder)s

-- name: money_payment_begin
-- Record that a payment is about to be sent under `stripe_key` (before the
-- call, so a crash leaves evidence). A settled success is never reopened.
-- Returns the row, with its age by the database clock.
INSERT INTO money_payments AS p (tenant_id, stripe_key, order_id, user_id, job_type, amount,
                                 currency, status, last_job_id)
VALUES (%(tenant)s, %(key)s, %(order_id)s, %(user_id)s, %(job_type)s, %(amount)s,
        %(currency)s, 'pending', %(job_id)s)
ON CONFLICT (tenant_id, stripe_key) DO UPDATE
SET status = CASE WHEN p.status IN ('succeeded', 'authorized') THEN p.status ELSE 'pending' END,
    last_job_id = EXCLUDED.last_job_id, calls = p.calls + 1, last_attempt_at = now()
RETURNING stripe_key, order_id, status, amount, currency, payment_intent_id, charge_id,
          extract(epoch FROM now() - first_attempt_at)::float8

-- name: money_payments_of_order
-- Every payment attempt recorded for an order, oldest first.
SELECT stripe_key, order_id, status, amount, currency, payment_intent_id, charge_id,
       extract(epoch FROM now() - first_attempt_at)::float8
FROM money_payments
WHERE tenant_id = %(tenant)s AND order_id = %(order_id)s
ORDER BY first_attempt_at

-- name: money_payment_settle
-- Record a payment's outcome: succeeded / authorized with Stripe's ids, or failed.
UPDATE money_payments
SET status = %(status)s, payment_intent_id = coalesce(%(intent)s, payment_intent_id),
    charge_id = coalesce(%(charge)s, charge_id), error = %(error)s, settled_at = now()
WHERE tenant_id = %(tenant)s AND stripe_key = %(key)s

-- name: money_payment_captured
-- An authorized PaymentIntent was captured: the order's payment is now a success.
UPDATE money_payments
SET status = 'succeeded', settled_at = now()
WHERE tenant_id = %(tenant)s AND payment_intent_id = %(intent)s AND status = 'authorized'

-- name: money_refund_begin
-- Record a refund about to be sent under `stripe_key`. On a second run of the
-- same logical refund the amount first recorded wins (a re-computed remainder
-- would already include our own refund). Returns the row and its age.
INSERT INTO money_refunds AS r (tenant_id, stripe_key, order_id, transaction_id, job_type,
                                amount, currency, status, last_job_id)
VALUES (%(tenant)s, %(key)s, %(order_id)s, %(transaction_id)s, %(job_type)s, %(amount)s,
        %(currency)s, 'pending', %(job_id)s)
ON CONFLICT (tenant_id, stripe_key) DO UPDATE
SET status = CASE WHEN r.status = 'succeeded' THEN r.status ELSE 'pending' END,
    last_job_id = EXCLUDED.last_job_id, calls = r.calls + 1, last_attempt_at = now()
RETURNING stripe_key, status, amount, currency, refund_id,
          extract(epoch FROM now() - first_attempt_at)::float8

-- name: money_refund_get
-- One logical refund's row, if it was ever attempted.
SELECT stripe_key, status, amount, currency, refund_id,
       extract(epoch FROM now() - first_attempt_at)::float8
FROM money_refunds
WHERE tenant_id = %(tenant)s AND stripe_key = %(key)s

-- name: money_refunds_of_transaction
-- Every refund recorded against a payment (to compute what is left to refund).
SELECT stripe_key, status, amount, currency, refund_id,
       extract(epoch FROM now() - first_attempt_at)::float8
FROM money_refunds
WHERE tenant_id = %(tenant)s AND transaction_id = %(transaction_id)s

-- name: money_refund_settle
-- Record a refund's outcome: succeeded with Stripe's refund id, or failed.
UPDATE money_refunds
SET status = %(status)s, refund_id = coalesce(%(refund_id)s, refund_id), error = %(error)s,
    settled_at = now()
WHERE tenant_id = %(tenant)s AND stripe_key = %(key)s
