"""Benchmark 4 (issue 15): sustained load. Chargebee ``payment_failed`` webhooks sent open-loop at
a fixed rate (50 a second for 60 s by default) into the webhook service (its own process), the
RevBridge worker (its own process) running the dunning runs they start, then the same rate of raw
``client.start_workflow`` calls (the floor, same run, no worker).

Each webhook names an invoice the Chargebee sandbox does not hold, so each dunning run reads the
invoice (404) and the CRM account in parallel and closes as ``unknown_invoice`` without writing:
the worker keeps up with the ingest instead of queueing 3,000 full dunning flows for half an hour
(end-to-end dunning is benchmark 2), while every webhook still costs a real Temporal start, a
workflow task and two vendor reads.

Reported: the rate achieved against the rate asked and against the floor's, ingest latency p50 /
p99 (from each request's scheduled send time, so a stalled service is not hidden by a stalled
sender), lost and doubled from Temporal (one dunning run per invoice) and from the Chargebee
sandbox's ledger (every invoice read), and the queue lag: schedule-to-start of each sampled
run's first workflow task and of its activities, from its history.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from bench.common import (
    Service,
    Stack,
    bounded,
    pct,
    wait_for_http,
    wait_for_pollers,
)
from domain.ids import dunning_workflow_id
from sandbox.framework import free_port
from tests.webhooks.helpers import basic, payment_failed

RATE_PER_S = 50.0
DURATION_S = 60.0
#: requests in flight at most (an open-loop sender that never waits would only measure itself)
IN_FLIGHT_MAX = 256
TASK_QUEUE = "bench-sustained"
FLOOR_QUEUE = "bench-sustained-floor"
FLOOR_TYPE = "BenchNeverRuns"
#: histories read for the queue lag (every n-th run)
LAG_SAMPLE = 200


@dataclass
class Paced:
    """An open-loop run: what was asked, what happened."""

    asked_rate: float
    duration_s: float
    sent: int = 0
    #: from the scheduled send time to the answer (ms)
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    #: the sends answered 2xx (by index): the ones the vendor would not deliver again
    accepted: set[int] = field(default_factory=set)
    #: wall-clock from the first scheduled send to the last answer
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0


async def paced(rate: float, duration_s: float, send: Any) -> Paced:
    """Call ``send(i)`` at ``rate`` per second for ``duration_s``, open loop (a slow answer does
    not delay the next send, up to ``IN_FLIGHT_MAX`` in flight)."""
    out = Paced(rate, duration_s)
    n = int(rate * duration_s)
    gate = asyncio.Semaphore(IN_FLIGHT_MAX)
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def one(i: int, due: float) -> None:
        async with gate:
            status = await send(i)
        out.latencies_ms.append((loop.time() - due) * 1000)
        out.statuses[status] += 1
        if status.startswith("2") or status == "started":
            out.accepted.add(i)

    tasks = []
    for i in range(n):
        due = t0 + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
        out.sent += 1
    await asyncio.gather(*tasks)
    out.elapsed_s = loop.time() - t0
    return out


@dataclass
class SustainedResult:
    hooks: Paced
    floor: Paced
    invoices: int
    missing: int = 0  # accepted invoices (2xx) without a dunning run
    doubled: int = 0  # invoices with more than one run
    unread: int = 0  # invoices the Chargebee sandbox never saw read (after the drain)
    closed: int = 0  # runs closed within the drain
    completed: int = 0  # of them, completed (not failed, timed out or terminated)
    drain_s: float = 0.0
    #: ms, per sampled run: first workflow task, and each activity
    workflow_lag_ms: list[float] = field(default_factory=list)
    activity_lag_ms: list[float] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)


async def run(
    stack: Stack, rate: float = RATE_PER_S, duration_s: float = DURATION_S
) -> SustainedResult:
    from bench.common import CpuMeter
    from bench.flows import _limits_env

    port = free_port()
    env = {**stack.stack_config(TASK_QUEUE, port).service_env(), **_limits_env(stack.logs)}
    url = f"http://127.0.0.1:{port}/webhooks/chargebee"
    hooks = Service(
        "sustained-webhooks", ["-m", "cli.main", "webhooks", "--port", str(port)], env, stack.logs
    )
    worker = Service("sustained-worker", ["-m", "cli.main", "worker"], env, stack.logs)
    tag = f"sus{int(time.time()) % 100000}"
    headers = {**basic(), "Content-Type": "application/json"}
    try:
        await wait_for_http(f"http://127.0.0.1:{port}/healthz", hooks)
        await wait_for_pollers(stack.client, TASK_QUEUE, worker)
        limits = httpx.Limits(max_connections=IN_FLIGHT_MAX, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            # warm-up: connections and the service's Temporal client
            for i in range(8):
                await http.post(url, content=payment_failed(f"INV-{tag}-warm{i}"), headers=headers)

            async def hook(i: int) -> str:
                body = payment_failed(f"INV-{tag}-{i:05d}", f"cust-{tag}-{i:05d}")
                try:
                    resp = await http.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    return type(exc).__name__
                return f"{resp.status_code}"

            _forget_ledger(stack)
            meter = CpuMeter(
                {
                    "temporal_server": stack.server_pid(),
                    "worker": worker.proc.pid,
                    "webhooks": hooks.proc.pid,
                    "bench+sandboxes": os.getpid(),
                }
            ).start()
            load = await paced(rate, duration_s, hook)
            invoices = [f"INV-{tag}-{i:05d}" for i in range(load.sent)]
            result = SustainedResult(load, Paced(rate, duration_s), len(invoices))
            t_drain = time.monotonic()
            await _drain(stack.client, invoices, result, within_s=max(120.0, duration_s * 3))
            result.drain_s = time.monotonic() - t_drain
            result.cpu_s = meter.stop()
        hooks.check_alive()
        worker.check_alive()
        await _verify(stack, invoices, result)
        await _lags(stack.client, invoices, result)
    finally:
        for s in (hooks, worker):
            s.stop()

    async def start(i: int) -> str:
        try:
            await stack.client.start_workflow(
                FLOOR_TYPE, id=f"{tag}-floor-{i:05d}", task_queue=FLOOR_QUEUE
            )
        except RPCError as exc:
            return exc.status.name
        return "started"

    result.floor = await paced(rate, duration_s, start)
    return result


def _forget_ledger(stack: Stack) -> None:
    for em in (stack.chargebee, stack.salesforce):
        with em.lock:
            em.ledger.clear()


async def _drain(
    client: Client, invoices: list[str], result: SustainedResult, within_s: float
) -> None:
    """Until every run has closed (or ``within_s``): one visibility count per second."""
    prefix = invoices[0].rsplit("-", 1)[0] if invoices else ""
    query = (
        f'WorkflowType = "DunningWorkflow" AND ExecutionStatus != "Running" '
        f'AND WorkflowId STARTS_WITH "dunning:chargebee:{prefix}-"'
    )
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        result.closed = (await client.count_workflows(query)).count
        if result.closed >= len(invoices):
            break
        await asyncio.sleep(1.0)
    done = query.replace('ExecutionStatus != "Running"', 'ExecutionStatus = "Completed"')
    result.completed = (await client.count_workflows(done)).count


async def _verify(stack: Stack, invoices: list[str], result: SustainedResult) -> None:
    """Lost: an invoice without a dunning run, or never read from billing. Doubled: an invoice
    with two runs (visibility lists one row per run of an ID)."""
    client = stack.client
    prefix = invoices[0].rsplit("-", 1)[0]
    runs: Counter[str] = Counter()
    query = (
        f'WorkflowType = "DunningWorkflow" AND WorkflowId STARTS_WITH "dunning:chargebee:{prefix}-"'
    )
    await asyncio.sleep(2.0)  # visibility is eventually consistent
    async for wf in client.list_workflows(query, page_size=1000):
        runs[wf.id] += 1
    ids = [dunning_workflow_id("chargebee", inv) for inv in invoices]
    result.missing = sum(
        1 for i, w in enumerate(ids) if runs[w] == 0 and i in result.hooks.accepted
    )
    result.doubled = sum(1 for w in ids if runs[w] > 1)
    with stack.chargebee.lock:
        read = Counter(
            r["path"].rsplit("/", 1)[-1]
            for r in stack.chargebee.ledger
            if "/invoices/" in r["path"]
        )
    result.unread = sum(
        1 for i, inv in enumerate(invoices) if read[inv] == 0 and i in result.hooks.accepted
    )


async def _lags(client: Client, invoices: list[str], result: SustainedResult) -> None:
    """Schedule-to-start from the sampled runs' histories: the first workflow task (the queue
    lag a webhook's run waits before the worker picks it up) and every activity."""
    step = max(1, len(invoices) // LAG_SAMPLE)
    sample = [dunning_workflow_id("chargebee", inv) for inv in invoices[::step]]

    def job(wf_id: str):  # noqa: ANN202
        async def fetch() -> tuple[list[float], list[float]]:
            try:
                history = await client.get_workflow_handle(wf_id).fetch_history()
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    return [], []
                raise
            scheduled: dict[int, float] = {}
            wf_lags: list[float] = []
            act_lags: list[float] = []
            for e in history.events:
                at = e.event_time.ToDatetime().timestamp()
                if e.event_type in (
                    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
                    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED,
                ):
                    scheduled[e.event_id] = at
                elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
                    sid = e.workflow_task_started_event_attributes.scheduled_event_id
                    if sid in scheduled and not wf_lags:
                        wf_lags.append((at - scheduled[sid]) * 1000)
                elif e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
                    sid = e.activity_task_started_event_attributes.scheduled_event_id
                    if sid in scheduled:
                        act_lags.append((at - scheduled[sid]) * 1000)
            return wf_lags, act_lags

        return fetch

    for wf_lags, act_lags in await bounded(8, [job(w) for w in sample]):
        result.workflow_lag_ms += wf_lags
        result.activity_lag_ms += act_lags


def _accepted_rate(p: Paced) -> float:
    return len(p.accepted) / p.elapsed_s if p.elapsed_s else 0.0


def cpu_ceiling_per_s(s: dict[str, Any]) -> float:
    """The payments per second this machine's cores could carry at the CPU every process spent
    per webhook in this run (the webhook service, the dev server, the worker, the bench and its
    sandboxes): the load is CPU-bound past it, whatever the code's queues do."""
    total = sum(s["cpu_ms_per_webhook"].values())
    return s["cores"] * 1000 / total if total else float("inf")


def summarize(r: SustainedResult) -> dict[str, Any]:
    return {
        "asked_per_s": r.hooks.asked_rate,
        "duration_s": r.hooks.duration_s,
        "sent": r.hooks.sent,
        "webhooks_per_s": r.hooks.rate,
        "p50_ms": pct(r.hooks.latencies_ms, 50),
        "p99_ms": pct(r.hooks.latencies_ms, 99),
        "statuses": dict(r.hooks.statuses),
        "floor_per_s": r.floor.rate,
        "floor_p50_ms": pct(r.floor.latencies_ms, 50),
        "floor_p99_ms": pct(r.floor.latencies_ms, 99),
        "ratio": r.hooks.rate / r.floor.rate if r.floor.rate else float("nan"),
        # accepted (2xx: the vendor will not deliver it again) per second, and the same for the
        # floor's starts: a 503 is an answer but not an ingest, so the ratio that counts is this
        "accepted_per_s": _accepted_rate(r.hooks),
        "floor_accepted_per_s": _accepted_rate(r.floor),
        "accepted_ratio": (
            _accepted_rate(r.hooks) / _accepted_rate(r.floor)
            if _accepted_rate(r.floor)
            else float("nan")
        ),
        "cores": os.cpu_count() or 1,
        "invoices": r.invoices,
        "accepted": len(r.hooks.accepted),
        "missing": r.missing,
        "doubled": r.doubled,
        "unread": r.unread,
        "closed": r.closed,
        "completed": r.completed,
        "drain_s": r.drain_s,
        "wf_lag_p50_ms": pct(r.workflow_lag_ms, 50),
        "wf_lag_p99_ms": pct(r.workflow_lag_ms, 99),
        "act_lag_p50_ms": pct(r.activity_lag_ms, 50),
        "act_lag_p99_ms": pct(r.activity_lag_ms, 99),
        "lag_sample": len(r.workflow_lag_ms),
        "cpu_ms_per_webhook": {
            k: v * 1000 / max(1, r.invoices) for k, v in sorted(r.cpu_s.items())
        },
    }


def line(s: dict[str, Any]) -> str:
    return (
        f"    sustained: {s['sent']} webhooks at {s['asked_per_s']:g}/s asked for "
        f"{s['duration_s']:g} s: {s['webhooks_per_s']:.1f}/s answered (floor "
        f"{s['floor_per_s']:.1f} raw starts/s: ratio {s['ratio']:.2f}; accepted "
        f"{s['accepted_per_s']:.1f}/s against {s['floor_accepted_per_s']:.1f}/s: ratio "
        f"{s['accepted_ratio']:.2f}); ingest p50 "
        f"{s['p50_ms']:.0f} ms / p99 {s['p99_ms']:.0f} ms (floor {s['floor_p50_ms']:.0f} / "
        f"{s['floor_p99_ms']:.0f}); {s['accepted']} accepted, {s['missing']} of them lost, "
        f"{s['doubled']} doubled, "
        f"{s['unread']} not yet read at the drain's end; queue lag (schedule-to-start) first workflow task p50 "
        f"{s['wf_lag_p50_ms']:.0f} ms / p99 {s['wf_lag_p99_ms']:.0f} ms, activities p50 "
        f"{s['act_lag_p50_ms']:.0f} / p99 {s['act_lag_p99_ms']:.0f} ms; "
        f"{s['closed']} of {s['invoices']} runs closed ({s['completed']} completed) "
        f"{s['drain_s']:.0f} s after the load; "
        f"answers {s['statuses']}"
    )


SECTION = "## Sustained load (issue 15)"


def write_section(s: dict[str, Any]) -> None:
    """RESULTS.md's sustained-load section (kept by the other benches' rewrites)."""
    from bench.churn_soak import _replace_section

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    target = (
        "**met**"
        if s["missing"] == s["doubled"] == 0
        and s["p99_ms"] < 100
        and s["webhooks_per_s"] >= 0.95 * s["asked_per_s"]
        else "**missed**"
    )
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in s["cpu_ms_per_webhook"].items())
    lines = [
        SECTION,
        "",
        f"`python -m bench.sustained` (also in `make bench`), run of {when}: Chargebee "
        f"`payment_failed` webhooks sent open-loop at {s['asked_per_s']:g}/s for "
        f"{s['duration_s']:g} s into the webhook service, the worker running the dunning runs "
        "they start (each invoice unknown to billing: the run reads the invoice and the CRM "
        "account, then closes as `unknown_invoice`, a short run; end-to-end dunning is the flow "
        "benchmark above); then raw `start_workflow` calls at the same rate (the floor). "
        "Latency runs from each request's scheduled send time. A `503` (with `Retry-After`) is "
        "the service's answer when its Temporal call fails (an overloaded dev server times out): "
        "the vendor delivers it again, so it is not lost, but it is not accepted either. "
        "Target: 50/s for 60 s, 0 lost, 0 doubled, ingest p99 < 100 ms: "
        f"{target}.",
        "",
        "| | RevBridge | floor, same run | ratio |",
        "|---|---|---|---|",
        f"| rate accepted, 2xx (asked {s['asked_per_s']:g}/s) | {s['accepted_per_s']:.1f}/s | "
        f"{s['floor_accepted_per_s']:.1f} raw starts/s | **{s['accepted_ratio']:.2f}** |",
        f"| rate answered, any status | {s['webhooks_per_s']:.1f}/s | "
        f"{s['floor_per_s']:.1f}/s | {s['ratio']:.2f} |",
        f"| ingest latency p50 / p99 | {s['p50_ms']:.0f} ms / {s['p99_ms']:.0f} ms | "
        f"{s['floor_p50_ms']:.0f} ms / {s['floor_p99_ms']:.0f} ms | |",
        f"| lost / doubled ({s['invoices']} invoices, {s['accepted']} accepted) | "
        f"{s['missing']} accepted without a run, {s['unread']} not yet read from billing when "
        "the drain ended "
        f"/ {s['doubled']} with two runs | | |",
        f"| queue lag (schedule-to-start, {s['lag_sample']} sampled runs) | first workflow task "
        f"p50 {s['wf_lag_p50_ms']:.0f} ms / p99 {s['wf_lag_p99_ms']:.0f} ms; activities p50 "
        f"{s['act_lag_p50_ms']:.0f} ms / p99 {s['act_lag_p99_ms']:.0f} ms | | |",
        f"| drain | {s['closed']} runs closed ({s['completed']} completed) for {s['accepted']} "
        "accepted webhooks "
        f"{s['drain_s']:.0f} s after the last send | | |",
        f"| CPU per webhook, ms | {cpu} (total {sum(s['cpu_ms_per_webhook'].values()):.1f}: "
        f"{s['cores']} cores carry at most {cpu_ceiling_per_s(s):.0f}/s) | | |",
        "",
        f"Answers: {', '.join(f'{n}× `{k}`' for k, n in sorted(s['statuses'].items()))}.",
    ]
    _replace_section(SECTION, "\n".join(lines))


async def main(rate: float = RATE_PER_S, duration_s: float = DURATION_S) -> int:
    import shutil
    import tempfile
    from pathlib import Path

    from bench.common import stack

    logs = Path(tempfile.mkdtemp(prefix="revbridge-sustained-"))
    try:
        async with stack(logs) as st:
            s = summarize(await run(st, rate, duration_s))
    except BaseException:
        print(f"sustained-load benchmark failed; process logs kept in {logs}")
        raise
    shutil.rmtree(logs, ignore_errors=True)
    print(line(s), flush=True)
    write_section(s)
    return 0 if s["missing"] == s["doubled"] == 0 else 1


if __name__ == "__main__":
    args = [float(a) for a in sys.argv[1:3]]
    sys.exit(asyncio.run(main(*args)))
