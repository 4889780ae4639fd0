-- One insert rule (decision 0018). Every enqueue that can meet an
-- idempotency key goes through this one function: one job or a thousand,
-- the engine's own, a caller's transaction, the API's tenant-scoped request
-- and a coalesced window of many callers' jobs alike. It replaces
-- queue_service_insert_job (0004) and the rule job_insert_many spelled out
-- again, so the duplicate-key rule is written once:
--
--   a job with an idempotency key goes in only when its key is new or
--   expired; when the key is live the job is not inserted, and the answer
--   names the job the key holds and that job's payload hash, so the caller
--   tells a replay (same hash) from a conflict (another hash).
--
-- The answer has one row per input job (its 1-based `ord`): inserted rows
-- carry created_at and run_at (the database clock's), skipped rows the live
-- key's job id and hash. A skipped row whose key expired between the insert
-- and the read-back comes back with job_id NULL: the caller retries.
--
-- PL/pgSQL, not one SQL statement: the read-back must see keys committed by
-- others after the insert's snapshot was taken (ON CONFLICT waited for
-- them), which only a second statement's fresh snapshot does under READ
-- COMMITTED; and the caller's tenant (row-level security) must be set
-- before anything is read or written. Neither costs a round trip.
CREATE FUNCTION queue_service_insert_jobs(
    p_scope text, p_ids uuid[], p_tenants text[], p_queues text[], p_types text[],
    p_priorities smallint[], p_data text[], p_max_attempts integer[], p_max_stalled integer[],
    p_leases integer[], p_keys text[], p_ttls integer[], p_hashes text[],
    p_delays double precision[], p_run_ats timestamptz[], p_created_by text[],
    p_request_ids text[], p_traces text[], p_replay_of uuid[])
RETURNS TABLE (ord integer, job_id uuid, created boolean, payload_hash text,
               created_at timestamptz, run_at timestamptz)
LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
DECLARE
    inserted integer;
BEGIN
    -- The caller's tenant, from its authentication, never the jobs' own
    -- tenant_id: row-level security then still refuses a job for another
    -- tenant. NULL leaves the setting as it is (the engine role; or a tenant
    -- transaction that set it already). Local to the transaction.
    IF p_scope IS NOT NULL THEN
        PERFORM set_config('queue_service.tenant_id', p_scope, true);
    END IF;
    RETURN QUERY
    WITH input AS (
        SELECT *
        FROM unnest(p_ids, p_tenants, p_queues, p_types, p_priorities, p_data, p_max_attempts,
                    p_max_stalled, p_leases, p_keys, p_ttls, p_hashes, p_delays, p_run_ats,
                    p_created_by, p_request_ids, p_traces, p_replay_of) WITH ORDINALITY
            AS t(id, tenant_id, queue, type, priority, data, max_attempts, max_stalled,
                 lease_seconds, idempotency_key, ttl, payload_hash, delay, run_at,
                 created_by, request_id, trace_context, replay_of, ord)
    ),
    new_keys AS (
        INSERT INTO queue_idempotency_keys AS k (tenant_id, key, job_id, payload_hash, expires_at)
        SELECT i.tenant_id, i.idempotency_key, i.id, i.payload_hash,
               now() + make_interval(secs => i.ttl)
        FROM input i
        WHERE i.idempotency_key IS NOT NULL
        -- A live key is left alone (read back below). DO NOTHING, not DO
        -- UPDATE ... WHERE expired: DO UPDATE locks the existing row even
        -- when its WHERE is false, so concurrent replays of one key would
        -- queue behind each other's commits.
        ON CONFLICT ON CONSTRAINT queue_idempotency_keys_pkey DO NOTHING
        RETURNING k.job_id
    ),
    taken_over AS (
        -- An expired key is taken over; of concurrent takers, the first wins
        -- (the others re-check expires_at on its new row and skip it).
        UPDATE queue_idempotency_keys k
        SET job_id = i.id, payload_hash = i.payload_hash, created_at = now(),
            expires_at = now() + make_interval(secs => i.ttl)
        FROM input i
        WHERE i.idempotency_key IS NOT NULL
          AND k.tenant_id = i.tenant_id AND k.key = i.idempotency_key
          AND k.expires_at <= now()
        RETURNING k.job_id
    ),
    ins AS (
        INSERT INTO jobs AS j (id, tenant_id, queue, type, priority, data, max_attempts,
                               max_stalled, lease_seconds, idempotency_key, created_by,
                               request_id, trace_context, replay_of, run_at)
        SELECT i.id, i.tenant_id, i.queue, i.type, i.priority, i.data::jsonb, i.max_attempts,
               i.max_stalled, i.lease_seconds, i.idempotency_key, i.created_by, i.request_id,
               i.trace_context::jsonb, i.replay_of,
               coalesce(i.run_at, now() + make_interval(secs => i.delay))
        FROM input i
        WHERE i.idempotency_key IS NULL
           OR i.id IN (SELECT n.job_id FROM new_keys n UNION ALL SELECT t.job_id FROM taken_over t)
        RETURNING j.id, j.queue, j.created_at, j.run_at
    ),
    -- The wake-up hint rides the insert, once per queue: PostgreSQL delivers
    -- it at commit, so a rolled-back enqueue wakes nobody, and one commit
    -- sends one hint per queue however many jobs or callers it carries.
    wake AS (
        SELECT pg_notify('queue_service_jobs', q.queue)
        FROM (SELECT DISTINCT x.queue FROM ins x WHERE x.run_at <= now()) q
    )
    SELECT i.ord::integer, x.id, true, NULL::text, x.created_at, x.run_at
    FROM ins x JOIN input i ON i.id = x.id
    WHERE (SELECT count(*) FROM wake) >= 0;
    GET DIAGNOSTICS inserted = ROW_COUNT;
    IF inserted < cardinality(p_ids) THEN
        -- The jobs skipped for a live key: the job each key names now.
        RETURN QUERY
        SELECT t.ord::integer, k.job_id, false, k.payload_hash, NULL::timestamptz,
               NULL::timestamptz
        FROM unnest(p_ids, p_tenants, p_keys) WITH ORDINALITY AS t(id, tenant_id, key, ord)
        LEFT JOIN queue_idempotency_keys k
               ON k.tenant_id = t.tenant_id AND k.key = t.key AND k.expires_at > now()
        WHERE t.key IS NOT NULL AND k.job_id IS DISTINCT FROM t.id;
    END IF;
END
$fn$;

DROP FUNCTION queue_service_insert_job(
    text, text, uuid, text, text, smallint, jsonb, integer, integer, integer, text, integer,
    text, double precision, timestamptz, text, text, jsonb, uuid);
