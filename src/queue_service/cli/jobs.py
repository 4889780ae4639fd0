"""Jobs and queues from the command line: enqueue, status, pause, resume, the DLQ."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any
from uuid import UUID

import orjson
import typer
from rich.table import Table

from queue_service.cli.app import (
    app,
    dlq_app,
    err,
    json_object_option,
    out,
    run_on_runtime,
)
from queue_service.cli.progress import progress_bar
from queue_service.errors import InvalidStateError
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import (
    Runtime,
)


@app.command()
def enqueue(
    job_type: Annotated[str, typer.Argument(help="Job type, e.g. email.send")],
    data: Annotated[str, typer.Option(help="Payload as JSON")] = "{}",
    tenant: Annotated[str, typer.Option(help="Tenant id")] = ...,  # type: ignore[assignment]
    priority: Annotated[int | None, typer.Option(help="1 (first) .. 10")] = None,
    delay_ms: Annotated[int | None, typer.Option(help="Run after this many ms")] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Enqueue one job and print it as JSON."""
    payload = json_object_option(data)

    async def go(rt: Runtime) -> dict[str, Any]:
        done = await rt.manager.enqueue(
            EnqueueRequest(
                type=job_type,
                data=payload,
                tenant_id=tenant,
                priority=priority,
                delay_ms=delay_ms,
                idempotency_key=idempotency_key,
                created_by="cli",
            )
        )
        job = await rt.manager.get(done.job_id)
        return {"created": done.created, "job": job.to_dict()}

    out.print_json(orjson.dumps(run_on_runtime(go)).decode())


@app.command()
def status(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Queues with their true counts, pauses and live workers."""

    async def go(rt: Runtime) -> dict[str, Any]:
        counts = await rt.store.queue_counts(tenant)
        pauses = await rt.store.paused_queues()
        workers = await rt.store.list_workers()
        names = sorted({q.name for q in rt.registry.queues} | set(counts))
        return {
            "queues": [
                {
                    "name": n,
                    "paused_for": [t for q, t, _, _ in pauses if q == n],
                    "counts": counts[n].counts()
                    if n in counts
                    else dict.fromkeys(
                        ("waiting", "delayed", "active", "completed", "failed", "cancelled"), 0
                    ),
                    "oldest_waiting_age_seconds": counts[n].oldest_waiting_age_seconds
                    if n in counts
                    else None,
                }
                for n in names
            ],
            "workers": [
                {"id": w.id, "queues": w.queues, "heartbeat_at": w.heartbeat_at.isoformat()}
                for w in workers
            ],
        }

    report = run_on_runtime(go)
    if as_json:
        out.print_json(orjson.dumps(report).decode())
        return
    table = Table(title="queues")
    for col in (
        "queue",
        "paused",
        "waiting",
        "delayed",
        "active",
        "completed",
        "failed",
        "cancelled",
        "oldest waiting",
    ):
        table.add_column(col, justify="left" if col in ("queue", "paused") else "right")
    for q in report["queues"]:
        c = q["counts"]
        age = q["oldest_waiting_age_seconds"]
        table.add_row(
            q["name"],
            ",".join(q["paused_for"]) or "-",
            *(
                str(c[k])
                for k in ("waiting", "delayed", "active", "completed", "failed", "cancelled")
            ),
            f"{age:.1f} s" if age is not None else "-",
        )
    out.print(table)
    out.print(
        f"{len(report['workers'])} live worker(s): "
        + (", ".join(w["id"] for w in report["workers"]) or "none")
    )


@app.command()
def pause(
    queue: Annotated[str, typer.Argument(help="Queue to pause")],
    tenant: Annotated[str, typer.Option(help="One tenant, or * for every tenant")] = "*",
) -> None:
    """Stop new pick-ups of a queue on every worker (running jobs finish)."""

    async def go(rt: Runtime) -> None:
        rt.registry.queue(queue)
        await rt.store.pause_queue(queue, tenant, "cli")

    run_on_runtime(go)
    out.print(f"paused {queue} for {'every tenant' if tenant == '*' else tenant}")


@app.command()
def resume(
    queue: Annotated[str, typer.Argument(help="Queue to resume")],
    tenant: Annotated[str, typer.Option(help="One tenant, or * for every tenant")] = "*",
) -> None:
    """Lift a pause set with `pause` (or a tenant's, with --tenant)."""

    async def go(rt: Runtime) -> bool:
        rt.registry.queue(queue)
        return await rt.store.resume_queue(queue, tenant)

    lifted = run_on_runtime(go)
    out.print(f"resumed {queue}" if lifted else f"{queue} was not paused for {tenant}")


@dlq_app.command("list")
def dlq_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    job_type: Annotated[str | None, typer.Option("--type")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List dead letters, newest first."""

    async def go(rt: Runtime) -> list[Any]:
        return await rt.store.list_dead_letters(tenant, limit, queue=queue, job_type=job_type)

    table = Table(title="dead letters")
    for col in ("id", "tenant", "type", "attempts", "failed at", "replayed as", "error"):
        table.add_column(col)
    for d in run_on_runtime(go):
        table.add_row(
            str(d.id),
            d.tenant_id,
            d.type,
            str(d.attempts),
            d.failed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            str(d.replayed_job_id or "-"),
            (d.error or "")[:80],
        )
    out.print(table)


@dlq_app.command("replay")
def dlq_replay(dlq_id: UUID) -> None:
    """Replay a dead letter as a new job (once)."""

    async def go(rt: Runtime) -> UUID:
        return await rt.manager.replay_dead_letter(dlq_id, None, "cli")

    out.print(f"replayed as job {run_on_runtime(go)}")


@dlq_app.command("delete")
def dlq_delete(dlq_id: UUID) -> None:
    """Delete a dead letter."""

    async def go(rt: Runtime) -> bool:
        return await rt.store.delete_dead_letter(dlq_id)

    if not run_on_runtime(go):
        err.print(f"[red]error[/red]: no dead letter {dlq_id}")
        raise typer.Exit(1)
    out.print(f"deleted {dlq_id}")


@dlq_app.command("replay-all")
def dlq_replay_all(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant")] = None,
    queue: Annotated[str | None, typer.Option()] = None,
    job_type: Annotated[str | None, typer.Option("--type")] = None,
    error: Annotated[str | None, typer.Option(help="Only errors containing this text")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many")] = 100,
    yes: Annotated[
        bool, typer.Option("--yes", help="Replay them (without it: a dry run that counts)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Replay every matching dead letter not yet replayed, newest first."""

    async def go(rt: Runtime) -> tuple[int, list[tuple[UUID, UUID]], int]:
        if queue is not None:
            rt.registry.queue(queue)  # an unknown queue is an error, not "0 matched"
        entries = await rt.store.list_dead_letters(
            tenant,
            limit,
            queue=queue,
            job_type=job_type,
            error_contains=error,
            unreplayed_only=True,
        )
        replayed: list[tuple[UUID, UUID]] = []
        skipped = 0
        if not yes:
            return len(entries), replayed, skipped
        with progress_bar(quiet=as_json) as bar:
            task = bar.add_task("replaying", total=len(entries))
            for entry in entries:
                try:
                    replayed.append(
                        (entry.id, await rt.manager.replay_dead_letter(entry.id, None, "cli"))
                    )
                except InvalidStateError:
                    skipped += 1  # replayed by someone else meanwhile
                bar.advance(task)
        return len(entries), replayed, skipped

    matched, replayed, skipped = run_on_runtime(go)
    if as_json:
        report = {
            "dry_run": not yes,
            "matched": matched,
            "replayed": [{"dlq_id": str(d), "job_id": str(j)} for d, j in replayed],
            "skipped_already_replayed": skipped,
        }
        out.print_json(orjson.dumps(report).decode())
    elif not yes:
        out.print(f"{matched} dead letters match (dry run: pass --yes to replay them)")
    else:
        out.print(f"replayed {len(replayed)} of {matched} ({skipped} already replayed meanwhile)")
