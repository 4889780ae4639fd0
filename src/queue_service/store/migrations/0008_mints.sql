-- The mint ledger (one mint per ticket, issue 7 §4) and the minting wallet's
-- last observed balance (the low-balance signal of alerts, and the
-- solana_wallet_balance_sol gauge).

-- One row per (tenant, ticket), written in state 'requested' BEFORE the
-- minting service is called: a later attempt, a rescue or a replay that finds
-- it asks the service's status endpoint before minting again. 'minted' is
-- written in the transaction that completes the job.
CREATE TABLE mints (
    tenant_id        text        NOT NULL,
    ticket_id        text        NOT NULL,
    user_id          text        NOT NULL,
    event_id         text        NOT NULL,
    wallet_address   text        NOT NULL,
    -- Sent to the minting service with every request for this ticket, so
    -- its own de-duplication sees one logical mint across jobs and retries.
    idempotency_key  text        NOT NULL,
    job_id           uuid        NOT NULL,  -- the job that last asked for it
    state            text        NOT NULL CHECK (state IN ('requested', 'minted', 'failed')),
    requests         integer     NOT NULL DEFAULT 0,  -- mint calls made
    mint_address     text,
    signature        text,
    last_error       text,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    minted_at        timestamptz,
    PRIMARY KEY (tenant_id, ticket_id),
    CHECK (state <> 'minted' OR (mint_address IS NOT NULL AND signature IS NOT NULL))
);
-- nfts_minted_total counts minted rows; the partial index keeps that cheap.
CREATE INDEX mints_minted_at ON mints (minted_at) WHERE state = 'minted';

ALTER TABLE mints ENABLE ROW LEVEL SECURITY;
ALTER TABLE mints FORCE ROW LEVEL SECURITY;
-- The API reads its tenant's mints; only workers write them.
CREATE POLICY tenant_isolation ON mints FOR SELECT TO queue_service_api
    USING (tenant_id = current_setting('queue_service.tenant_id', true));
CREATE POLICY engine_all_tenants ON mints TO queue_service_engine
    USING (true) WITH CHECK (true);
REVOKE INSERT, UPDATE, DELETE ON mints FROM queue_service_api;

-- The wallet is the platform's, not a tenant's: no tenant_id, no RLS. One
-- row per address, updated at every balance check; low_since is when the
-- balance first fell below the minimum (NULL while it is enough), which the
-- alert evaluator reads.
CREATE TABLE wallet_balances (
    address      text        PRIMARY KEY,
    balance_sol  numeric     NOT NULL CHECK (balance_sol >= 0),
    minimum_sol  numeric     NOT NULL CHECK (minimum_sol >= 0),
    observed_at  timestamptz NOT NULL DEFAULT now(),
    low_since    timestamptz
);
REVOKE INSERT, UPDATE, DELETE ON wallet_balances FROM queue_service_api;
