-- Alert history (issue 8 §2, SPEC §8): one row per firing of a rule, from
-- the moment its condition holds until it clears (resolved_at). The row is
-- also the cooldown's memory: last_notified_at lives here, not in a
-- process, so a restarted or newly elected leader repeats nothing early.
--
-- Alerts are the platform's, not a tenant's (no tenant_id, no row-level
-- security, as wallet_balances): their messages carry no tenant data and no
-- PII, and every authenticated user may read them (docs/decisions/0013).
CREATE TABLE alert_history (
    id                uuid        PRIMARY KEY,
    rule              text        NOT NULL,
    -- What is firing: the rule's name today (a rule over several subjects
    -- would add one, e.g. a wallet address). At most one open firing per key.
    fire_key          text        NOT NULL,
    severity          text        NOT NULL CHECK (severity IN ('critical', 'warning', 'info')),
    fired_at          timestamptz NOT NULL DEFAULT now(),
    -- The latest evaluation that still saw the condition, with what it saw.
    observed_at       timestamptz NOT NULL DEFAULT now(),
    value             double precision NOT NULL,
    threshold         double precision NOT NULL,
    message           text        NOT NULL,  -- redacted before it is written
    -- Notification rounds sent for this firing, the latest one's time, and
    -- each channel's outcome in it: [{"channel", "sent", "failed", "error"}].
    notifications     integer     NOT NULL DEFAULT 0,
    last_notified_at  timestamptz,
    channels          jsonb       NOT NULL DEFAULT '[]',
    acknowledged_at   timestamptz,
    acknowledged_by   text,
    resolved_at       timestamptz,
    CHECK ((acknowledged_at IS NULL) = (acknowledged_by IS NULL))
);
-- The de-duplication: two evaluators (an old leader not yet stepped down, a
-- new one) can never open two firings of the same key.
CREATE UNIQUE INDEX alert_history_one_open ON alert_history (fire_key) WHERE resolved_at IS NULL;
-- The cooldown looks up a key's latest notification across its firings.
CREATE INDEX alert_history_cooldown ON alert_history (fire_key, last_notified_at DESC);
-- GET /alerts: newest first, keyset-paginated.
CREATE INDEX alert_history_listing ON alert_history (fired_at DESC, id DESC);
-- Retention (alerts: 7 days) deletes resolved firings by age.
CREATE INDEX alert_history_resolved ON alert_history (resolved_at) WHERE resolved_at IS NOT NULL;

-- The engine (the leader) writes firings; the API reads them and may only
-- acknowledge one.
REVOKE INSERT, UPDATE, DELETE ON alert_history FROM queue_service_api;
GRANT UPDATE (acknowledged_at, acknowledged_by) ON alert_history TO queue_service_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON alert_history TO queue_service_engine;
