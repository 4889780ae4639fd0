"""SSRF: a URL given in a webhook job is refused, as a permanent failure, for
every blocked address form, before any connection: canaries listening on the
loopback addresses those forms stand for record zero connections. Nothing
here may reach a non-loopback address: the connecting backend is wrapped in
a guard that refuses one, should the policy under test ever let it through."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import ExitStack
from typing import Any

import httpcore
import pytest

from queue_service.core.jobs import JobStatus
from queue_service.processors.webhooks import URL_SIGNING_ENDPOINT
from queue_service.providers.ssrf import IPAddress, system_resolver
from queue_service.providers.webhooks import new_secret
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.service import Runtime, open_runtime
from tests.integration.conftest import WorkerFactory, make_settings
from tests.integration.test_webhooks import wait_for
from tests.support.webhook_receiver import Canary, ipv6_loopback_available

TENANT = "acme"
LOOPBACK_NAME = "canary.loopback.test"


class LoopbackOnly(httpcore.AsyncNetworkBackend):
    """The last line of the test's own safety: connects to loopback only, and
    records every address it was asked for."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.asked: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.asked.append(host)
        if not ipaddress.ip_address(host).is_loopback:
            raise AssertionError(f"the test tried to connect to non-loopback {host}")
        stream: httpcore.AsyncNetworkStream = await self.inner.connect_tcp(
            host, port, timeout, local_address, socket_options
        )
        return stream

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@pytest.fixture
def canaries() -> Iterator[dict[str, Canary]]:
    hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    if ipv6_loopback_available():
        hosts.append("::1")
    with ExitStack() as stack:
        found = {h: stack.enter_context(Canary(h).running()) for h in hosts}
        # Each canary counts: one connection of our own, then back to zero.
        for canary in found.values():
            with socket.create_connection((canary.host, canary.port), timeout=2):
                pass
        for canary in found.values():
            while canary.connections < 1:
                pass
            canary.connections = 0
        yield found


@pytest.fixture
async def runtime(database_url: str) -> AsyncIterator[Runtime]:
    # The allow-list opens 127.0.0.1 to configured endpoints only: a URL in a
    # job must still be refused there.
    settings = make_settings(database_url, queue_service_webhook_allow_private_cidrs="127.0.0.1/32")
    async with open_runtime(settings, database_url) as rt:
        yield rt


def blocked_forms(c: dict[str, Canary]) -> list[str]:
    one, two = c["127.0.0.1"].port, c["127.0.0.2"].port
    six = c["::1"].port if "::1" in c else one
    return [
        f"http://127.0.0.1:{one}/",
        f"http://127.1:{one}/",
        f"http://2130706433:{one}/",
        f"http://0x7f000001:{one}/",
        f"http://0177.0.0.1:{one}/",
        f"http://[::1]:{six}/",
        f"http://[::ffff:127.0.0.1]:{one}/",
        f"http://localhost:{one}/",
        f"http://{LOOPBACK_NAME}:{two}/",
        f"http://127.0.0.2:{two}/",
        f"http://2130706434:{two}/",
        f"http://0.0.0.0:{one}/",
        f"https://127.0.0.3:{c['127.0.0.3'].port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
    ]


async def test_every_blocked_form_of_a_job_url_is_refused_before_any_connection(
    runtime: Runtime, run_worker: WorkerFactory, canaries: dict[str, Canary]
) -> None:
    # The tenant's signing secret; its endpoint is never the destination here.
    await runtime.store.add_webhook_endpoint(
        TENANT, URL_SIGNING_ENDPOINT, "https://hooks.example/never", new_secret()
    )
    sender = runtime.deps.providers.webhooks.sender

    async def resolver(host: str, port: int) -> Sequence[IPAddress]:
        if host == LOOPBACK_NAME:
            return [ipaddress.ip_address("127.0.0.2")]
        return await system_resolver(host, port)

    sender.resolver = resolver
    guards = [LoopbackOnly(b.inner) for b in sender.backends]
    for backend, guard in zip(sender.backends, guards, strict=True):
        backend.inner = guard

    forms = blocked_forms(canaries)
    jobs = {}
    for url in forms:
        data = {"event": "order.paid", "payload": {"n": 1}, "url": url}
        done = await runtime.manager.enqueue(
            EnqueueRequest(type="webhook.process", data=data, tenant_id=TENANT)
        )
        jobs[url] = done.job_id
    run_worker(queues=("communication",))

    for url, job_id in jobs.items():
        job = await wait_for(runtime, job_id, JobStatus.FAILED)
        assert job.attempts == 1, url
        assert "refused" in (job.last_error or ""), (url, job.last_error)
        [record] = await runtime.store.webhook_deliveries(job_id)
        assert (record.outcome, record.status_code) == ("refused", None), url
    assert [g.asked for g in guards] == [[], []]
    assert {h: c.connections for h, c in canaries.items()} == dict.fromkeys(canaries, 0)
