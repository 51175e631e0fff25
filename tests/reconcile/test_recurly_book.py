"""The reconciliation's Recurly reader (connectors/reconcile/recurly.py) against the Recurly and
Salesforce sandboxes through the official clients: clean customers (plan and seat add-on,
a paid invoice, its payment) and the planted discrepancies a seeded Recurly site holds — a
subscription that disagrees with its deal, a drifted MRR, the missing links both ways, a won
deal without a subscription — are found exactly, in one walk of each site list."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.reconcile import ReconcileActivities
from connectors.registry import build_billing, build_crm
from domain.reconcile import Kind
from harness.drivers import RecurlyDriver, SalesforceDriver
from harness.reconcile_book import SalesforceSide
from sandbox.framework import ServerThread
from sandbox.recurly import RecurlyEmulator
from sandbox.salesforce import SalesforceEmulator
from tests.pairs import RECURLY_KEY, SF_ID, SF_SECRET, pair_settings
from tests.reconcile.scan import scan_finds_the_planted

ROOT = Path(__file__).resolve().parents[2]
PLANTED = {
    "nosub": Kind.DEAL_WITHOUT_SUBSCRIPTION,
    "mismatch": Kind.SUBSCRIPTION_MISMATCH,
    "drift": Kind.CRM_FIELD_DRIFT,
    "orphan": Kind.CUSTOMER_WITHOUT_ACCOUNT,
    "ghost": Kind.ACCOUNT_WITHOUT_CUSTOMER,
}


@pytest.fixture(scope="module")
def recurly_book(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Any, dict[str, tuple[Any, Any]], str]]:
    rc = RecurlyEmulator(api_key=RECURLY_KEY)
    sf_em = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    with ServerThread({rc: 0, sf_em: 0}) as thread:
        urls = dict(thread.urls)
        for missing in ("chargebee", "stripe", "hubspot"):
            urls.setdefault(missing, "http://127.0.0.1:9")
        settings = pair_settings(urls, "recurly", "salesforce", "unused")
        billing, crm = build_billing(settings), build_crm(settings)
        RecurlyDriver(urls["recurly"], billing).seed_catalog()
        side = SalesforceSide(SalesforceDriver(urls["salesforce"], crm), "recurly")
        side.catalog()
        who = plant(urls["recurly"], side, ["clean0", "clean1", *PLANTED])
        reports = tmp_path_factory.mktemp("reports")
        acts = ReconcileActivities(billing, crm, ROOT / "policies" / "products.yaml", reports)
        yield acts, who, urls["recurly"]


def plant(url: str, side: SalesforceSide, tags: list[str]) -> dict[str, tuple[Any, Any]]:
    who: dict[str, tuple[Any, Any]] = {}
    data: dict[str, list] = {"accounts": [], "subscriptions": [], "invoices": []}
    for tag in tags:
        code = f"rc-{tag}"
        if tag == "ghost":
            who[tag] = (side.account("Ghost", None), None)
            continue
        acc = side.account(f"{tag} Inc", code) if tag != "orphan" else None
        account: dict[str, Any] = {"code": code, "company": f"{tag} Inc"}
        if acc:
            account["custom_fields"] = [
                {"name": "crm", "value": "salesforce"},
                {"name": "crm_account_id", "value": acc},
            ]
        data["accounts"].append(account)
        seats = 7 if tag == "mismatch" else 5
        sub = f"sub-{code}"
        data["subscriptions"].append(
            {
                "id": sub,
                "account_code": code,
                "plan_code": "rb-core",
                "add_ons": [{"code": "seat", "quantity": seats}],
            }
        )
        data["invoices"].append(
            {
                "account_code": code,
                "subscription_id": sub,
                "total": (50_000 + 4_000 * seats) / 100,
                "state": "paid",
            }
        )
        who[tag] = (acc, code)
    httpx.post(url + "/_sandbox/seed", json=data, timeout=30).raise_for_status()
    for tag, (acc, code) in who.items():
        if acc is None or code is None:
            continue
        seats = 7 if tag == "mismatch" else 5
        mrr = 1_234_00 if tag == "drift" else 50_000 + 4_000 * seats
        side.billing_fields(acc, mrr, "active")
        side.won_deal(acc, f"Deal {tag}", [("RB-CORE", 1, 50_000, 0), ("RB-SEAT", 5, 4_000, 0)],
                      f"sub-{code}")  # fmt: skip
        if tag == "nosub":
            side.won_deal(acc, "Upsell", [("RB-SEAT", 2, 4_000, 0)], None)
    return who


def test_the_recurly_book_finds_exactly_the_planted_ones(recurly_book: Any) -> None:
    acts, who, url = recurly_book
    scan, calls = scan_finds_the_planted(acts, url, PLANTED, who, date.today())
    assert len(calls) <= 8, [c["path"] for c in calls]
