"""Observability: structured JSON logging with PII and secret redaction."""
