"""ChurnInterventionWorkflow on every billing × CRM pair, through the real connectors and the
sandboxes: a risky customer is scored from live billing and CRM data, the score lands on the CRM
account, the CSM gets a task, RevOps approves the retention offer, billing shows the discount,
and the (shortened) follow-up records the outcome in both systems' audit trails."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
from temporalio.client import Client

from domain.approvals import UPDATE, ApprovalSignal, Decision
from domain.churn import ChurnStatus
from sandbox import books
from tests.pairs import Pair, eventually, on_cover, pending_of, seed_crm_book, start_churn_on_risk


def seed_risky(pair: Pair, uid: str) -> books.BookCustomer:
    """Failed payments, an unpaid invoice, a subscription set to end, two old open cases."""
    c = books.BookCustomer(
        id=f"risky-{uid}",
        company=f"Risky Co {uid}",
        tier="Mid-Market",
        plan="book-business",
        unit_price=9_900,
        quantity=12,
        tenure_days=40,
        failures=3,
        unpaid=True,
        open_cases=(20, 35),
        non_renewing=True,
        risky=True,
    )
    book = books.Book(prefix=f"p{uid}", customers=[c])
    billing = pair.settings.billing
    data = books.chargebee_seed(book) if billing == "chargebee" else books.stripe_seed(book)
    httpx.post(pair.urls[billing] + "/_sandbox/seed", json=data, timeout=30).raise_for_status()
    seed_crm_book(pair, book)
    if billing == "stripe":
        import stripe

        for invoice_id, attempts in books.stripe_failed_attempts(book):
            for _ in range(attempts):
                with contextlib.suppress(stripe.CardError):
                    pair.billing.client.v1.invoices.pay(invoice_id)
    return c


async def test_risky_customer_scored_task_offer_approved_discount_applied_outcome(
    client: Client, pair: Pair, uid: str
) -> None:
    # this test starts the intervention itself (a 3 s follow-up): the seeded failures' webhooks
    # must not start the customer's run first with the configured 45 days
    httpx.delete(pair.billing_url + "/_sandbox/webhooks").raise_for_status()
    c = seed_risky(pair, uid)
    handle = await start_churn_on_risk(client, pair, c.id, uid)
    pending = await pending_of(handle, within_s=30)
    status = await handle.query("status", result_type=ChurnStatus)
    assert status.score is not None and status.score >= 60, status
    assert pending.action.kind.value == "offer_discount"
    assert pending.action.subject_id == c.subscription_id
    assert any("scheduled to cancel" in r for r in status.reasons)
    assert any("failed" in r for r in status.reasons)

    account_id = pair.account_id(c.id)
    assert account_id and status.account_id == account_id
    fields = pair.crm_driver.account(account_id)
    risk = fields.get("Churn_Risk__c", fields.get("churn_risk"))
    assert risk is not None and int(float(risk)) == status.score
    tasks = pair.crm_driver.tasks(account_id)
    assert any("Churn risk" in (t.get("subject") or "") for t in tasks)

    await handle.execute_update(
        UPDATE,
        ApprovalSignal(
            action_id=pending.action_id, decision=Decision.APPROVE, approver="bob@example.com"
        ),
    )
    result = await asyncio.wait_for(handle.result(), timeout=60)
    # the subscription is still set to end: the intervention did not save this one
    assert (result.outcome, result.offer) == ("churned", "executed")
    final = await handle.query("status", result_type=ChurnStatus)
    assert final.offer_id
    subs = pair.billing_driver.subscriptions(c.id)
    assert final.offer_id in json.dumps(subs, default=str)  # the coupon is on the subscription

    log = pair.crm.audit_log(handle.id)
    actions = [r["action"] for r in log]
    for expected in ("write_churn_score", "create_task", "offer_discount", "churn_outcome"):
        assert expected in actions, actions
    notes = await eventually(
        lambda: asyncio.to_thread(pair.billing.list_notes, _customer_target(), c.id),
        lambda n: len(n) >= 2,
        "billing notes for the offer and the outcome",
    )
    assert any("churn_outcome" in n for n in notes)


def _customer_target():  # noqa: ANN202
    from domain.models import NoteTarget

    return NoteTarget.CUSTOMER


@on_cover()
def test_the_cli_shows_the_current_score_and_reasons(pair: Pair, uid: str) -> None:
    import argparse

    from cli.churn import add_churn_command, show_score

    c = seed_risky(pair, f"cli{uid}")
    text = show_score(pair.settings, c.id)
    first = text.splitlines()[0]
    assert first.startswith(f"{c.id} ({pair.settings.billing}): churn risk ")
    assert "high" in first or "critical" in first
    assert "1. a subscription is scheduled to cancel (+30)" in text
    assert "retention offer" in text
    data = json.loads(show_score(pair.settings, c.id, as_json=True))
    assert data["reasons"][0].startswith("a subscription is scheduled to cancel")
    assert data["account_id"] == pair.account_id(c.id)

    # the argparse hook the lead wires into cli.main.parser()
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")

    def add(name, fn, help, config_required=True):  # noqa: ANN001, ANN202, A002
        sp = sub.add_parser(name, help=help)
        sp.add_argument("--config", default=None)
        sp.set_defaults(fn=fn)
        return sp

    add_churn_command(add)
    args = p.parse_args(["churn", "score", c.id, "--json"])
    assert (args.command, args.churn_command, args.customer_id, args.json) == (
        "churn",
        "score",
        c.id,
        True,
    )
