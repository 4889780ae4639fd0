-- Per-minute metric snapshots (issue 8 §1): the history behind the
-- dashboard's sparklines and /metrics/json, written by the leader.
--
-- One row per (minute, tenant, queue) that had live jobs or finished any in
-- the minute before; an idle pair writes nothing (readers fill zeros). Live
-- figures are as the snapshot saw them; completed / failed / cancelled count
-- the jobs that finished in the full minute before `at`, so throughput per
-- second is completed / 60 and does not depend on when in the minute the
-- leader ran.
CREATE TABLE queue_metrics (
    at                          timestamptz NOT NULL
                                CHECK (at = date_trunc('minute', at)),
    tenant_id                   text        NOT NULL,
    queue                       text        NOT NULL,
    waiting                     integer     NOT NULL,
    delayed                     integer     NOT NULL,
    active                      integer     NOT NULL,
    completed                   integer     NOT NULL,
    failed                      integer     NOT NULL,
    cancelled                   integer     NOT NULL,
    oldest_waiting_age_seconds  double precision,
    -- Idempotent per minute: a second write of the same minute is a no-op.
    PRIMARY KEY (tenant_id, queue, at)
);
-- Platform-wide history (every tenant, the last hour) and retention by age.
CREATE INDEX queue_metrics_at_idx ON queue_metrics (at);

-- The DLQ-size gauge counts entries not yet replayed per queue at every
-- scrape: an index-only scan of this partial index, never of the table.
CREATE INDEX dead_letter_jobs_unreplayed_idx ON dead_letter_jobs (queue)
    WHERE replayed_job_id IS NULL;

ALTER TABLE queue_metrics ENABLE ROW LEVEL SECURITY;
ALTER TABLE queue_metrics FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON queue_metrics TO queue_service_api
    USING (tenant_id = current_setting('queue_service.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('queue_service.tenant_id', true));
CREATE POLICY engine_all_tenants ON queue_metrics TO queue_service_engine
    USING (true) WITH CHECK (true);
