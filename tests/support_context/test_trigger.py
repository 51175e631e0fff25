"""The trigger, end to end once per vendor (``on_cover``: every CRM's route and every billing
platform): a case opened through the CRM's official client makes
the CRM send its callout / webhook, the pair's webhook service starts SupportContextWorkflow
``case:{crm}:{case_id}``, and the note appears on the case. Also `revbridge demo --scenario
support`'s scenario, run against the pair."""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from cli.demo_support import print_summary, run_scenario, written_note
from domain.ids import support_workflow_id
from domain.support import SupportContextResult
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.pairs import Pair, on_cover

GLOBEX = DEMO_CUSTOMERS[1]


async def started(client: Client, wf_id: str, within_s: float = 20.0) -> WorkflowHandle:
    """The run someone else (the webhook service) started; never starts one itself."""
    handle = client.get_workflow_handle(wf_id, result_type=SupportContextResult)
    deadline = time.monotonic() + within_s
    while True:
        try:
            await handle.describe()
            return handle
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise AssertionError(f"{wf_id} was never started by the CRM's webhook") from exc
        await asyncio.sleep(0.1)


@on_cover()
async def test_a_new_case_starts_support_context_through_the_crm_webhook(
    client: Client, crm_webhooks: Pair, uid: str
) -> None:
    pair = crm_webhooks
    ids = pair.seed(GLOBEX, uid)
    account_id = pair.account_id(ids["customer"])
    assert account_id is not None
    case_id = pair.crm_driver.open_case(account_id, "Seat count question")

    handle = await started(client, support_workflow_id(pair.settings.crm, case_id))
    result = await handle.result()
    assert (result.outcome, result.customer_id) == ("summarized", ids["customer"])
    note = written_note(pair.settings, pair.crm, case_id, result.note_id)
    assert note is not None and ids["invoice"] in note
    assert "Open dunning: none." in note  # nothing declined: no dunning run
    # the webhook service, not this test, started it
    assert (await (await handle.describe()).static_summary() or "").endswith(
        f"case {case_id} ({pair.settings.crm})"
    )


@on_cover()
async def test_demo_support_scenario(client: Client, crm_webhooks: Pair, uid: str) -> None:
    pair = crm_webhooks
    lines: list[str] = []
    summary = await run_scenario(
        pair.settings,
        pair.billing,
        pair.crm,
        client,
        lines.append,
        ui_url="http://ui",
        suffix=uid,
    )
    try:
        linked, walk_in = summary["cases"]
        assert linked["outcome"] == "summarized"
        assert f"Open dunning: invoice INV-northwind-{uid}" in linked["note"]
        assert walk_in["outcome"] == "no_billing_account"
        assert walk_in["note"].startswith("No billing account linked")
        print_summary(summary, lines.append)
        assert any(line.startswith("    │ Billing context (") for line in lines)
    finally:
        await client.get_workflow_handle(summary["dunning_workflow_id"]).terminate("test over")
