"""Benchmark 2: end-to-end dunning throughput, and 3: peak RSS of RevBridge's processes.

Each failed payment goes the production way: seeded in both sandboxes, declined through the
Chargebee client (the sandbox emits the webhook), the webhook service (a subprocess) signals-with-
start the run, the worker (a subprocess) re-fetches, classifies, decides and opens the Salesforce
case, audits it on both sides, sends day 0's reminder and waits for payment; the run hands the
failure to the customer's churn intervention, which scores the customer and closes or waits. A
payment counts as done when both workflows it caused reached their first durable wait (or
closed): the dunning history's first timer after the case upsert, the churn run's first timer.
Webhook → case is measured to the case's creation (the CRM request that wrote it, in the
Salesforce sandbox's ledger), not to the first timer.

Floor, same run: per payment as many workflows as a payment causes (dunning + churn), each with as
many no-op activities and local activities as the real one schedules up to that point, in a worker
process of its own with the same worker settings (bench/floor.py), the same number started at once.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
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
from domain.ids import churn_workflow_id
from sandbox.framework import free_port
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.pairs import Pair
from workers.bytecode import compile_sources

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
_MARKER = EventType.EVENT_TYPE_MARKER_RECORDED
_CLOSED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
}


@dataclass
class RunShape:
    """One dunning run's history up to the case: what it cost Temporal."""

    activities: list[str]
    events: int
    workflow_tasks: int
    reached_at: float  # epoch s, server clock: the run waits for payment
    local: int = 0  # local activities (markers): decisions, assessment, playbook, draft, handoff


def _walk(history: WorkflowHistory, done: Callable[[Any, list[str]], bool]) -> RunShape | None:
    activities: list[str] = []
    workflow_tasks = local = 0
    for e in history.events:
        if e.event_type == _WFT_FAILED:  # a bug, not load: waiting longer will not help
            failure = e.workflow_task_failed_event_attributes.failure.message
            raise RuntimeError(f"{history.workflow_id}: workflow task failed: {failure[:300]}")
        if e.event_type == _SCHEDULED:
            activities.append(e.activity_task_scheduled_event_attributes.activity_type.name)
        elif e.event_type == _WFT_DONE:
            workflow_tasks += 1
        elif e.event_type == _MARKER:
            local += e.marker_recorded_event_attributes.marker_name == "core_local_activity"
        if done(e, activities):
            at = e.event_time.seconds + e.event_time.nanos / 1e9
            return RunShape(activities, e.event_id, workflow_tasks, at, local)
    return None


def case_point(history: WorkflowHistory) -> RunShape | None:
    """The dunning run at its first timer after the case upsert."""
    return _walk(history, lambda e, acts: e.event_type == _TIMER and "upsert_crm_case" in acts)


def first_wait(history: WorkflowHistory) -> RunShape | None:
    """Any run (the churn intervention) at its first timer, or closed."""
    return _walk(history, lambda e, _: e.event_type == _TIMER or e.event_type in _CLOSED)


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
    churn: list[RunShape]
    case_ms: list[float]  # webhook → case created (the CRM request that wrote it)
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


#: a Salesforce record ID (15 or 18 characters, with digits) in a path
_SF_ID = re.compile(r"(?=[0-9A-Za-z]*[0-9])[0-9A-Za-z]{15}(?:[0-9A-Za-z]{3})?")


def endpoint(row: dict[str, Any], tag: str) -> str:
    segments = [
        "{id}" if tag in s or s.startswith("rb-") or _SF_ID.fullmatch(s) else s
        for s in row["path"].split("/")
    ]
    name = f"{row['method']} {'/'.join(segments)}"
    if m := re.search(r"FROM\+(\w+)", row["query"]):
        name += f" (FROM {m.group(1)})"
    return name


def is_decline(row: dict[str, Any]) -> bool:
    return row["method"] == "POST" and row["path"].endswith("/collect_payment")


def is_case_write(row: dict[str, Any]) -> bool:
    """The Salesforce request that writes a case (its upsert, or a composite carrying it)."""
    return row["method"] in ("POST", "PATCH") and (
        "/sobjects/Case/" in row["path"] or row["path"].endswith("/composite")
    )


def case_created_at(crm: list[dict[str, Any]], invoice: str) -> float | None:
    """When the case for ``invoice`` was written: the first case write naming it."""
    times = [r["at"] for r in crm if is_case_write(r) and invoice in (r.get("body") or "")]
    return min(times) if times else None


def cases_per_invoice(pair: Pair, invoices: list[str]) -> list[int]:
    return [len(pair.cases(inv)) for inv in invoices]


# --- one batch of each -------------------------------------------------------------------------


async def case_points(
    client: Client,
    wf_ids: list[str],
    services: list[Service],
    stall_s: float = 60,
    point: Callable[[WorkflowHistory], RunShape | None] = case_point,
) -> dict[str, RunShape]:
    """Each run's shape once it reached ``point`` (histories re-read until it has); gives up
    when no run got there for ``stall_s``."""
    shapes: dict[str, RunShape] = {}

    def job(wf_id: str):  # noqa: ANN202
        async def fetch() -> RunShape | None:
            try:
                return point(await client.get_workflow_handle(wf_id).fetch_history())
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
            raise TimeoutError(f"{len(wf_ids) - len(shapes)} runs never reached their point")
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
    with_churn: bool = False,
) -> tuple[
    Batch, dict[str, RunShape], dict[str, RunShape], list[dict], list[dict], list[str], list[float]
]:
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
    churn_ids = [churn_workflow_id("chargebee", c.ids(tag)["customer"]) for c in customers]
    churn: dict[str, RunShape] = {}
    if with_churn:
        churn = await case_points(stack.client, churn_ids, services, point=first_wait)
    cpu.stop()

    billing, crm = ledger(pair.urls["chargebee"]), ledger(pair.urls["salesforce"])
    declined_at = {
        row["path"].split("/")[-2]: row["at"] for row in billing if is_decline(row)
    }  # the vendor's event: the webhook leaves while this request is answered
    starts = [declined_at[inv] for inv in invoices]
    ends = [
        max(shapes[w].reached_at, churn[c].reached_at if c in churn else 0)
        for w, c in zip(wf_ids, churn_ids, strict=True)
    ]
    latencies = [(end - start) * 1000 for start, end in zip(starts, ends, strict=True)]
    case_ms = [
        ((case_created_at(crm, inv) or math.nan) - declined_at[inv]) * 1000 for inv in invoices
    ]
    batch = Batch(max(ends) - min(starts), latencies, cpu.used)
    return batch, shapes, churn, billing, crm, invoices, case_ms


async def floor_batch(
    client: Client, tag: str, n: int, per_payment: list[list[int]], pids: dict[str, int | None]
) -> Batch:
    """``n`` payments' worth of floor workflows: per payment one workflow per ``[activities,
    local activities]`` shape in ``per_payment`` (as many as a payment causes), all at once."""

    async def flow(i: int, k: int, shape: list[int]) -> float:
        handle = await client.start_workflow(
            floor.WORKFLOW_TYPE, shape, id=f"bench-floor-{tag}-{i:03d}-{k}", task_queue=FLOOR_QUEUE
        )
        await handle.result()
        desc = await handle.describe()
        assert desc.close_time is not None
        return desc.close_time.timestamp()

    async def one(i: int) -> tuple[float, float]:
        t0 = time.time()
        ends = await asyncio.gather(*(flow(i, k, s) for k, s in enumerate(per_payment)))
        return t0, max(ends)

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
    warmup_churn: list[RunShape]
    rss_mb: dict[str, float | None]
    idle: Batch  # one flow at a time: latency without queueing
    idle_floor: Batch
    idle_case_ms: list[float] = field(default_factory=list)
    idle_churn: list[RunShape] = field(default_factory=list)
    #: one idle payment's vendor requests: (ms after the decline, vendor, endpoint, who)
    excerpt: list[tuple[float, str, str, str]] = field(default_factory=list)
    excerpt_marks: dict[str, float] = field(default_factory=dict)
    #: the worker's profile over the idle flows (py-spy), summarized: (share, frame)
    profile: list[tuple[float, str]] = field(default_factory=list)
    profile_note: str = ""


PROFILE = Path(__file__).parent / "profile-worker.txt"


def _limits_env(logs: Path) -> dict[str, str]:
    """policies/limits.yaml with Chargebee at the benchmark site's rate (bench.common
    CHARGEBEE_PER_MINUTE), for the worker's pacing: REVBRIDGE_LIMITS_FILE."""
    import yaml

    from activities.policy import DEFAULT_POLICY_DIR
    from bench.common import CHARGEBEE_PER_MINUTE

    limits = yaml.safe_load((DEFAULT_POLICY_DIR / "limits.yaml").read_text(encoding="utf-8"))
    limits["vendors"]["chargebee"]["per_second"] = round(CHARGEBEE_PER_MINUTE / 60, 1)
    path = logs / "limits.yaml"
    path.write_text(yaml.safe_dump(limits), encoding="utf-8")
    return {"REVBRIDGE_LIMITS_FILE": str(path)}


def _shape(shapes: list[RunShape]) -> list[int]:
    return [
        round(median([len(s.activities) for s in shapes])),
        round(median([s.local for s in shapes])),
    ]


def _who(row: dict[str, Any], case_at: float | None) -> str:
    """Which workflow made a request (for the excerpt). Before the case is written only the
    dunning run exists (it hands the failure to churn after the case); after it, dunning makes
    no read before its first wait (day 0 reuses its first reads), so a read is the churn
    score's; a write names its workflow in its audit text (or is the churn score itself)."""
    text = f"{row['path']} {row.get('query', '')} {row.get('body') or ''}"
    if case_at is not None and row["at"] <= case_at:
        return "dunning"
    if row["method"] == "GET" or "churn" in text.lower() or "/sobjects/Account/" in row["path"]:
        return "churn"
    return "dunning"


async def run(
    stack: Stack, rounds: int = 3, n: int = FLOWS, idle: int = IDLE, budget_s: float = 150
) -> FlowsResult:
    """``rounds`` burst rounds (fewer once ``budget_s`` is spent), then ``idle`` flows one by one."""
    began = time.monotonic()
    compile_sources(always=True)
    port = free_port()
    env = {**stack.stack_config(TASK_QUEUE, port).service_env(), **_limits_env(stack.logs)}
    webhook_url = f"http://127.0.0.1:{port}"
    floor_env = {k: v for k, v in env.items() if k.startswith("REVBRIDGE_PAYLOAD")}
    services = [
        Service("webhooks", ["-m", "cli.main", "webhooks", "--port", str(port)], env, stack.logs),
        Service("worker", ["-m", "cli.main", "worker"], env, stack.logs),
        Service(
            "floor-worker",
            ["-c", "from bench.floor import main; main()", stack.temporal_address, FLOOR_QUEUE],
            floor_env,
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

        # warm-up: connections, tokens, caches; and what one payment costs, to size the floor
        _, warm, _, billing, crm, _, _ = await dunning_batch(
            stack, pair, "warm", WARMUP, 0, dunning_pids, services
        )
        # the churn run a payment causes, measured alone (under a burst its score waits out the
        # Chargebee sandbox's rate limit for minutes, so burst rounds end at dunning's wait)
        _, _, warm_churn, *_ = await dunning_batch(
            stack, pair, "shape", 1, 0, dunning_pids, services, with_churn=True
        )
        warmup, warmup_churn = list(warm.values()), list(warm_churn.values())
        per_payment = [_shape(warmup), _shape(warmup_churn)]
        calls = sum(1 for r in billing + crm if not is_decline(r) and "oauth2" not in r["path"])
        calls_per_run = calls / WARMUP
        await floor_batch(stack.client, "warm", WARMUP, per_payment, floor_pids)

        results: list[FlowRound] = []
        for r in range(rounds):
            if results and time.monotonic() - began > budget_s:
                break  # a slow machine: fewer rounds, still under make bench's time limit
            tag = f"r{r}"
            if r % 2:
                fl = await floor_batch(stack.client, tag, n, per_payment, floor_pids)
            batch, shapes, churn, billing, crm, invoices, case_ms = await dunning_batch(
                stack, pair, tag, n, calls_per_run, dunning_pids, services
            )
            if not r % 2:
                fl = await floor_batch(stack.client, tag, n, per_payment, floor_pids)
            own = [row for row in billing if not is_decline(row)]
            result = FlowRound(
                dunning=batch,
                floor=fl,
                shapes=list(shapes.values()),
                churn=list(churn.values()),
                case_ms=case_ms,
                billing_calls=len(own),
                crm_calls=len(crm),
                token_calls=sum("oauth2" in row["path"] for row in crm),
                endpoints=Counter(endpoint(row, tag) for row in own + crm),
            )
            result.cases = await asyncio.to_thread(cases_per_invoice, pair, invoices)
            results.append(result)

        one, one_floor, idle_case, idle_churn = [], [], [], []
        excerpt: list[tuple[float, str, str, str]] = []
        marks: dict[str, float] = {}
        for i in range(idle):
            tag = f"idle{i}"
            batch, shapes, churn, billing, crm, invoices, case_ms = await dunning_batch(
                stack, pair, tag, 1, calls_per_run, {}, services, with_churn=True
            )
            one.append(batch)
            idle_case.extend(case_ms)
            idle_churn.extend(churn.values())
            if i == 0:
                (inv,) = invoices
                t0 = next(r["at"] for r in billing if is_decline(r))
                rows = [("chargebee", r) for r in billing if not is_decline(r)]
                rows += [("salesforce", r) for r in crm]
                case_at = case_created_at(crm, inv)
                for vendor, row in sorted(rows, key=lambda vr: vr[1]["at"]):
                    excerpt.append(
                        ((row["at"] - t0) * 1000, vendor, endpoint(row, tag), _who(row, case_at))
                    )
                (shape,) = shapes.values()
                (cshape,) = churn.values()
                marks = {
                    "case written": (case_created_at(crm, inv) or math.nan) - t0,
                    "dunning's first durable wait": shape.reached_at - t0,
                    "churn's first wait or close": cshape.reached_at - t0,
                }
            one_floor.append(await floor_batch(stack.client, tag, 1, per_payment, {}))
        # the profile over as many payments again, after the timed ones: py-spy pauses the worker
        # for every sample (200 Hz), which took one idle payment's case from 137 ms to 363 ms in
        # bench.latency — the "one at a time" rows were measured under it until 2026-12-08
        spy = _profile_start(worker.proc.pid)
        for i in range(idle):
            await dunning_batch(
                stack, pair, f"spied{i}", 1, calls_per_run, {}, services, with_churn=True
            )
        profile, note = _profile_stop(spy)
        for s in services:
            s.check_alive()
        rss = {
            "worker": worker.peak_rss_mb(),
            "webhooks": hooks.peak_rss_mb(),
            "floor_worker": floor_worker.peak_rss_mb(),
            "temporal_server": vm_hwm_mb(server) if server else None,
        }
        return FlowsResult(
            results,
            warmup,
            warmup_churn,
            rss,
            _joined(one),
            _joined(one_floor),
            idle_case,
            idle_churn,
            excerpt,
            {k: v * 1000 for k, v in marks.items()},
            profile,
            note,
        )
    finally:
        for s in services:
            s.stop()


def _profile_start(pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy on the worker (all threads) while the idle flows run, if py-spy is installed."""
    exe = Path(sys.prefix) / "bin" / "py-spy"
    if not exe.exists():
        return None
    PROFILE.unlink(missing_ok=True)
    return subprocess.Popen(  # noqa: S603 - py-spy from this environment
        [str(exe), "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
         "--output", str(PROFILE)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _profile_stop(spy: subprocess.Popen[bytes] | None) -> tuple[list[tuple[float, str]], str]:
    """Stop py-spy and summarize: the share of the worker's non-idle samples under each of its
    heaviest frames of our own code or the SDK (inclusive), top 15."""
    if spy is None:
        return [], "py-spy not installed (pip install py-spy): no profile taken"
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        return [], "py-spy did not stop in time: no profile"
    if not PROFILE.exists():
        return [], "py-spy wrote no profile (ptrace not permitted?)"
    inclusive: Counter[str] = Counter()
    total = 0
    for line in PROFILE.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        if any("(idle)" in f for f in frames[-1:]) or frames[-1].startswith(("select", "epoll")):
            continue
        n = int(count)
        total += n
        for frame in set(frames):
            name = frame.split(" (")[0]
            where = frame.split(" (", 1)[1] if " (" in frame else ""
            if any(
                k in where
                for k in (
                    "/activities/",
                    "/workflows/",
                    "/connectors/",
                    "/domain/",
                    "temporalio/",
                    "httpx",
                    "chargebee",
                    "simple_salesforce",
                )
            ):
                inclusive[f"{name} ({where.split('/site-packages/')[-1].rstrip(')')})"] += n
    top = [(n / total, frame) for frame, n in inclusive.most_common(15)] if total else []
    return (
        top,
        f"{total} non-idle samples at 200 Hz over {IDLE} idle payments run after the timed ones (all threads)",
    )


def summarize(result: FlowsResult) -> dict[str, Any]:
    rounds = result.rounds
    shapes = [s for r in rounds for s in r.shapes]
    churn = result.warmup_churn + result.idle_churn  # measured one payment at a time
    nc = max(len(churn), 1)
    flows = len(shapes)
    dunning = [x for r in rounds for x in r.dunning.latencies_ms]
    floor_lat = [x for r in rounds for x in r.floor.latencies_ms]
    case_ms = [x for r in rounds for x in r.case_ms if not math.isnan(x)]
    idle_case = [x for x in result.idle_case_ms if not math.isnan(x)]
    endpoints: Counter[str] = Counter()
    for r in rounds:
        endpoints.update(r.endpoints)
    activity_types = Counter(a for s in shapes for a in s.activities)
    churn_types = Counter(a for s in churn for a in s.activities)
    return {
        "rounds": len(rounds),
        "flows": flows,
        "flows_per_s": median([r.dunning.rate for r in rounds]),
        "p50_ms": pct(dunning, 50),
        "p99_ms": pct(dunning, 99),
        "case_p50_ms": pct(case_ms, 50) if case_ms else math.nan,
        "case_p99_ms": pct(case_ms, 99) if case_ms else math.nan,
        "idle_case_p50_ms": pct(idle_case, 50) if idle_case else math.nan,
        "floor_per_s": median([r.floor.rate for r in rounds]),
        "floor_p50_ms": pct(floor_lat, 50),
        "floor_p99_ms": pct(floor_lat, 99),
        "ratio": median([r.ratio for r in rounds]),
        "per_round": [(r.dunning.rate, r.floor.rate, r.ratio) for r in rounds],
        "idle_p50_ms": pct(result.idle.latencies_ms, 50),
        "idle_floor_p50_ms": pct(result.idle_floor.latencies_ms, 50),
        "floor_activities": round(median([len(s.activities) for s in result.warmup])),
        "floor_shape": [_shape(result.warmup), _shape(result.warmup_churn)],
        "activities_per_run": sum(len(s.activities) for s in shapes) / flows,
        "local_per_run": sum(s.local for s in shapes) / flows,
        "events_per_run": sum(s.events for s in shapes) / flows,
        "workflow_tasks_per_run": sum(s.workflow_tasks for s in shapes) / flows,
        "churn_activities_per_run": sum(len(s.activities) for s in churn) / nc,
        "churn_local_per_run": sum(s.local for s in churn) / nc,
        "churn_events_per_run": sum(s.events for s in churn) / nc,
        "churn_workflow_tasks_per_run": sum(s.workflow_tasks for s in churn) / nc,
        "activity_types": {k: v / flows for k, v in activity_types.items()},
        "churn_activity_types": {k: v / nc for k, v in churn_types.items()},
        "churn_measured": len(churn),
        "billing_calls_per_run": sum(r.billing_calls for r in rounds) / flows,
        "crm_calls_per_run": sum(r.crm_calls for r in rounds) / flows,
        "token_calls": sum(r.token_calls for r in rounds),
        "endpoints_per_run": {k: v / flows for k, v in sorted(endpoints.items())},
        "cases_ok": all(c == 1 for r in rounds for c in r.cases),
        "cases": sum(sum(r.cases) for r in rounds),
        "rss_mb": result.rss_mb,
        "cpu_ms_per_flow": _cpu_per_flow([r.dunning for r in rounds]),
        "floor_cpu_ms_per_flow": _cpu_per_flow([r.floor for r in rounds]),
        "excerpt": result.excerpt,
        "excerpt_marks": result.excerpt_marks,
        "profile": result.profile,
        "profile_note": result.profile_note,
    }


def _cpu_per_flow(batches: list[Batch]) -> dict[str, float]:
    flows = sum(len(b.latencies_ms) for b in batches)
    total: Counter[str] = Counter()
    for b in batches:
        total.update(b.cpu_s)
    return {name: seconds * 1000 / flows for name, seconds in total.items()}


def _joined(batches: list[Batch]) -> Batch:
    return Batch(sum(b.seconds for b in batches), [x for b in batches for x in b.latencies_ms], {})


async def _main() -> int:
    """``python -m bench.flows``: webhook ingest and the failed-payment flows alone, on a fresh
    dev server (not the sustained load nor the soaks of ``make bench``); RESULTS.md's first part
    and bench/profile-worker.txt are rewritten, the other benches' sections kept."""
    import logging
    import shutil
    import tempfile

    from bench import ingest, report
    from bench.common import stack

    logging.basicConfig(level=logging.WARNING)
    began = time.monotonic()
    load_before = os.getloadavg()
    logs = Path(tempfile.mkdtemp(prefix="revbridge-bench-flows-"))
    async with stack(logs) as st:
        print("webhook ingest …", flush=True)
        ing = ingest.summarize(await ingest.run(st))
        print("end-to-end dunning …", flush=True)
        fl = summarize(await run(st, budget_s=max(30.0, 170.0 - (time.monotonic() - began))))
    shutil.rmtree(logs, ignore_errors=True)
    elapsed = time.monotonic() - began
    by = "`python -m bench.flows` (webhook ingest and the failed-payment flows alone)"
    report.write(ing, fl, elapsed, (load_before, os.getloadavg()), by=by)
    report.print_table(ing, fl, elapsed)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(_main()))
