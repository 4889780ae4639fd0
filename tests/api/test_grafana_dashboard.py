"""deploy/grafana/queue-service.json: the SPEC's panels, and every PromQL
expression in it names only metrics a running service exports."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from queue_service.runtime.attempt_metrics import MetricsHook
from queue_service.runtime.manager import EnqueueRequest
from queue_service.runtime.worker import Worker
from tests.api.conftest import TENANT, Api
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "queue-service.json"
SPEC_PANELS = (
    "Queue depth: waiting vs active",
    "Processing rate: completed/s vs failed/s",
    "Failure rate %",
    "Rate-limiter tokens",
    "Idempotency hit rate",
    "Worker concurrency: slots in use vs max",
    "Circuit-breaker states",
    "Job duration p95",
)
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset"}


def expressions(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            # label_values(metric, label): only the metric is a metric name.
            exprs.append(re.sub(r",\s*\w+\)$", ")", query["query"]))
    return exprs


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (no parser is a dependency:
    strip what cannot be a metric, then take identifiers not called)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"(?<![\w$])\d+(?:\.\d+)?(?:e[-+]?\d+)?", "", text)
    return {
        m.group()
        for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text)
        if not text[m.end() :].lstrip().startswith("(") and m.group() not in PROMQL_WORDS
    }


def exported(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names.update(f"{family.name}_{s}" for s in ("bucket", "sum", "count"))
    return names


async def run_a_few_jobs(api: Api) -> None:
    runtime = api.runtime
    queue = runtime.registry.queue("test")
    worker = Worker(
        runtime.manager,
        [queue],
        deps=runtime.deps,
        hooks=[MetricsHook([queue])],
        listen_conninfo=runtime.conninfo,
        poll_interval=0.1,
        grace_seconds=2,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        for i in range(3):
            await runtime.manager.enqueue(
                EnqueueRequest(
                    type="test.echo", data={"value": i}, tenant_id=TENANT, idempotency_key=f"k{i}"
                )
            )
        await runtime.manager.enqueue(
            EnqueueRequest(type="test.fail", data={"mode": "permanent"}, tenant_id=TENANT)
        )

        async def done() -> bool:
            return int(api.sql("SELECT count(*) FROM finished_jobs")[0][0]) == 4

        await eventually(done, what="the jobs finished")
    finally:
        stop.set()
        await task


def test_the_dashboard_has_the_spec_panels_each_with_a_query() -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    titles = [p["title"] for p in dashboard["panels"]]

    for title in SPEC_PANELS:
        assert title in titles
    assert all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in dashboard["panels"])
    assert len({p["id"] for p in dashboard["panels"]}) == len(titles)


def test_the_metric_name_extraction_sees_names_not_functions_or_labels() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, queue) (rate(x_bucket{queue=~"$queue"}'
        "[$__rate_interval]))) / clamp_min(y_total + 2 * z, 1e-9)"
    )

    assert metric_names(expr) == {"x_bucket", "y_total", "z"}


async def test_every_dashboard_expression_names_only_metrics_the_service_exports(
    api: Api,
) -> None:
    await run_a_few_jobs(api)
    response = await api.client.get("/metrics")
    names = exported(response.text)
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))

    used = set().union(*(metric_names(e) for e in expressions(dashboard)))

    assert used, "no metric names found in the dashboard"
    assert used - names == set(), f"the dashboard reads metrics nobody exports: {used - names}"
    assert "queue_job_processing_duration_seconds_bucket" in used
