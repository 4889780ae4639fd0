-- Outbound webhooks (issue 7 §2): endpoints configured by name per tenant,
-- and one row per delivery attempt.
--
-- Endpoints hold signing secrets, so only the engine role (workers, the CLI)
-- may touch them: the API role gets no privilege at all on the table, and
-- row-level security scopes it per tenant all the same should a grant ever
-- be added.
CREATE TABLE webhook_endpoints (
    tenant_id        text        NOT NULL,
    name             text        NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    url              text        NOT NULL CHECK (url ~ '^https?://'),
    -- Newest last. Two during a rotation: every delivery is signed with both.
    secrets          text[]      NOT NULL CHECK (cardinality(secrets) BETWEEN 1 AND 2),
    enabled          boolean     NOT NULL DEFAULT true,
    disabled_at      timestamptz,
    disabled_reason  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name),
    CHECK (enabled = (disabled_at IS NULL))
);

-- Each attempt's outcome: what the receiver answered (redacted, truncated) and
-- which webhook-id it carried, so an operator can see every retry of an event.
CREATE TABLE webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id        text        NOT NULL,
    job_id           uuid        NOT NULL,
    webhook_id       text        NOT NULL,
    endpoint         text,
    -- scheme://host[:port]/path only: a query string may carry a token.
    target           text        NOT NULL,
    attempt          integer     NOT NULL,
    outcome          text        NOT NULL CHECK (outcome IN (
                         'delivered', 'retry', 'failed', 'snoozed', 'disabled',
                         'refused', 'development')),
    status_code      integer,
    response_excerpt text,
    error            text,
    duration_ms      integer,
    at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id, id);
-- Retention (webhooks: 30 days) deletes by age.
CREATE INDEX webhook_deliveries_at ON webhook_deliveries (at);

REVOKE ALL ON webhook_endpoints FROM queue_service_api;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['webhook_endpoints', 'webhook_deliveries']
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

GRANT SELECT, INSERT, UPDATE, DELETE ON webhook_endpoints, webhook_deliveries
    TO queue_service_engine;
GRANT SELECT ON webhook_deliveries TO queue_service_api;
REVOKE INSERT, UPDATE, DELETE ON webhook_deliveries FROM queue_service_api;
