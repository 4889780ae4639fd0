-- The sent-ledger of email and SMS (migration 0009).
-- `-- name: x` starts a statement; the line after it says what it does.

-- name: message_ledger_lookup
-- The message key of a held job (channel + its idempotency key, else its id)
-- and the ledger row of that key if a provider already accepted it; no row
-- when the job is no longer in `jobs` (finished or cancelled meanwhile).
-- One round trip: this runs before every send.
SELECT k.message_key, m.channel, m.job_id, m.provider, m.provider_ref, m.sent_at
FROM (
    SELECT %(channel)s || coalesce(':key:' || idempotency_key, ':job:' || id::text)
           AS message_key
    FROM jobs
    WHERE id = %(job_id)s AND tenant_id = %(tenant_id)s
) k
LEFT JOIN sent_messages m
    ON m.tenant_id = %(tenant_id)s AND m.message_key = k.message_key

-- name: message_ledger_record
-- Record that a provider accepted a message; a row only the first time (a
-- second writer, e.g. a stale attempt, keeps the first record).
INSERT INTO sent_messages (tenant_id, message_key, channel, job_id, provider, provider_ref)
VALUES (%(tenant_id)s, %(message_key)s, %(channel)s, %(job_id)s, %(provider)s,
        %(provider_ref)s)
ON CONFLICT (tenant_id, message_key) DO NOTHING
RETURNING 1

-- name: message_ledger_purge
-- Delete up to `limit` ledger rows older than `days`; returns how many. By
-- then the jobs that could retry them are long finished (SPEC §8 keeps
-- email and notification jobs 7 days).
WITH gone AS (
    DELETE FROM sent_messages
    WHERE ctid IN (
        SELECT ctid FROM sent_messages
        WHERE sent_at < now() - make_interval(days => %(days)s)
        LIMIT %(limit)s)
    RETURNING 1
)
SELECT count(*) FROM gone
