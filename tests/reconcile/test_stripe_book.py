"""The reconciliation's Stripe reader (connectors/reconcile/stripe.py) against the Stripe and
Salesforce sandboxes through the official clients: a book with clean customers and the
discrepancies Stripe's model can hold (a subscription that disagrees with its deal, an invoice
line the subscription does not sell, an invoice paid out of band with no payment, a drifted MRR,
the missing links both ways, a won deal without a subscription) is found exactly, in a handful
of list requests for the whole account. Stripe applies every payment to its invoice in full
(``invoice_payment``), so over-, under- and unapplied payments are Chargebee's cases
(tests/reconcile/test_reconcile_pair.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from activities.reconcile import ReconcileActivities
from connectors.registry import build_billing, build_crm
from domain.reconcile import Kind
from harness.drivers import SalesforceDriver, StripeDriver
from sandbox.framework import ServerThread
from sandbox.salesforce import SalesforceEmulator
from sandbox.stripe import StripeEmulator
from tests.pairs import SF_ID, SF_SECRET, STRIPE_KEY, STRIPE_SECRET, pair_settings
from tests.reconcile.scan import scan_finds_the_planted

ROOT = Path(__file__).resolve().parents[2]
PLANTED = {
    "nosub": Kind.DEAL_WITHOUT_SUBSCRIPTION,
    "mismatch": Kind.SUBSCRIPTION_MISMATCH,
    "extraline": Kind.INVOICE_LINE_UNMATCHED,
    "nopay": Kind.PAID_WITHOUT_PAYMENT,
    "drift": Kind.CRM_FIELD_DRIFT,
    "orphan": Kind.CUSTOMER_WITHOUT_ACCOUNT,
    "ghost": Kind.ACCOUNT_WITHOUT_CUSTOMER,
}


@pytest.fixture(scope="module")
def stripe_book(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Any, dict[str, tuple[Any, Any]], str]]:
    st = StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET)
    sf_em = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    with ServerThread({st: 0, sf_em: 0}) as thread:
        urls = dict(thread.urls)
        for missing in ("chargebee", "hubspot"):
            urls.setdefault(missing, "http://127.0.0.1:9")
        settings = pair_settings(urls, "stripe", "salesforce", "unused")
        billing, crm = build_billing(settings), build_crm(settings)
        stripe_drv, sf = (
            StripeDriver(urls["stripe"], billing),
            SalesforceDriver(urls["salesforce"], crm),
        )
        stripe_drv.seed_catalog()
        sf.seed_catalog()
        who = plant(billing.client, sf, ["clean0", "clean1", *PLANTED])
        reports = tmp_path_factory.mktemp("reports")
        acts = ReconcileActivities(billing, crm, ROOT / "policies" / "products.yaml", reports)
        yield acts, who, urls["stripe"]


def plant(client: Any, sf: SalesforceDriver, tags: list[str]) -> dict[str, tuple[Any, Any]]:
    v1 = client.v1
    price = {p.lookup_key: p.id for p in v1.prices.list({"limit": 100}).data if p.lookup_key}
    who: dict[str, tuple[Any, Any]] = {}
    for tag in tags:
        if tag == "ghost":
            acc = sf.connector.client.Account.create({"Name": "Ghost", "Type": "Customer - Direct"})
            who[tag] = (acc["id"], None)
            continue
        cus = v1.customers.create({"name": f"{tag} Inc", "email": f"{tag}@example.com"})
        acc = None
        if tag != "orphan":
            acc = sf.connector.client.Account.create(
                {
                    "Name": f"{tag} Inc",
                    "Type": "Customer - Direct",
                    "Billing_Customer_Id__c": cus.id,
                    "Billing_Platform__c": "stripe",
                }
            )["id"]
            v1.customers.update(cus.id, {"metadata": {"crm": "salesforce", "crm_account_id": acc}})
        seats = 7 if tag == "mismatch" else 5
        sub = v1.subscriptions.create(
            {
                "customer": cus.id,
                "items": [
                    {"price": price["core_monthly"], "quantity": 1},
                    {"price": price["seat_monthly"], "quantity": seats},
                ],
            }
        )
        # beside the subscription's first invoice (paid by card): one with a line the
        # subscription does not sell, and one marked paid out of band (no payment)
        if tag in ("extraline", "nopay"):
            draft = v1.invoices.create({"customer": cus.id, "subscription": sub.id})
            item = "support_premium_monthly" if tag == "extraline" else "core_monthly"
            v1.invoice_items.create(
                {"customer": cus.id, "invoice": draft.id, "pricing": {"price": price[item]}}
            )
            v1.invoices.pay(draft.id, {"paid_out_of_band": True} if tag == "nopay" else {})
        who[tag] = (acc, cus.id)
        if acc is None:
            continue
        sub = v1.subscriptions.retrieve(sub.id)
        mrr = 1_234_00 if tag == "drift" else 50_000 + 4_000 * seats
        sf.connector.client.Account.update(
            acc, {"MRR__c": mrr / 100, "Billing_Status__c": sub.status}
        )
        opp = sf.create_opportunity(
            acc, f"Deal {tag}", [("RB-CORE", 1, 50_000, 0), ("RB-SEAT", 5, 4_000, 0)]
        )
        sf.connector.client.Opportunity.update(
            opp, {"StageName": "Closed Won", "Billing_Subscription_Id__c": sub.id}
        )
        if tag == "nosub":
            extra = sf.create_opportunity(acc, "Upsell", [("RB-SEAT", 2, 4_000, 0)])
            sf.connector.client.Opportunity.update(extra, {"StageName": "Closed Won"})
    return who


def test_the_stripe_book_finds_exactly_the_planted_ones(stripe_book: Any) -> None:
    acts, who, url = stripe_book
    scan, calls = scan_finds_the_planted(acts, url, PLANTED, who, date.today())
    # one walk of each list for the whole account
    assert len(calls) <= 6, [c["path"] for c in calls]
