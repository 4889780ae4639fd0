-- Service (HMAC) authentication: each request nonce is accepted once.
-- Not tenant data, so no tenant_id (and no row-level security): a nonce
-- belongs to the calling service, and the signed text does not name a tenant.
CREATE TABLE internal_nonces (
    service  text        NOT NULL,
    nonce    text        NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, nonce)
);

-- Purge: nonces older than the replay window, oldest first.
CREATE INDEX internal_nonces_seen_at_idx ON internal_nonces (seen_at);
