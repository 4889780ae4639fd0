-- name: retention_count_finished
-- Dry run: finished jobs of the given type prefixes (or all but `exclude`)
-- past the window, counted up to `cap`. The same predicate and index
-- (finished_jobs_retention_idx) as finished_purge, so the count costs what
-- the purge's own look-up costs, and the cap bounds it on a huge table.
SELECT count(*) FROM (
    SELECT 1 FROM finished_jobs
    WHERE finished_at < now() - make_interval(days => %(days)s)
      AND (cardinality(%(prefixes)s::text[]) = 0
           OR split_part(type, '.', 1) = ANY(%(prefixes)s::text[]))
      AND NOT (split_part(type, '.', 1) = ANY(%(exclude)s::text[]))
    LIMIT %(cap)s
) past

-- name: retention_count_dead_letters
-- Dry run: dead letters past the window, up to `cap` (dead_letter_jobs_purge_idx).
SELECT count(*) FROM (
    SELECT 1 FROM dead_letter_jobs
    WHERE failed_at < now() - make_interval(days => %(days)s)
    LIMIT %(cap)s
) past

-- name: retention_count_events
-- Dry run: history rows past the grace of jobs no longer kept anywhere, up to
-- `cap`: job_events_purge's predicate (job_events_at_idx, then the anti-joins).
SELECT count(*) FROM (
    SELECT 1 FROM job_events e
    WHERE e.at < now() - make_interval(days => %(days)s)
      AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = e.job_id)
      AND NOT EXISTS (SELECT 1 FROM finished_jobs f WHERE f.id = e.job_id)
      AND NOT EXISTS (SELECT 1 FROM job_archive a WHERE a.id = e.job_id)
    LIMIT %(cap)s
) past

-- name: retention_count_webhook_deliveries
-- Dry run: delivery records past the window, up to `cap` (webhook_deliveries_at).
SELECT count(*) FROM (
    SELECT 1 FROM webhook_deliveries
    WHERE at < now() - make_interval(days => %(days)s)
    LIMIT %(cap)s
) past

-- name: retention_count_sent_messages
-- Dry run: sent-ledger rows past the window, up to `cap` (sent_messages_sent_at_idx).
SELECT count(*) FROM (
    SELECT 1 FROM sent_messages
    WHERE sent_at < now() - make_interval(days => %(days)s)
    LIMIT %(cap)s
) past

-- name: retention_count_metric_snapshots
-- Dry run: per-minute metric snapshots past the window, up to `cap`
-- (queue_metrics_at_idx, as metrics_snapshot_purge).
SELECT count(*) FROM (
    SELECT 1 FROM queue_metrics
    WHERE at < now() - make_interval(days => %(days)s)
    LIMIT %(cap)s
) past

-- name: retention_count_alerts
-- Dry run: firings resolved more than `days` ago, up to `cap` (alert_purge's
-- predicate; alert_history_resolved). Open firings are never purged.
SELECT count(*) FROM (
    SELECT 1 FROM alert_history
    WHERE resolved_at < now() - make_interval(days => %(days)s)
    LIMIT %(cap)s
) past

-- name: retention_count_expired_keys
-- Dry run: idempotency keys past their TTL, up to `cap` (queue_idempotency_keys_expiry_idx).
SELECT count(*) FROM (
    SELECT 1 FROM queue_idempotency_keys WHERE expires_at <= now() LIMIT %(cap)s
) past

-- name: retention_count_nonces
-- Dry run: service nonces past the replay window, up to `cap` (internal_nonces_seen_at_idx).
SELECT count(*) FROM (
    SELECT 1 FROM internal_nonces
    WHERE seen_at < now() - make_interval(secs => %(seconds)s)
    LIMIT %(cap)s
) past

-- name: bench_seed_finished
-- The purge benchmark's seed: `rows` finished jobs, `days` old, a quarter
-- each of payments (archived), webhooks (archived), emails and analytics, in
-- one INSERT ... SELECT (about 1 M rows in tens of seconds, no round trips).
INSERT INTO finished_jobs (id, tenant_id, queue, type, status, priority, data, attempts,
                           max_attempts, stalled_count, max_stalled, lease_seconds,
                           created_at, run_at, started_at, finished_at, result)
SELECT gen_random_uuid(), 'bench-seed',
       (ARRAY['money', 'communication', 'communication', 'background'])[i %% 4 + 1],
       (ARRAY['payment.process', 'webhook.process', 'email.send', 'analytics.track'])[i %% 4 + 1],
       'completed', 5, jsonb_build_object('i', i), 1, 3, 0, 3, 30,
       t, t, t, t + interval '50 ms', '{"ok": true}'::jsonb
FROM generate_series(1, %(rows)s) AS i,
     LATERAL (SELECT now() - make_interval(days => %(days)s)
                   - make_interval(secs => i::double precision / 100) AS t) at_time

-- name: bench_forget
-- Remove a benchmark run's finished jobs (and their history), so the next
-- run's window counts only its own.
WITH gone AS (
    DELETE FROM finished_jobs WHERE type = %(type)s RETURNING id
)
DELETE FROM job_events WHERE job_id IN (SELECT id FROM gone)
