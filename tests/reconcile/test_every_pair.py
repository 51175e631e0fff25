"""A reconciliation smoke on every billing × CRM pair (4 × 2), each on sandboxes of its own: a
clean customer, one whose CRM account holds a drifted MRR, and a CRM customer account with no
billing customer — seeded through each platform's own API or seed endpoint, deals through the
CRM's client. The scan (the pair's billing and CRM readers in bulk) finds exactly the drift and
the missing customer, and the CRM files both exceptions, read back by their stable IDs (a second
upsert of the same two adds none). The planted books of every kind are in test_reconcile_pair
(Chargebee × Salesforce), test_hubspot_book, test_stripe_book, test_recurly_book and
test_zuora_book; this file makes sure no pair is left without a run."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from activities.reconcile import ReconcileActivities, ScanInput, UpsertExceptionsInput
from connectors.reconcile import crm_reader
from connectors.registry import build_billing, build_crm
from domain import reconcile as rx
from harness.drivers import (
    ChargebeeDriver,
    HubSpotDriver,
    RecurlyDriver,
    SalesforceDriver,
    StripeDriver,
)
from harness.reconcile_book import HubSpotSide, SalesforceSide
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.recurly import RecurlyEmulator
from sandbox.salesforce import SalesforceEmulator
from sandbox.stripe import StripeEmulator
from sandbox.zuora import ZuoraEmulator
from sandbox.zuora.scenarios import catalog as zuora_catalog
from tests.pairs import (
    CB_KEY,
    HS_SECRET,
    HS_TOKEN,
    RECURLY_KEY,
    SF_ID,
    SF_SECRET,
    STRIPE_KEY,
    STRIPE_SECRET,
    ZUORA_ID,
    ZUORA_SECRET,
    pair_settings,
)

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 12, 1)
DEAL = [("RB-CORE", 1, 50_000, 0), ("RB-SEAT", 5, 4_000, 0)]
MRR = 50_000 + 5 * 4_000
PAIRS = [
    (b, c) for b in ("chargebee", "stripe", "recurly", "zuora") for c in ("salesforce", "hubspot")
]


def _billing_emulator(name: str) -> Any:
    return {
        "chargebee": lambda: ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=None),
        "stripe": lambda: StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET),
        "recurly": lambda: RecurlyEmulator(api_key=RECURLY_KEY),
        "zuora": lambda: ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET),
    }[name]()


def _customer_id(billing: str, connector: Any, tag: str) -> str:
    """The billing customer's ID: Stripe names its customers itself (created here)."""
    if billing == "stripe":
        return str(connector.client.v1.customers.create({"name": tag}).id)
    return f"ep-{tag}"


def _customer(billing: str, url: str, connector: Any, cid: str, crm: str, acc: str) -> str:
    """Customer ``cid`` linked to ``acc`` with the core plan and five seats; its
    subscription's ID (what quote-to-cash writes on the deal)."""
    tag = cid
    if billing == "chargebee":
        data = {
            "customers": [
                {"id": cid, "company": tag, "meta_data": {"crm": crm, "crm_account_id": acc}}
            ],
            "subscriptions": [
                {
                    "id": f"sub-{cid}",
                    "customer_id": cid,
                    "items": [
                        {"item_price_id": "core-USD-monthly", "quantity": 1},
                        {"item_price_id": "seat-USD-monthly", "quantity": 5},
                    ],
                    "started_at": int(time.time()) - 40 * 86400,
                }
            ],
        }
        httpx.post(url + "/_sandbox/seed", json=data, timeout=30).raise_for_status()
        return f"sub-{cid}"
    if billing == "stripe":
        v1 = connector.client.v1
        price = {p.lookup_key: p.id for p in v1.prices.list({"limit": 100}).data if p.lookup_key}
        v1.customers.update(cid, {"metadata": {"crm": crm, "crm_account_id": acc}})
        sub = v1.subscriptions.create(
            {
                "customer": cid,
                "items": [
                    {"price": price["core_monthly"], "quantity": 1},
                    {"price": price["seat_monthly"], "quantity": 5},
                ],
            }
        )
        return str(sub.id)
    if billing == "recurly":
        data = {
            "accounts": [
                {
                    "code": cid,
                    "company": tag,
                    "custom_fields": [
                        {"name": "crm", "value": crm},
                        {"name": "crm_account_id", "value": acc},
                    ],
                }
            ],
            "subscriptions": [
                {
                    "id": f"sub-{cid}",
                    "account_code": cid,
                    "plan_code": "rb-core",
                    "add_ons": [{"code": "seat", "quantity": 5}],
                }
            ],
        }
        httpx.post(url + "/_sandbox/seed", json=data, timeout=30).raise_for_status()
        return f"sub-{cid}"
    data = {
        "accounts": [{"id": cid, "name": tag, "crmId": acc, "RevBridgeCrm__c": crm}],
        "subscriptions": [
            {
                "account": cid,
                "subscriptionNumber": f"S-{cid}",
                "plans": [
                    {"plan": "PRP-CORE-USD-MONTHLY"},
                    {"plan": "PRP-SEAT-USD-MONTHLY", "quantity": 5},
                ],
            }
        ],
    }
    httpx.post(url + "/_sandbox/seed", json=data, timeout=30).raise_for_status()
    return f"S-{cid}"


def _catalog(billing: str, url: str, connector: Any) -> None:
    if billing == "zuora":
        httpx.post(
            url + "/_sandbox/seed", json={"products": zuora_catalog()}, timeout=30
        ).raise_for_status()
        return
    driver = {"chargebee": ChargebeeDriver, "stripe": StripeDriver, "recurly": RecurlyDriver}
    driver[billing](url, connector).seed_catalog()


@pytest.mark.parametrize(("billing_name", "crm_name"), PAIRS)
def test_a_reconciliation_on_the_pair(billing_name: str, crm_name: str, tmp_path: Path) -> None:
    crm_em: Any = (
        SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
        if crm_name == "salesforce"
        else HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET, limits=False)
    )
    with ServerThread({_billing_emulator(billing_name): 0, crm_em: 0}) as thread:
        urls = dict(thread.urls)
        for missing in ("chargebee", "stripe", "salesforce", "hubspot"):
            urls.setdefault(missing, "http://127.0.0.1:9")
        settings = pair_settings(urls, billing_name, crm_name, "unused")
        billing, crm = build_billing(settings), build_crm(settings)
        url = urls[billing_name]
        side: Any = (
            SalesforceSide(SalesforceDriver(urls["salesforce"], crm), billing_name)
            if crm_name == "salesforce"
            else HubSpotSide(HubSpotDriver(urls["hubspot"], HS_TOKEN), billing_name)
        )
        _catalog(billing_name, url, billing)
        side.catalog()
        who = {}
        for tag in ("clean", "drift"):
            cid = _customer_id(billing_name, billing, tag)
            acc = side.account(f"{tag} {billing_name}", cid)
            sub = _customer(billing_name, url, billing, cid, crm_name, acc)
            side.billing_fields(acc, 1_234_00 if tag == "drift" else MRR, "active")
            side.won_deal(acc, f"Deal {tag}", DEAL, sub)
            who[tag] = acc
        ghost = side.account(f"Ghost {billing_name}", None)

        acts = ReconcileActivities(billing, crm, ROOT / "policies" / "products.yaml", tmp_path)
        scan = acts.reconcile_scan(ScanInput(today=DAY))
        found = {f.discrepancy.kind: f for f in scan.findings}
        assert set(found) == {rx.Kind.CRM_FIELD_DRIFT, rx.Kind.ACCOUNT_WITHOUT_CUSTOMER}, [
            (f.discrepancy.kind.value, f.discrepancy.evidence) for f in scan.findings
        ]
        assert len(scan.findings) == 2
        drift = found[rx.Kind.CRM_FIELD_DRIFT]
        assert drift.account_id == who["drift"] and drift.discrepancy.evidence["billing"] == str(
            MRR
        )
        assert found[rx.Kind.ACCOUNT_WITHOUT_CUSTOMER].account_id == ghost

        records = [rx.record_of(f, DAY, DAY, rx.ExceptionStatus.OPEN) for f in scan.findings]
        for _ in range(2):  # upserts by stable ID: the second adds nothing
            assert (
                acts.reconcile_upsert_exceptions(UpsertExceptionsInput(records=records)).failed
                == {}
            )
        stored = crm_reader(crm).stored_exceptions(DAY - timedelta(days=30))
        assert sorted(s.id for s in stored) == sorted(r.id for r in records)
