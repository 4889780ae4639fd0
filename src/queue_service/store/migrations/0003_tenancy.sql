-- Tenant isolation enforced by PostgreSQL itself (row-level security), and
-- the inbound request-rate counters.
--
-- Two roles, neither owning a table nor having BYPASSRLS:
--   queue_service_api     HTTP requests: sees one tenant's rows, the tenant
--                         set per transaction with
--                         set_config('queue_service.tenant_id', $1, true);
--                         with none set it sees nothing.
--   queue_service_engine  workers, leader duties, the CLI: work that spans
--                         tenants (claiming, rescue, retention).
-- The service's connections SET ROLE to one of them; the connecting role must
-- be a member of both (granted here to whoever runs the migrations).
DO $$
BEGIN
    CREATE ROLE queue_service_api NOLOGIN NOBYPASSRLS NOSUPERUSER NOINHERIT;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- roles are cluster-wide: another database already made it
END $$;

DO $$
BEGIN
    CREATE ROLE queue_service_engine NOLOGIN NOBYPASSRLS NOSUPERUSER NOINHERIT;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

DO $$
BEGIN
    EXECUTE format('GRANT queue_service_api, queue_service_engine TO %I', current_user);
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;

-- Fixed-window request counters shared by every API process (SPEC's
-- rate_limits: key, limit, window, count, reset).
CREATE TABLE rate_limits (
    tenant_id       text        NOT NULL,
    key             text        NOT NULL,
    "limit"         integer     NOT NULL,
    window_seconds  integer     NOT NULL,
    current_count   integer     NOT NULL,
    reset_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

GRANT USAGE ON SCHEMA public TO queue_service_api, queue_service_engine;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public
    TO queue_service_api, queue_service_engine;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public
    TO queue_service_api, queue_service_engine;
-- Tables of later migrations get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO queue_service_api, queue_service_engine;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO queue_service_api, queue_service_engine;
-- The history of migrations is the owner's business alone.
REVOKE ALL ON schema_migrations FROM queue_service_api, queue_service_engine;

-- current_setting(..., true) is NULL (or '' after a transaction that set it
-- locally) when no tenant is set: neither equals a tenant_id, so no rows.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['jobs', 'finished_jobs', 'job_archive', 'job_events',
                             'dead_letter_jobs', 'queue_idempotency_keys', 'rate_limits']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I TO queue_service_api '
            'USING (tenant_id = current_setting(''queue_service.tenant_id'', true)) '
            'WITH CHECK (tenant_id = current_setting(''queue_service.tenant_id'', true))', t);
        EXECUTE format(
            'CREATE POLICY engine_all_tenants ON %I TO queue_service_engine '
            'USING (true) WITH CHECK (true)', t);
    END LOOP;
END $$;

-- Pauses: a tenant sees and sets its own; a pause for every tenant ('*') is
-- visible to all (the claim honours it) but only the engine sets it.
ALTER TABLE queue_pauses ENABLE ROW LEVEL SECURITY;
ALTER TABLE queue_pauses FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_reads ON queue_pauses FOR SELECT TO queue_service_api
    USING (tenant_id IN (current_setting('queue_service.tenant_id', true), '*'));
CREATE POLICY tenant_writes ON queue_pauses FOR ALL TO queue_service_api
    USING (tenant_id = current_setting('queue_service.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('queue_service.tenant_id', true));
CREATE POLICY engine_all_tenants ON queue_pauses TO queue_service_engine
    USING (true) WITH CHECK (true);
