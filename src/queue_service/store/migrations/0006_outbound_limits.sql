-- Outbound rate limits and circuit breakers (SPEC §5, decision 0009): one row
-- per external service (stripe, solana, internal, twilio, smtp, webhooks, ...)
-- shared by every worker process on every host, so their combined rate stays
-- within the service's limit and every process and the dashboard see one
-- breaker. Not tenant rows: a vendor's limit is the platform's, not a tenant's.
CREATE TABLE outbound_services (
    service              text PRIMARY KEY,
    -- The bucket: tokens as of refilled_at; readers add the refill since
    -- then (outbound_refilled below), so only a taken token writes.
    capacity             double precision NOT NULL CHECK (capacity >= 1),
    refill_per_second    double precision NOT NULL CHECK (refill_per_second > 0),
    max_in_flight        integer NOT NULL CHECK (max_in_flight >= 1),
    tokens               double precision NOT NULL,
    refilled_at          timestamptz NOT NULL DEFAULT now(),
    -- Tokens promised to waiting callers (outbound_reservations' unused
    -- tokens, counted here so that one locked row says how many of `tokens`
    -- are spoken for). `tokens` stays the plain bucket: every call made takes
    -- a whole token from it, reserved or not, so the bucket's bound holds
    -- whatever happens to a reservation; `reserved` only orders who gets one.
    reserved             integer NOT NULL DEFAULT 0,
    -- Emergency stop: every caller snoozes until a reset.
    stopped_at           timestamptz,
    stopped_by           text,
    stop_reason          text,
    -- Circuit breaker: closed -> open after breaker_failures retryable
    -- failures in a row -> half_open (one probe call, probe_holder) once
    -- breaker_open_seconds have passed -> closed on the probe's success.
    breaker_state        text NOT NULL DEFAULT 'closed'
                         CHECK (breaker_state IN ('closed', 'open', 'half_open')),
    breaker_failures     integer NOT NULL CHECK (breaker_failures >= 1),
    breaker_open_seconds double precision NOT NULL CHECK (breaker_open_seconds > 0),
    consecutive_failures integer NOT NULL DEFAULT 0,
    opened_at            timestamptz,
    probe_holder         text,
    probe_expires_at     timestamptz,
    last_failure         text,
    updated_at           timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);
-- Updated on every taken token: room on the page keeps those updates HOT
-- (no indexed column changes), so the hot row never needs an index write.

-- In-flight slots, one row per slot number 1..max_in_flight: a call holds
-- one until it releases it or until expires_at (its holder was killed; the
-- gate extends the expiry while the call runs). An expired slot neither
-- counts nor blocks: the next acquire takes it over in place, so a crashed
-- worker never leaks one. lease fences the release: a holder whose slot
-- expired and was taken over cannot free its successor's.
CREATE TABLE outbound_slots (
    service     text NOT NULL REFERENCES outbound_services ON DELETE CASCADE,
    slot        integer NOT NULL CHECK (slot >= 1),
    holder      text,
    lease       uuid,
    taken_at    timestamptz,
    expires_at  timestamptz,
    PRIMARY KEY (service, slot)
) WITH (fillfactor = 50);

-- Reservations (decision 0009, "virtual scheduling"): a caller that found no
-- token free of promises is booked the next one instead of being refused, and
-- snoozes until due_at; its next acquire at or after due_at uses it. Each
-- reservation is `tokens` tokens (more than one for a job that makes several
-- calls per run, see outbound_acquire) of which `used` were used; a row whose
-- tokens are all used stays until it expires as the memory of how many calls
-- the holder's run made. An unused reservation (job cancelled, failed, its
-- worker killed) lapses at expires_at (due_at plus a grace) and the next
-- acquire of the service deletes it and gives its tokens back to the pool.
-- No unique holder: a row being deleted as lapsed by one statement while its
-- holder books a new one must not make either wait (see outbound_acquire).
CREATE TABLE outbound_reservations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    service     text NOT NULL REFERENCES outbound_services ON DELETE CASCADE,
    holder      text NOT NULL,
    due_at      timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    tokens      integer NOT NULL CHECK (tokens >= 0),
    used        integer NOT NULL DEFAULT 0 CHECK (used >= 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbound_reservations_holder ON outbound_reservations (service, holder);
CREATE INDEX outbound_reservations_expiry ON outbound_reservations (service, expires_at);

-- The refill rule, written once for every statement (core/buckets.refilled
-- is the same sum, and a test holds them equal). A one-line SQL function
-- marked IMMUTABLE is inlined by the planner: no call overhead.
CREATE FUNCTION outbound_refilled(
    tokens double precision,
    capacity double precision,
    refill_per_second double precision,
    from_time timestamptz,
    to_time timestamptz
) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT least(capacity,
                 tokens + greatest(0, extract(epoch FROM to_time - from_time)::double precision)
                          * refill_per_second)
$$;

-- 0003's default privileges already give both roles read and write; spelled
-- out here because these rows are global: workers take and release tokens and
-- slots and report to the breaker; the API (admin routes) reads the state,
-- creates a service's row from configuration, stops and resets. Neither
-- deletes a service. No row-level security: no tenant owns these rows.
REVOKE ALL ON outbound_services, outbound_slots, outbound_reservations
    FROM queue_service_api, queue_service_engine;
GRANT SELECT, INSERT, UPDATE ON outbound_services TO queue_service_api, queue_service_engine;
GRANT SELECT, INSERT, UPDATE, DELETE ON outbound_slots, outbound_reservations
    TO queue_service_api, queue_service_engine;
GRANT EXECUTE ON FUNCTION outbound_refilled TO queue_service_api, queue_service_engine;
