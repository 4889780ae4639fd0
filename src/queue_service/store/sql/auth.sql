-- Service (HMAC) authentication: single-use request nonces.
-- `-- name: x` starts a statement; the line after it says what it does.

-- name: nonce_remember
-- Record a service's nonce; returns a row only the first time it is seen.
INSERT INTO internal_nonces (service, nonce)
VALUES (%(service)s, %(nonce)s)
ON CONFLICT (service, nonce) DO NOTHING
RETURNING 1

-- name: nonce_purge
-- Delete up to `limit` nonces seen more than `seconds` ago; returns how many.
WITH gone AS (
    DELETE FROM internal_nonces
    WHERE (service, nonce) IN (
        SELECT service, nonce FROM internal_nonces
        WHERE seen_at < now() - make_interval(secs => %(seconds)s)
        LIMIT %(limit)s)
    RETURNING 1
)
SELECT count(*) FROM gone
