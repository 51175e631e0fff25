"""Where one failed payment's time goes, one at a time (issue 15): ``python -m bench.latency``.

The production path as ``bench.flows`` runs it (Chargebee and Salesforce sandboxes in this process,
the webhook service and the worker as subprocesses, a fresh dev server), but one payment at a time
and every hop timestamped on this host's clock:

- the decline request reaching the Chargebee sandbox (its ledger), the webhook POST leaving the
  sandbox and its 202 coming back (the sandbox's delivery, wrapped here);
- from the dunning run's history (server clock): the start, each workflow task scheduled /
  started / completed, each local activity's marker, each activity scheduled / started /
  completed, the first timer;
- every vendor request (the sandboxes' ledgers), the case write among them;
- the worker's CPU per payment (both workflows the payment causes, ``/proc/<pid>/stat``).

Prints the median of each mark (ms after the decline) over ``--n`` payments. Not a test: no
assertion on time; the figures go into bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

from bench.common import CpuMeter, Service, stack, wait_for_http, wait_for_pollers
from bench.flows import (
    CUSTOMER,
    TASK_QUEUE,
    _limits_env,
    _profile_start,
    _profile_stop,
    case_points,
    clear_ledgers,
    endpoint,
    first_wait,
    is_case_write,
    is_decline,
    ledger,
)
from domain.ids import churn_workflow_id
from sandbox.framework import free_port
from tests.pairs import Pair
from workers.bytecode import compile_sources

E = EventType


def _at(e: Any) -> float:
    return e.event_time.seconds + e.event_time.nanos / 1e9


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds by thread kind: the Temporal SDK's Rust core (tokio threads), the event loop
    (the main thread: workflow activations, the SDK's Python side), other Python threads
    (activity threads and the workflow sandbox's activation threads)."""
    out: dict[str, float] = defaultdict(float)
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            comm, rest = stat.read_text().rsplit(")", 1)
        except OSError:
            continue
        fields = rest.split()
        used = (int(fields[11]) + int(fields[12])) / tick
        name = comm.split("(", 1)[1]
        kind = (
            "event loop" if stat.parent.name == str(pid)
            else "sdk core (rust)" if name.startswith("tokio") else "other python threads"
        )  # fmt: skip
        out[kind] += used
    return out


def history_marks(history: WorkflowHistory, prefix: str = "") -> list[tuple[float, str]]:
    """(epoch s, label) for each event of the run up to its first timer (or close)."""
    marks: list[tuple[float, str]] = []
    scheduled: dict[int, str] = {}
    wft = 0
    for e in history.events:
        t = e.event_type
        name = E.Name(t).removeprefix("EVENT_TYPE_").lower()
        if t == E.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            wft += 1
            label = f"WFT{wft} scheduled"
        elif t == E.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            label = f"WFT{wft} started"
        elif t == E.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            label = f"WFT{wft} completed"
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            act = e.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[e.event_id] = act
            label = f"{act} scheduled"
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            act = scheduled[e.activity_task_started_event_attributes.scheduled_event_id]
            label = f"{act} started"
        elif t == E.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            act = scheduled[e.activity_task_completed_event_attributes.scheduled_event_id]
            label = f"{act} completed"
        elif t == E.EVENT_TYPE_MARKER_RECORDED:
            details = e.marker_recorded_event_attributes.details
            kind = "local activity"
            if "data" in details and details["data"].payloads:
                raw = details["data"].payloads[0].data.decode(errors="replace")
                if '"activity_type"' in raw:
                    kind = raw.split('"activity_type":"', 1)[1].split('"', 1)[0]
            label = f"marker {e.marker_recorded_event_attributes.marker_name} ({kind})"
        else:
            label = name
        marks.append((_at(e), prefix + label))
        if t in (E.EVENT_TYPE_TIMER_STARTED, E.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED):
            break
    return marks


async def run(n: int, warmup: int, profile: bool) -> dict[str, Any]:
    compile_sources(always=True)
    logs = Path(tempfile.mkdtemp(prefix="revbridge-bench-latency-"))
    per_payment: list[dict[str, float]] = []
    threads0: dict[str, float] = {}
    split: dict[str, float] = {}
    cpu_ms: list[float] = []
    #: the same payments with py-spy attached (after the timed ones): what profiling costs
    spied_case_ms: list[float] = []
    async with stack(logs) as st:
        # the webhook's leaving and its answer, on this host's clock
        deliveries: dict[str, tuple[float, float]] = {}
        original = st.chargebee._deliver

        async def timed(target, delivery, body, headers, sign):  # noqa: ANN001, ANN202
            t0 = time.time()
            await original(target, delivery, body, headers, sign)
            deliveries[delivery.event_id or ""] = (t0, time.time())

        st.chargebee._deliver = timed  # type: ignore[method-assign]
        port = free_port()
        env = {**st.stack_config(TASK_QUEUE, port).service_env(), **_limits_env(st.logs)}
        hooks = Service("webhooks", ["-m", "cli.main", "webhooks", "--port", str(port)], env, logs)
        worker = Service("worker", ["-m", "cli.main", "worker"], env, logs)
        services = [hooks, worker]
        spy = None
        try:
            await wait_for_http(f"http://127.0.0.1:{port}/healthz", hooks)
            await wait_for_pollers(st.client, TASK_QUEUE, worker)
            pair = Pair.build(st.settings(TASK_QUEUE), st.urls, f"http://127.0.0.1:{port}")
            pair.route_billing_webhooks_here()
            for i in range(warmup + n + (n if profile else 0)):
                if i == warmup + n:
                    spy = _profile_start(worker.proc.pid)
                tag = f"lat{i}"
                c = replace(CUSTOMER, key=f"{CUSTOMER.key}{i:03d}")
                pair.billing_driver.seed((c,), tag)
                pair.crm_driver.seed((c,), tag, "chargebee")
                inv = c.ids(tag)["invoice"]
                clear_ledgers(st)
                deliveries.clear()
                if i == warmup:
                    threads0 = thread_cpu(worker.proc.pid)
                if i == warmup + n:
                    threads = thread_cpu(worker.proc.pid)
                    split = {k: (threads[k] - threads0.get(k, 0)) * 1000 / n for k in threads}
                cpu = CpuMeter({"worker": worker.proc.pid, "webhooks": hooks.proc.pid}).start()
                await asyncio.to_thread(pair.billing_driver.decline, inv)
                wf = pair.workflow_id(inv)
                churn_id = churn_workflow_id("chargebee", c.ids(tag)["customer"])
                await case_points(st.client, [wf], services, point=first_wait)
                await case_points(st.client, [churn_id], services, point=first_wait)
                await asyncio.sleep(0.3)  # the last writes after the churn run's timer
                used = cpu.stop()
                if i < warmup:
                    continue
                billing, crm = ledger(pair.urls["chargebee"]), ledger(pair.urls["salesforce"])
                t0 = next(r["at"] for r in billing if is_decline(r))
                if spy is not None:
                    at = min(r["at"] for r in crm if is_case_write(r) and inv in (r["body"] or ""))
                    spied_case_ms.append((at - t0) * 1000)
                    continue
                cpu_ms.append(used["worker"] * 1000)
                marks: list[tuple[float, str]] = []
                for sent, answered in deliveries.values():
                    marks += [(sent, "webhook POST sent"), (answered, "webhook 202 received")]
                hist = await st.client.get_workflow_handle(wf).fetch_history()
                marks += history_marks(hist, "dunning: ")
                chist = await st.client.get_workflow_handle(churn_id).fetch_history()
                marks += history_marks(chist, "churn: ")[:3]
                seen: dict[str, int] = defaultdict(int)
                for vendor, row in [("chargebee", r) for r in billing if not is_decline(r)] + [
                    ("salesforce", r) for r in crm
                ]:
                    name = endpoint(row, tag)
                    seen[name] += 1
                    label = f"{vendor} {name}" + (f" #{seen[name]}" if seen[name] > 1 else "")
                    if is_case_write(row) and inv in (row.get("body") or ""):
                        label = "CASE WRITE " + label
                    marks.append((row["at"], label))
                per_payment.append({label: (at - t0) * 1000 for at, label in sorted(marks)})
            if not split:
                threads = thread_cpu(worker.proc.pid)
                split = {k: (threads[k] - threads0.get(k, 0)) * 1000 / n for k in threads}
        finally:
            note = ""
            if spy is not None:
                top, note = _profile_stop(spy)
                for share, frame in top:
                    print(f"  {share:5.1%} {frame}")
            for s in services:
                s.stop()
    shutil.rmtree(logs, ignore_errors=True)
    labels: dict[str, list[float]] = defaultdict(list)
    for p in per_payment:
        for label, ms in p.items():
            labels[label].append(ms)
    return {
        "marks": sorted(
            ((statistics.median(v), k, len(v)) for k, v in labels.items()), key=lambda x: x[0]
        ),
        "cpu_ms": cpu_ms,
        "case_ms": [next(v for k, v in p.items() if k.startswith("CASE")) for p in per_payment],
        "profile_note": note,
        "spied_case_ms": spied_case_ms,
        "per_payment": per_payment,
        "thread_split": split,
        "load": os.getloadavg(),
    }


RESULTS = Path(__file__).parent / "RESULTS.md"
SECTION = "## Webhook → case, one payment at a time (issue 15)"
#: the hand-written part of the section, kept when the figures above it are rewritten
FINDINGS = "### What the breakdown showed"

#: the hops of the path to the case: (what, from mark, to mark); a mark ending in "*" is the
#: latest of the marks it prefixes (both reads done), one starting with "~" the earliest
HOPS = (
    ("the sandbox sends the webhook", "@decline", "webhook POST sent"),
    ("webhook service: auth, parse, signal-with-start", "webhook POST sent",
     "dunning: workflow_execution_started"),
    ("first workflow task reaches the worker", "dunning: workflow_execution_started",
     "dunning: WFT1 started"),
    ("first workflow task (new sandboxed instance, both reads scheduled)",
     "dunning: WFT1 started", "dunning: WFT1 completed"),
    ("the server records the task, the reads start (eager)", "dunning: WFT1 completed",
     "~dunning: get_invoice_context started|dunning: find_crm_account started"),
    ("both reads (invoice + subscription; account with open cases)",
     "~dunning: get_invoice_context started|dunning: find_crm_account started",
     "*dunning: get_invoice_context completed|dunning: find_crm_account completed"),
    ("workflow task(s): assessment and policy (local), case write scheduled",
     "*dunning: get_invoice_context completed|dunning: find_crm_account completed",
     "dunning: upsert_crm_case scheduled"),
    ("the case write starts (eager: 0 = same event batch)", "dunning: upsert_crm_case scheduled",
     "dunning: upsert_crm_case started"),
    ("the case write's request reaches Salesforce", "dunning: upsert_crm_case started", "CASE*"),
)  # fmt: skip


def _mark(p: dict[str, float], spec: str) -> float | None:
    if spec == "@decline":
        return 0.0
    if spec == "CASE*":
        return next((v for k, v in p.items() if k.startswith("CASE")), None)
    pick = max if spec.startswith("*") else min
    names = spec.lstrip("*~").split("|")
    found = [p[n] for n in names if n in p]
    return pick(found) if len(found) == len(names) else None


def hops(per_payment: list[dict[str, float]]) -> list[tuple[str, float]]:
    out = []
    for what, a, b in HOPS:
        spans = [
            tb - ta
            for p in per_payment
            if (ta := _mark(p, a)) is not None and (tb := _mark(p, b)) is not None
        ]
        out.append((what, statistics.median(spans) if spans else float("nan")))
    return out


def write_section(res: dict[str, Any], n: int) -> None:
    """RESULTS.md's section for this benchmark, replaced in place (appended the first time)."""
    from datetime import UTC, datetime

    case = sorted(res["case_ms"])
    lines = [
        SECTION,
        "",
        f"`python -m bench.latency --n {n}`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {n} failed "
        "payments one at a time through the production path (webhook service and worker as "
        "subprocesses, Chargebee and Salesforce sandboxes, a fresh dev server), each hop from "
        "the sandboxes' ledgers, the webhook's delivery and the dunning history (all on this "
        f"host's clock). Load average after: {res['load'][0]:.1f} (the machine is shared).",
        "",
        "| hop | median ms |",
        "|---|---|",
        *[f"| {what} | {ms:.1f} |" for what, ms in hops(res["per_payment"])],
        f"| **decline → case written** (p50; min, max) | **{statistics.median(case):.0f}** "
        f"({case[0]:.0f}, {case[-1]:.0f}) |",
        "",
        f"Worker CPU per payment (dunning and the churn run it causes, to both first waits): "
        f"median {statistics.median(res['cpu_ms']):.0f} ms; by thread (mean, incl. the pauses "
        "between payments): "
        + ", ".join(f"{k} {v:.0f} ms" for k, v in res["thread_split"].items())
        + ".",
    ]
    if res["spied_case_ms"]:
        lines += [
            "",
            f"With py-spy attached to the worker (200 Hz, as `bench.flows` profiled its idle "
            f"payments until 2026-12-08): case written p50 "
            f"{statistics.median(res['spied_case_ms']):.0f} ms over {n} more payments.",
        ]
    text = RESULTS.read_text() if RESULTS.exists() else ""
    block = "\n".join(lines)
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip() + "\n\n" + block + "\n"
    else:
        end = text.find("\n## ", start + len(SECTION))
        old = text[start : end if end >= 0 else len(text)]
        # the written findings under the figures (FINDINGS) stay
        notes = old[old.find(FINDINGS) :].rstrip() if FINDINGS in old else ""
        block += "\n\n" + notes if notes else ""
        text = text[:start] + block + ("\n" + text[end:] if end >= 0 else "\n")
    RESULTS.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="py-spy the worker (bench/profile-*)")
    ap.add_argument("--write", action="store_true", help="record the hops in bench/RESULTS.md")
    args = ap.parse_args()
    res = asyncio.run(run(args.n, args.warmup, args.profile))
    print(f"median ms after the decline, {args.n} payments one at a time:")
    for ms, label, count in res["marks"]:
        print(f"{ms:8.1f}  {label}" + ("" if count == args.n else f"  (in {count})"))
    case = sorted(res["case_ms"])
    print(
        f"case written p50 {statistics.median(case):.0f} ms (min {case[0]:.0f}, max {case[-1]:.0f})"
    )
    if res["spied_case_ms"]:
        spied = statistics.median(res["spied_case_ms"])
        print(f"case written p50 with py-spy attached (200 Hz): {spied:.0f} ms")
    print(
        f"worker CPU per payment (both workflows): median {statistics.median(res['cpu_ms']):.0f} ms"
    )
    print(
        "worker CPU per payment by thread:", {k: round(v) for k, v in res["thread_split"].items()}
    )
    for what, ms in hops(res["per_payment"]):
        print(f"{ms:8.1f}  {what}")
    print(f"load average after: {res['load']}")
    if args.write:
        write_section(res, args.n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
