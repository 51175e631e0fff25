"""``revbridge demo --desk zendesk``: a new Zendesk ticket gets the customer's billing context.

Seeds one customer in the billing and CRM sandboxes and makes its card payment fail (a dunning
run opens), then, in the Zendesk sandbox, an organization whose external ID is that billing
customer, a requester in it, and a ticket the requester opens through the web form. Zendesk sends
its signed ``ticket.created`` webhook to the webhook service, which starts the ticket's support
context run; the run finds the customer by the organization's external ID and adds one internal
note (a private comment) citing the invoice. We read the note back through Zendesk's API and show
the Zendesk sandbox's ledger of what the worker did there.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
from temporalio.client import Client

from domain.ids import dunning_workflow_id, support_workflow_id
from domain.settings import Settings
from domain.support import SupportContextResult
from harness.drivers import drivers
from sandbox.scenarios import DEMO_CUSTOMERS

Say = Any  # cli.demo.Out, or any callable taking one line


async def scenario(cfg: Any, say: Say) -> dict[str, Any]:
    from cli.demo_stack import run_on_stack

    return await run_on_stack(cfg, say, run_scenario)


def _zendesk(settings: Settings) -> tuple[str, httpx.Client]:
    zd = settings.zendesk
    assert zd is not None and zd.api_url and zd.email and zd.api_token
    auth = (f"{zd.email}/token", zd.api_token.get_secret_value())
    return zd.api_url, httpx.Client(base_url=zd.api_url, auth=auth, timeout=10)


async def run_scenario(
    settings: Settings,
    billing: Any,
    crm: Any,
    client: Client,
    say: Say,
    *,
    ui_url: str,
    suffix: str,
    with_dunning: bool = True,
) -> dict[str, Any]:
    """The scenario against any deployment with REVBRIDGE_DESK=zendesk (``scenario`` builds one
    from the stack config; the tests pass theirs, ``with_dunning=False`` where the billing
    sandbox's webhooks go elsewhere)."""
    from cli.demo_support import _dunning_settled, _result

    if settings.desk != "zendesk" or settings.zendesk is None:
        raise ValueError("the Zendesk demo needs REVBRIDGE_DESK=zendesk (revbridge demo --desk)")
    bd, cd = drivers(settings, billing, crm)
    customer = DEMO_CUSTOMERS[0]
    ids = customer.ids(suffix)
    await asyncio.to_thread(bd.seed, (customer,), suffix)
    await asyncio.to_thread(cd.seed, (customer,), suffix, bd.name)
    say(f"Seeded {customer.company} in {bd.name} (customer {ids['customer']}) and {cd.name}.")
    dunning = client.get_workflow_handle(dunning_workflow_id(bd.name, ids["invoice"]))
    if with_dunning:
        await asyncio.to_thread(bd.decline, ids["invoice"])
        say(f"  ✗ {bd.name} declined invoice {ids['invoice']}: {customer.decline_code}")
        await _dunning_settled(dunning)
        say(f"  … {dunning.id} is open, waiting for payment")

    url, zd = _zendesk(settings)
    org_id, user_id = int(suffix), int(suffix) + 1
    with zd:
        seeded = zd.post(
            "/_sandbox/seed",
            json={
                "organizations": [
                    {"id": org_id, "name": customer.company, "external_id": ids["customer"]}
                ],
                "users": [
                    {
                        "id": user_id,
                        "name": "Accounts payable",
                        "email": f"ap-{suffix}@{customer.key}.example",
                        "organization_id": org_id,
                    }
                ],
            },
        )
        seeded.raise_for_status()
        say(
            f"Zendesk: organization {customer.company} (external ID {ids['customer']}) and a "
            "requester in it."
        )
        opened = zd.post(
            "/_sandbox/zendesk/tickets",
            json={
                "requester_id": user_id,
                "subject": "Card declined: why is our invoice still open?",
                "description": "We updated our card last week. Please check what happened.",
            },
        )
        opened.raise_for_status()
        ticket_id = opened.json()["ticket"]["id"]
        say(f"  ✉ ticket #{ticket_id} opened; Zendesk sends its signed ticket.created webhook…")
        handle = client.get_workflow_handle(
            support_workflow_id("zendesk", str(ticket_id)), result_type=SupportContextResult
        )
        result = await _result(handle)
        say(f"  ✓ {handle.id}: {result.outcome}")
        comments = zd.get(f"/api/v2/tickets/{ticket_id}/comments.json").json()["comments"]
        ledger = zd.get("/_sandbox/requests").json()["requests"]
    notes = [c for c in comments if not c.get("public", True)]
    writes = [
        f"{r['method']} {r['path']} → {r['status']}"
        for r in ledger
        if r["method"] in ("PUT", "POST") and f"/tickets/{ticket_id}" in r["path"]
    ]
    return {
        "pair": {"billing": bd.name, "crm": cd.name, "desk": "zendesk"},
        "web_ui": ui_url,
        "zendesk": url,
        "dunning_workflow_id": dunning.id if with_dunning else None,
        "ticket": {
            "id": ticket_id,
            "outcome": result.outcome,
            "customer_id": result.customer_id,
            "internal_notes": [n["body"] for n in notes],
            "public_comments": len(comments) - len(notes),
            "zendesk_writes": writes,
            "workflow_id": handle.id,
            "web_ui": f"{ui_url}/{quote(handle.id, safe='')}",
        },
    }


def print_summary(summary: dict[str, Any], say: Say) -> None:
    t = summary["ticket"]
    say("")
    say(
        f"Billing context in Zendesk ({summary['pair']['billing']} → Zendesk, audit in "
        f"{summary['pair']['crm']}):"
    )
    say(f"  ticket #{t['id']} → {t['outcome']} (billing customer {t['customer_id']})")
    for note in t["internal_notes"] or ["(no internal note)"]:
        say("    internal note:")
        for line in note.splitlines():
            say(f"    │ {line}")
    for line in t["zendesk_writes"]:
        say(f"    Zendesk ledger: {line}")
    say(f"    {t['web_ui']}")
