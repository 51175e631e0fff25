"""The daily budget: the vendors' own allowance headers are tracked per process and exported as
a gauge, and in the last 20 % only customer-facing work proceeds — the rest waits for the reset
(a retryable ``budget.reserved`` error), then completes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.budget import BUDGET_ERROR, BudgetGate, Limits
from connectors import limits as vendor_limits
from infra import telemetry
from sandbox.framework import free_port
from tests.limits.conftest import Sandboxes, deployment
from tests.limits.probe import PROBE_WORKFLOW, ProbeInput, ProbeResult
from tests.pairs import eventually

NOW = datetime(2026, 12, 7, 15, 0, tzinfo=UTC)


def _gate(**kw: object) -> BudgetGate:
    return BudgetGate(limits=Limits(critical_workflows=frozenset({"DunningWorkflow"}), **kw))  # type: ignore[arg-type]


def test_reserve_holds_back_only_non_critical_work_until_the_reset() -> None:
    now = datetime.now(UTC)
    # the next midnight, whatever day the suite runs (a fixed date held nothing back after it)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    vendor_limits.observe("hubspot", 850_000, 1_000_000, midnight)  # 15 % left
    vendor_limits.observe("salesforce", 100, 15_000)  # plenty left
    gate = _gate()
    assert gate.waiting_for("DunningWorkflow", ["hubspot"], now) is None
    assert gate.waiting_for("ChurnSweepWorkflow", ["salesforce"], now) is None
    held = gate.waiting_for("ChurnSweepWorkflow", ["salesforce", "hubspot"], now)
    assert held is not None
    entry, delay = held
    assert entry.vendor == "hubspot" and entry.remaining == 150_000
    assert delay == midnight - now  # HubSpot's daily limit resets at midnight
    # past the reset, or a figure nobody refreshed for an hour, holds nothing back
    assert gate.waiting_for("ChurnSweepWorkflow", ["hubspot"], midnight) is None
    assert gate.waiting_for("ChurnSweepWorkflow", ["hubspot"], now + timedelta(hours=2)) is None


def test_a_rolling_allowance_is_rechecked_hourly() -> None:
    vendor_limits.observe("salesforce", 14_000, 15_000)  # Salesforce: a rolling 24 hours
    held = _gate().waiting_for("QuoteToCashCatchUpWorkflow", ["salesforce"])
    assert held is not None and held[1] == timedelta(hours=1)


def test_the_headers_vendors_send_are_read() -> None:
    vendor_limits.observe_headers("salesforce", {"Sforce-Limit-Info": "api-usage=18/15000"})
    vendor_limits.observe_headers(
        "hubspot",
        {"X-HubSpot-RateLimit-Daily": "250000", "X-HubSpot-RateLimit-Daily-Remaining": "249990"},
    )
    sf, hs = vendor_limits.allowance("salesforce"), vendor_limits.allowance("hubspot")
    assert sf is not None and (sf.used, sf.limit, sf.resets_at) == (18, 15000, None)
    assert hs is not None and (hs.used, hs.limit) == (10, 250_000)
    assert hs.resets_at is not None and hs.resets_at > datetime.now(UTC)


def test_the_allowance_is_a_prometheus_gauge() -> None:
    port = free_port()
    runtime = telemetry.worker_runtime(
        {telemetry.ENV_METRICS_PORT: str(port), telemetry.ENV_METRICS_HOST: "127.0.0.1"}
    )
    assert runtime is not None
    telemetry.record_vendor_allowance("salesforce", 1234, 15000)
    lines = httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines()
    remaining = [x for x in lines if x.startswith("revbridge_vendor_daily_allowance_remaining{")]
    limit = [x for x in lines if x.startswith("revbridge_vendor_daily_allowance_limit{")]
    assert len(remaining) == 1 and 'vendor="salesforce"' in remaining[0]
    assert remaining[0].endswith(" 1234") and limit[0].endswith(" 15000")


async def _held_by_budget(handle: WorkflowHandle) -> bool:
    desc = await handle.describe()
    for pending in desc.raw_description.pending_activities:
        failure = pending.last_failure.application_failure_info
        if pending.state != PendingActivityState.PENDING_ACTIVITY_STATE_UNSPECIFIED and (
            failure.type == BUDGET_ERROR
        ):
            return True
    return False


async def test_in_the_reserve_a_sweep_waits_and_a_dunning_write_does_not(
    time_env: WorkflowEnvironment, sandboxes: Sandboxes
) -> None:
    sf = sandboxes.salesforce
    url = sandboxes.urls["salesforce"]
    run = uuid.uuid4().hex[:8]
    # the probe is not critical here: it stands for the churn sweep
    limits = Limits(stale_after_s=3.0)
    sf.api_used = int(sf.daily_api_limit * 0.9)  # 10 % of the allowance left
    try:
        async with deployment(time_env.client, sandboxes, "chargebee", "salesforce", limits) as d:

            async def probe(key: str) -> WorkflowHandle:
                return await time_env.client.start_workflow(
                    PROBE_WORKFLOW,
                    ProbeInput(kind="audit", key=key),
                    id=f"limits-{key}",
                    task_queue=d.probe_queue,
                    result_type=ProbeResult,
                )

            # nothing known yet: the first call goes through and reads the allowance
            await (await probe(f"first-{run}")).result()
            seen = vendor_limits.allowance("salesforce")
            assert seen is not None and seen.fraction_left < 0.2
            held = await probe(f"held-{run}")
            await eventually(lambda: _held_by_budget(held), bool, "held by the budget", 30)
            assert not [
                r
                for r in httpx.get(f"{url}/_sandbox/requests").json()["requests"]
                if f"held-{run}" in r["path"]
            ], "a held activity called the vendor"
            sf.api_used = 0  # the rolling window freed the allowance
            await asyncio.sleep(limits.stale_after_s + 0.5)  # the held figure goes stale
            result: ProbeResult = await held.result()
            assert result.finished - result.started >= timedelta(hours=1)
    finally:
        sf.api_used = 0

    # customer-facing work spends the reserve
    sf.api_used = int(sf.daily_api_limit * 0.9)
    try:
        critical = Limits(critical_workflows=frozenset({PROBE_WORKFLOW}))
        async with deployment(time_env.client, sandboxes, "chargebee", "salesforce", critical) as d:
            vendor_limits.observe("salesforce", sf.api_used, sf.daily_api_limit)
            handle = await time_env.client.start_workflow(
                PROBE_WORKFLOW,
                ProbeInput(kind="audit", key=f"critical-{run}"),
                id=f"limits-critical-{run}",
                task_queue=d.probe_queue,
                result_type=ProbeResult,
            )
            result = await handle.result()
            assert result.finished - result.started < timedelta(minutes=1)
    finally:
        sf.api_used = 0
