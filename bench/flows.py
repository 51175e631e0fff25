"""Benchmark 2: end-to-end dunning throughput, and 3: peak RSS of RevBridge's processes.

Each failed payment goes the production way: seeded in both sandboxes, declined through the
Chargebee client (the sandbox emits the webhook), the webhook service (a subprocess) signals-with-
start the run, the worker (a subprocess) re-fetches, classifies, decides and opens the Salesforce
case, audits it on both sides and waits for payment. A run counts as done at that point: the
history's first timer after the case upsert, i.e. the status query's "waiting for payment".

Floor, same run: a workflow with as many no-op activities as one dunning run schedules up to that
point, in its own worker process, the same number started at once.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from bench import floor
from bench.common import (
    CpuMeter,
    Service,
    Stack,
    bounded,
    median,
    pct,
    vm_hwm_mb,
    wait_for_http,
    wait_for_pollers,
)
from sandbox.framework import free_port
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.pairs import Pair

FLOWS = 40
WARMUP = 3
IDLE = 5
TASK_QUEUE = "bench-flows"
FLOOR_QUEUE = "bench-flows-floor"
#: an SMB customer with an expired card: nothing waits for a person before the case
CUSTOMER = DEMO_CUSTOMERS[0]
DECLINE_THREADS = 8

_SCHEDULED = EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
_WFT_DONE = EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
_TIMER = EventType.EVENT_TYPE_TIMER_STARTED
_WFT_FAILED = EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED


@dataclass
class RunShape:
    """One dunning run's history up to the case: what it cost Temporal."""

    activities: list[str]
    events: int
    workflow_tasks: int
    reached_at: float  # epoch s, server clock: the run waits for payment


def case_point(history: WorkflowHistory) -> RunShape | None:
    activities: list[str] = []
    workflow_tasks = 0
    for e in history.events:
        if e.event_type == _WFT_FAILED:  # a bug, not load: waiting longer will not help
            failure = e.workflow_task_failed_event_attributes.failure.message
            raise RuntimeError(f"{history.workflow_id}: workflow task failed: {failure[:300]}")
        if e.event_type == _SCHEDULED:
            activities.append(e.activity_task_scheduled_event_attributes.activity_type.name)
        elif e.event_type == _WFT_DONE:
            workflow_tasks += 1
        elif e.event_type == _TIMER and "upsert_crm_case" in activities:
            at = e.event_time.seconds + e.event_time.nanos / 1e9
            return RunShape(activities, e.event_id, workflow_tasks, at)
    return None


@dataclass
class Batch:
    seconds: float
    latencies_ms: list[float]
    cpu_s: dict[str, float] = field(default_factory=dict)  # per process, during the batch

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds


@dataclass
class FlowRound:
    dunning: Batch
    floor: Batch
    shapes: list[RunShape]
    billing_calls: int  # vendor API calls RevBridge made (the bench's own declines excluded)
    crm_calls: int
    token_calls: int  # of crm_calls: OAuth token requests
    endpoints: Counter[str] = field(default_factory=Counter)
    cases: list[int] = field(default_factory=list)  # Salesforce cases per invoice

    @property
    def ratio(self) -> float:
        return self.dunning.rate / self.floor.rate


# --- the sandboxes' ledgers ----------------------------------------------------------------------


def ledger(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/_sandbox/requests", timeout=30).raise_for_status().json()["requests"]


def clear_ledgers(stack: Stack) -> None:
    for url in stack.sandbox.urls.values():
        httpx.delete(url + "/_sandbox/requests", timeout=10).raise_for_status()


def ledger_size(stack: Stack) -> int:
    """Cheap, in-process: how many vendor requests both sandboxes have seen."""
    total = 0
    for em in (stack.chargebee, stack.salesforce):
        with em.lock:
            total += len(em.ledger)
    return total


def endpoint(row: dict[str, Any], tag: str) -> str:
    segments = ["{id}" if tag in s or s.startswith("rb-") else s for s in row["path"].split("/")]
    name = f"{row['method']} {'/'.join(segments)}"
    if m := re.search(r"FROM\+(\w+)", row["query"]):
        name += f" (FROM {m.group(1)})"
    return name


def is_decline(row: dict[str, Any]) -> bool:
    return row["method"] == "POST" and row["path"].endswith("/collect_payment")


def cases_per_invoice(pair: Pair, invoices: list[str]) -> list[int]:
    return [len(pair.cases(inv)) for inv in invoices]


# --- one batch of each -------------------------------------------------------------------------


async def case_points(
    client: Client, wf_ids: list[str], services: list[Service], stall_s: float = 60
) -> dict[str, RunShape]:
    """Each run's shape once it reached the case point (histories re-read until it has); gives up
    when no run got there for ``stall_s``."""
    shapes: dict[str, RunShape] = {}

    def job(wf_id: str):  # noqa: ANN202
        async def fetch() -> RunShape | None:
            try:
                return case_point(await client.get_workflow_handle(wf_id).fetch_history())
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:  # the webhook has not arrived yet
                    return None
                raise

        return fetch

    progress = time.monotonic()
    while True:
        pending = [w for w in wf_ids if w not in shapes]
        for wf_id, shape in zip(pending, await bounded(8, [job(w) for w in pending]), strict=True):
            if shape:
                shapes[wf_id] = shape
                progress = time.monotonic()
        if len(shapes) == len(wf_ids):
            return shapes
        for service in services:
            service.check_alive()
        if time.monotonic() - progress > stall_s:
            raise TimeoutError(f"{len(wf_ids) - len(shapes)} dunning runs never opened a case")
        await asyncio.sleep(0.25)


async def wait_for_vendor_calls(stack: Stack, expected: int, within_s: float = 60) -> None:
    """Until the sandboxes saw the calls the batch should make (counted on a warm-up run), or
    stopped seeing any: polling the ledgers costs Temporal nothing, unlike queries."""
    deadline = time.monotonic() + within_s
    last, quiet_since = -1, time.monotonic()
    while (size := ledger_size(stack)) < expected:
        now = time.monotonic()
        if size != last:
            last, quiet_since = size, now
        elif now - quiet_since > 3 or now > deadline:
            return
        await asyncio.sleep(0.05)


async def dunning_batch(
    stack: Stack,
    pair: Pair,
    tag: str,
    n: int,
    calls_per_run: float,
    pids: dict[str, int | None],
    services: list[Service],
) -> tuple[Batch, dict[str, RunShape], list[dict], list[dict], list[str]]:
    customers = tuple(replace(CUSTOMER, key=f"{CUSTOMER.key}{i:03d}") for i in range(n))
    pair.billing_driver.seed(customers, tag)
    pair.crm_driver.seed(customers, tag, "chargebee")
    invoices = [c.ids(tag)["invoice"] for c in customers]
    clear_ledgers(stack)

    cpu = CpuMeter(pids).start()
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(DECLINE_THREADS, thread_name_prefix="decline") as pool:
        await asyncio.gather(
            *(loop.run_in_executor(pool, pair.billing_driver.decline, inv) for inv in invoices)
        )
    await wait_for_vendor_calls(stack, n + int(n * calls_per_run))
    wf_ids = [pair.workflow_id(inv) for inv in invoices]
    shapes = await case_points(stack.client, wf_ids, services)
    cpu.stop()

    billing, crm = ledger(pair.urls["chargebee"]), ledger(pair.urls["salesforce"])
    declined_at = {
        row["path"].split("/")[-2]: row["at"] for row in billing if is_decline(row)
    }  # the vendor's event: the webhook leaves while this request is answered
    starts = [declined_at[inv] for inv in invoices]
    ends = [shapes[w].reached_at for w in wf_ids]
    latencies = [(end - start) * 1000 for start, end in zip(starts, ends, strict=True)]
    batch = Batch(max(ends) - min(starts), latencies, cpu.used)
    return batch, shapes, billing, crm, invoices


async def floor_batch(
    client: Client, tag: str, n: int, activities: int, pids: dict[str, int | None]
) -> Batch:
    async def one(i: int) -> tuple[float, float]:
        t0 = time.time()
        handle = await client.start_workflow(
            floor.WORKFLOW_TYPE, activities, id=f"bench-floor-{tag}-{i:03d}", task_queue=FLOOR_QUEUE
        )
        await handle.result()
        desc = await handle.describe()
        assert desc.close_time is not None
        return t0, desc.close_time.timestamp()

    cpu = CpuMeter(pids).start()
    spans = await asyncio.gather(*(one(i) for i in range(n)))
    cpu.stop()
    latencies = [(end - start) * 1000 for start, end in spans]
    return Batch(max(e for _, e in spans) - min(s for s, _ in spans), latencies, cpu.used)


# --- the benchmark -----------------------------------------------------------------------------


@dataclass
class FlowsResult:
    rounds: list[FlowRound]
    warmup: list[RunShape]
    rss_mb: dict[str, float | None]
    idle: Batch  # one flow at a time: latency without queueing
    idle_floor: Batch


async def run(
    stack: Stack, rounds: int = 3, n: int = FLOWS, idle: int = IDLE, budget_s: float = 150
) -> FlowsResult:
    """``rounds`` burst rounds (fewer once ``budget_s`` is spent), then ``idle`` flows one by one."""
    began = time.monotonic()
    port = free_port()
    env = stack.stack_config(TASK_QUEUE, port).service_env()
    webhook_url = f"http://127.0.0.1:{port}"
    services = [
        Service("webhooks", ["-m", "cli.main", "webhooks", "--port", str(port)], env, stack.logs),
        Service("worker", ["-m", "cli.main", "worker"], env, stack.logs),
        Service(
            "floor-worker",
            ["-c", "from bench.floor import main; main()", stack.temporal_address, FLOOR_QUEUE],
            {},
            stack.logs,
        ),
    ]
    hooks, worker, floor_worker = services
    try:
        await wait_for_http(webhook_url + "/healthz", hooks)
        await wait_for_pollers(stack.client, TASK_QUEUE, worker)
        await wait_for_pollers(stack.client, FLOOR_QUEUE, floor_worker)
        pair = Pair.build(stack.settings(TASK_QUEUE), stack.urls, webhook_url)
        pair.route_billing_webhooks_here()
        server, bench = stack.server_pid(), os.getpid()
        dunning_pids = {
            "temporal_server": server,
            "worker": worker.proc.pid,
            "webhooks": hooks.proc.pid,
            "bench+sandboxes": bench,
        }
        floor_pids = {
            "temporal_server": server,
            "floor_worker": floor_worker.proc.pid,
            "bench+sandboxes": bench,
        }

        # warm-up: connections, tokens, caches; and what one run costs, to size the floor
        _, warm, billing, crm, _ = await dunning_batch(
            stack, pair, "warm", WARMUP, 0, dunning_pids, services
        )
        warmup = list(warm.values())
        activities = round(median([len(s.activities) for s in warmup]))
        calls = sum(1 for r in billing + crm if not is_decline(r) and "oauth2" not in r["path"])
        calls_per_run = calls / WARMUP
        await floor_batch(stack.client, "warm", WARMUP, activities, floor_pids)

        results: list[FlowRound] = []
        for r in range(rounds):
            if results and time.monotonic() - began > budget_s:
                break  # a slow machine: fewer rounds, still under make bench's time limit
            tag = f"r{r}"
            if r % 2:
                fl = await floor_batch(stack.client, tag, n, activities, floor_pids)
            batch, shapes, billing, crm, invoices = await dunning_batch(
                stack, pair, tag, n, calls_per_run, dunning_pids, services
            )
            if not r % 2:
                fl = await floor_batch(stack.client, tag, n, activities, floor_pids)
            own = [row for row in billing if not is_decline(row)]
            result = FlowRound(
                dunning=batch,
                floor=fl,
                shapes=list(shapes.values()),
                billing_calls=len(own),
                crm_calls=len(crm),
                token_calls=sum("oauth2" in row["path"] for row in crm),
                endpoints=Counter(endpoint(row, tag) for row in own + crm),
            )
            result.cases = await asyncio.to_thread(cases_per_invoice, pair, invoices)
            results.append(result)

        one, one_floor = [], []
        for i in range(idle):
            batch, *_ = await dunning_batch(stack, pair, f"idle{i}", 1, calls_per_run, {}, services)
            one.append(batch)
            one_floor.append(await floor_batch(stack.client, f"idle{i}", 1, activities, {}))
        for s in services:
            s.check_alive()
        rss = {
            "worker": worker.peak_rss_mb(),
            "webhooks": hooks.peak_rss_mb(),
            "floor_worker": floor_worker.peak_rss_mb(),
            "temporal_server": vm_hwm_mb(server) if server else None,
        }
        return FlowsResult(results, warmup, rss, _joined(one), _joined(one_floor))
    finally:
        for s in services:
            s.stop()


def summarize(result: FlowsResult) -> dict[str, Any]:
    rounds = result.rounds
    shapes = [s for r in rounds for s in r.shapes]
    flows = len(shapes)
    dunning = [x for r in rounds for x in r.dunning.latencies_ms]
    floor_lat = [x for r in rounds for x in r.floor.latencies_ms]
    endpoints: Counter[str] = Counter()
    for r in rounds:
        endpoints.update(r.endpoints)
    activity_types = Counter(a for s in shapes for a in s.activities)
    return {
        "rounds": len(rounds),
        "flows": flows,
        "flows_per_s": median([r.dunning.rate for r in rounds]),
        "p50_ms": pct(dunning, 50),
        "p99_ms": pct(dunning, 99),
        "floor_per_s": median([r.floor.rate for r in rounds]),
        "floor_p50_ms": pct(floor_lat, 50),
        "floor_p99_ms": pct(floor_lat, 99),
        "ratio": median([r.ratio for r in rounds]),
        "per_round": [(r.dunning.rate, r.floor.rate, r.ratio) for r in rounds],
        "idle_p50_ms": pct(result.idle.latencies_ms, 50),
        "idle_floor_p50_ms": pct(result.idle_floor.latencies_ms, 50),
        "floor_activities": round(median([len(s.activities) for s in result.warmup])),
        "activities_per_run": sum(len(s.activities) for s in shapes) / flows,
        "events_per_run": sum(s.events for s in shapes) / flows,
        "workflow_tasks_per_run": sum(s.workflow_tasks for s in shapes) / flows,
        "activity_types": {k: v / flows for k, v in activity_types.items()},
        "billing_calls_per_run": sum(r.billing_calls for r in rounds) / flows,
        "crm_calls_per_run": sum(r.crm_calls for r in rounds) / flows,
        "token_calls": sum(r.token_calls for r in rounds),
        "endpoints_per_run": {k: v / flows for k, v in sorted(endpoints.items())},
        "cases_ok": all(c == 1 for r in rounds for c in r.cases),
        "cases": sum(sum(r.cases) for r in rounds),
        "rss_mb": result.rss_mb,
        "cpu_ms_per_flow": _cpu_per_flow([r.dunning for r in rounds]),
        "floor_cpu_ms_per_flow": _cpu_per_flow([r.floor for r in rounds]),
    }


def _cpu_per_flow(batches: list[Batch]) -> dict[str, float]:
    flows = sum(len(b.latencies_ms) for b in batches)
    total: Counter[str] = Counter()
    for b in batches:
        total.update(b.cpu_s)
    return {name: seconds * 1000 / flows for name, seconds in total.items()}


def _joined(batches: list[Batch]) -> Batch:
    return Batch(sum(b.seconds for b in batches), [x for b in batches for x in b.latencies_ms], {})
