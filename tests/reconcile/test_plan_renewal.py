"""The "subscriptions ↔ CRM fields" check compares the plan and the renewal date the account sync
writes (Salesforce ``Billing_Plan__c`` / ``Next_Renewal__c``, HubSpot ``billing_plan`` /
``next_renewal``), on Chargebee × Salesforce and Chargebee × HubSpot through the sandboxes.

The seeded book (harness/reconcile_book.py) gets, on every linked account, the plan and renewal
the account sync itself reads from billing and writes to the CRM (``connectors/sync``); then one
clean customer's plan and another's renewal date are changed in the CRM. The scan finds exactly
the book's planted discrepancies plus those two drifts (no false positive on the clean customers
the sync wrote), the restore writes billing's values back, and the next scan finds neither."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from activities.reconcile import ReconcileActivities, ScanInput
from connectors.reconcile import crm_reader
from connectors.registry import build_billing, build_crm
from connectors.sync import sync_billing, sync_crm
from domain import reconcile as rx
from harness.drivers import ChargebeeDriver, HubSpotDriver, SalesforceDriver
from harness.reconcile_book import PLANTED, Planted, seed
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator
from tests.pairs import CB_KEY, HS_SECRET, HS_TOKEN, SF_ID, SF_SECRET, pair_settings

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 12, 1)


@pytest.fixture(scope="module", params=["salesforce", "hubspot"])
def book(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ReconcileActivities, Any, Planted]]:
    cb_em = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=None)
    crm_em: Any = (
        SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
        if request.param == "salesforce"
        else HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET, limits=False)
    )
    with ServerThread({cb_em: 0, crm_em: 0}) as thread:
        urls = dict(thread.urls)
        for missing in ("stripe", "salesforce", "hubspot"):
            urls.setdefault(missing, "http://127.0.0.1:9")
        settings = pair_settings(urls, "chargebee", request.param, "unused")
        billing, crm = build_billing(settings), build_crm(settings)
        side: Any = (
            SalesforceDriver(urls["salesforce"], crm)
            if request.param == "salesforce"
            else HubSpotDriver(urls["hubspot"], HS_TOKEN)
        )
        planted = seed(ChargebeeDriver(urls["chargebee"], billing), side, cb_em, "pr")
        reports = tmp_path_factory.mktemp("reports")
        yield ReconcileActivities(billing, crm, ROOT / "policies" / "products.yaml", reports), crm, planted  # fmt: skip


def drifts(scan: Any) -> dict[str, tuple[str, str, str]]:
    """account ID → (field, CRM value, billing value) of each CRM field drift."""
    return {
        f.account_id: (
            f.discrepancy.evidence["field"],
            f.discrepancy.evidence["crm"],
            f.discrepancy.evidence["billing"],
        )
        for f in scan.findings
        if f.discrepancy.kind is rx.Kind.CRM_FIELD_DRIFT
    }


def test_plan_and_renewal_compared_where_the_crm_holds_them(
    book: tuple[ReconcileActivities, Any, Planted],
) -> None:
    acts, crm, planted = book
    sb, sc = sync_billing(acts.billing), sync_crm(crm)
    written: dict[str, dict[str, Any]] = {}
    for _tag, (account, customer) in planted.who.items():
        if account and customer:
            view = sb.sync_view(customer)
            written[account] = {"plan": view["plan"], "next_renewal": view["next_renewal"]}
            sc.sync_write(account, written[account])
    wrong_plan, wrong_renewal, untouched = (planted.who[t][0] for t in planted.clean[:3])
    assert wrong_plan and wrong_renewal and untouched
    true_plan = written[wrong_plan]["plan"]
    true_renewal = written[wrong_renewal]["next_renewal"]
    assert true_plan and true_renewal  # the sync wrote both: the check has values to compare
    later = (date.fromisoformat(true_renewal) + timedelta(days=30)).isoformat()
    sc.sync_write(wrong_plan, {"plan": "starter-USD-monthly"})
    sc.sync_write(wrong_renewal, {"next_renewal": later})

    scan = acts.reconcile_scan(ScanInput(today=DAY))
    kinds = sorted(f.discrepancy.kind.value for f in scan.findings)
    expected = sorted([*(k.value for k in PLANTED.values()), "crm_field_drift", "crm_field_drift"])
    assert kinds == expected, [(f.discrepancy.kind.value, f.discrepancy.evidence)
                               for f in scan.findings]  # fmt: skip
    found = drifts(scan)
    assert found[wrong_plan] == ("plan", "starter-USD-monthly", true_plan)
    assert found[wrong_renewal] == ("renewal", later, true_renewal)
    assert untouched not in found
    assert {v[0] for k, v in found.items() if k not in (wrong_plan, wrong_renewal)} == {"mrr"}

    # restored from billing (what the workflow's housekeeping write sends), then no drift left
    fixes = [
        rx.FieldRestore(account_id=a, field=found[a][0], value=found[a][2])
        for a in (wrong_plan, wrong_renewal)
    ]
    assert crm_reader(crm).restore_fields(fixes) == {}
    assert sc.sync_view(wrong_plan)["plan"] == true_plan
    assert str(sc.sync_view(wrong_renewal)["next_renewal"])[:10] == true_renewal
    again = drifts(acts.reconcile_scan(ScanInput(today=DAY)))
    assert wrong_plan not in again and wrong_renewal not in again


def test_an_org_without_the_sync_fields_is_compared_on_mrr_and_status(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Salesforce without ``Billing_Plan__c`` / ``Next_Renewal__c``: the accounts query answers
    ``INVALID_FIELD``, the read falls back to MRR and status, and the book's findings are the
    planted ones (no plan or renewal drift, no failure)."""
    cb_em = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=None)
    sf_em = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    account = sf_em.schema.get("Account")
    for name in ("billing_plan__c", "next_renewal__c"):
        account.fields.pop(name)
    with ServerThread({cb_em: 0, sf_em: 0}) as thread:
        urls = dict(thread.urls)
        for missing in ("stripe", "hubspot"):
            urls.setdefault(missing, "http://127.0.0.1:9")
        settings = pair_settings(urls, "chargebee", "salesforce", "unused")
        billing, crm = build_billing(settings), build_crm(settings)
        planted = seed(ChargebeeDriver(urls["chargebee"], billing),
                       SalesforceDriver(urls["salesforce"], crm), cb_em, "nf")  # fmt: skip
        acts = ReconcileActivities(
            billing, crm, ROOT / "policies" / "products.yaml", tmp_path_factory.mktemp("r")
        )
        side = crm_reader(crm).read_crm("chargebee", None)
        assert side.accounts and all(a.holds == ["mrr", "status"] for a in side.accounts)
        scan = acts.reconcile_scan(ScanInput(today=DAY))
    kinds = sorted(f.discrepancy.kind.value for f in scan.findings)
    assert kinds == sorted(k.value for k in PLANTED.values())
    assert planted.clean


def test_the_plan_and_renewal_of_the_subscription_the_sync_writes() -> None:
    """domain.reconcile: the live subscription with the highest MRR gives the plan and renewal
    (the account sync's choice); an empty CRM field is not written yet, not a drift; two
    subscriptions tied on the highest MRR that disagree leave both unchecked."""
    june, july = date(2027, 6, 1), date(2027, 7, 1)
    subs = [
        rx.Sub(id="s1", customer_id="c", status="active", mrr=9_000, plan="pro", renewal=june),
        rx.Sub(id="s2", customer_id="c", status="active", mrr=1_000, plan="addon", renewal=july),
    ]

    def drift(acc: rx.Account, subs: list[rx.Sub] = subs) -> set[tuple[str, str]]:
        book = rx.Book(subscriptions=subs, accounts=[acc],
                       customers=[rx.Customer(id="c", crm_account_id="a")])  # fmt: skip
        return {(d.evidence["field"], d.evidence["crm"]) for d in rx.check(book)
                if d.kind is rx.Kind.CRM_FIELD_DRIFT}  # fmt: skip

    base = rx.Account(id="a", is_customer=True, billing_customer_id="c", mrr=10_000,
                      status="active")  # fmt: skip
    assert drift(base.model_copy(update={"plan": "pro", "renewal": june})) == set()
    assert drift(base) == set()  # plan and renewal not written yet
    assert drift(base.model_copy(update={"plan": "addon", "renewal": july})) == {
        ("plan", "addon"), ("renewal", "2027-07-01"),
    }  # fmt: skip
    tied = [subs[0], subs[1].model_copy(update={"mrr": 9_000})]
    acc = base.model_copy(update={"mrr": 18_000, "plan": "other", "renewal": july})
    assert drift(acc, tied) == set()
