"""queue-service: a durable PostgreSQL job queue."""
