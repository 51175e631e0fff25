"""The reconciliation's Zuora reader (connectors/reconcile/zuora.py) against the Zuora sandbox
through the connector's own REST client, with Salesforce and with HubSpot: clean customers
(the core plan and five seats, one of them 10% off through Zuora's discount rate plan, a paid
invoice, its payment applied) and one customer per
discrepancy a Zuora tenant can hold — a won deal without a subscription, a subscription that
disagrees with its deal, an invoice line for a product the subscription does not have, an
invoice paid without a payment, a payment left unapplied, an invoice paid with half its amount,
a drifted MRR, and the missing links both ways — are found exactly, in four Object Query walks
(accounts; subscriptions with their rate plans, charges, tiers and catalogue plans; invoices
with their items; payments with their applications). Zuora never applies more than an
invoice's balance, so an overpayment is the unapplied remainder of a payment (not planted apart).

The daily workflow then runs on Zuora × each CRM: the exceptions are filed (Billing_Exception__c
records, HubSpot tickets), the drift is restored, and the next day's run finds the same ones one
day older, with no duplicate."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.reconcile import ReconcileActivities, ScanInput
from connectors.reconcile import crm_reader
from connectors.registry import build_billing, build_crm
from domain import reconcile as rx
from domain.models import NoteTarget
from domain.reconcile import Kind
from harness.drivers import HubSpotDriver, SalesforceDriver
from harness.reconcile_book import HubSpotSide, SalesforceSide
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator
from sandbox.zuora import ZuoraEmulator
from sandbox.zuora.scenarios import DISCOUNT_PLAN, catalog
from tests.pairs import HS_SECRET, HS_TOKEN, SF_ID, SF_SECRET, ZUORA_ID, ZUORA_SECRET, pair_settings
from tests.reconcile.scan import scan_finds_the_planted

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 12, 1)
PLANTED = {
    "nosub": Kind.DEAL_WITHOUT_SUBSCRIPTION,
    "mismatch": Kind.SUBSCRIPTION_MISMATCH,
    "extraline": Kind.INVOICE_LINE_UNMATCHED,
    "nopay": Kind.PAID_WITHOUT_PAYMENT,
    "unapplied": Kind.UNAPPLIED_PAYMENT,
    "underpaid": Kind.UNDERPAYMENT,
    "drift": Kind.CRM_FIELD_DRIFT,
    "orphan": Kind.CUSTOMER_WITHOUT_ACCOUNT,
    "ghost": Kind.ACCOUNT_WITHOUT_CUSTOMER,
}
CORE, SEAT, SUPPORT = (
    "PRP-CORE-USD-MONTHLY",
    "PRP-SEAT-USD-MONTHLY",
    "PRP-SUPPORT-PREMIUM-USD-MONTHLY",
)
DEAL = [("RB-CORE", 1, 50_000, 0), ("RB-SEAT", 5, 4_000, 0)]


def plant(url: str, em: ZuoraEmulator, side: Any, prefix: str) -> dict[str, tuple[Any, Any]]:
    """The book in Zuora (its seed endpoint; the extra invoice line through the tenant's own
    state) and in the CRM (through its client); tag → (CRM account, Zuora account)."""
    who: dict[str, tuple[Any, Any]] = {}
    data: dict[str, list] = {"products": catalog(), "accounts": [], "subscriptions": []}
    data |= {"invoices": [], "payments": []}
    side.catalog()
    for tag in ["clean0", "clean1", "discounted", *PLANTED]:
        cid = f"{prefix}{tag}"
        if tag == "ghost":
            who[tag] = (side.account(f"Ghost {prefix}", None), None)
            continue
        acc = side.account(f"{tag} {prefix}", cid) if tag != "orphan" else None
        account: dict[str, Any] = {"id": cid, "name": f"{tag} {prefix}"}
        if acc:
            account |= {"crmId": acc, "RevBridgeCrm__c": side.crm}
        data["accounts"].append(account)
        seats = 7 if tag == "mismatch" else 5
        number = f"S-{cid}"
        plans: list[dict[str, Any]] = [{"plan": CORE}, {"plan": SEAT, "quantity": seats}]
        if tag == "discounted":  # 10% off as Zuora sells it: a discount rate plan
            plans.append({"plan": DISCOUNT_PLAN})
        data["subscriptions"].append({"account": cid, "subscriptionNumber": number, "plans": plans})
        total = (50_000 + 4_000 * seats) * (9 if tag == "discounted" else 10) // 10
        inv = f"inv-{cid}"
        data["invoices"].append(
            {"id": inv, "account": cid, "subscription": number, "amount": total, "balance": 0}
        )
        if tag == "underpaid":
            data["payments"].append({"account": cid, "invoice": inv, "amount": total // 2})
        elif tag != "nopay":
            data["payments"].append({"account": cid, "invoice": inv, "amount": total})
        if tag == "unapplied":  # money taken and never applied to an invoice
            data["payments"].append({"account": cid, "amount": 5_000})
        who[tag] = (acc, cid)
    httpx.post(url + "/_sandbox/seed", json=data, timeout=30).raise_for_status()
    # an invoice line for premium support, a product the subscription does not have
    inv = em.store.invoices[f"inv-{prefix}extraline"]
    inv["items"].append(
        {
            **inv["items"][0],
            "id": f"item-{prefix}extra",
            "chargeId": None,
            "chargeName": "Premium support",
            "productRatePlanId": em.store.rate_plan(SUPPORT)["id"],
            "quantity": 1,
            "unitPrice": 10_000,
            "amount": 10_000,
        }
    )
    for tag, (acc, _) in who.items():
        if acc is None or tag == "ghost":
            continue
        seats = 7 if tag == "mismatch" else 5
        mrr = (50_000 + 4_000 * seats) * (9 if tag == "discounted" else 10) // 10
        side.billing_fields(acc, 1_234_00 if tag == "drift" else mrr, "active")
        deal = [(*ln[:3], 10) for ln in DEAL] if tag == "discounted" else DEAL
        side.won_deal(acc, f"Deal {tag}", deal, f"S-{prefix}{tag}")
        if tag == "nosub":
            side.won_deal(acc, "Upsell", [("RB-SEAT", 2, 4_000, 0)], None)
    return who


@pytest.fixture(scope="module", params=["salesforce", "hubspot"])
def zuora_book(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ReconcileActivities, Any, dict, str, str]]:
    crm_name = request.param
    zu = ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET)
    crm_em: Any = (
        SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
        if crm_name == "salesforce"
        else HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET, limits=False)
    )
    with ServerThread({zu: 0, crm_em: 0}) as thread:
        urls = dict(thread.urls)
        for missing in ("chargebee", "stripe", "salesforce", "hubspot"):
            urls.setdefault(missing, "http://127.0.0.1:9")
        settings = pair_settings(urls, "zuora", crm_name, "unused")
        billing, crm = build_billing(settings), build_crm(settings)
        side: Any = (
            SalesforceSide(SalesforceDriver(urls["salesforce"], crm), "zuora")
            if crm_name == "salesforce"
            else HubSpotSide(HubSpotDriver(urls["hubspot"], HS_TOKEN), "zuora")
        )
        who = plant(urls["zuora"], zu, side, "zx")
        reports = tmp_path_factory.mktemp("reports")
        acts = ReconcileActivities(billing, crm, ROOT / "policies" / "products.yaml", reports)
        yield acts, crm, who, urls["zuora"], crm_name


def test_the_zuora_book_finds_exactly_the_planted_ones(zuora_book: Any) -> None:
    acts, _, who, url, _ = zuora_book
    scan, calls = scan_finds_the_planted(acts, url, PLANTED, who, DAY)
    by_kind = {f.discrepancy.kind: f.discrepancy for f in scan.findings}
    assert by_kind[Kind.SUBSCRIPTION_MISMATCH].evidence["product"] == "RB-SEAT"
    assert by_kind[Kind.INVOICE_LINE_UNMATCHED].evidence["product"] == "RB-SUPPORT"
    assert by_kind[Kind.UNAPPLIED_PAYMENT].evidence["unapplied"] == "5000"
    assert by_kind[Kind.CRM_FIELD_DRIFT].evidence["billing"] == "70000"
    assert scan.counts["customers"] == len(PLANTED) + 2  # three clean, eight planted in Zuora
    # four Object Query walks (one page each here), and one catalogue read for the support
    # plan no subscription holds; never one call per account
    paths = sorted(c["path"] for c in calls if not c["path"].startswith("/oauth"))
    assert paths == [
        "/object-query/accounts",
        "/object-query/invoices",
        "/object-query/payments",
        "/object-query/product-rate-plans",
        "/object-query/subscriptions",
    ], paths


async def test_the_daily_run_on_zuora(
    zuora_book: Any, client: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The workflow on Zuora × the CRM, two days running: every planted one filed, the drift
    restored and closed, each money or contract fix sent to its approver; the next day the same
    ones one day older and nothing new."""
    from workers.main import build_worker

    acts, crm, who, _, crm_name = zuora_book
    monkeypatch.setenv("REVBRIDGE_REPORT_DIR", str(tmp_path))
    tq = f"reconcile-zuora-{crm_name}"
    async with build_worker(client, acts.billing, crm, task_queue=tq):
        first = await client.execute_workflow(
            rx.WORKFLOW_TYPE,
            rx.ReconcileInput(today=DAY),
            id=f"reconcile-test-zuora-{crm_name}-1",
            task_queue=tq,
            result_type=rx.ReconcileResult,
        )
        second = await client.execute_workflow(
            rx.WORKFLOW_TYPE,
            rx.ReconcileInput(today=DAY + timedelta(days=1)),
            id=f"reconcile-test-zuora-{crm_name}-2",
            task_queue=tq,
            result_type=rx.ReconcileResult,
        )
    assert first.found == len(PLANTED) and first.new == len(PLANTED), first
    assert first.auto_fixed == 1 and first.sent_for_approval == len(PLANTED) - 1
    # the restored MRR is audited on the Zuora side too: a note on the customer's account
    notes = acts.billing.list_notes(NoteTarget.CUSTOMER, who["drift"][1])
    assert any("restore" in n for n in notes), notes
    # the drift was filed closed on day one: the rest is still open, one day older, no new one
    assert second.found == len(PLANTED) - 1 and second.new == 0 and second.open == len(PLANTED) - 1
    stored = crm_reader(crm).stored_exceptions(DAY - timedelta(days=30))
    assert len(stored) == len(PLANTED)  # one record per exception, however many runs
    still = [s for s in stored if s.status is not rx.ExceptionStatus.CLOSED]
    assert len(still) == len(PLANTED) - 1 and {s.first_seen for s in still} == {DAY}


def test_the_expanded_reads_have_zuoras_shapes(zuora_book: Any) -> None:
    """What the reader asks Object Query for, as the sandbox answers it, fits the generated
    models of Zuora's SDK (QuerySubscriptionsResponse with rate plans, charges, tiers and the
    catalogue plan; QueryInvoicesResponse with items; QueryPaymentsResponse with applications)."""
    from connectors.reconcile.zuora import SUBSCRIPTION_EXPAND
    from tests.zuora.shapes import problems

    billing = zuora_book[0].billing
    subs = billing._query("subscriptions", [], expand=SUBSCRIPTION_EXPAND)
    plan = subs["data"][0]["ratePlans"][0]
    assert plan["productRatePlan"]["productRatePlanNumber"] == CORE
    assert plan["ratePlanCharges"][0]["ratePlanChargeTiers"][0]["price"] == 500.0
    assert problems("QuerySubscriptionsResponse", subs) == []
    invoices = billing._query("invoices", [], expand=["invoiceitems"])
    assert invoices["data"][0]["invoiceItems"][0]["productRatePlanId"]
    assert problems("QueryInvoicesResponse", invoices) == []
    payments = billing._query("payments", [], expand=["paymentapplications"])
    assert problems("QueryPaymentsResponse", payments) == []


def test_a_book_beyond_one_page_is_read_page_by_page(tmp_path: Path) -> None:
    """150 Zuora customers (each with a subscription, an invoice and its payment): every list is
    walked with Object Query's cursor, 99 rows a page and the expansions on each page — two
    pages a list, never one call per customer."""
    zu = ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET)
    sf_em = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    with ServerThread({zu: 0, sf_em: 0}) as thread:
        urls = dict(thread.urls)
        for missing in ("chargebee", "stripe", "hubspot"):
            urls.setdefault(missing, "http://127.0.0.1:9")
        settings = pair_settings(urls, "zuora", "salesforce", "unused")
        billing, crm = build_billing(settings), build_crm(settings)
        n = 150
        data: dict[str, list] = {"products": catalog(), "accounts": [], "subscriptions": []}
        data |= {"invoices": [], "payments": []}
        for i in range(n):
            cid = f"pg{i:03d}"
            data["accounts"].append({"id": cid, "name": cid})
            data["subscriptions"].append(
                {"account": cid, "subscriptionNumber": f"S-{cid}",
                 "plans": [{"plan": CORE}, {"plan": SEAT, "quantity": 5}]}
            )  # fmt: skip
            data["invoices"].append({"id": f"inv-{cid}", "account": cid,
                                     "subscription": f"S-{cid}", "amount": 70_000, "balance": 0})  # fmt: skip
            data["payments"].append({"account": cid, "invoice": f"inv-{cid}", "amount": 70_000})
        httpx.post(urls["zuora"] + "/_sandbox/seed", json=data, timeout=60).raise_for_status()
        acts = ReconcileActivities(billing, crm, ROOT / "policies" / "products.yaml", tmp_path)
        httpx.delete(urls["zuora"] + "/_sandbox/requests").raise_for_status()
        scan = acts.reconcile_scan(ScanInput(today=DAY))
        calls = httpx.get(urls["zuora"] + "/_sandbox/requests").json()["requests"]
    assert {k: scan.counts[k] for k in ("customers", "subscriptions", "invoices", "payments")} == {
        "customers": n, "subscriptions": n, "invoices": n, "payments": n,
    }  # fmt: skip
    # nobody is linked to a CRM account, and nothing else disagrees
    assert {f.discrepancy.kind for f in scan.findings} == {Kind.CUSTOMER_WITHOUT_ACCOUNT}
    assert len(scan.findings) == n
    paths = [c["path"] for c in calls if not c["path"].startswith("/oauth")]
    assert sorted(paths) == sorted(
        [f"/object-query/{k}" for k in ("accounts", "subscriptions", "invoices", "payments")] * 2
    ), paths


def test_since_narrows_the_invoices_and_payments_read(zuora_book: Any) -> None:
    """``--since``: Object Query filters invoices by ``invoiceDate`` and payments by
    ``effectiveDate`` (a day after everything seeded: none of them is read)."""
    acts = zuora_book[0]
    everything = acts.reconcile_scan(ScanInput(today=DAY))
    assert everything.counts["invoices"] > 0 and everything.counts["payments"] > 0
    scan = acts.reconcile_scan(ScanInput(today=DAY, since=date.today() + timedelta(days=1)))
    assert scan.counts["invoices"] == 0 and scan.counts["payments"] == 0
    assert scan.counts["customers"] == len(PLANTED) + 2  # accounts are always read whole
