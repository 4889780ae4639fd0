-- A snooze ("not now, try at T": an empty rate-limit bucket, an open circuit
-- breaker, a wallet too low to mint) is part of a job's history, like a retry,
-- but uses no attempt.
ALTER TABLE job_events DROP CONSTRAINT job_events_event_check;
ALTER TABLE job_events ADD CONSTRAINT job_events_event_check CHECK (event IN (
    'completed', 'retry_scheduled', 'failed', 'rescued', 'released',
    'cancelled', 'cancel_requested', 'retried', 'lease_lost', 'snoozed'));
