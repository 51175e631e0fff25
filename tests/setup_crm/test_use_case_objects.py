"""The new use cases' Salesforce objects and fields (reconciliation's ``Billing_Exception__c``,
expansion's ``Expansion_Signal__c``, draft ``Quote`` / ``QuoteLineItem`` and the ``RevBridge_Key__c``
upsert keys, the account sync's golden-record fields on Account): a real org has none of them, so
`revbridge setup crm` creates them and `revbridge doctor` names each one missing with its fix.
Proved by the use cases' own connectors writing to what setup created on a fresh org.

Each test runs its own emulator on a free port."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from connectors.expansion.salesforce import SalesforceExpansion
from connectors.reconcile.salesforce import SalesforceBook
from connectors.salesforce_fields import NEEDS
from domain.expansion import SignalRecord
from domain.preflight import CheckStatus
from domain.reconcile import ExceptionRecord, ExceptionStatus, Kind, Severity
from sandbox.salesforce import SalesforceEmulator
from sandbox.salesforce.tooling import fresh_org
from tests.setup_crm.org import crm_checks, setup_crm, sf_crm, sf_env

#: what the new use cases write, by object (issue 19, 20, 21)
NEW = {
    "Account": (
        "Billing_Plan__c",
        "Next_Renewal__c",
        "Payment_Health__c",
        "Billing_Contact_Email__c",
    ),
    "Opportunity": ("RevBridge_Key__c",),
    "Quote": ("RevBridge_Key__c",),
    "QuoteLineItem": ("RevBridge_Key__c",),
    "Expansion_Signal__c": ("Status__c", "Reasons__c", "Confidence__c", "Quote__c"),
    "Billing_Exception__c": ("Exception_Id__c", "Evidence__c", "Severity__c", "Status__c"),
}


def test_needs_lists_every_field_the_new_use_cases_write() -> None:
    for obj, fields in NEW.items():
        assert set(fields) <= set(NEEDS[obj]), obj


def test_every_custom_name_a_salesforce_connector_uses_is_in_needs() -> None:
    """A guard for the next use case: any ``…__c`` a Salesforce connector names (the CRM
    connector and each use case's) is an object or field setup creates and doctor checks."""
    root = Path(__file__).resolve().parents[2] / "connectors"
    sources = [*sorted(root.glob("salesforce*.py")), *sorted(root.glob("*/salesforce.py"))]
    used = {
        m for path in sources for m in re.findall(r"\b[A-Za-z][A-Za-z0-9_]*__c\b", path.read_text())
    }
    known = set(NEEDS) | {f for fields in NEEDS.values() for f in fields}
    assert sorted(used - known) == []


def test_doctor_names_each_missing_use_case_object_and_field_with_its_fix(
    server: tuple[SalesforceEmulator, str], sf: SalesforceEmulator
) -> None:
    sf.configure_org(
        drop_fields=["Account.Billing_Plan__c", "Quote.RevBridge_Key__c"],
        drop_objects=["Billing_Exception__c"],
    )
    failed = {c.name: c for c in crm_checks(sf_env(server[1])) if c.failed}
    assert set(failed) == {
        "field:Account.Billing_Plan__c",
        "field:Quote.RevBridge_Key__c",
        "object:Billing_Exception__c",
    }
    line = failed["object:Billing_Exception__c"].line()
    assert "run `revbridge setup crm`" in line and "\n" not in line
    assert "revbridge setup crm" in failed["field:Account.Billing_Plan__c"].fix
    assert "as string(64)" in failed["field:Quote.RevBridge_Key__c"].fix


def test_an_org_without_quotes_is_told_to_turn_them_on(
    server: tuple[SalesforceEmulator, str], sf: SalesforceEmulator
) -> None:
    sf.configure_org(drop_objects=["QuoteLineItem", "Quote"])
    failed = {c.name: c for c in crm_checks(sf_env(server[1])) if c.failed}
    assert "turn on Quotes (Setup > Quote Settings > Enable)" in failed["object:Quote"].fix


def test_setup_creates_them_on_a_fresh_org_and_the_use_cases_write_to_them(
    server: tuple[SalesforceEmulator, str],
    sf: SalesforceEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fresh_org(sf)
    assert sf.schema.get("Billing_Exception__c") is None
    assert sf.schema.get("Expansion_Signal__c") is None
    code, lines, _ = setup_crm(monkeypatch, capsys, sf_env(server[1]), "--dry-run")
    assert code == 0
    plan = "\n".join(lines)
    assert "+ salesforce: create object Billing_Exception__c — Billing Exception" in plan
    assert "+ salesforce: create object Expansion_Signal__c — Expansion Signal" in plan
    assert "create field Expansion_Signal__c.Quote__c — Lookup to Quote" in plan
    assert "create field Account.Billing_Contact_Email__c — Email" in plan
    assert "create field Expansion_Signal__c.Confidence__c — Percent(5, 2)" in plan
    code, lines, err = setup_crm(monkeypatch, capsys, sf_env(server[1]))
    assert code == 0, (lines, err)
    checks = crm_checks(sf_env(server[1]))
    assert all(c.status is CheckStatus.OK for c in checks), [c.line() for c in checks]

    client = sf_crm(server[1])
    acct = sf.seed({"records": {"Account": [{"Name": "Globex"}]}})["ids"]["Account"][0]
    exception = ExceptionRecord(
        id="EXC-1",
        kind=Kind.DEAL_WITHOUT_SUBSCRIPTION,
        severity=Severity.HIGH,
        status=ExceptionStatus.OPEN,
        account_id=acct,
        customer_id="cus_1",
        records=["006x"],
        evidence={"deal": "won"},
        fix="create the subscription",
        approver_role="finance",
        first_seen=date(2026, 12, 1),
        last_seen=date(2026, 12, 3),
    )
    assert SalesforceBook(client).upsert_exceptions([exception, exception]) == {}
    rows = sf.records("Billing_Exception__c")
    assert len(rows) == 1 and rows[0]["Age_Days__c"] == 2 and rows[0]["Severity__c"] == "high"

    signal = SignalRecord(
        key="exp-1",
        account_id=acct,
        billing="chargebee",
        customer_id="cus_1",
        subscription_id="sub_1",
        item="api_calls",
        status="Open",
        current_price_id="basic",
        recommended_price_id="pro",
        upgrade_mrr=5000,
        days_to_limit=12,
        crossing=date(2026, 12, 15),
        confidence=0.8,
        reasons=["growing 4 % a week"],
        workflow_id="expansion:chargebee:cus_1",
    )
    rid = SalesforceExpansion(client).upsert_signal(signal)
    assert SalesforceExpansion(client).upsert_signal(signal) == rid
    (row,) = sf.records("Expansion_Signal__c")
    assert row["Confidence__c"] == 80 and row["Status__c"] == "Open"
    client.client.Account.update(acct, {"Billing_Plan__c": "pro", "Next_Renewal__c": "2027-01-01"})
