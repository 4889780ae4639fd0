-- Fair tenants (docs/decisions/0018-fair-tenants.md): the fair claim walks the
-- (priority, tenant) pairs of a queue's waiting rows, one index descent per
-- pair (a loose index scan), and probes each pair's ready rows in (run_at,
-- id) order. jobs_fetch_idx cannot do that: tenant_id is not in it, so
-- finding the tenants with ready work would read every ready row.
--
-- The predicate holds the same rows as jobs_fetch_idx's `status = 'waiting'`
-- (status is 'waiting' or 'active'), written so that neither claim can pick
-- the other's index: the planner proves neither predicate from the other, so
-- the plain claim (`= 'waiting'`) never sees this index and the fair claim
-- (`^@ 'wait'`) never filters jobs_fetch_idx on tenant_id.
CREATE INDEX jobs_tenant_fetch_idx ON jobs (queue, priority, tenant_id, run_at, id)
    WHERE status ^@ 'wait';
