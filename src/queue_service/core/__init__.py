"""Pure logic, no I/O: job model, retry policies, idempotency keys, ids."""
