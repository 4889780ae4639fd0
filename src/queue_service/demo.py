"""`queue-service demo`: a realistic order flow through the HTTP API, shown live.

Each order is a payment and a fulfilment (which waits for the payment, then
mints the tickets and sends the emails, webhooks and analytics); some cards
decline and some orders are partly refunded. Without ``--url`` the demo starts
its own service on a fresh embedded database with development providers, and
stops it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from queue_service.api.auth.tokens import mint_token
from queue_service.api.state import dev_secret
from queue_service.settings import Settings

TENANT = "demo"
QUEUES = ("money", "communication", "background")
DECLINING_CARD = "pm_card_chargeDeclined"
GOOD_CARD = "pm_card_visa"
# A devnet-style public address for the demo's wallets (never a private key).
DEMO_WALLET = "7EYnhQoR9YM3N7UoaKRoA44Uy8JeaZV3qyouov87awMs"
TICKET_PRICE_CENTS = 2500
REFUND_CENTS = 500
PROVIDER_ENV = (
    "DATABASE_URL",
    "DATABASE_LISTEN_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_SECRET_KEY_FILE",
    "SOLANA_RPC_URL",
    "SOLANA_WALLET_ADDRESS",
    "MINTING_SERVICE_URL",
    "ANALYTICS_SERVICE_URL",
    "SMTP_HOST",
    "TWILIO_ACCOUNT_SID",
    "JWT_SECRET",
    "JWT_SECRET_FILE",
    "JWT_PUBLIC_KEY",
)


class DemoError(RuntimeError):
    """The demo could not run; the message says why."""


@dataclass(slots=True)
class Order:
    number: int
    tickets: int
    declines: bool
    refund: bool
    payment_id: str | None = None
    fulfil_id: str | None = None
    refund_id: str | None = None

    @property
    def order_id(self) -> str:
        return f"demo-order-{self.number:05d}"

    @property
    def amount(self) -> int:
        return self.tickets * TICKET_PRICE_CENTS


@dataclass(slots=True)
class Tally:
    """Finished jobs of the demo's tenant, by type and status."""

    by_type: Counter[tuple[str, str]] = field(default_factory=Counter)
    retries: int = 0
    snoozes_or_waits: int = 0
    unfinished: int = 0

    def done(self, job_type: str, status: str = "completed") -> int:
        return self.by_type[(job_type, status)]

    def prefix(self, prefix: str, status: str = "completed") -> int:
        return sum(n for (t, s), n in self.by_type.items() if t.startswith(prefix) and s == status)


def plan_orders(count: int) -> list[Order]:
    """Deterministic, so two runs show the same story: every tenth card
    declines, every fourth paid order is partly refunded."""
    return [
        Order(
            number=i,
            tickets=1 + i % 3,
            declines=i % 10 == 3,
            refund=i % 4 == 1 and i % 10 != 3,
        )
        for i in range(count)
    ]


def payment_body(order: Order) -> dict[str, Any]:
    return {
        "type": "payment.process",
        "data": {
            "order_id": order.order_id,
            "user_id": f"demo-user-{order.number % 7}",
            "amount": order.amount,
            "currency": "USD",
            "payment_method_id": DECLINING_CARD if order.declines else GOOD_CARD,
            "customer_email": f"buyer{order.number}@example.com",
        },
    }


def fulfil_body(order: Order) -> dict[str, Any]:
    return {
        "type": "order.fulfill",
        "data": {
            "order_id": order.order_id,
            "user_id": f"demo-user-{order.number % 7}",
            "tickets": [
                {"ticket_id": f"{order.order_id}-t{k}", "event_id": "demo-event-1"}
                for k in range(order.tickets)
            ],
            "customer_email": f"buyer{order.number}@example.com",
            "wallet_address": DEMO_WALLET,
        },
    }


def refund_body(order: Order, transaction_id: str) -> dict[str, Any]:
    return {
        "type": "refund.partial",
        "data": {
            "order_id": order.order_id,
            "transaction_id": transaction_id,
            "amount": REFUND_CENTS,
            "reason": "requested_by_customer",
            "customer_email": f"buyer{order.number}@example.com",
        },
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_service(console: Console) -> Iterator[tuple[str, str]]:
    """Start `queue-service serve` on a fresh embedded database with the
    development providers; yields (base URL, JWT key); stops it after."""
    root = Path(tempfile.mkdtemp(prefix="queue-service-demo-"))
    port = _free_port()
    secret = dev_secret(root / "data")
    env = {k: v for k, v in os.environ.items() if k not in PROVIDER_ENV}
    env.update(
        QUEUE_SERVICE_ENV="development",
        QUEUE_SERVICE_DATA_DIR=str(root / "data"),
        QUEUE_SERVICE_OUTBOX_DIR=str(root / "outbox"),
        QUEUE_SERVICE_HOST="127.0.0.1",
        QUEUE_SERVICE_PORT=str(port),
        QUEUE_SERVICE_POLL_INTERVAL_SECONDS="0.2",
        QUEUE_SERVICE_LOG_LEVEL="warning",
    )
    log_path = root / "service.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "queue_service.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        console.print(
            f"[dim]started a local service (pid {proc.pid}) on 127.0.0.1:{port}, "
            f"embedded PostgreSQL and development providers in {root}[/dim]"
        )
        yield f"http://127.0.0.1:{port}", secret
    except BaseException:
        console.print(f"[dim]service log: {log_path}[/dim]")
        raise
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # serve stops its embedded PostgreSQL as it exits.
        if proc.returncode in (0, -signal.SIGTERM):
            shutil.rmtree(root, ignore_errors=True)
        else:
            console.print(f"[yellow]the local service exited {proc.returncode}; log: {log_path}")


class DemoClient:
    def __init__(self, base_url: str, token: str) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={"authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10.0),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def wait_ready(self, within_seconds: float) -> None:
        deadline = time.monotonic() + within_seconds
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                response = await self._http.get("/health/ready")
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
            await asyncio.sleep(0.25)
        raise DemoError(f"the service did not become ready in {within_seconds:g} s ({last})")

    async def enqueue(self, body: dict[str, Any], key: str) -> str:
        response = await self._http.post("/jobs", json={**body, "idempotency_key": key})
        if response.status_code not in (200, 201):
            raise DemoError(f"POST /jobs {body['type']}: {response.status_code} {response.text}")
        return str(response.json()["id"])

    async def job(self, job_id: str) -> dict[str, Any]:
        response = await self._http.get(f"/jobs/{job_id}")
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    async def tally(self) -> Tally:
        tally = Tally()
        for queue in QUEUES:
            for status in ("completed", "failed"):
                async for job in self._pages(queue, status):
                    tally.by_type[(job["type"], status)] += 1
                    tally.retries += max(0, job["attempts"] - 1)
        response = await self._http.get("/queues")
        response.raise_for_status()
        for item in response.json()["items"]:
            if item["name"] in QUEUES:
                c = item["counts"]
                tally.unfinished += c["waiting"] + c["delayed"] + c["active"]
                tally.snoozes_or_waits += c["delayed"]
        return tally

    async def _pages(self, queue: str, status: str) -> AsyncIterator[dict[str, Any]]:
        cursor: str | None = None
        while True:
            params = {"status": status, "limit": "100"}
            if cursor:
                params["cursor"] = cursor
            response = await self._http.get(f"/queues/{queue}/jobs", params=params)
            response.raise_for_status()
            page = response.json()
            for item in page["items"]:
                yield item
            cursor = page["next_cursor"]
            if not cursor:
                return


def transaction_id(payment_job: dict[str, Any]) -> str | None:
    """The charge a refund names, from a completed payment's result."""
    result = payment_job.get("result") or {}
    for key in ("transaction_id", "payment_intent_id", "charge_id"):
        if isinstance(result, dict) and result.get(key):
            return str(result[key])
    return None


async def run_flow(
    client: DemoClient, orders: list[Order], console: Console, within_seconds: float
) -> tuple[Tally, float]:
    started = time.monotonic()
    run = f"{int(time.time())}"
    for order in orders:
        order.payment_id = await client.enqueue(payment_body(order), f"{run}-pay-{order.number}")
        order.fulfil_id = await client.enqueue(fulfil_body(order), f"{run}-ful-{order.number}")
    paid_orders = sum(not o.declines for o in orders)
    columns = (
        TextColumn("{task.description:<13}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bars = {
            "payments": progress.add_task("payments", total=len(orders)),
            "fulfilments": progress.add_task("fulfilments", total=len(orders)),
            "refunds": progress.add_task("refunds", total=sum(o.refund for o in orders)),
            "mints": progress.add_task("mints", total=None),
            "emails": progress.add_task("emails", total=None),
            "webhooks": progress.add_task("webhooks", total=None),
            "analytics": progress.add_task("analytics", total=None),
        }
        quiet = 0
        while True:
            await _refund_paid(client, orders, run)
            tally = await client.tally()
            payments = tally.prefix("payment.") + tally.prefix("payment.", "failed")
            progress.update(bars["payments"], completed=payments)
            progress.update(
                bars["fulfilments"],
                completed=tally.done("order.fulfill") + tally.done("order.fulfill", "failed"),
            )
            progress.update(bars["refunds"], completed=tally.prefix("refund."))
            progress.update(bars["mints"], completed=tally.done("ticket.mint"))
            progress.update(bars["emails"], completed=tally.done("email.send"))
            progress.update(bars["webhooks"], completed=tally.done("webhook.process"))
            progress.update(bars["analytics"], completed=tally.prefix("analytics."))
            settled = payments == len(orders) and all(
                o.refund_id or not o.refund or o.declines for o in orders
            )
            quiet = quiet + 1 if settled and tally.unfinished == 0 else 0
            if quiet >= 2:
                break
            if time.monotonic() - started > within_seconds:
                raise DemoError(
                    f"not finished after {within_seconds:g} s: {tally.unfinished} jobs still"
                    f" waiting or running ({paid_orders} of {len(orders)} orders should be paid)"
                )
            await asyncio.sleep(0.5)
    return tally, time.monotonic() - started


async def _refund_paid(client: DemoClient, orders: list[Order], run: str) -> None:
    for order in orders:
        if not order.refund or order.refund_id or order.payment_id is None:
            continue
        job = await client.job(order.payment_id)
        if job["status"] == "failed":
            order.refund = False  # nothing to refund
            continue
        charge = transaction_id(job) if job["status"] == "completed" else None
        if charge is not None:
            order.refund_id = await client.enqueue(
                refund_body(order, charge), f"{run}-ref-{order.number}"
            )


def summary_table(orders: list[Order], tally: Tally, seconds: float) -> Table:
    table = Table(title="queue-service demo: summary", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    rows = [
        ("orders", len(orders)),
        ("charges", tally.prefix("payment.")),
        ("declined payments (dead-lettered)", tally.prefix("payment.", "failed")),
        ("refunds", tally.prefix("refund.")),
        ("orders fulfilled", tally.done("order.fulfill")),
        ("NFT mints", tally.done("ticket.mint") + tally.done("nft.mint")),
        ("emails", tally.done("email.send")),
        ("webhooks", tally.done("webhook.process")),
        ("analytics events", tally.prefix("analytics.")),
        ("retries", tally.retries),
        ("failed jobs, all types", sum(n for (_, s), n in tally.by_type.items() if s == "failed")),
    ]
    for what, count in rows:
        table.add_row(what, str(count))
    table.add_row("time", f"{seconds:.1f} s")
    return table


async def _run(
    base_url: str,
    token: str,
    orders: list[Order],
    console: Console,
    within_seconds: float,
    sign_in: str,
) -> Tally:
    client = DemoClient(base_url, token)
    try:
        with console.status("waiting for the service to be ready"):
            await client.wait_ready(90)
        console.print(f"dashboard: {base_url}/dashboard/ ({sign_in})")
        tally, seconds = await run_flow(client, orders, console, within_seconds)
        console.print(summary_table(orders, tally, seconds))
        return tally
    finally:
        await client.aclose()


def run_demo(
    settings: Settings, url: str | None, orders: int, timeout: float, console: Console
) -> Tally:
    """Run the flow against ``url`` (signing with the configured key) or a local service."""
    plan = plan_orders(orders)

    def token_for(secret: str, issuer: str | None, audience: str | None) -> str:
        return mint_token(
            secret,
            subject="demo-operator",
            tenant_id=TENANT,
            roles=["admin", "user"],
            ttl_seconds=3600,
            issuer=issuer,
            audience=audience,
        )

    if url is None:
        with local_service(console) as (base_url, secret):
            local = (
                f"while the demo runs; 'Sign in as a local admin' of tenant {TENANT!r} "
                "shows its jobs"
            )
            return asyncio.run(
                _run(base_url, token_for(secret, None, None), plan, console, timeout, local)
            )
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value()
    elif settings.is_development:
        secret = dev_secret(settings.data_dir)
    else:
        raise DemoError(
            "--url needs the service's HS256 key: set JWT_SECRET (or JWT_SECRET_FILE),"
            " or QUEUE_SERVICE_ENV=development to use the development key of this data directory"
        )
    token = token_for(secret, settings.jwt_issuer, settings.jwt_audience)
    remote = f"sign in with a JWT of tenant {TENANT!r}, e.g. from `queue-service token`"
    return asyncio.run(_run(url.rstrip("/"), token, plan, console, timeout, remote))
