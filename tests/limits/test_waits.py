"""Writes that wait instead of failing, on Temporal's time-skipping test server: a daily limit
(HubSpot's 429 ``DAILY`` with the reset in Retry-After, Salesforce's exhausted allocation) and a
six-hour vendor outage delay the write and it completes, exactly once — also when the outage
outlasts Chargebee's idempotency-key window after a write that committed without an answer."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.budget import Limits
from connectors.hubspot import engagement_ref
from domain.models import NoteTarget
from tests.limits.conftest import KEY_WINDOW_S, Sandboxes, deployment
from tests.limits.probe import PROBE_WORKFLOW, ProbeInput, ProbeResult
from tests.pairs import eventually

#: the probe counts as customer-facing here: the budget's reserve never holds it back
CRITICAL = Limits(critical_workflows=frozenset({PROBE_WORKFLOW}))


def _faults(url: str, *specs: dict) -> None:
    for spec in specs:
        httpx.post(f"{url}/_sandbox/faults", json=spec).raise_for_status()


def _ledger(url: str, prefix: str) -> list[dict]:
    rows = httpx.get(f"{url}/_sandbox/requests", params={"path_prefix": prefix}).json()
    return rows["requests"]


async def _elapsed(handle: WorkflowHandle) -> timedelta:
    result: ProbeResult = await handle.result()
    return result.finished - result.started


async def test_a_write_hitting_a_daily_limit_waits_for_the_reset_and_completes(
    time_env: WorkflowEnvironment, sandboxes: Sandboxes
) -> None:
    url = sandboxes.urls["hubspot"]
    key = f"daily-{uuid.uuid4().hex[:8]}"
    reset_s = 3 * 3600  # the daily limit resets in three hours
    _faults(
        url,
        {
            "method": "POST",
            "path": "/crm/v3/objects/notes",
            "status": 429,
            "retry_after": reset_s,
            "body": {
                "status": "error",
                "message": "You have reached your daily limit.",
                "errorType": "RATE_LIMIT",
                "policyName": "DAILY",
            },
            "times": 2,
        },
    )
    async with deployment(time_env.client, sandboxes, "chargebee", "hubspot", CRITICAL) as d:
        handle = await time_env.client.start_workflow(
            PROBE_WORKFLOW,
            ProbeInput(kind="audit", key=key),
            id=f"limits-{key}",
            task_queue=d.probe_queue,
            result_type=ProbeResult,
        )
        elapsed = await _elapsed(handle)
    rows = _ledger(url, "/crm/v3/objects/notes")
    posts = [r for r in rows if r["method"] == "POST" and r["path"] == "/crm/v3/objects/notes"]
    assert [r["status"] for r in posts] == [429, 429, 201]
    # each retry waited for the reset the vendor announced, and the run did not fail
    assert elapsed >= timedelta(seconds=2 * reset_s)
    # the note is there, once (activities have no unique property: it carries a marker)
    ref = "RevBridge ref: " + engagement_ref(f"{key}-0")
    with sandboxes.hubspot.lock:
        notes = sandboxes.hubspot.store.live("notes")
        assert len([n for n in notes if n.props.get("hs_note_body", "").endswith(ref)]) == 1


async def test_salesforce_out_of_allocation_waits_and_completes(
    time_env: WorkflowEnvironment, sandboxes: Sandboxes
) -> None:
    sf = sandboxes.salesforce
    key = f"alloc-{uuid.uuid4().hex[:8]}"
    async with deployment(time_env.client, sandboxes, "chargebee", "salesforce", CRITICAL) as d:
        sf.api_used = sf.daily_api_limit  # 403 REQUEST_LIMIT_EXCEEDED from now on
        try:
            handle = await time_env.client.start_workflow(
                PROBE_WORKFLOW,
                ProbeInput(kind="audit", key=key),
                id=f"limits-{key}",
                task_queue=d.probe_queue,
                result_type=ProbeResult,
            )
            for refused in (1, 2):
                await eventually(
                    lambda: asyncio.to_thread(
                        _ledger, sandboxes.urls["salesforce"], "/services/data"
                    ),
                    lambda rows, n=refused: sum(r["status"] == 403 for r in rows) >= n,
                    f"{refused} refused attempt(s)",
                    within_s=30,
                )
                await time_env.sleep(timedelta(minutes=6))  # past the back-off
        finally:
            sf.api_used = 0  # the rolling 24 hours freed the allocation
        elapsed = await _elapsed(handle)
    assert elapsed >= timedelta(minutes=5)  # the allocation back-off (connectors/salesforce.py)


async def test_a_six_hour_outage_delays_a_write_which_lands_once(
    time_env: WorkflowEnvironment, sandboxes: Sandboxes
) -> None:
    """The first attempt commits and gets a 500; then Chargebee is down for six hours — far
    past its idempotency-key window (here one real second). The retry after the outage reads
    back the committed note instead of writing a second one."""
    url = sandboxes.urls["chargebee"]
    customer = f"out-{uuid.uuid4().hex[:8]}"
    async with deployment(time_env.client, sandboxes, "chargebee", "salesforce", Limits()) as d:
        d.billing.client.Customer.create({"id": customer, "company": "Outage Ltd"})
        _faults(
            url,
            {"kind": "commit_then_error", "method": "POST", "path": "/api/v2/comments"},
            {"status": 503, "path": "/api/v2/comments", "times": -1},
        )
        try:
            handle = await time_env.client.start_workflow(
                PROBE_WORKFLOW,
                ProbeInput(kind="note", key=customer, customer_id=customer),
                id=f"limits-{customer}",
                task_queue=d.probe_queue,
                result_type=ProbeResult,
            )
            await eventually(
                lambda: asyncio.to_thread(_ledger, url, "/api/v2/comments"),
                lambda rows: len(rows) >= 3,
                "the outage seen by retries",
                within_s=60,
            )
            await asyncio.sleep(KEY_WINDOW_S + 0.5)  # the vendor forgets the key
            await time_env.sleep(timedelta(hours=6))
        finally:
            httpx.delete(f"{url}/_sandbox/faults").raise_for_status()
        elapsed = await _elapsed(handle)
        notes = d.billing.list_notes(NoteTarget.CUSTOMER, customer)
    assert elapsed >= timedelta(hours=6)
    assert len(notes) == 1, notes
    rows = _ledger(url, "/api/v2/comments")
    committed = [r for r in rows if r["method"] == "POST" and r.get("fault") != "status"]
    assert len(committed) == 1  # the first attempt's; the retry found it and wrote nothing
