-- Statements of the HTTP API beyond the engine's: inbound rate limits.

-- name: rate_limit_add
-- Add requests to each key's count (fixed windows), starting a new window
-- when the old one ended. Returns each key's limit, count and seconds left.
INSERT INTO rate_limits AS r (tenant_id, key, "limit", window_seconds, current_count, reset_at)
SELECT %(tenant)s, k, l, %(window)s, d, now() + make_interval(secs => %(window)s)
FROM unnest(%(keys)s::text[], %(limits)s::integer[], %(deltas)s::integer[]) AS t(k, l, d)
ON CONFLICT (tenant_id, key) DO UPDATE SET
    current_count = CASE WHEN r.reset_at <= now() THEN EXCLUDED.current_count
                         ELSE r.current_count + EXCLUDED.current_count END,
    reset_at = CASE WHEN r.reset_at <= now()
                    THEN now() + make_interval(secs => EXCLUDED.window_seconds)
                    ELSE r.reset_at END,
    "limit" = EXCLUDED."limit",
    window_seconds = EXCLUDED.window_seconds
RETURNING key, "limit", current_count, extract(epoch FROM reset_at - now())::double precision

-- name: rate_limit_get
-- One key's window as it stands (a window that ended counts as empty).
SELECT key, "limit", window_seconds,
       CASE WHEN reset_at <= now() THEN 0 ELSE current_count END,
       CASE WHEN reset_at <= now() THEN NULL ELSE reset_at END
FROM rate_limits WHERE tenant_id = %(tenant)s AND key = %(key)s

-- name: rate_limit_reset
-- Forget a key's window.
DELETE FROM rate_limits WHERE tenant_id = %(tenant)s AND key = %(key)s RETURNING key
