"""In-process workers for the tests: one way to make and run them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from queue_service.runtime.service import Runtime
from queue_service.runtime.worker import Worker


def new_worker(rt: Runtime, queues: Sequence[str] = ("test",), **kwargs: Any) -> Worker:
    """A Worker of ``queues`` on ``rt``, listening, polling every 0.2 s and
    draining for 2 s at most unless ``kwargs`` say otherwise."""
    kwargs.setdefault("listen_conninfo", rt.conninfo)
    kwargs.setdefault("poll_interval", 0.2)
    kwargs.setdefault("grace_seconds", 2)
    kwargs.setdefault("deps", rt.deps)
    return Worker(rt.manager, [rt.registry.queue(q) for q in queues], **kwargs)


@asynccontextmanager
async def worker_running(
    rt: Runtime, queues: Sequence[str] = ("test",), **kwargs: Any
) -> AsyncIterator[Worker]:
    """:func:`new_worker`, running for the block and drained when it ends."""
    worker = new_worker(rt, queues, **kwargs)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task
