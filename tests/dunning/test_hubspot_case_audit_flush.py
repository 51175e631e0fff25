"""Issue 15, the riding entry's other way out: on HubSpot the case's audit note rides with the
next audit entry's (``dunning-case-audit-rides``), but when the run must wait before writing one
(an enterprise credit waits for finance) the note is flushed first — one notes batch create of
that one note, before the approval is asked — so nothing is lost if the run waits for days or
fails. Full stack on chargebee×hubspot; `make histories` keeps the run for tests/replay."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import httpx
from temporalio.client import Client

from domain.approvals import UPDATE, ApprovalSignal, Decision
from domain.dunning import DunningResult
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.pairs import Pair, on_pairs, pending_of, stage

GLOBEX = DEMO_CUSTOMERS[1]  # enterprise, short of funds: a 5% credit waits for finance
HISTORIES = Path(__file__).parent.parent / "histories"
BATCH = "/crm/v3/objects/notes/batch/create"


def note_writes(pair: Pair, tag: str) -> list[dict]:
    rows = httpx.get(pair.urls["hubspot"] + "/_sandbox/requests", params={"method": "POST"})
    return [
        r
        for r in rows.raise_for_status().json()["requests"]
        if r["path"] in (BATCH, "/crm/v3/objects/notes") and tag in (r["body"] or "")
    ]


@on_pairs("chargebee×hubspot")
async def test_the_case_note_is_flushed_before_the_approval_wait_and_written_once(
    client: Client, pair: Pair, uid: str
) -> None:
    ids = pair.seed(GLOBEX, uid)
    pair.billing_driver.decline(ids["invoice"])
    wf_id = pair.workflow_id(ids["invoice"])
    handle = client.get_workflow_handle(wf_id, result_type=DunningResult)
    await stage(handle, "deciding on apply_credit")
    pending = await pending_of(handle)
    # waiting for finance: the case's note is on the ticket already, alone in its batch
    [flushed] = note_writes(pair, wf_id)
    assert flushed["path"] == BATCH
    [note] = json.loads(flushed["body"])["inputs"]
    assert "create_case" in note["properties"]["hs_note_body"]
    assert [r["action"] for r in pair.audit(ids["invoice"])] == ["create_case"]

    await handle.execute_update(
        UPDATE,
        ApprovalSignal(
            action_id=pending.action_id,
            decision=Decision.APPROVE,
            approver="alice@example.com",
            note="ok",
        ),
    )
    status = await stage(handle, "waiting for payment")
    pair.billing_driver.pay(ids["invoice"], GLOBEX.invoice_total)
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.outcome == "recovered"
    log = pair.audit(ids["invoice"])
    assert [r["action"] for r in log] == [
        "create_case",
        "apply_credit",
        "send_email",
        "create_task",
        "close_dunning",
    ]
    assert len({r["id"] for r in log}) == len(log)  # each entry once
    assert log[0]["case_id"] == status.case_id and "executed" in log[0]["outcome"]
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
        history = await handle.fetch_history()
        (HISTORIES / "DunningWorkflow__hubspot_case_audit_flushed.json").write_text(
            history.to_json()
        )
