-- Cron schedules (issue 8 §6): a job enqueued on every tick of a 5-field cron
-- expression in a time zone, fired by the leader; and the record of every
-- tick, fired or missed, whose unique key makes each tick fire once.
CREATE TABLE schedules (
    id             uuid        PRIMARY KEY,
    tenant_id      text        NOT NULL,
    name           text        NOT NULL CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$'),
    cron           text        NOT NULL,
    timezone       text        NOT NULL,
    type           text        NOT NULL,
    data           jsonb       NOT NULL DEFAULT '{}',
    active         boolean     NOT NULL DEFAULT true,
    misfire        text        NOT NULL CHECK (misfire IN ('run_once', 'skip')),
    -- The next tick to fire (UTC instant); NULL once the expression has no
    -- future tick (the schedule is then inactive).
    next_run_at    timestamptz,
    last_fired_at  timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text,
    UNIQUE (tenant_id, name),
    CHECK (next_run_at IS NOT NULL OR NOT active)
);
-- The leader's due scan: active schedules by their next tick.
CREATE INDEX schedules_due ON schedules (next_run_at) WHERE active;
-- GET /schedules pages through a tenant's schedules by (created_at, id).
CREATE INDEX schedules_listing ON schedules (tenant_id, created_at, id);

CREATE TABLE schedule_runs (
    schedule_id  uuid        NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    tenant_id    text        NOT NULL,
    fire_at      timestamptz NOT NULL,
    -- fired: on time; missed: late, covered by the run_once catch-up job;
    -- skipped: late under misfire skip, or the job was refused (see note).
    status       text        NOT NULL CHECK (status IN ('fired', 'missed', 'skipped')),
    job_id       uuid,
    note         text,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    -- One row per tick: a second leader racing the first conflicts here.
    PRIMARY KEY (schedule_id, fire_at)
);
-- The leader forgets runs past their retention by age.
CREATE INDEX schedule_runs_recorded ON schedule_runs (recorded_at);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['schedules', 'schedule_runs']
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

-- The record of runs is the leader's to write; the API reads it.
REVOKE INSERT, UPDATE, DELETE ON schedule_runs FROM queue_service_api;

-- The maintenance the leader used to enqueue itself, now built-in schedules
-- of the system tenant: listed, changed or removed like any other (a removed
-- one stays removed; the CLI adds it back). First tick: the next full hour.
INSERT INTO schedules (id, tenant_id, name, cron, timezone, type, data, misfire,
                       next_run_at, created_by)
VALUES
    (gen_random_uuid(), '_system', 'cleanup', '0 * * * *', 'UTC', 'cleanup.run', '{}',
     'run_once', date_trunc('hour', now()) + interval '1 hour', 'system'),
    (gen_random_uuid(), '_system', 'maintenance', '0 * * * *', 'UTC', 'maintenance.run', '{}',
     'run_once', date_trunc('hour', now()) + interval '1 hour', 'system');
