"""The account sync's door on Zuora and Recurly: which callouts and notifications become a
``SyncSignal`` (only with REVBRIDGE_ACCOUNT_SYNC on), one Temporal call planned each, payment
outcomes left on the dunning path, and an order that lowers MRR still rescoring churn."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from domain.golden import Side, SyncSignal
from domain.models import PaymentFailed, RiskSignal
from webhooks import recurly, router, zuora
from webhooks.errors import Rejected

AT = "2026-12-01T10:00:00Z"


@pytest.mark.parametrize(
    "body",
    [
        {"eventCategory": "AccountChanged", "accountId": "acc1", "accountNumber": "A-1"},
        {"eventCategory": "ContactChanged", "accountId": "acc1", "contactId": "c9"},
        {
            "eventCategory": "OrderProcessed",
            "orderNumber": "O-1",
            "accountId": "acc1",
            "subscriptionNumber": "S-1",
            "orderActionTypes": "AddProduct",
            "revbridgeKey": "",
        },
    ],
)
def test_zuora_account_and_order_callouts_reach_the_sync(body: dict) -> None:
    body = {**body, "eventTimestamp": AT}
    assert zuora.normalize(body) is None  # the sync is off
    signal = zuora.normalize(body, sync=True, delivery_id="req-1")
    assert isinstance(signal, SyncSignal)
    assert (signal.billing, signal.customer_id, signal.side) == ("zuora", "acc1", Side.BILLING)
    assert signal.event_id.startswith(body["eventCategory"] + ":")
    again = zuora.normalize(dict(body), sync=True, delivery_id="req-2")
    assert isinstance(again, SyncSignal)
    if body["eventCategory"] == "OrderProcessed":
        # an order is one change: its redelivery (a new Zuora-Request-Id) is the same event
        assert again == signal
    else:
        # two account edits in one instant send the same body and no event ID: each delivery
        # is its own trigger (a copy costs one more re-read; an edit is never taken for another)
        assert again.event_id != signal.event_id
    plan = router.plan_sync(signal, "account-sync-flush:zuora:salesforce")
    assert plan.first.id == "account:zuora:acc1" and plan.follow_up is None


def test_a_zuora_downgrade_order_rescores_churn_and_syncs() -> None:
    body = {
        "eventCategory": "OrderProcessed",
        "eventTimestamp": AT,
        "orderNumber": "O-2",
        "accountId": "acc1",
        "orderActionTypes": "UpdateProduct",
    }
    assert isinstance(zuora.normalize(body), RiskSignal)  # as before, without the sync
    both = zuora.normalize(body, sync=True)
    assert isinstance(both, zuora.SyncAndRisk)
    assert both.sync.customer_id == both.risk.customer_id == "acc1"
    # our own order still comes back as an echo first
    ours = {**body, "revbridgeKey": "rb-1"}
    assert type(zuora.normalize(ours, sync=True)).__name__ == "Echo"


def test_a_zuora_payment_declined_stays_on_the_dunning_path() -> None:
    body = {
        "eventCategory": "PaymentDeclined",
        "eventTimestamp": AT,
        "paymentId": "p1",
        "accountId": "acc1",
        "invoiceId": "inv1",
    }
    assert isinstance(zuora.normalize(body, sync=True), PaymentFailed)


def note(object_type: str, event_type: str, **ids: object) -> dict:
    return {
        "id": "n1",
        "object_type": object_type,
        "site_id": "s1",
        "event_type": event_type,
        "event_time": AT,
        **ids,
    }


def test_recurly_account_notifications_reach_the_sync_without_a_lookup() -> None:
    payload = note("account", "updated", account_code="acme-1")
    assert recurly.parse(payload) is None  # the sync is off
    parsed = recurly.parse(payload, sync=True)
    assert parsed is not None and parsed.kind == "account"
    lookup = object.__new__(recurly.RecurlyLookup)  # no client: an account needs no lookup
    signal = asyncio.run(lookup.resolve(parsed))
    assert isinstance(signal, SyncSignal)
    assert (signal.customer_id, signal.event_id, signal.side) == ("acme-1", "n1", Side.BILLING)
    with pytest.raises(Rejected):
        recurly.parse(note("account", "updated", account_code="a b"), sync=True)


def test_recurly_subscription_notifications_are_resolved_to_their_account() -> None:
    uuid = "0" * 31 + "a"
    parsed = recurly.parse(note("subscription", "updated", uuid=uuid), sync=True)
    assert parsed is not None and parsed.ref == f"uuid-{uuid}"
    lookup = object.__new__(recurly.RecurlyLookup)
    asked: list[str] = []

    def get_subscription(ref: str) -> SimpleNamespace:
        asked.append(ref)
        return SimpleNamespace(account=SimpleNamespace(code="acme-2"))

    lookup._rc = SimpleNamespace(get_subscription=get_subscription)
    lookup._get = lambda fn: fn()  # type: ignore[method-assign]
    signal = lookup._resolve(parsed)
    assert isinstance(signal, SyncSignal) and signal.customer_id == "acme-2"
    assert asked == [f"uuid-{uuid}"]  # one GET
    assert signal.occurred_at == datetime(2026, 12, 1, 10, tzinfo=UTC)


def test_recurly_payment_notifications_are_unchanged_by_the_sync() -> None:
    uuid = "1" * 32
    parsed = recurly.parse(note("payment", "failed", uuid=uuid), sync=True)
    assert parsed is not None and parsed.kind == "transaction" and parsed.failed
