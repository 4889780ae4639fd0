-- The job engine: live jobs, finished jobs, attempt history, DLQ,
-- idempotency keys, queue pauses. Every row carries tenant_id.

-- Live jobs only (waiting, delayed, active). Finished jobs move to
-- finished_jobs in the transaction that finishes them, so this table and its
-- fetch index stay small however much history accumulates
-- (docs/decisions/0002-hot-table.md).
CREATE TABLE jobs (
    id                uuid PRIMARY KEY,
    tenant_id         text        NOT NULL,
    queue             text        NOT NULL,
    type              text        NOT NULL,
    -- 'waiting' covers delayed jobs too: a waiting job whose run_at is in the
    -- future is presented as 'delayed', judged by the database clock.
    status            text        NOT NULL DEFAULT 'waiting'
                      CHECK (status IN ('waiting', 'active')),
    priority          smallint    NOT NULL DEFAULT 5 CHECK (priority BETWEEN 0 AND 100),
    data              jsonb       NOT NULL,
    attempts          integer     NOT NULL DEFAULT 0,
    max_attempts      integer     NOT NULL CHECK (max_attempts >= 1),
    stalled_count     integer     NOT NULL DEFAULT 0,
    max_stalled       integer     NOT NULL,
    lease_seconds     integer     NOT NULL CHECK (lease_seconds > 0),
    idempotency_key   text,
    created_by        text,
    request_id        text,
    trace_context     jsonb,
    replay_of         uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    run_at            timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    -- The fencing token: a fresh value from job_lease_token_seq on every
    -- claim. Completion, failure and heartbeats compare-and-set on it, so a
    -- worker that lost its lease can never overwrite the attempt that
    -- replaced it.
    lease_token       bigint,
    lease_expires_at  timestamptz,
    worker_id         text,
    cancel_requested  boolean     NOT NULL DEFAULT false,
    last_error        text
);

CREATE SEQUENCE job_lease_token_seq AS bigint;

-- Fetch: equality on queue, then the order the claim wants. Partial, so
-- active rows never sit in it.
CREATE INDEX jobs_fetch_idx ON jobs (queue, priority, run_at, id) WHERE status = 'waiting';
-- Rescue: expired leases.
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE status = 'active';

CREATE TABLE finished_jobs (
    id                uuid PRIMARY KEY,
    tenant_id         text        NOT NULL,
    queue             text        NOT NULL,
    type              text        NOT NULL,
    status            text        NOT NULL CHECK (status IN ('completed', 'failed', 'cancelled')),
    priority          smallint    NOT NULL,
    data              jsonb       NOT NULL,
    attempts          integer     NOT NULL,
    max_attempts      integer     NOT NULL,
    stalled_count     integer     NOT NULL,
    max_stalled       integer     NOT NULL,
    lease_seconds     integer     NOT NULL,
    idempotency_key   text,
    created_by        text,
    request_id        text,
    trace_context     jsonb,
    replay_of         uuid,
    created_at        timestamptz NOT NULL,
    run_at            timestamptz NOT NULL,
    started_at        timestamptz,
    finished_at       timestamptz NOT NULL DEFAULT now(),
    last_error        text,
    result            jsonb
);

CREATE INDEX finished_jobs_listing_idx ON finished_jobs (tenant_id, queue, status, finished_at DESC, id DESC);
CREATE INDEX finished_jobs_retention_idx ON finished_jobs (finished_at);

-- Cold storage for finished money, webhook and minting jobs past their
-- retention window (SPEC §8).
CREATE TABLE job_archive (LIKE finished_jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
ALTER TABLE job_archive ADD PRIMARY KEY (id);
ALTER TABLE job_archive ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();

-- The audit trail: one row per state change after creation (the creation
-- itself is the job row's created_at / created_by). An attempt is written
-- once, when it ends, with the time it started, so the hot path writes one
-- history row per attempt rather than two.
CREATE TABLE job_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      uuid        NOT NULL,
    tenant_id   text        NOT NULL,
    event       text        NOT NULL CHECK (event IN (
                    'completed', 'retry_scheduled', 'failed', 'rescued', 'released',
                    'cancelled', 'cancel_requested', 'retried', 'lease_lost')),
    attempt     integer     NOT NULL,
    worker_id   text,
    started_at  timestamptz,
    at          timestamptz NOT NULL DEFAULT now(),
    error       text
);

CREATE INDEX job_events_job_idx ON job_events (job_id, id);
CREATE INDEX job_events_at_idx ON job_events (at);

CREATE TABLE dead_letter_jobs (
    id               uuid PRIMARY KEY,
    tenant_id        text        NOT NULL,
    original_job_id  uuid        NOT NULL,
    queue            text        NOT NULL,
    type             text        NOT NULL,
    data             jsonb       NOT NULL,
    error            text,
    attempts         integer     NOT NULL,
    created_by       text,
    failed_at        timestamptz NOT NULL DEFAULT now(),
    replayed_job_id  uuid,
    replayed_at      timestamptz
);

CREATE INDEX dead_letter_jobs_listing_idx ON dead_letter_jobs (tenant_id, failed_at DESC, id DESC);
CREATE INDEX dead_letter_jobs_purge_idx ON dead_letter_jobs (failed_at);

CREATE TABLE queue_idempotency_keys (
    tenant_id     text        NOT NULL,
    key           text        NOT NULL,
    job_id        uuid        NOT NULL,
    payload_hash  text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

CREATE INDEX queue_idempotency_keys_expiry_idx ON queue_idempotency_keys (expires_at);

-- A pause for one tenant's jobs in a queue, or for every tenant ('*').
CREATE TABLE queue_pauses (
    queue      text        NOT NULL,
    tenant_id  text        NOT NULL,
    paused_by  text,
    paused_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, tenant_id)
);

-- Live worker processes, for `status` and for the operator.
CREATE TABLE workers (
    id            text        PRIMARY KEY,
    host          text        NOT NULL,
    pid           integer     NOT NULL,
    queues        text[]      NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now()
);
