-- The mint ledger and the minting wallet's observed balance (migration 0008).
-- `-- name: x` starts a statement; the line after it says what it does.

-- name: mint_get
-- One ticket's ledger row: read before anything else, so a ticket already
-- minted is never sent to the minting service again.
SELECT tenant_id, ticket_id, user_id, event_id, wallet_address, idempotency_key, job_id,
       state, requests, mint_address, signature, last_error, requested_at, minted_at
FROM mints
WHERE tenant_id = %(tenant)s AND ticket_id = %(ticket)s

-- name: mint_request
-- Record, before the minting call, that a mint is being asked for: a new row,
-- or a 'requested' / 'failed' row asked again (its idempotency key is kept, so
-- every request for the ticket carries the first one). A minted row is left
-- alone and nothing is returned: the caller re-reads it. requested_at is the
-- latest request's time, from which a pending mint's age is judged.
INSERT INTO mints AS m (tenant_id, ticket_id, user_id, event_id, wallet_address,
                        idempotency_key, job_id, state, requests)
VALUES (%(tenant)s, %(ticket)s, %(user)s, %(event)s, %(wallet)s, %(key)s, %(job)s,
        'requested', 1)
ON CONFLICT (tenant_id, ticket_id) DO UPDATE
SET state = 'requested', requests = m.requests + 1, job_id = EXCLUDED.job_id,
    last_error = NULL, requested_at = now(), updated_at = now()
WHERE m.state <> 'minted'
RETURNING tenant_id, ticket_id, user_id, event_id, wallet_address, idempotency_key, job_id,
          state, requests, mint_address, signature, last_error, requested_at, minted_at

-- name: mint_mark_minted
-- The mint's result, written in the transaction that completes the job and
-- enqueues its email: the ledger says minted exactly when the job completed.
UPDATE mints
SET state = 'minted', mint_address = %(mint_address)s, signature = %(signature)s,
    last_error = NULL, minted_at = now(), updated_at = now()
WHERE tenant_id = %(tenant)s AND ticket_id = %(ticket)s
RETURNING ticket_id

-- name: mint_mark_failed
-- A mint the minting service reported failed; a later request starts over
-- (with a status check first, like any row found not minted).
UPDATE mints
SET state = 'failed', last_error = %(error)s, updated_at = now()
WHERE tenant_id = %(tenant)s AND ticket_id = %(ticket)s AND state <> 'minted'

-- name: mint_count_minted
-- Mints made, across tenants (nfts_minted_total reads the database, not a
-- process's memory); uses the partial index mints_minted_at.
SELECT count(*) FROM mints WHERE state = 'minted'

-- name: wallet_balance_record
-- The balance just read from the chain, and since when it has been below the
-- minimum (kept across checks, cleared once it is enough): the low-balance
-- signal the alert evaluator reads.
INSERT INTO wallet_balances AS w (address, balance_sol, minimum_sol, observed_at, low_since)
VALUES (%(address)s, %(balance)s, %(minimum)s, now(),
        CASE WHEN %(balance)s::numeric < %(minimum)s::numeric THEN now() END)
ON CONFLICT (address) DO UPDATE
SET balance_sol = EXCLUDED.balance_sol, minimum_sol = EXCLUDED.minimum_sol,
    observed_at = EXCLUDED.observed_at,
    low_since = CASE WHEN EXCLUDED.balance_sol < EXCLUDED.minimum_sol
                     THEN coalesce(w.low_since, EXCLUDED.observed_at) END
RETURNING address, balance_sol, minimum_sol, observed_at, low_since

-- name: wallet_balances_list
-- Every watched wallet's last observation (solana_wallet_balance_sol, the
-- Solana wallet balance alert).
SELECT address, balance_sol, minimum_sol, observed_at, low_since
FROM wallet_balances
ORDER BY address
