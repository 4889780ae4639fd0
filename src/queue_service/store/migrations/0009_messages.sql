-- The sent-ledger of email and SMS (issue 7 §4, SPEC §4): one row per message
-- a provider accepted, written in its own commit right after the accept and
-- before the job completes, so a retried or rescued job finds it and completes
-- without sending again. Keyed by tenant and message key (the channel plus the
-- job's idempotency key, or its id when it has none).
CREATE TABLE sent_messages (
    tenant_id    text        NOT NULL,
    message_key  text        NOT NULL,
    channel      text        NOT NULL CHECK (channel IN ('email', 'sms')),
    -- The job that sent it (not a foreign key: finished jobs move tables).
    job_id       uuid        NOT NULL,
    provider     text        NOT NULL,
    -- What the provider knows the message by: the Message-ID, a Twilio SID,
    -- or the outbox file.
    provider_ref text        NOT NULL,
    sent_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, message_key)
);
-- Retention purges by age (SPEC §8: email and notifications 7 days).
CREATE INDEX sent_messages_sent_at_idx ON sent_messages (sent_at);

-- Isolation as in 0003: the API role sees its own tenant's rows, the engine all.
ALTER TABLE sent_messages ENABLE ROW LEVEL SECURITY;
ALTER TABLE sent_messages FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON sent_messages TO queue_service_api
    USING (tenant_id = current_setting('queue_service.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('queue_service.tenant_id', true));
CREATE POLICY engine_all_tenants ON sent_messages TO queue_service_engine
    USING (true) WITH CHECK (true);
GRANT SELECT, INSERT, DELETE ON sent_messages TO queue_service_engine;
