"""Many hosts on one machine: 2 API hosts, 3 worker hosts, a database host and
a client host, each a network namespace on one bridge (tests/support/netns.py,
decision 0021). Every process is a real `queue-service` process inside its
host; the workers and APIs reach PostgreSQL only at its host's address, so
unplugging a worker host's cable really cuts it from the database. The test
process watches through the database's Unix socket, which no cable cut
touches.

The job type is `test.sleep` (tests/support/processors.py): a 2 s lease,
heartbeats every third of it, and a `test_ledger` row written in the
transaction that completes the job. The ledger has no unique key on purpose:
a second effect of one job would show as a second row, never as an error.
So "each job's effect counted once" is "exactly one ledger row per job".

Rescue is a leader duty. Today only `serve` runs the leader duties, so host
w1 runs `serve` (its workers, the leader, and an API nobody calls) and the
faults hit w2 and w3. Nothing here depends on which process leads: the
database drops an unreachable client within seconds (NamespacedPostgres), so
a cut leader loses its advisory lock too, and once `worker` processes are
leader candidates every worker host may run `worker` (WORKER_HOSTS below).
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import orjson
import psycopg
import pytest

from queue_service.store.databases import create_database, drop_database
from queue_service.store.migrate import apply_migrations
from tests.support.netns import (
    HostProcess,
    NamespacedPostgres,
    Network,
    missing_requirement,
    queue_service,
    service_env,
)
from tests.support.processes import TEST_JWT_SECRET
from tests.support.processors import LEDGER_DDL

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_requirement() is not None, reason=str(missing_requirement())),
]

HMAC_SECRET = "multihost-hmac-secret-0123456789abcdef-0123456789"
API_HOSTS = ("api1", "api2")
# The command each worker host runs. w1 runs `serve` for the leader duties
# (rescue) until `worker` processes are leader candidates.
WORKER_HOSTS = {"w1": "serve", "w2": "worker", "w3": "worker"}
LEASE_SECONDS = 2.0  # test.sleep's lease (tests/support/processors.py)

T = TypeVar("T")


def wait_for(probe: Callable[[], T], *, timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


@dataclass
class Site:
    """The machine room: the network, its hosts and the database server."""

    net: Network
    pg: NamespacedPostgres
    template: str


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with Network() as net:
        db = net.add_host("db")
        for label in (*API_HOSTS, *WORKER_HOSTS, "client"):
            net.add_host(label)
        pg = NamespacedPostgres(db)
        try:
            template = f"qs_mh_tpl_{secrets.token_hex(4)}"
            url = create_database(pg.admin_url, template)
            apply_migrations(url)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(LEDGER_DDL)
            yield Site(net, pg, template)
        finally:
            pg.close()


@dataclass
class Cluster:
    site: Site
    dbname: str
    procs: dict[str, HostProcess] = field(default_factory=dict)
    loads: list[HostProcess] = field(default_factory=list)

    def observe(self) -> psycopg.Connection[tuple[object, ...]]:
        """The test's own connection, through the Unix socket."""
        return psycopg.connect(self.site.pg.local_url(self.dbname), autocommit=True)

    def api_urls(self) -> list[str]:
        return [f"http://{self.site.net.hosts[h].address}:8080" for h in API_HOSTS]

    def start_load(
        self, jobs: int, seconds: float, *, batch: int, pause: float, tag: str = "load"
    ) -> HostProcess:
        """The client host enqueues through both API hosts in turn."""
        args = [sys.executable, "-m", "tests.multihost.client", "--secret", HMAC_SECRET]
        args += ["--tag", tag]
        for url in self.api_urls():
            args += ["--api", url]
        args += ["--jobs", str(jobs), "--seconds", str(seconds), "--batch", str(batch)]
        args += ["--pause", str(pause)]
        env = service_env("", Path(tempfile.gettempdir()))
        load = self.site.net.hosts["client"].start("client", args, env)
        self.loads.append(load)
        return load

    def active_on(self, host: str) -> list[str]:
        with self.observe() as conn:
            rows = conn.execute(
                "SELECT id::text FROM jobs WHERE status = 'active' AND worker_id = %s", (host,)
            ).fetchall()
        return [str(r[0]) for r in rows]

    def unfinished(self) -> int:
        with self.observe() as conn:
            row = conn.execute("SELECT count(*) FROM jobs").fetchone()
        assert row is not None
        return int(str(row[0]))


def enqueued_ids(load: HostProcess, timeout: float = 60.0) -> list[str]:
    code = load.proc.wait(timeout)
    load.stop()
    assert code == 0, load.logs()
    report = orjson.loads(load.logs().strip().splitlines()[-1])
    assert all(n > 0 for n in report["per_api"].values()), report["per_api"]
    return [str(i) for i in report["ids"]]


def started_or_ended(proc: HostProcess) -> Callable[[], bool]:
    return lambda: "worker started" in proc.logs() or proc.proc.poll() is not None


@pytest.fixture
def cluster(site: Site) -> Iterator[Cluster]:
    """Fresh database; `api` on both API hosts, the worker hosts' commands, all
    started in parallel and waited for; every process killed afterwards (their
    logs printed: pytest shows them when the test fails)."""
    dbname = f"qs_mh_{secrets.token_hex(4)}"
    create_database(site.pg.admin_url, dbname, template=site.template)
    cluster = Cluster(site, dbname)
    data = Path(tempfile.mkdtemp(prefix="qs-mh-data-"))
    try:
        for label in API_HOSTS:
            host = site.net.hosts[label]
            env = service_env(
                site.pg.url(dbname),
                data / label,
                QUEUE_SERVICE_HOST=host.address,
                QUEUE_SERVICE_PORT="8080",
                JWT_SECRET=TEST_JWT_SECRET,
                INTERNAL_HMAC_SECRET=HMAC_SECRET,
            )
            cluster.procs[label] = host.start("api", queue_service("api"), env)
        for label, command in WORKER_HOSTS.items():
            host = site.net.hosts[label]
            env = service_env(
                site.pg.url(dbname),
                data / label,
                QUEUE_SERVICE_WORKER_ID=label,
                QUEUE_SERVICE_HOST=host.address,
                QUEUE_SERVICE_PORT="8080",
                JWT_SECRET=TEST_JWT_SECRET,
                INTERNAL_HMAC_SECRET=HMAC_SECRET,
            )
            args = ("serve",) if command == "serve" else (command, "--queues", "test")
            cluster.procs[label] = host.start(command, queue_service(*args), env)
        for label in WORKER_HOSTS:
            proc = cluster.procs[label]
            wait_for(started_or_ended(proc), timeout=60, what=f"{label} to start")
            assert proc.proc.poll() is None, proc.logs()
        yield cluster
    finally:
        for label, proc in cluster.procs.items():
            code = proc.stop()
            print(f"----- {label}: {proc.label} (pid {proc.pid}, exit {code}) -----")
            print(proc.logs())
            proc.log_path.unlink(missing_ok=True)
        for load in cluster.loads:
            load.stop()
            load.log_path.unlink(missing_ok=True)
        shutil.rmtree(data, ignore_errors=True)
        drop_database(site.pg.admin_url, dbname)


def effects(cluster: Cluster) -> dict[str, list[tuple[int, str]]]:
    """Every job's committed effects: (attempt, worker) per ledger row."""
    found: dict[str, list[tuple[int, str]]] = {}
    with cluster.observe() as conn:
        for job_id, attempt, worker in conn.execute(
            "SELECT job_id::text, attempt, worker_id FROM test_ledger ORDER BY at"
        ):
            found.setdefault(str(job_id), []).append((int(str(attempt)), str(worker)))
    return found


def statuses(cluster: Cluster, ids: list[str]) -> dict[str, str]:
    with cluster.observe() as conn:
        rows = conn.execute(
            "SELECT id::text, status FROM finished_jobs WHERE id = ANY(%s::uuid[])", (ids,)
        ).fetchall()
    return {str(i): str(s) for i, s in rows}


def events(cluster: Cluster, job_id: str) -> list[tuple[str, str | None]]:
    with cluster.observe() as conn:
        rows = conn.execute(
            "SELECT event, worker_id FROM job_events WHERE job_id = %s ORDER BY id", (job_id,)
        ).fetchall()
    return [(str(e), None if w is None else str(w)) for e, w in rows]


def assert_each_effect_once(cluster: Cluster, ids: list[str]) -> None:
    """Nothing lost (every job completed) and nothing doubled (one effect each)."""
    assert len(set(ids)) == len(ids)
    done = statuses(cluster, ids)
    assert sorted(done) == sorted(ids), f"{len(ids) - len(done)} jobs never finished"
    assert set(done.values()) == {"completed"}
    found = effects(cluster)
    doubled = {j: rows for j, rows in found.items() if len(rows) != 1}
    assert not doubled, f"jobs with more than one effect: {doubled}"
    assert sorted(found) == sorted(ids)


def test_a_killed_worker_host_loses_nothing_and_its_jobs_are_rescued_once(
    cluster: Cluster,
) -> None:
    load = cluster.start_load(240, 0.3, batch=20, pause=0.2)
    held = wait_for(
        lambda: len(cluster.active_on("w2")) >= 3 and cluster.active_on("w2"),
        timeout=60,
        what="w2 to hold jobs",
    )
    assert held

    victim = cluster.site.net.hosts["w2"]
    killed = victim.kill_every_process()
    assert cluster.procs["w2"].pid in killed
    cluster.procs["w2"].proc.wait(10)
    orphans = cluster.active_on("w2")  # claimed by w2, now held by nobody
    assert orphans

    ids = enqueued_ids(load)
    assert set(orphans) <= set(ids)
    wait_for(lambda: cluster.unfinished() == 0, timeout=60, what="the backlog to drain")

    assert_each_effect_once(cluster, ids)
    found = effects(cluster)
    for job_id in orphans:
        history = events(cluster, job_id)
        assert [e for e, _ in history].count("rescued") == 1, history
        assert history[-1][0] == "completed" and history[-1][1] in ("w1", "w3"), history
        assert found[job_id][0][1] != "w2"


def test_a_cut_off_worker_host_s_jobs_are_rescued_and_its_late_completions_fenced(
    cluster: Cluster,
) -> None:
    # Jobs long enough that w3 is mid-handler when its cable goes, short
    # enough that its handlers end (and try to complete) while still cut off.
    load = cluster.start_load(60, 1.5, batch=10, pause=0.0)
    wait_for(lambda: len(cluster.active_on("w3")) >= 3, timeout=60, what="w3 to hold jobs")
    w3 = cluster.site.net.hosts["w3"]
    w3.cut()
    cut_at = time.monotonic()
    held = cluster.active_on("w3")
    assert held

    # The cut outlasts the lease several times over: the others rescue and
    # complete w3's jobs while w3's own completions cannot reach the database.
    def rescued_elsewhere() -> bool:
        done = statuses(cluster, held)
        return len(done) == len(held)

    wait_for(rescued_elsewhere, timeout=30, what="w3's jobs to be completed elsewhere")
    outage = 4 * LEASE_SECONDS
    time.sleep(max(0.0, outage - (time.monotonic() - cut_at)))
    found = effects(cluster)
    assert all(found[j][0][1] != "w3" for j in held), {j: found.get(j) for j in held}
    w3.plug()

    ids = enqueued_ids(load)
    wait_for(lambda: cluster.unfinished() == 0, timeout=60, what="the backlog to drain")

    # w3, back on the network, learns its leases are gone: its late
    # heartbeats or completions are refused by the lease-token fence.
    def fenced() -> set[str]:
        lost = [line for line in cluster.procs["w3"].logs().splitlines() if "lease lost" in line]
        return {j for j in held if not any(j in line for line in lost)}

    def settled() -> bool:
        doubled = any(len(effects(cluster).get(j, [])) > 1 for j in held)
        return doubled or not fenced()

    wait_for(settled, timeout=30, what="w3's late outcomes (fenced off, or a second effect)")
    assert_each_effect_once(cluster, ids)
    assert not fenced()
    found = effects(cluster)
    for job_id in held:
        assert found[job_id][0][1] in ("w1", "w2"), found[job_id]
        history = events(cluster, job_id)
        assert [e for e, _ in history].count("rescued") == 1, history
        assert ("completed", "w3") not in history
    assert cluster.procs["w3"].proc.poll() is None, "a cut-off worker must survive the outage"

    # And it works again: its pools reconnect and it takes its share of new jobs.
    more = enqueued_ids(cluster.start_load(45, 0.5, batch=15, pause=0.0, tag="after"))
    wait_for(
        lambda: any(rows[0][1] == "w3" for j, rows in effects(cluster).items() if j in more),
        timeout=30,
        what="w3 to complete a job after the outage",
    )
    wait_for(lambda: cluster.unfinished() == 0, timeout=60, what="the new jobs to drain")
    assert_each_effect_once(cluster, ids + more)
