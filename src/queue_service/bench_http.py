"""`queue-service bench --workload http-enqueue`: POST /jobs over real HTTP
with a signed JWT, from N concurrent keep-alive connections, against one
`queue-service api` process. The load generator is a minimal HTTP/1.1
client so that it costs the 2-core machine little next to the server.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import orjson

from queue_service.api.auth.tokens import mint_token

READY_TIMEOUT_SECONDS = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _wait_ready(port: int, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError("the benchmark API process exited during start-up")
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health/ready HTTP/1.1\r\nHost: bench\r\n\r\n")
            status, _ = await _read_response(reader)
            writer.close()
            if status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the benchmark API process did not become ready")


async def _client(
    port: int, token: str, jobs: list[int], latencies: list[float], statuses: dict[int, int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i in jobs:
            body = orjson.dumps({"type": "bench.noop", "data": {"i": i}})
            request = (
                b"POST /jobs HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + token.encode() + b"\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            t0 = time.perf_counter()
            writer.write(request)
            status, _ = await _read_response(reader)
            latencies.append((time.perf_counter() - t0) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run_http_enqueue(
    conninfo: str, jobs: int, concurrency: int, progress: Any
) -> dict[str, Any]:
    port = _free_port()
    secret = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "DATABASE_URL": conninfo,
        "JWT_SECRET": secret,
        "QUEUE_SERVICE_PORT": str(port),
        "QUEUE_SERVICE_LOG_LEVEL": "warning",
        "QUEUE_SERVICE_AUTO_MIGRATE": "false",
        # The limiter still counts every request; it just never says no here.
        "QUEUE_SERVICE_RATE_LIMIT_ENQUEUE_PER_MINUTE": "1000000000",
    }
    env.pop("JWT_PUBLIC_KEY", None)
    env.pop("JWT_ALGORITHM", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "queue_service.cli",
        "api",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await _wait_ready(port, proc)
        token = mint_token(secret, subject="bench", tenant_id="bench", roles=["user"])
        # Warm up connections, prepared statements and the rate-limit rows.
        await asyncio.gather(*(_client(port, token, [0] * 5, [], {}) for _ in range(concurrency)))
        progress(f"{jobs} POST /jobs over {concurrency} connections")
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        shares = [list(range(k, jobs, concurrency)) for k in range(concurrency)]
        t0 = time.perf_counter()
        await asyncio.gather(*(_client(port, token, s, latencies, statuses) for s in shares))
        elapsed = time.perf_counter() - t0
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
    lat = sorted(latencies)
    return {
        "jobs": len(lat),
        "concurrency": concurrency,
        "elapsed_s": round(elapsed, 3),
        "rate": round(len(lat) / elapsed, 1),
        "statuses": {str(k): v for k, v in statuses.items()},
        "p50_ms": percentile(lat, 50),
        "p95_ms": percentile(lat, 95),
        "p99_ms": percentile(lat, 99),
        "max_ms": round(lat[-1], 2),
        "mean_ms": round(statistics.fmean(lat), 2),
    }


def percentile(sorted_values: list[float], p: float) -> float:
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return round(sorted_values[k], 2)
