-- Plans of the hot path that cannot go quadratic (docs/decisions/0017-plan-stable-hot-path.md).
--
-- jobs_lease_idx was partial WHERE status = 'active'. Heartbeat, complete,
-- finish, release and rescue all say `status = 'active'` too, so the planner
-- could read that whole index instead of looking each input id up by primary
-- key; a generic plan made when statistics said (as they do with a backlog)
-- that almost nothing was active did exactly that, re-reading the batch for
-- every active row. The same rows are indexed under a predicate those
-- statements never imply; the rescuer's `lease_expires_at < now()` implies
-- it (a strict comparison is never true of NULL), and every return to waiting
-- clears lease_expires_at, so the index holds the same rows as before.
DROP INDEX jobs_lease_idx;
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
