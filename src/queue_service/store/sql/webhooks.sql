-- Outbound webhooks: configured endpoints, the identity of a logical event,
-- and the record of every delivery attempt.
-- `-- name: x` starts a statement; the line after it says what it does.

-- name: webhook_endpoint_get
-- One endpoint of a tenant, secrets included (for signing a delivery).
SELECT tenant_id, name, url, secrets, enabled, disabled_at, disabled_reason
FROM webhook_endpoints
WHERE tenant_id = %(tenant)s AND name = %(name)s

-- name: webhook_endpoint_list
-- A tenant's endpoints (NULL: every tenant's), by tenant and name.
SELECT tenant_id, name, url, secrets, enabled, disabled_at, disabled_reason
FROM webhook_endpoints
WHERE %(tenant)s::text IS NULL OR tenant_id = %(tenant)s
ORDER BY tenant_id, name

-- name: webhook_endpoint_add
-- Configure a new endpoint; no row back when the name is already taken
-- (the caller says so rather than silently replacing its secret).
INSERT INTO webhook_endpoints (tenant_id, name, url, secrets)
VALUES (%(tenant)s, %(name)s, %(url)s, ARRAY[%(secret)s::text])
ON CONFLICT (tenant_id, name) DO NOTHING
RETURNING 1

-- name: webhook_endpoint_remove
-- Forget an endpoint; its delivery history stays (it is the audit trail).
DELETE FROM webhook_endpoints
WHERE tenant_id = %(tenant)s AND name = %(name)s
RETURNING 1

-- name: webhook_endpoint_enable
-- Re-enable an endpoint (after a 410 Gone, once the receiver is back).
UPDATE webhook_endpoints
SET enabled = true, disabled_at = NULL, disabled_reason = NULL, updated_at = now()
WHERE tenant_id = %(tenant)s AND name = %(name)s
RETURNING 1

-- name: webhook_endpoint_disable
-- Disable an endpoint with the reason; the first reason stays when several
-- deliveries are refused at once, so the operator sees what happened first.
UPDATE webhook_endpoints
SET enabled = false,
    disabled_at = coalesce(disabled_at, now()),
    disabled_reason = coalesce(disabled_reason, %(reason)s),
    updated_at = now()
WHERE tenant_id = %(tenant)s AND name = %(name)s
RETURNING 1

-- name: webhook_endpoint_rotate
-- Start a rotation: keep the newest secret and add another, so deliveries
-- carry both signatures until the receiver has switched.
UPDATE webhook_endpoints
SET secrets = ARRAY[secrets[cardinality(secrets)], %(secret)s::text], updated_at = now()
WHERE tenant_id = %(tenant)s AND name = %(name)s
RETURNING 1

-- name: webhook_endpoint_finish_rotation
-- End a rotation: sign with the newest secret only.
UPDATE webhook_endpoints
SET secrets = ARRAY[secrets[cardinality(secrets)]], updated_at = now()
WHERE tenant_id = %(tenant)s AND name = %(name)s
RETURNING 1

-- name: webhook_event_origin
-- The job that first carried this logical event: follow replay_of from a DLQ
-- replay back to its origin (live, finished or archived), so a replay signs
-- with the same webhook-id and event time. Returns the furthest row found;
-- its replay_of is non-NULL only when the origin itself was purged.
WITH RECURSIVE known AS (
    SELECT id, tenant_id, idempotency_key, replay_of, created_at FROM jobs
    UNION ALL
    SELECT id, tenant_id, idempotency_key, replay_of, created_at FROM finished_jobs
    UNION ALL
    SELECT id, tenant_id, idempotency_key, replay_of, created_at FROM job_archive
),
chain (id, tenant_id, idempotency_key, replay_of, created_at, depth) AS (
    SELECT id, tenant_id, idempotency_key, replay_of, created_at, 0
    FROM known WHERE id = %(id)s
    UNION ALL
    SELECT k.id, k.tenant_id, k.idempotency_key, k.replay_of, k.created_at, c.depth + 1
    FROM chain c JOIN known k ON k.id = c.replay_of
    WHERE c.depth < 50
)
SELECT id, tenant_id, idempotency_key, replay_of, created_at
FROM chain ORDER BY depth DESC LIMIT 1

-- name: webhook_delivery_record
-- Record one delivery attempt and what came of it.
INSERT INTO webhook_deliveries (tenant_id, job_id, webhook_id, endpoint, target, attempt,
                                outcome, status_code, response_excerpt, error, duration_ms)
VALUES (%(tenant)s, %(job_id)s, %(webhook_id)s, %(endpoint)s, %(target)s, %(attempt)s,
        %(outcome)s, %(status_code)s, %(excerpt)s, %(error)s, %(duration_ms)s)

-- name: webhook_delivery_list
-- A job's delivery attempts, oldest first.
SELECT job_id, webhook_id, endpoint, target, attempt, outcome, status_code,
       response_excerpt, error, duration_ms, at
FROM webhook_deliveries
WHERE job_id = %(job_id)s
ORDER BY id

-- name: webhook_delivery_purge
-- Delete up to `limit` delivery records older than `days` (webhook retention);
-- returns how many.
WITH gone AS (
    DELETE FROM webhook_deliveries
    WHERE id IN (
        SELECT id FROM webhook_deliveries
        WHERE at < now() - make_interval(days => %(days)s)
        ORDER BY at
        LIMIT %(limit)s)
    RETURNING 1
)
SELECT count(*) FROM gone
