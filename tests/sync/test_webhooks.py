"""The webhook door for the account sync: which events become a ``SyncSignal`` (and only with
REVBRIDGE_ACCOUNT_SYNC on), echoes dropped first, and one Temporal call planned per event."""

from __future__ import annotations

import pytest

from domain import golden
from domain.golden import Side, SyncSignal
from webhooks import chargebee, router, salesforce
from webhooks.errors import Rejected
from webhooks.parsing import Echo


def cb_event(event_type: str, content: dict, **extra: object) -> dict:
    return {
        "id": "ev_1",
        "event_type": event_type,
        "api_version": "v2",
        "occurred_at": 1_796_000_000,
        "content": content,
        **extra,
    }


@pytest.mark.parametrize(
    ("event_type", "content"),
    [
        ("customer_changed", {"customer": {"id": "cus_1"}}),
        ("subscription_changed", {"subscription": {"id": "sub_1", "customer_id": "cus_1"}}),
        ("subscription_cancelled", {"subscription": {"id": "sub_1", "customer_id": "cus_1"}}),
    ],
)
def test_chargebee_changes_reach_the_sync_only_when_it_is_on(
    event_type: str, content: dict
) -> None:
    assert chargebee.normalize(cb_event(event_type, content)) is None
    signal = chargebee.normalize(cb_event(event_type, content), sync=True)
    assert isinstance(signal, SyncSignal)
    assert (signal.customer_id, signal.side, signal.kind) == ("cus_1", Side.BILLING, event_type)
    plan = router.plan_sync(signal, "account-sync-flush:chargebee:salesforce")
    assert plan.first.id == "account:chargebee:cus_1" and plan.follow_up is None
    assert plan.first.signal == golden.SIGNAL_CHANGE


def test_our_own_chargebee_write_is_an_echo_before_anything() -> None:
    event = cb_event("customer_changed", {"customer": {"id": "cus_1"}}, source="api", user="rb")
    assert isinstance(chargebee.normalize(event, api_user="rb", sync=True), Echo)


def test_a_payment_failure_stays_on_the_dunning_path() -> None:
    event = cb_event(
        "payment_failed",
        {"invoice": {"id": "inv_1", "customer_id": "cus_1", "amount_due": 100}},
    )
    assert type(chargebee.normalize(event, sync=True)).__name__ == "PaymentFailed"


def sf_callout(record: dict) -> dict:
    return {
        "event": "account_changed",
        "eventId": "e-1",
        "sobject": "Account",
        "recordId": "001A",
        "record": record,
        "changedFields": ["MRR__c"],
    }


def test_a_linked_salesforce_account_change_reaches_its_customer_sync() -> None:
    linked = {"Billing_Customer_Id__c": "cus_1", "Billing_Platform__c": "chargebee"}
    assert salesforce.normalize(sf_callout(linked)) is None  # the sync is off
    signal = salesforce.normalize(sf_callout(linked), sync=True)
    assert isinstance(signal, SyncSignal)
    assert (signal.customer_id, signal.side, signal.crm_account_id) == ("cus_1", Side.CRM, "001A")
    # an unlinked account has no billing customer to sync
    assert salesforce.normalize(sf_callout({"Name": "x"}), sync=True) is None
    # our integration user's own write comes back: dropped at the door
    ours = {**linked, "LastModifiedById": "005INT"}
    assert isinstance(
        salesforce.normalize(sf_callout(ours), integration_user_id="005INT", sync=True), Echo
    )


def test_a_customer_id_no_workflow_id_can_hold_is_refused() -> None:
    with pytest.raises(Rejected):
        chargebee.normalize(cb_event("customer_changed", {"customer": {"id": "a b"}}), sync=True)


def st_event(event_type: str, obj: dict, **extra: object) -> dict:
    return {
        "id": "evt_1",
        "object": "event",
        "type": event_type,
        "created": 1_796_000_000,
        "data": {"object": obj},
        **extra,
    }


def test_stripe_customer_and_subscription_changes_reach_the_sync() -> None:
    from webhooks import stripe

    sub = st_event("customer.subscription.updated", {"id": "sub_1", "customer": "cus_1"})
    cus = st_event("customer.updated", {"id": "cus_1", "object": "customer"})
    assert stripe.normalize(sub) is None  # the sync is off
    for event in (sub, cus):
        signal = stripe.normalize(event, sync=True)
        assert isinstance(signal, SyncSignal) and signal.customer_id == "cus_1"
    ours = {**sub, "request": {"id": "req_1", "idempotency_key": "rb-abc"}}
    assert isinstance(stripe.normalize(ours, sync=True), Echo)
