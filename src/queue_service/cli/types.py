"""`queue-service types`: the job types this configuration loads, with their
queue, options and payload schema (what every process of it will serve)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from queue_service.cli.app import app, err, load_cli_settings, out
from queue_service.errors import QueueServiceError
from queue_service.processors.base import Processor
from queue_service.processors.registry import Registry, configured_registry


def describe(registry: Registry, job_type: str) -> dict[str, Any]:
    """One job type as `types --json` prints it."""
    proc: Processor[Any] = registry.processor(job_type)
    o = proc.options
    return {
        "type": job_type,
        "queue": o.queue,
        "priority": int(o.priority),
        "retry": {
            "max_attempts": o.retry.max_attempts,
            "strategy": o.retry.strategy,
            "base_seconds": o.retry.base_seconds,
            "max_seconds": o.retry.max_seconds,
            "jitter": o.retry.jitter,
        },
        "timeout_seconds": o.timeout_seconds,
        "lease_seconds": o.lease_seconds,
        "max_stalled": o.max_stalled,
        # Per worker process; None: only the queue's concurrency limits it.
        "concurrency": o.concurrency,
        "idempotency_ttl_seconds": o.idempotency_ttl_seconds,
        "derives_idempotency_key": proc.derive_key is not None,
        "source": registry.source(job_type),
        "payload_schema": proc.payload_model.model_json_schema(),
    }


def catalogue(registry: Registry) -> dict[str, Any]:
    return {
        "queues": [
            {
                "name": q.name,
                "concurrency": q.concurrency,
                "prefetch": q.prefetch,
                "types": registry.types_in_queue(q.name),
            }
            for q in registry.queues
        ],
        "types": [describe(registry, t) for t in registry.job_types],
        "migrations": [
            {"namespace": m.namespace, "package": m.package} for m in registry.migration_sets
        ],
    }


@app.command("types")
def types_command(
    job_type: Annotated[
        str | None, typer.Argument(help="One job type: its options and payload schema")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List the job types this configuration loads (entry points and
    QUEUE_SERVICE_PROCESSORS): queue, options, payload schema."""
    settings = load_cli_settings()
    try:
        registry = configured_registry(settings)
        found = catalogue(registry) if job_type is None else describe(registry, job_type)
    except QueueServiceError as exc:
        err.print(f"[red]error[/red]: {exc}", soft_wrap=True)
        raise typer.Exit(2) from None
    if as_json:
        out.print_json(orjson.dumps(found).decode())
    elif job_type is not None:
        _print_one(found)
    else:
        _print_table(found)


def _print_table(found: dict[str, Any]) -> None:
    table = Table(
        "type",
        "queue",
        "priority",
        "attempts",
        "backoff",
        "timeout",
        "lease",
        "concurrency",
        "payload (? optional)",
    )
    for t in found["types"]:
        fields = t["payload_schema"].get("properties", {})
        required = set(t["payload_schema"].get("required", []))
        table.add_row(
            t["type"],
            t["queue"],
            str(t["priority"]),
            str(t["retry"]["max_attempts"]),
            _backoff(t["retry"]),
            f"{t['timeout_seconds']:g} s",
            f"{t['lease_seconds']} s",
            "queue's" if t["concurrency"] is None else str(t["concurrency"]),
            ", ".join(f if f in required else f"{f}?" for f in fields),
        )
    out.print(table)
    for q in found["queues"]:
        out.print(f"queue {q['name']}: concurrency {q['concurrency']}, {len(q['types'])} types")
    for m in found["migrations"]:
        out.print(f"migrations {m['namespace']}: package {m['package']}")


def _print_one(t: dict[str, Any]) -> None:
    schema = t.pop("payload_schema")
    for key, value in t.items():
        out.print(f"{key}: {_backoff(value) if key == 'retry' else value}")
    out.print("payload schema:")
    out.print_json(orjson.dumps(schema).decode())


def _backoff(retry: dict[str, Any]) -> str:
    jitter = " + jitter" if retry["jitter"] else ""
    return f"{retry['strategy']} {retry['base_seconds']:g}..{retry['max_seconds']:g} s{jitter}"
