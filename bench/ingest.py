"""Benchmark 1: webhook ingest. Chargebee ``payment_failed`` webhooks over real HTTP into the webhook
service (uvicorn in a background thread), a fifth of them redeliveries of earlier events, no worker
running; then every distinct invoice must have exactly one dunning workflow.

Floor, same run: raw ``client.start_workflow`` calls, same count and concurrency, for a workflow type
nothing implements (a start needs no worker)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bench.common import Stack, bounded, median, pct
from domain.ids import dunning_workflow_id
from sandbox.framework import App, ServerThread
from tests.webhooks.helpers import basic, payment_failed
from webhooks.app import TemporalConnection, create_app

DELIVERIES = 300
DUPLICATE_SHARE = 0.2
CONCURRENCY = 16
WARMUP = 16
#: the webhook service starts dunning runs here; nothing polls it (ingest only)
TASK_QUEUE = "bench-ingest"
#: the floor's starts go here, for a type registered nowhere
FLOOR_QUEUE = "bench-ingest-floor"
FLOOR_TYPE = "BenchNeverRuns"


@dataclass
class Timed:
    seconds: float
    latencies_ms: list[float]

    @property
    def calls(self) -> int:
        return len(self.latencies_ms)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


@dataclass
class IngestRound:
    webhooks: Timed
    floor: Timed
    distinct: int
    statuses: Counter[str] = field(default_factory=Counter)
    workflows: int = 0  # dunning executions visibility lists for the round's invoices
    missing: int = 0  # distinct invoices without a workflow
    extra_runs: int = 0  # executions beyond one per invoice

    @property
    def ratio(self) -> float:
        return self.webhooks.rate / self.floor.rate


def deliveries(
    tag: str, n: int, rng: random.Random, dup_share: float = DUPLICATE_SHARE
) -> tuple[list[str], list[bytes]]:
    """``n`` deliveries: distinct events in order, with redeliveries of events already sent mixed in
    (byte-identical, as a vendor retries)."""
    dups = round(n * dup_share)
    invoices = [f"INV-{tag}-{i:04d}" for i in range(n - dups)]
    bodies = [payment_failed(inv, f"cust-{tag}-{i:04d}") for i, inv in enumerate(invoices)]
    dup_slots = set(rng.sample(range(2 * CONCURRENCY, n), dups))
    out, sent = [], 0
    for slot in range(n):
        if slot in dup_slots:
            out.append(bodies[rng.randrange(sent)])
        else:
            out.append(bodies[sent])
            sent += 1
    return invoices, out


async def post_all(
    http: httpx.AsyncClient, url: str, bodies: list[bytes], statuses: Counter[str]
) -> Timed:
    headers = {**basic(), "Content-Type": "application/json"}

    def job(body: bytes):  # noqa: ANN202
        async def post() -> float:
            t0 = time.perf_counter()
            resp = await http.post(url, content=body, headers=headers)
            elapsed = (time.perf_counter() - t0) * 1000
            status = resp.json().get("status", "?") if resp.is_success else resp.text[:60]
            statuses[f"{resp.status_code} {status}"] += 1
            return elapsed

        return post

    t0 = time.perf_counter()
    latencies = await bounded(CONCURRENCY, [job(b) for b in bodies])
    return Timed(time.perf_counter() - t0, latencies)


async def raw_starts(client: Client, tag: str, n: int) -> Timed:
    def job(i: int):  # noqa: ANN202
        async def start() -> float:
            t0 = time.perf_counter()
            await client.start_workflow(FLOOR_TYPE, id=f"{tag}-{i:04d}", task_queue=FLOOR_QUEUE)
            return (time.perf_counter() - t0) * 1000

        return start

    t0 = time.perf_counter()
    latencies = await bounded(CONCURRENCY, [job(i) for i in range(n)])
    return Timed(time.perf_counter() - t0, latencies)


async def verify(client: Client, tag: str, invoices: list[str], result: IngestRound) -> None:
    """Zero loss: every invoice's workflow exists. Zero duplicates: visibility lists exactly one
    execution per invoice (a second run of the same ID would be a second row)."""

    def job(invoice: str):  # noqa: ANN202
        async def describe() -> bool:
            try:
                await client.get_workflow_handle(
                    dunning_workflow_id("chargebee", invoice)
                ).describe()
                return True
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    return False
                raise

        return describe

    found = await bounded(CONCURRENCY, [job(inv) for inv in invoices])
    result.missing = found.count(False)
    query = f'WorkflowType = "DunningWorkflow" AND WorkflowId STARTS_WITH "dunning:chargebee:INV-{tag}-"'
    deadline = time.monotonic() + 20  # visibility is eventually consistent
    while True:
        result.workflows = (await client.count_workflows(query)).count
        if result.workflows >= len(invoices) - result.missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # a late duplicate would show up here
    result.workflows = (await client.count_workflows(query)).count
    result.extra_runs = max(0, result.workflows - (len(invoices) - result.missing))


async def run(stack: Stack, rounds: int = 3, n: int = DELIVERIES) -> list[IngestRound]:
    import os

    # the webhook service's own connection (its own loop) finds the server through env-config
    os.environ["TEMPORAL_ADDRESS"] = stack.temporal_address
    settings = stack.settings(TASK_QUEUE)
    app = App("webhooks", create_app(settings, client=TemporalConnection()))
    rng = random.Random(20261127)
    results = []
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    with ServerThread({app: 0}) as thread:
        url = thread.urls["webhooks"] + "/webhooks/chargebee"
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            # warm both paths: the service's Temporal connection, keep-alive connections
            _, warm = deliveries("ingest-warm", WARMUP, rng, dup_share=0)
            await post_all(http, url, warm, Counter())
            await raw_starts(stack.client, "bench-raw-warm", WARMUP)
            for r in range(rounds):
                tag = f"ingest-r{r}"
                invoices, bodies = deliveries(tag, n, rng)
                # alternate which goes first, so neither always meets the fresher server
                if r % 2 == 0:
                    floor = await raw_starts(stack.client, f"bench-raw-r{r}", n)
                    statuses: Counter[str] = Counter()
                    hooks = await post_all(http, url, bodies, statuses)
                else:
                    statuses = Counter()
                    hooks = await post_all(http, url, bodies, statuses)
                    floor = await raw_starts(stack.client, f"bench-raw-r{r}", n)
                result = IngestRound(hooks, floor, len(invoices), statuses)
                await verify(stack.client, tag, invoices, result)
                results.append(result)
    return results


def summarize(results: list[IngestRound]) -> dict[str, Any]:
    hooks = [x for r in results for x in r.webhooks.latencies_ms]
    floor = [x for r in results for x in r.floor.latencies_ms]
    return {
        "rounds": len(results),
        "deliveries": sum(r.webhooks.calls for r in results),
        "distinct": sum(r.distinct for r in results),
        "webhooks_per_s": median([r.webhooks.rate for r in results]),
        "p50_ms": pct(hooks, 50),
        "p99_ms": pct(hooks, 99),
        "floor_per_s": median([r.floor.rate for r in results]),
        "floor_p50_ms": pct(floor, 50),
        "floor_p99_ms": pct(floor, 99),
        "ratio": median([r.ratio for r in results]),
        "per_round": [(r.webhooks.rate, r.floor.rate, r.ratio) for r in results],
        "statuses": dict(sum((r.statuses for r in results), Counter())),
        "workflows": sum(r.workflows for r in results),
        "missing": sum(r.missing for r in results),
        "extra_runs": sum(r.extra_runs for r in results),
    }
