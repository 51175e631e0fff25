"""``revbridge demo --scenario revenue``: a month's revenue closed, approved by finance, posted
to NetSuite once, and shown from the NetSuite ledger.

Seeds this month's invoices and a credit note in the running stack's billing sandbox (Chargebee
or Stripe: a plan started mid-month, a month's plan cancelled with a credit for its last days, a
one-off onboarding fee, and a EUR customer beside the USD ones), starts the close the monthly
Schedule would start (for this month, so the demo has something to close today), shows the
entries waiting for finance, approves them as the finance approver (signed in where approvals are
verified), reads them back from the NetSuite sandbox, and closes the month a second time to show
that nothing is posted twice. ``cli/demo.py`` runs it with ``REVBRIDGE_ERP=netsuite``, so the
stack it starts includes the NetSuite sandbox.
"""

from __future__ import annotations

import asyncio
import calendar
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle

from cli.codec_dev import approver_client
from cli.config import CliError, StackConfig
from cli.revenue import erp_env, render
from connectors.registry import build_billing, build_erp
from domain.approvals import QUERY, UPDATE, ApprovalSignal, Decision, PendingApproval
from domain.revenue import (
    WORKFLOW_TYPE,
    RevenueCloseInput,
    RevenueCloseResult,
    close_workflow_id,
    month_of,
)
from domain.settings import Settings
from infra.codec import data_converter

FINANCE = "alice@example.com"  # policies/approvers.yaml: finance
WAIT_S = 90.0


def _ts(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def _book(first: date, days: int, tag: str) -> list[dict[str, Any]]:
    """This month's charges and credits: (customer, currency, amount, product, start, end)."""
    nxt = first + timedelta(days=days)
    mid = first + timedelta(days=14)
    return [
        # a plan started mid-month: 30 days at 1.00 a day, part of it next month
        {"who": f"{tag}-acme", "cur": "USD", "amount": 3_000, "product": "pro",
         "start": mid, "end": mid + timedelta(days=30)},
        # a month's plan cancelled on day 21 with the rest of the month credited
        {"who": f"{tag}-globex", "cur": "USD", "amount": days * 100, "product": "pro",
         "start": first, "end": nxt},
        {"who": f"{tag}-globex", "cur": "USD", "amount": -(days - 20) * 100, "product": "pro",
         "start": first + timedelta(days=20), "end": nxt},
        # a one-off onboarding fee on day 5 (its own revenue account in policies/revenue.yaml)
        {"who": f"{tag}-acme", "cur": "USD", "amount": 50_000, "product": "onboarding",
         "start": first + timedelta(days=4), "end": first + timedelta(days=4)},
        # a EUR customer: this month's plan
        {"who": f"{tag}-initech", "cur": "EUR", "amount": 4_200, "product": "pro",
         "start": first, "end": nxt},
    ]  # fmt: skip


def _seed_chargebee(url: str, book: list[dict[str, Any]], tag: str) -> None:
    who = sorted({b["who"] for b in book})
    customers = [{"id": w, "first_name": "Demo", "last_name": w.rsplit("-", 1)[-1].title(),
                  "email": f"{w}@revenue.demo", "company": w.rsplit("-", 1)[-1].title()}
                 for w in who]  # fmt: skip
    invoices: list[dict[str, Any]] = []
    credits: list[dict[str, Any]] = []
    for i, b in enumerate(book):
        line = {"amount": abs(b["amount"]), "entity_id": b["product"],
                "date_from": _ts(b["start"]), "date_to": _ts(b["end"])}  # fmt: skip
        if b["amount"] > 0:
            invoices.append({"id": f"{tag}-in-{i}", "customer_id": b["who"], "status": "paid",
                             "currency_code": b["cur"], "date": _ts(b["start"]),
                             "total": b["amount"], "line_items": [line]})  # fmt: skip
        else:
            ref = next(x["id"] for x in reversed(invoices) if x["customer_id"] == b["who"])
            credits.append({"reference_invoice_id": ref, "date": _ts(b["start"]),
                            "line_items": [line]})  # fmt: skip
    resp = httpx.post(
        url + "/_sandbox/seed",
        json={"customers": customers, "invoices": invoices, "credit_notes": credits},
        timeout=60,
    )
    if resp.status_code != 200:
        raise CliError(f"seeding Chargebee failed: HTTP {resp.status_code}: {resp.text[:200]}")


def _seed_stripe(billing: Any, book: list[dict[str, Any]]) -> None:
    stripe = billing.client
    ids: dict[str, str] = {}
    lines: dict[str, tuple[str, str]] = {}
    for b in book:
        if b["who"] not in ids:
            ids[b["who"]] = stripe.v1.customers.create({"name": b["who"]}).id
        cus = ids[b["who"]]
        if b["amount"] < 0:  # a credit note on the customer's last invoice line
            inv_id, line_id = lines[b["who"]]
            stripe.v1.credit_notes.create({"invoice": inv_id, "lines": [
                {"type": "invoice_line_item", "invoice_line_item": line_id,
                 "amount": -b["amount"]}]})  # fmt: skip
            continue
        inv = stripe.v1.invoices.create({"customer": cus, "collection_method": "send_invoice",
                                         "days_until_due": 30})  # fmt: skip
        stripe.v1.invoice_items.create({"customer": cus, "invoice": inv.id,
                                        "amount": b["amount"], "currency": b["cur"].lower(),
                                        "period": {"start": _ts(b["start"]),
                                                   "end": _ts(b["end"])}})  # fmt: skip
        done = stripe.v1.invoices.finalize_invoice(inv.id).to_dict()
        lines[b["who"]] = (done["id"], done["lines"]["data"][0]["id"])


async def _close(
    client: Client, settings: Settings, month: str, suffix: str
) -> WorkflowHandle[Any, RevenueCloseResult]:
    return await client.start_workflow(
        WORKFLOW_TYPE,
        RevenueCloseInput(billing=settings.billing, month=month),
        id=f"{close_workflow_id(settings.billing, month)}:demo-{suffix}",
        task_queue=settings.task_queue,
        result_type=RevenueCloseResult,
    )


async def _pending(handle: WorkflowHandle) -> PendingApproval | None:
    """The approval the close waits for, or None once it finished without one."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        desc = await handle.describe()
        if desc.status is not None and desc.status.name != "RUNNING":
            return None
        found = await handle.query(QUERY, result_type=list[PendingApproval])
        if found:
            return found[0]
        await asyncio.sleep(0.5)
    raise CliError(f"{handle.id} proposed nothing within {WAIT_S:.0f} s (see the worker's log)")


def check_pair(billing: str, crm: str) -> None:
    """The pairs this demo runs on (cli/demo.py asks before it starts a stack)."""
    if billing not in ("chargebee", "stripe"):
        raise CliError(f"the revenue demo reads Chargebee or Stripe, not {billing}")


async def scenario(cfg: StackConfig, say: Callable[[str], None]) -> dict[str, Any]:
    settings = Settings.from_env({**cfg.service_env(), **erp_env(cfg)})
    if settings.netsuite is None:
        raise CliError("the revenue demo needs the NetSuite sandbox: REVBRIDGE_ERP=netsuite")
    check_pair(settings.billing, settings.crm)
    billing = build_billing(settings)
    client = await Client.connect(
        cfg.temporal.address, namespace=cfg.temporal.namespace, data_converter=data_converter()
    )
    today = datetime.now(UTC).date()
    first = date(today.year, today.month, 1)
    days = calendar.monthrange(today.year, today.month)[1]
    month = month_of(today)
    tag = f"rev{datetime.now(UTC):%m%d%H%M%S}"
    book = _book(first, days, tag)
    if settings.billing == "chargebee":
        assert settings.chargebee and settings.chargebee.api_url
        await asyncio.to_thread(_seed_chargebee, settings.chargebee.api_url, book, tag)
    else:
        await asyncio.to_thread(_seed_stripe, billing, book)
    say(
        f"Seeded {len(book)} charges and credits for {month} in {settings.billing} "
        "(a mid-month start, a cancellation with a credit, a one-off fee, a EUR customer)."
    )
    handle = await _close(client, settings, month, uuid.uuid4().hex[:6])
    say(f"Started the month close {handle.id} (the monthly Schedule starts the same workflow).")
    pending = await _pending(handle)
    status = await handle.query("status", result_type=RevenueCloseResult)
    for line in render(status, handle.id, pending).splitlines():
        say("  " + line)
    if pending is None:
        raise CliError(f"the close of {month} proposed nothing: {status.outcome}")
    approver = await approver_client(cfg, client, FINANCE)
    await approver.get_workflow_handle(handle.id).execute_update(
        UPDATE,
        ApprovalSignal(
            action_id=pending.action_id,
            decision=Decision.APPROVE,
            approver=FINANCE,
            note="demo: month close approved",
        ),
    )
    say(f"  ✓ {FINANCE} (finance) approved {status.totals}")
    result = await asyncio.wait_for(handle.result(), timeout=WAIT_S)
    say(f"  ✓ posted: {', '.join(f'{k} → {v}' for k, v in result.posted.items())}")

    erp = build_erp(settings)
    assert erp is not None
    try:
        ledger = await asyncio.to_thread(erp.find_entries, month)
    finally:
        erp.close()
    say(f"NetSuite holds {len(ledger)} RevBridge entr{'y' if len(ledger) == 1 else 'ies'} "
        f"for {month} (SuiteQL):")  # fmt: skip
    for e in ledger:
        say(f"  {e.internal_id:>6}  {e.external_id}  {e.tran_date}  {e.memo}")

    again = await _close(client, settings, month, uuid.uuid4().hex[:6])
    second = await asyncio.wait_for(again.result(), timeout=WAIT_S)
    say(f"Closed {month} again ({again.id}): {second.outcome}; nothing posted twice.")
    return {
        "month": month,
        "billing": settings.billing,
        "workflow_id": handle.id,
        "totals": result.totals,
        "approver": result.approver,
        "posted": result.posted,
        "netsuite_entries": [e.model_dump(mode="json") for e in ledger],
        "second_close": second.outcome,
    }
