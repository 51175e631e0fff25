"""`revbridge doctor`'s usage-based expansion lines (cli/doctor_expansion.py) against the
sandboxes through the connectors: per billing platform the upgrade target (Zuora's product rate
plan custom field ``RevBridgeUpgradeTo__c`` by the Describe API, Recurly's plan custom field
``upgrade_to``, Chargebee's and Stripe's plan price metadata), per CRM the expansion's records
(Salesforce ``Expansion_Signal__c`` and its fields, HubSpot's ``expansion_*`` deal properties and
the quote / line item keys): FAIL while missing with the expansion switched on, OK once an admin
made them, WARN for the same gaps while it is off (mode observe, or no intake Schedule yet); and
the switch read from a real namespace (the intake Schedule absent, then created by the worker's
own ``ensure_expansion_schedule``, then paused)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from cli.doctor_expansion import expansion_checks, intake_scheduled
from connectors.hubspot_setup import setup_apply, setup_plan
from connectors.registry import build_crm
from connectors.salesforce_fields import NEEDS
from domain.preflight import Check, CheckStatus
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.recurly import RecurlyEmulator
from sandbox.recurly.emulator import DEFAULT_CUSTOM_FIELDS
from sandbox.salesforce import SalesforceEmulator
from sandbox.stripe import StripeEmulator
from sandbox.zuora import ZuoraEmulator
from sandbox.zuora.describe import define_custom_field
from tests.doctor.test_doctor import NEEDED_RETENTION, SEARCH_ATTRIBUTES, namespace
from tests.pairs import (
    CB_KEY,
    HS_SECRET,
    HS_TOKEN,
    RECURLY_KEY,
    SF_ID,
    SF_SECRET,
    STRIPE_KEY,
    ZUORA_ID,
    ZUORA_SECRET,
    pair_settings,
)

ROOT = Path(__file__).resolve().parents[2]
NO_UPGRADE_FIELD = [f for f in DEFAULT_CUSTOM_FIELDS if f != ("plan", "upgrade_to")]


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[dict[str, Any]]:
    ems: dict[str, Any] = {
        "chargebee": ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=None),
        "stripe": StripeEmulator(api_key=STRIPE_KEY, realistic=False),
        "zuora": ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET),
        "recurly": RecurlyEmulator(api_key=RECURLY_KEY, rate_limit_per_minute=None),
        "recurly-bare": RecurlyEmulator(
            api_key=RECURLY_KEY, rate_limit_per_minute=None, custom_fields=NO_UPGRADE_FIELD
        ),
        "salesforce": SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET),
        "hubspot": HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET, limits=False),
    }
    with ServerThread({em: 0 for em in ems.values()}) as thread:
        urls = {name: f"http://{thread.host}:{thread.ports[em]}" for name, em in ems.items()}
        yield {"urls": urls, "ems": ems}


def settings(sandboxes: dict[str, Any], billing: str, crm: str, recurly: str = "recurly") -> Any:
    urls = {**sandboxes["urls"], "recurly": sandboxes["urls"][recurly]}
    return pair_settings(urls, billing, crm, "unused")


def lines(checks: list[Check]) -> dict[str, tuple[CheckStatus, str]]:
    out = {c.name: (c.status, c.detail) for c in checks if c.system == "expansion"}
    assert all(c.system == "expansion" for c in checks)
    return out


def status(checks: list[Check], name: str) -> CheckStatus:
    return lines(checks)[name][0]


def test_chargebee_plan_metadata(sandboxes: dict[str, Any]) -> None:
    s = settings(sandboxes, "chargebee", "salesforce")
    before = expansion_checks(s, scheduled=True)
    assert status(before, "switch") is CheckStatus.OK
    assert status(before, "upgrade-target:chargebee") is CheckStatus.FAIL
    assert status(before, "records:salesforce.Expansion_Signal__c") is CheckStatus.OK
    # the catalogue as a billing admin sets it up: Starter names Growth, the top tier nothing
    common = {"currency_code": "USD", "period": 1, "period_unit": "month", "item_type": "plan"}
    calls = "calls-dr-USD-monthly"
    seed = {"item_prices": [
        {**common, "id": "starter-dr-USD-monthly", "price": 10_000,
         "metadata": {"included_units": {calls: 10_000}, "upgrade_to": "growth-dr-USD-monthly"}},
        {**common, "id": "growth-dr-USD-monthly", "price": 30_000,
         "metadata": {"included_units": {calls: 50_000}}},
        {**common, "id": calls, "price": 2, "item_type": "addon", "metered": True},
    ]}  # fmt: skip
    url = sandboxes["urls"]["chargebee"]
    httpx.post(url + "/_sandbox/seed", json=seed, timeout=30).raise_for_status()
    after = lines(expansion_checks(s, scheduled=True))
    assert after["upgrade-target:chargebee"] == (
        CheckStatus.OK, "1 plan prices name their next tier (metadata upgrade_to)",
    )  # fmt: skip
    # a metered plan that names no next tier and is nobody's upgrade: reported, not fatal
    lone = {**common, "id": "lone-dr-USD-monthly", "price": 5_000,
            "metadata": {"included_units": {calls: 1_000}}}  # fmt: skip
    httpx.post(url + "/_sandbox/seed", json={"item_prices": [lone]}, timeout=30).raise_for_status()
    warned = lines(expansion_checks(s, scheduled=True))["upgrade-target:chargebee"]
    assert warned[0] is CheckStatus.WARN and "lone-dr-USD-monthly" in warned[1]


def test_stripe_price_metadata(sandboxes: dict[str, Any]) -> None:
    s = settings(sandboxes, "stripe", "salesforce")
    assert status(expansion_checks(s, scheduled=True), "upgrade-target:stripe") is CheckStatus.FAIL
    import stripe as stripe_lib

    sc = stripe_lib.StripeClient(
        STRIPE_KEY, base_addresses={"api": sandboxes["urls"]["stripe"]}, max_network_retries=0
    )
    meter = sc.v1.billing.meters.create(
        {
            "display_name": "API calls",
            "event_name": "api_calls_dr",
            "default_aggregation": {"formula": "sum"},
        }  # fmt: skip
    )
    calls = sc.v1.prices.create({"currency": "usd", "unit_amount": 2, "product_data": {
        "name": "API calls"}, "recurring": {"interval": "month", "usage_type": "metered",
                                           "meter": meter.id}})  # fmt: skip
    growth = sc.v1.prices.create({"currency": "usd", "unit_amount": 30_000,
        "recurring": {"interval": "month"}, "product_data": {"name": "Growth"},
        "metadata": {"included_units": json.dumps({calls.id: 50_000})}})  # fmt: skip
    sc.v1.prices.create({"currency": "usd", "unit_amount": 10_000,
        "recurring": {"interval": "month"}, "product_data": {"name": "Starter"},
        "metadata": {"included_units": json.dumps({calls.id: 10_000}),
                     "upgrade_to": growth.id}})  # fmt: skip
    assert status(expansion_checks(s, scheduled=True), "upgrade-target:stripe") is CheckStatus.OK


def test_zuora_product_rate_plan_field(sandboxes: dict[str, Any]) -> None:
    s = settings(sandboxes, "zuora", "salesforce")
    missing = lines(expansion_checks(s, scheduled=True))["upgrade-target:zuora"]
    assert missing == (
        CheckStatus.FAIL,
        "ProductRatePlan has no custom field RevBridgeUpgradeTo__c",
    )
    off = lines(expansion_checks(s, scheduled=False))
    assert off["switch"][0] is CheckStatus.WARN and "not running yet" in off["switch"][1]
    assert off["upgrade-target:zuora"][0] is CheckStatus.WARN  # the same gap, while off
    define_custom_field(sandboxes["ems"]["zuora"], "ProductRatePlan", "RevBridgeUpgradeTo__c")
    assert status(expansion_checks(s, scheduled=True), "upgrade-target:zuora") is CheckStatus.OK


def test_recurly_plan_custom_field(sandboxes: dict[str, Any]) -> None:
    bare = lines(expansion_checks(settings(sandboxes, "recurly", "salesforce", "recurly-bare"),
                                  scheduled=True))  # fmt: skip
    assert bare["upgrade-target:recurly"][0] is CheckStatus.FAIL
    assert "'upgrade_to' is not defined" in bare["upgrade-target:recurly"][1]
    ready = expansion_checks(settings(sandboxes, "recurly", "salesforce"), scheduled=True)
    assert status(ready, "upgrade-target:recurly") is CheckStatus.OK


def test_salesforce_expansion_signal(sandboxes: dict[str, Any]) -> None:
    s = settings(sandboxes, "recurly", "salesforce")
    name = "records:salesforce.Expansion_Signal__c"
    n = len(NEEDS["Expansion_Signal__c"])
    assert lines(expansion_checks(s, scheduled=True))[name] == (
        CheckStatus.OK, f"Expansion_Signal__c with its {n} fields",
    )  # fmt: skip
    schema = sandboxes["ems"]["salesforce"].schema
    signal = schema.get("Expansion_Signal__c")
    kept = signal.fields.pop("status__c")
    try:
        got = lines(expansion_checks(s, scheduled=True))[name]
        assert got == (CheckStatus.FAIL, "Expansion_Signal__c lacks Status__c")
    finally:
        signal.fields["status__c"] = kept
    schema.objects.pop("expansion_signal__c")
    try:
        got = lines(expansion_checks(s, scheduled=True))[name]
        assert got == (
            CheckStatus.FAIL,
            "the org has no Expansion_Signal__c (the expansion signal)",
        )
    finally:
        schema.add_object(signal)


def test_hubspot_expansion_properties(sandboxes: dict[str, Any]) -> None:
    s = settings(sandboxes, "recurly", "hubspot")
    fresh = lines(expansion_checks(s, scheduled=True))
    deals = fresh["records:hubspot.deals"]
    assert deals[0] is CheckStatus.FAIL and "expansion_status" in deals[1]
    assert fresh["records:hubspot.quotes"][0] is CheckStatus.FAIL
    from cli.crm_use_cases import expansion_properties

    crm = build_crm(s)
    setup_apply(crm, setup_plan(crm, expansion_properties()))  # `revbridge setup crm`
    done = lines(expansion_checks(s, scheduled=True))
    assert {k: v[0] for k, v in done.items() if k.startswith("records:")} == {
        "records:hubspot.deals": CheckStatus.OK,
        "records:hubspot.quotes": CheckStatus.OK,
        "records:hubspot.line_items": CheckStatus.OK,
    }


def test_observe_mode_is_off(sandboxes: dict[str, Any], tmp_path: Path) -> None:
    for f in (ROOT / "policies").iterdir():
        if f.is_file():
            (tmp_path / f.name).write_bytes(f.read_bytes())
    modes = (tmp_path / "modes.yaml").read_text().replace("expansion: assist", "expansion: observe")
    (tmp_path / "modes.yaml").write_text(modes)
    s = settings(sandboxes, "recurly", "salesforce", "recurly-bare").model_copy(
        update={"policy_dir": str(tmp_path)}
    )
    got = lines(expansion_checks(s, scheduled=True))
    assert got["switch"] == (
        CheckStatus.WARN, "off: mode observe in policies/modes.yaml (reads and reports only)",
    )  # fmt: skip
    assert got["upgrade-target:recurly"][0] is CheckStatus.WARN  # missing, but nothing runs


async def test_the_switch_follows_the_intake_schedule(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.expansion_schedule import IntakeSchedule, ensure_expansion_schedule

    ns = await namespace(client, NEEDED_RETENTION, SEARCH_ATTRIBUTES)  # as setup temporal
    monkeypatch.setenv("TEMPORAL_ADDRESS", client.service_client.config.target_host)
    monkeypatch.setenv("TEMPORAL_NAMESPACE", ns)
    for var in ("TEMPORAL_API_KEY", "TEMPORAL_PROFILE", "TEMPORAL_TLS"):
        monkeypatch.delenv(var, raising=False)
    assert await intake_scheduled() is False  # no worker started yet
    mine = await Client.connect(client.service_client.config.target_host, namespace=ns)
    await ensure_expansion_schedule(mine, IntakeSchedule(billing="chargebee", crm="salesforce"))
    assert await intake_scheduled() is True
    handle = mine.get_schedule_handle(IntakeSchedule(billing="x", crm="y").schedule_id)
    await handle.pause(note="doctor test")
    assert await intake_scheduled() is False
    await handle.delete()
