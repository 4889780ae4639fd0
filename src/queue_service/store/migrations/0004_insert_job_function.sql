-- Inserting one job as a function: the caller's tenant setting (row-level
-- security) and the insert in one prepared statement, so an HTTP enqueue is
-- one execute and one round trip (measured: a third less client CPU than
-- pipelining set_config and the insert). The rules are job_insert_many's:
-- a job with an idempotency key goes in only if its key is new or expired.
--
-- set_config(..., true) lasts until the end of the calling transaction: an
-- autocommit call (the API's fast path) ends with the statement.
CREATE FUNCTION queue_service_insert_job(
    p_scope text, p_tenant text, p_id uuid, p_queue text, p_type text, p_priority smallint, p_data jsonb,
    p_max_attempts integer, p_max_stalled integer, p_lease integer, p_key text, p_ttl integer,
    p_hash text, p_delay double precision, p_run_at timestamptz, p_created_by text,
    p_request_id text, p_trace jsonb, p_replay_of uuid)
RETURNS TABLE (id uuid, tenant_id text, queue text, type text, status text, priority smallint,
               data jsonb, attempts integer, max_attempts integer, idempotency_key text,
               created_by text, created_at timestamptz, run_at timestamptz,
               started_at timestamptz, finished_at timestamptz, last_error text, result jsonb,
               request_id text, replay_of uuid)
LANGUAGE plpgsql AS $fn$
BEGIN
    -- The caller's tenant, from its authentication, never the job's own
    -- tenant_id: row-level security then still refuses a job for another
    -- tenant. NULL leaves the setting as it is (engine role; or a tenant
    -- transaction that set it already).
    IF p_scope IS NOT NULL THEN
        PERFORM set_config('queue_service.tenant_id', p_scope, true);
    END IF;
    RETURN QUERY
    WITH new_key AS (
        INSERT INTO queue_idempotency_keys AS k (tenant_id, key, job_id, payload_hash, expires_at)
        SELECT p_tenant, p_key, p_id, p_hash, now() + make_interval(secs => p_ttl)
        WHERE p_key IS NOT NULL
        ON CONFLICT ON CONSTRAINT queue_idempotency_keys_pkey DO NOTHING
        RETURNING k.job_id
    ),
    taken_over AS (
        UPDATE queue_idempotency_keys k
        SET job_id = p_id, payload_hash = p_hash, created_at = now(),
            expires_at = now() + make_interval(secs => p_ttl)
        WHERE p_key IS NOT NULL AND k.tenant_id = p_tenant AND k.key = p_key
          AND k.expires_at <= now()
        RETURNING k.job_id
    ),
    ins AS (
        INSERT INTO jobs AS j (id, tenant_id, queue, type, priority, data, max_attempts, max_stalled,
                          lease_seconds, idempotency_key, created_by, request_id, trace_context,
                          replay_of, run_at)
        SELECT p_id, p_tenant, p_queue, p_type, p_priority, p_data, p_max_attempts, p_max_stalled,
               p_lease, p_key, p_created_by, p_request_id, p_trace, p_replay_of,
               coalesce(p_run_at, now() + make_interval(secs => p_delay))
        WHERE p_key IS NULL
           OR EXISTS (SELECT 1 FROM new_key) OR EXISTS (SELECT 1 FROM taken_over)
        RETURNING j.*
    )
    SELECT i.id, i.tenant_id, i.queue, i.type,
           CASE WHEN i.run_at > now() THEN 'delayed' ELSE i.status END,
           i.priority, i.data, i.attempts, i.max_attempts, i.idempotency_key, i.created_by,
           i.created_at, i.run_at, i.started_at, NULL::timestamptz, i.last_error, NULL::jsonb,
           i.request_id, i.replay_of
    FROM ins i;
    -- The wake-up hint, delivered at commit: a rolled-back transactional
    -- enqueue wakes nobody.
    IF FOUND AND coalesce(p_run_at, now() + make_interval(secs => p_delay)) <= now() THEN
        PERFORM pg_notify('queue_service_jobs', p_queue);
    END IF;
END
$fn$;
