"""Quote-to-cash test helpers: the shared catalogue in both sandboxes, a won deal built through
the CRM's official client, and starting runs the way the webhook service and the catch-up do."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import httpx
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.approvals import ApprovalTiming
from domain.ids import q2c_workflow_id
from domain.quote import WORKFLOW_TYPE, QuoteToCashInput, QuoteToCashResult, QuoteToCashStatus
from domain.starts import start_options
from tests.pairs import Pair, eventually

HISTORIES = Path(__file__).parent.parent / "histories"

_seeded: set[str] = set()


@dataclass
class Deal:
    account_id: str
    opportunity_id: str
    company: str
    email: str

    def workflow_id(self, pair: Pair) -> str:
        return q2c_workflow_id(pair.settings.crm, self.opportunity_id)


def seed_catalog(pair: Pair) -> None:
    """The shared product catalogue, in billing (in_billing products) and the CRM (all)."""
    if pair.name not in _seeded:
        pair.billing_driver.seed_catalog()
        pair.crm_driver.seed_catalog()
        _seeded.add(pair.name)


def won_deal(
    pair: Pair,
    uid: str,
    lines: list[tuple[str, int, int, float]],
    *,
    company: str | None = None,
    payment_terms: str | None = "Net 30",
    tier: str = "Mid-Market",
    win: bool = True,
    callout: bool = True,
) -> Deal:
    """A deal built through the CRM's official client. ``callout``: winning it calls this pair's
    webhook service (the CRM sandbox's targets are session-wide, so they are set each time);
    False: the callout is lost (no targets), as when Flow gives up."""
    seed_catalog(pair)
    if callout:
        pair.route_crm_webhooks_here()
    else:
        httpx.delete(pair.urls[pair.settings.crm] + "/_sandbox/webhooks").raise_for_status()
    company = company or f"Acme Robotics {uid}"
    email = f"buyer-{uid}@acme-{uid}.example"
    account_id = pair.crm_driver.create_account(company, tier=tier)
    opp_id = pair.crm_driver.create_opportunity(
        account_id,
        f"{company} — new business",
        lines,
        payment_terms=payment_terms,
        contact_email=email,
    )
    if win:
        pair.crm_driver.win(opp_id)
    return Deal(account_id, opp_id, company, email)


async def start(
    client: Client,
    pair: Pair,
    deal: Deal,
    approval: ApprovalTiming = ApprovalTiming(),
    trigger: str = "event",
) -> WorkflowHandle:
    """Start the run as the webhook service does (domain/starts.py); when the CRM's callout got
    there first (the service answers "duplicate"), this joins that run."""
    try:
        return await start_once(client, pair, deal, approval, trigger)
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(deal.workflow_id(pair), result_type=QuoteToCashResult)


async def start_once(
    client: Client,
    pair: Pair,
    deal: Deal,
    approval: ApprovalTiming = ApprovalTiming(),
    trigger: str = "event",
) -> WorkflowHandle:
    """Exactly what the webhook service sends: a second start of the deal's run fails
    (``WorkflowAlreadyStartedError``) while it runs or after it finished."""
    return await client.start_workflow(
        WORKFLOW_TYPE,
        QuoteToCashInput(
            crm=pair.settings.crm,
            billing=pair.settings.billing,
            opportunity_id=deal.opportunity_id,
            trigger=trigger,
            approval=approval,
        ),
        id=deal.workflow_id(pair),
        task_queue=pair.settings.task_queue,
        **start_options(WORKFLOW_TYPE),
        result_type=QuoteToCashResult,
    )


async def status_of(handle: WorkflowHandle, ok, what: str, within_s: float = 20.0):  # noqa: ANN001, ANN201
    return await eventually(
        lambda: handle.query("status", result_type=QuoteToCashStatus), ok, what, within_s
    )


async def keep_history(pair: Pair, handle: WorkflowHandle, name: str) -> None:
    """With REVBRIDGE_WRITE_HISTORIES=1, commit this run's history for the replay gate."""
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1" and pair.name == "chargebee×salesforce":
        history = await handle.fetch_history()
        wf_type = (await handle.describe()).workflow_type
        (HISTORIES / f"{wf_type}__{name}.json").write_text(history.to_json())


def crm_link(pair: Pair, deal: Deal) -> dict[str, str | None]:
    """What the CRM shows: the account's customer, the opportunity's subscription and status."""
    account, opp = (
        pair.crm_driver.account(deal.account_id),
        pair.crm_driver.opportunity(deal.opportunity_id),
    )
    if pair.settings.crm == "salesforce":
        return {
            "customer": account.get("Billing_Customer_Id__c"),
            "subscription": opp.get("Billing_Subscription_Id__c"),
            "status": opp.get("Billing_Status__c"),
            "mrr": opp.get("MRR__c"),
        }
    return {
        "customer": account.get("billing_customer_id") or None,
        "subscription": opp.get("billing_subscription_id") or None,
        "status": opp.get("billing_status") or None,
        "mrr": opp.get("mrr") or None,
    }


def live_subscriptions(pair: Pair, customer_id: str) -> list[dict]:
    return [
        s
        for s in pair.billing_driver.subscriptions(customer_id)
        if s.get("status") not in ("cancelled", "canceled", "incomplete_expired")
    ]
