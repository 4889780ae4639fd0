-- The payment and refund ledgers and the per-order money lock (issue 7 §4,
-- docs/money-safety.md, decision 0010).
--
-- A ledger row is written *before* a provider call (status 'pending') and
-- settled in the transaction that completes the job, so after any crash our
-- own records say which Stripe idempotency key was used, for what amount, and
-- since when (Stripe forgets keys after 24 h: past that we reconcile first).

CREATE TABLE money_payments (
    tenant_id          text        NOT NULL,
    -- The Idempotency-Key sent to Stripe (qs_ + a digest of the job's
    -- logical key): one row per logical payment attempt.
    stripe_key         text        NOT NULL,
    order_id           text        NOT NULL,
    user_id            text,
    job_type           text        NOT NULL,
    amount             bigint      NOT NULL CHECK (amount > 0),
    currency           char(3)     NOT NULL,
    -- pending: sent or about to be, outcome unknown; succeeded / authorized:
    -- money moved or held; failed: declined or refused for good.
    status             text        NOT NULL CHECK (status IN
                           ('pending', 'succeeded', 'authorized', 'failed')),
    payment_intent_id  text,
    charge_id          text,
    last_job_id        uuid        NOT NULL,
    calls              integer     NOT NULL DEFAULT 1,
    first_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_attempt_at    timestamptz NOT NULL DEFAULT now(),
    settled_at         timestamptz,
    error              text,
    PRIMARY KEY (tenant_id, stripe_key)
);

CREATE INDEX money_payments_order_idx ON money_payments (tenant_id, order_id);
CREATE INDEX money_payments_intent_idx ON money_payments (payment_intent_id)
    WHERE payment_intent_id IS NOT NULL;
-- At most one payment that moved or holds money per order: the last line of
-- defence behind the lock and the reconciliation.
CREATE UNIQUE INDEX money_payments_one_paid_per_order ON money_payments (tenant_id, order_id)
    WHERE status IN ('succeeded', 'authorized');

CREATE TABLE money_refunds (
    tenant_id          text        NOT NULL,
    stripe_key         text        NOT NULL,
    order_id           text        NOT NULL,
    transaction_id     text        NOT NULL,
    job_type           text        NOT NULL,
    amount             bigint      NOT NULL CHECK (amount > 0),
    currency           char(3)     NOT NULL,
    status             text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    refund_id          text,
    last_job_id        uuid        NOT NULL,
    calls              integer     NOT NULL DEFAULT 1,
    first_attempt_at   timestamptz NOT NULL DEFAULT now(),
    last_attempt_at    timestamptz NOT NULL DEFAULT now(),
    settled_at         timestamptz,
    error              text,
    PRIMARY KEY (tenant_id, stripe_key)
);

CREATE INDEX money_refunds_transaction_idx ON money_refunds (tenant_id, transaction_id);

-- One money job per order at a time: a lease row, not a session lock, so it
-- survives the hand-over from the provider call to the completing
-- transaction (another connection) and expires by itself when its holder dies.
CREATE TABLE money_locks (
    tenant_id      text        NOT NULL,
    order_id       text        NOT NULL,
    -- The holder is a logical operation (its provider idempotency key), not a
    -- job: a retry, a rescue or a DLQ replay of the same payment takes its
    -- lock back at once; any other operation on the order waits.
    holder_key     text        NOT NULL,
    holder_job_id  uuid        NOT NULL,
    job_type       text        NOT NULL,
    acquired_at    timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);

-- Row-level security as in 0003: the API sees one tenant's ledger rows
-- (read-only: only workers move money); the engine sees every tenant.
-- Grants came with 0003's default privileges; narrow the API's.
REVOKE INSERT, UPDATE, DELETE ON money_payments, money_refunds, money_locks
    FROM queue_service_api;
REVOKE SELECT ON money_locks FROM queue_service_api;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['money_payments', 'money_refunds', 'money_locks']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I FOR SELECT TO queue_service_api '
            'USING (tenant_id = current_setting(''queue_service.tenant_id'', true))', t);
        EXECUTE format(
            'CREATE POLICY engine_all_tenants ON %I TO queue_service_engine '
            'USING (true) WITH CHECK (true)', t);
    END LOOP;
END $$;
