"""A flaky network against the new use cases' connectors (``connectors/{sync,reconcile,revenue,
expansion}/``), through the sandboxes' fault injection (``/_sandbox/faults``):

- a 429 with ``Retry-After`` is ``RATE_LIMITED`` carrying the wait, a 500 and a lost answer are
  ``RETRYABLE``, a 400 is ``PERMANENT`` — the kinds Temporal's retry policy acts on
  (``activities/errors.py``), as the platform connectors are held to in tests/contract;
- a write whose answer is lost after the vendor committed it (``commit_then_timeout``) is
  retried the way the activity's retry would call it again, and the effect is there once (the
  vendor's records counted, or the same idempotency key on both attempts in the request ledger).

One table: each row a connector family's call, the request it makes, and how to count its effect.
Marketing Cloud, Zendesk and NetSuite have the same checks in their own packages
(tests/marketing_cloud/test_connector.py, tests/zendesk/test_connector.py,
tests/netsuite/test_netsuite_connector.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from hubspot.crm.companies import SimplePublicObjectInputForCreate as NewCompany

from activities.errors import to_application_error
from connectors.base import ConnectorError, ErrorKind
from connectors.expansion import expansion_crm, usage_source
from connectors.reconcile import billing_reader, crm_reader
from connectors.registry import build_billing, build_crm
from connectors.revenue import revenue_source
from connectors.sync import sync_billing, sync_crm
from domain.expansion import SignalRecord
from domain.reconcile import ExceptionRecord, ExceptionStatus, Kind, Severity
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator
from sandbox.stripe import StripeEmulator
from tests.pairs import (
    CB_KEY,
    HS_SECRET,
    HS_TOKEN,
    SF_ID,
    SF_SECRET,
    STRIPE_KEY,
    STRIPE_SECRET,
    pair_settings,
)


@dataclass
class World:
    urls: dict[str, str]
    cb: Any
    stripe: Any
    sf: Any
    hs: Any


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    emulators = {
        ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=100_000): 0,
        StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET): 0,
        SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET): 0,
        HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET, rate_limit_per_10s=5000): 0,
    }
    with ServerThread(emulators) as thread:
        urls = thread.urls
        base = pair_settings(urls, "chargebee", "salesforce", "flaky")  # http timeout 2 s
        hubspot = base.model_copy(update={"crm": "hubspot"})
        stripe = base.model_copy(update={"billing": "stripe"})
        yield World(
            urls, build_billing(base), build_billing(stripe), build_crm(base), build_crm(hubspot)
        )


@pytest.fixture(autouse=True)
def _no_faults_left(world: World) -> Iterator[None]:
    yield
    for url in world.urls.values():
        httpx.delete(url + "/_sandbox/faults")


def fault(world: World, vendor: str, method: str, path: str, **spec: Any) -> None:
    body = {"method": method, "path": path, "times": 1, **spec}
    httpx.post(world.urls[vendor] + "/_sandbox/faults", json=body).raise_for_status()


def ledger(world: World, vendor: str, method: str, path: str) -> list[dict[str, Any]]:
    import re

    rows = httpx.get(world.urls[vendor] + "/_sandbox/requests").json()
    rows = rows.get("requests", rows) if isinstance(rows, dict) else rows
    return [r for r in rows if r["method"] == method and re.fullmatch(path, r["path"])]


# --- seeds ------------------------------------------------------------------------------------


def cb_customer(w: World) -> str:
    cid = f"cus_flaky_{uuid.uuid4().hex[:8]}"
    w.cb.client.Customer.create({"id": cid, "company": "Flaky Co", "email": "ops@flaky.test"})
    return cid


def stripe_customer(w: World) -> str:
    return w.stripe.client.v1.customers.create({"name": "Flaky Co", "email": "ops@flaky.test"}).id


def sf_account(w: World) -> str:
    customer = f"cus_flaky_{uuid.uuid4().hex[:8]}"  # the billing link is unique per account
    fields = {"Name": "Flaky Co", "Billing_Customer_Id__c": customer, "Billing_Platform__c": "chargebee"}  # fmt: skip
    return w.sf._call(lambda sf: sf.Account.create(fields), what="seed")["id"]


def hs_company(w: World) -> str:
    props = {"name": "Flaky Co", "domain": f"{uuid.uuid4().hex[:8]}.flaky.test"}
    return str(w.hs._companies.create(NewCompany(properties=props)).id)


def sf_count(w: World, soql: str) -> int:
    return len(w.sf.query(soql))


def exception(uid: str, account: str | None = None) -> ExceptionRecord:
    return ExceptionRecord(
        id=f"rx-flaky-{uid}",
        kind=Kind.SUBSCRIPTION_MISMATCH,
        severity=Severity.LOW,
        status=ExceptionStatus.OPEN,
        account_id=account,
        customer_id="cus_x",
        records=["sub_1"],
        evidence={"mrr": "billing 4900, CRM 5900"},
        fix="set MRR to 49.00",
        first_seen=date(2026, 1, 2),
        last_seen=date(2026, 1, 2),
    )


def signal(uid: str, account: str) -> SignalRecord:
    return SignalRecord(
        key=f"exp-flaky-{uid}",
        account_id=account,
        billing="chargebee",
        customer_id="cus_x",
        subscription_id="sub_x",
        item="api-calls",
        status="Open",
        current_price_id="api-calls-starter",
        workflow_id=f"expansion:chargebee:cus_{uid}",
    )


# --- the table --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One family's call: the request it makes, how to make it, how to count its effect."""

    family: str
    vendor: str
    method: str
    path: str
    #: (world, uid) -> a zero-argument call (seeded already), and its effect counter (or None:
    #: a read, or a field set the vendor keys by idempotency header)
    prepare: Callable[[World, str], tuple[Callable[[], Any], Callable[[], int] | None]]
    #: the request header a retry must repeat (the vendor's idempotency key), if any
    key_header: str | None = None
    #: what the vendor's 429 + Retry-After: 7 must become at least
    min_wait: float = 7.0


def _sync_cb(w: World, uid: str) -> tuple[Callable[[], Any], None]:
    cid = cb_customer(w)
    return lambda: sync_billing(w.cb).sync_write(cid, {"account_name": f"Flaky {uid}"}, f"rb-{uid}"), None  # fmt: skip


def _sync_stripe(w: World, uid: str) -> tuple[Callable[[], Any], None]:
    cid = stripe_customer(w)
    return lambda: sync_billing(w.stripe).sync_write(cid, {"account_name": f"Flaky {uid}"}, f"rb-{uid}"), None  # fmt: skip


def _sync_sf(w: World, uid: str) -> tuple[Callable[[], Any], None]:
    acct = sf_account(w)
    return lambda: sync_crm(w.sf).sync_write(acct, {"plan": f"plan-{uid}"}), None


def _sync_sf_bulk(w: World, uid: str) -> tuple[Callable[[], Any], None]:
    accts = [sf_account(w) for _ in range(2)]

    def call() -> None:
        assert sync_crm(w.sf).sync_bulk_write({a: {"plan": f"plan-{uid}"} for a in accts}) == {}

    return call, None


def _sync_hs(w: World, uid: str) -> tuple[Callable[[], Any], None]:
    company = hs_company(w)
    return lambda: sync_crm(w.hs).sync_write(company, {"plan": f"plan-{uid}"}), None


def _sync_hs_bulk(w: World, uid: str) -> tuple[Callable[[], Any], None]:
    companies = [hs_company(w) for _ in range(2)]

    def call() -> None:
        assert sync_crm(w.hs).sync_bulk_write({c: {"plan": f"plan-{uid}"} for c in companies}) == {}

    return call, None


def _reconcile_sf(w: World, uid: str) -> tuple[Callable[[], Any], Callable[[], int]]:
    record = exception(uid, sf_account(w))

    def call() -> None:
        assert crm_reader(w.sf).upsert_exceptions([record]) == {}

    soql = f"SELECT Id FROM Billing_Exception__c WHERE Exception_Id__c = '{record.id}'"  # noqa: S608 (a test's own ID)
    return call, lambda: sf_count(w, soql)


def _reconcile_hs(w: World, uid: str) -> tuple[Callable[[], Any], Callable[[], int]]:
    record = exception(uid, hs_company(w))
    book = crm_reader(w.hs)

    def call() -> None:
        assert book.upsert_exceptions([record]) == {}

    def count() -> int:  # every ticket, paged, with its key (search lags its writes)
        found, after = 0, None
        while True:
            params = {"limit": 100, "properties": "revbridge_key", **({"after": after} if after else {})}  # fmt: skip
            page = httpx.get(
                w.urls["hubspot"] + "/crm/v3/objects/tickets",
                params=params,
                headers={"Authorization": f"Bearer {HS_TOKEN}"},
            ).json()
            found += sum(
                1 for t in page["results"] if record.id in str(t["properties"].get("revbridge_key"))
            )
            after = (page.get("paging") or {}).get("next", {}).get("after")
            if not after:
                return found

    return call, count


def _reconcile_cb_read(w: World, uid: str) -> tuple[Callable[[], Any], None]:
    cb_customer(w)
    return lambda: billing_reader(w.cb).read_billing(date(2026, 1, 1), {}), None


def _expansion_sf(w: World, uid: str) -> tuple[Callable[[], Any], Callable[[], int]]:
    record = signal(uid, sf_account(w))
    soql = f"SELECT Id FROM Expansion_Signal__c WHERE RevBridge_Key__c = '{record.key}'"  # noqa: S608
    return lambda: expansion_crm(w.sf).upsert_signal(record), lambda: sf_count(w, soql)  # type: ignore[union-attr]


def _expansion_cb_read(w: World, uid: str) -> tuple[Callable[[], Any], None]:
    cid = cb_customer(w)
    return lambda: usage_source(w.cb).metered_plans([cid]), None  # type: ignore[union-attr]


def _revenue_cb_read(w: World, uid: str) -> tuple[Callable[[], Any], None]:
    return lambda: revenue_source(w.cb).revenue_lines(
        date(2026, 1, 1), date(2026, 1, 31), None, 50
    ), None


def _revenue_stripe_read(w: World, uid: str) -> tuple[Callable[[], Any], None]:
    return lambda: revenue_source(w.stripe).revenue_lines(date(2026, 1, 1), date(2026, 1, 31), None, 50), None  # fmt: skip


CB_KEY_HEADER = "chargebee-idempotency-key"
CALLS = [
    Call("sync", "chargebee", "POST", r"/api/v2/customers/[^/]+", _sync_cb, CB_KEY_HEADER),
    Call("sync", "stripe", "POST", r"/v1/customers/[^/]+", _sync_stripe, "idempotency-key", 2.0),
    Call("sync", "salesforce", "PATCH", r"/services/data/v[0-9.]+/sobjects/Account/[^/]+", _sync_sf, None, 60.0),
    Call("sync-bulk", "salesforce", "PATCH", r"/services/data/v[0-9.]+/composite/sobjects/?", _sync_sf_bulk, None, 60.0),
    Call("sync", "hubspot", "PATCH", r"/crm/v3/objects/companies/[^/]+", _sync_hs),
    Call("sync-bulk", "hubspot", "POST", r"/crm/v3/objects/companies/batch/update", _sync_hs_bulk),
    Call("reconcile", "salesforce", "PATCH", r"/services/data/v[0-9.]+/composite/sobjects/Billing_Exception__c/Exception_Id__c/?", _reconcile_sf, None, 60.0),
    Call("reconcile", "hubspot", "POST", r"/crm/v3/objects/tickets/batch/upsert", _reconcile_hs),
    Call("reconcile-read", "chargebee", "GET", r"/api/v2/.*", _reconcile_cb_read),
    Call("expansion", "salesforce", "PATCH", r"/services/data/v[0-9.]+/sobjects/Expansion_Signal__c/RevBridge_Key__c/.*", _expansion_sf, None, 60.0),
    Call("expansion-read", "chargebee", "GET", r"/api/v2/.*", _expansion_cb_read),
    Call("revenue-read", "chargebee", "GET", r"/api/v2/.*", _revenue_cb_read),
    Call("revenue-read", "stripe", "GET", r"/v1/.*", _revenue_stripe_read, None, 2.0),
]  # fmt: skip
IDS = [f"{c.family}-{c.vendor}" for c in CALLS]


def _rate_limit(c: Call) -> dict[str, Any]:
    if c.vendor == "salesforce":  # Salesforce's "slow down": 403 REQUEST_LIMIT_EXCEEDED
        body = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
        return {"kind": "status", "status": 403, "body": body}
    return {"kind": "status", "status": 429, "retry_after": 7}


FAULTS = ["rate-limited", "server-error", "bad-request"]


@pytest.mark.parametrize("case", FAULTS)
@pytest.mark.parametrize("c", CALLS, ids=IDS)
def test_errors_are_classified_and_a_retry_succeeds(world: World, c: Call, case: str) -> None:
    uid = uuid.uuid4().hex[:8]
    call, count = c.prepare(world, uid)
    spec: dict[str, Any] = {
        "rate-limited": _rate_limit(c),
        "server-error": {"kind": "status", "status": 500},
        "bad-request": {"kind": "status", "status": 400},
    }[case]
    fault(world, c.vendor, c.method, c.path, **spec)
    with pytest.raises(ConnectorError) as err:
        call()
    kind = {"rate-limited": ErrorKind.RATE_LIMITED, "server-error": ErrorKind.RETRYABLE}.get(
        case, ErrorKind.PERMANENT
    )
    assert err.value.kind is kind, (str(err.value), err.value.status)
    assert "\n" not in str(err.value) and len(str(err.value)) <= 500
    assert to_application_error(err.value).non_retryable is (kind is ErrorKind.PERMANENT)
    if kind is ErrorKind.RATE_LIMITED:
        assert err.value.retry_after is not None and err.value.retry_after >= c.min_wait
    call()  # the activity's next attempt: the fault was spent
    if count is not None:
        assert count() == 1


@pytest.mark.parametrize("c", [c for c in CALLS if c.method != "GET"], ids=[i for c, i in zip(CALLS, IDS, strict=True) if c.method != "GET"])  # fmt: skip
def test_a_write_committed_then_timed_out_is_one_effect_after_the_retry(
    world: World, c: Call
) -> None:
    uid = uuid.uuid4().hex[:8]
    call, count = c.prepare(world, uid)
    httpx.delete(world.urls[c.vendor] + "/_sandbox/requests")
    fault(world, c.vendor, c.method, c.path, kind="commit_then_timeout", delay_s=3)
    with pytest.raises(ConnectorError) as err:
        call()
    assert err.value.kind is ErrorKind.RETRYABLE, str(err.value)
    call()  # Temporal retries the activity
    writes = ledger(world, c.vendor, c.method, c.path)
    assert len(writes) >= 2 and writes[0].get("fault") == "commit_then_timeout"
    if c.key_header:  # the retry carries the committed attempt's key: the vendor answers it
        keys = {w["headers"].get(c.key_header) for w in writes}
        assert len(keys) == 1 and None not in keys, keys
    if count is not None:
        assert count() == 1


def test_the_table_covers_every_new_family() -> None:
    assert {c.family.split("-")[0] for c in CALLS} == {"sync", "reconcile", "expansion", "revenue"}
    assert datetime.now(UTC).year >= 2026  # (the seeds' months are in the past)
