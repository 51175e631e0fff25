"""``revbridge demo --scenario support``: new cases get the customer's billing context.

Seeds one customer in both sandboxes, makes its card payment fail (so a dunning run is open),
then opens two cases through the CRM's official client: one on that customer's account and one
on an account with no billing customer. The CRM sends its case-created webhook, the webhook
service starts a support context run per case, and we print the note each run wrote on its case.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

from hubspot import HubSpot
from simple_salesforce import format_soql
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from cli.config import CliError, StackConfig
from connectors.hubspot import note_text
from domain.dunning import DunningStatus
from domain.ids import dunning_workflow_id, support_workflow_id
from domain.settings import Settings
from domain.support import SupportContextResult
from harness.drivers import drivers
from sandbox.scenarios import DEMO_CUSTOMERS

WAIT_S = 45.0
Say = Any  # cli.demo.Out, or any callable taking one line


async def scenario(cfg: StackConfig, say: Say) -> dict[str, Any]:
    from cli.demo_stack import run_on_stack

    return await run_on_stack(cfg, say, run_scenario)


async def run_scenario(
    settings: Settings,
    billing: Any,
    crm: Any,
    client: Client,
    say: Say,
    *,
    ui_url: str,
    suffix: str,
) -> dict[str, Any]:
    """The scenario against any running deployment (``scenario`` builds one from the stack
    config; the tests pass a pair's). ``suffix`` keeps its IDs apart from earlier runs."""
    bd, cd = drivers(settings, billing, crm)
    customer = DEMO_CUSTOMERS[0]
    ids = customer.ids(suffix)
    await asyncio.to_thread(bd.seed, (customer,), suffix)
    await asyncio.to_thread(cd.seed, (customer,), suffix, bd.name)
    say(f"Seeded {customer.company} in {bd.name} (customer {ids['customer']}) and {cd.name}.")

    await asyncio.to_thread(bd.decline, ids["invoice"])
    say(
        f"  ✗ {bd.name} declined invoice {ids['invoice']} "
        f"({customer.invoice_total / 100:,.2f} USD): {customer.decline_code}"
    )
    dunning = client.get_workflow_handle(dunning_workflow_id(bd.name, ids["invoice"]))
    await _dunning_settled(dunning)
    say(f"  … {dunning.id} is open, waiting for payment")

    account = await asyncio.to_thread(crm.find_account, bd.name, ids["customer"])
    if account is None:
        raise CliError(f"{cd.name} has no account linked to {ids['customer']} (seeding failed?)")
    walk_in = await asyncio.to_thread(cd.create_account, f"Walk-in Prospect {suffix}")
    opened = [
        (
            customer.company,
            account.id,
            await asyncio.to_thread(
                cd.open_case,
                account.id,
                "Card declined: why is our invoice still open?",
                "We updated our card last week. Please check what happened.",
            ),
        ),
        (
            f"Walk-in Prospect {suffix}",
            walk_in,
            await asyncio.to_thread(
                cd.open_case, walk_in, "Pricing question", "What does the Team plan include?"
            ),
        ),
    ]
    rows = []
    for company, account_id, case_id in opened:
        say(f"Opened {cd.name} case {case_id} for {company}; waiting for its billing context…")
        handle = client.get_workflow_handle(
            support_workflow_id(cd.name, case_id), result_type=SupportContextResult
        )
        result = await _result(handle)
        note = await asyncio.to_thread(written_note, settings, crm, case_id, result.note_id)
        say(f"  ✓ {handle.id}: {result.outcome}")
        rows.append(
            {
                "company": company,
                "account_id": account_id,
                "case_id": case_id,
                "outcome": result.outcome,
                "customer_id": result.customer_id,
                "note_id": result.note_id,
                "note": note,
                "workflow_id": handle.id,
                "web_ui": f"{ui_url}/{quote(handle.id, safe='')}",
            }
        )
    return {
        "pair": {"billing": bd.name, "crm": cd.name},
        "web_ui": ui_url,
        "dunning_workflow_id": dunning.id,
        "cases": rows,
    }


def print_summary(summary: dict[str, Any], say: Say) -> None:
    """The human form of :func:`scenario`'s result: each case and the note written on it."""
    say("")
    say(f"Support context ({summary['pair']['billing']} → {summary['pair']['crm']}):")
    for row in summary["cases"]:
        say(f"  {row['company']}: case {row['case_id']} → {row['outcome']}")
        for line in (row["note"] or "(no note written)").splitlines():
            say(f"    │ {line}")
        say(f"    {row['web_ui']}")


def written_note(settings: Settings, crm: Any, case_id: str, note_id: str | None) -> str | None:
    """The billing context as the CRM holds it now (read back, not what we meant to write)."""
    if settings.crm == "salesforce":
        rows = crm.query(
            format_soql("SELECT Id, Billing_Context__c FROM Case WHERE Id = {}", case_id)
        )
        return rows[0].get("Billing_Context__c") if rows else None
    if note_id is None:
        return None
    assert settings.hubspot is not None
    url = settings.hubspot.api_url
    client = HubSpot(
        access_token=settings.hubspot.access_token.get_secret_value(),
        **({"host": url, "base_url": url} if url else {}),
        retry=False,
    )
    note = client.crm.objects.notes.basic_api.get_by_id(note_id, properties=["hs_note_body"])
    return note_text(note.properties.get("hs_note_body"))


async def _dunning_settled(handle: WorkflowHandle) -> None:
    """Until the dunning run has done its writes and waits for payment (or waits for a person)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            status = await handle.query("status", result_type=DunningStatus)
            if status.stage in ("waiting for payment", "closed") or status.stage.startswith(
                "deciding on"
            ):
                return
        except RPCError:
            pass  # the webhook has not started it yet
        await asyncio.sleep(0.2)
    raise CliError(f"timed out waiting for {handle.id} (see .revbridge/logs/)")


async def _result(handle: WorkflowHandle) -> SupportContextResult:
    """The run the CRM's webhook started; an error that says so if it never started."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            await handle.describe()
            break
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        if time.monotonic() > deadline:
            raise CliError(
                f"{handle.id} never started: did the CRM's case webhook reach the webhook service?"
            )
        await asyncio.sleep(0.2)
    return await asyncio.wait_for(handle.result(), timeout=WAIT_S)
