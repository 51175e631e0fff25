"""The Chargebee emulator's quote-to-cash and churn surface, through the official client:
custom fields, subscription discounts / contract terms / net terms, cancel options, the
``subscription_changed`` event log, usages."""

from __future__ import annotations

import time
from collections.abc import Iterator

import chargebee
import httpx
import pytest
from chargebee import Chargebee

from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread

KEY = "test_chargebee_key"
DAY = 86_400


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread({ChargebeeEmulator(api_key=KEY): 0}) as thread:
        yield thread


@pytest.fixture
def url(server: ServerThread) -> str:
    base = server.urls["chargebee"]
    httpx.post(base + "/_sandbox/reset").raise_for_status()
    httpx.post(
        base + "/_sandbox/seed",
        json={
            "item_prices": [
                {"id": "core-USD-monthly", "item_id": "core", "price": 50_000},
                {
                    "id": "core-USD-yearly",
                    "item_id": "core",
                    "price": 480_000,
                    "period_unit": "year",
                },
                {"id": "seat-USD-monthly", "item_id": "seat", "price": 4_000, "item_type": "addon"},
                {
                    "id": "calls-USD-monthly",
                    "item_id": "calls",
                    "price": 0,
                    "item_type": "addon",
                    "metered": True,
                },
            ],
            "customers": [{"id": "cust_1", "company": "Acme"}],
        },
    ).raise_for_status()
    return base


@pytest.fixture
def cb(url: str) -> Chargebee:
    Chargebee.verify_ca_certs = False
    client = Chargebee(api_key=KEY, site="acme-test", protocol="http")
    client.env.api_url = lambda path, subDomain=None: url + "/api/v2" + path
    return client


# --- customer custom fields -------------------------------------------------------------------------


def test_searchable_custom_field_filters_the_customer_list(cb: Chargebee) -> None:
    made = cb.Customer.create({"company": "Linked", "cf_crm_link": "salesforce:001A"}).customer
    assert made.cf_crm_link == "salesforce:001A"
    cb.Customer.create({"company": "Other", "cf_crm_link": "salesforce:001B"})
    hits = cb.Customer.list({"cf_crm_link": {"is": "salesforce:001A"}}).list
    assert [h.customer.id for h in hits] == [made.id]
    # clearing it (the client sends None as an empty value) takes it out of the index
    cb.Customer.update(made.id, {"cf_crm_link": None})
    assert cb.Customer.list({"cf_crm_link": {"is": "salesforce:001A"}}).list == []
    assert not hasattr(cb.Customer.retrieve(made.id).customer, "cf_crm_link")


def test_a_filter_on_an_unsearchable_custom_field_is_silently_ignored(
    cb: Chargebee, url: str
) -> None:
    httpx.post(
        url + "/_sandbox/seed",
        json={"custom_fields": [{"api_name": "cf_region", "searchable": False}]},
    ).raise_for_status()
    cb.Customer.create({"company": "Eu", "cf_region": "eu"})
    listed = cb.Customer.list({"cf_region": {"is": "us"}}).list
    assert len(listed) == 2  # everyone (cust_1 and Eu): Chargebee drops the filter


def test_an_unknown_custom_field_is_a_param_error(cb: Chargebee) -> None:
    with pytest.raises(chargebee.InvalidRequestError) as exc:
        cb.Customer.create({"company": "X", "cf_nope": "1"})
    err = exc.value
    assert (err.http_status_code, err.api_error_code, err.param) == (
        400,
        "param_wrong_value",
        "cf_nope",
    )
    assert err.json_obj["error_code"] == "param_wrong_value" and err.json_obj["message"]


# --- subscription_for_items -------------------------------------------------------------------------


def test_subscription_with_discount_contract_term_and_net_terms(cb: Chargebee) -> None:
    resp = cb.Subscription.create_with_items(
        "cust_1",
        {
            "subscription_items": [
                {"item_price_id": "core-USD-monthly"},
                {"item_price_id": "seat-USD-monthly", "quantity": 10, "unit_price": 3_000},
            ],
            "discounts": [
                {"apply_on": "invoice_amount", "duration_type": "forever", "percentage": 20}
            ],
            "billing_cycles": 24,
            "contract_term": {"action_at_term_end": "renew"},
            "contract_term_billing_cycle_on_renewal": 12,
            "net_term_days": 45,
            "auto_collection": "off",
        },
    )
    sub = resp.subscription
    assert sub.mrr == (50_000 + 30_000) * 8 // 10
    term = sub.contract_term
    assert (term.status, term.billing_cycle, term.action_at_term_end) == ("active", 24, "renew")
    assert term.contract_end > sub.started_at + 700 * DAY
    assert term.total_contract_value == 80_000 * 24
    assert sub.contract_term_billing_cycle_on_renewal == 12
    [disc] = sub.discounts
    assert (disc.type, disc.percentage, disc.apply_on) == ("percentage", 20.0, "invoice_amount")
    inv = resp.invoice
    assert (inv.sub_total, inv.total) == (80_000, 64_000)
    assert inv.due_date == inv.date + 45 * DAY and inv.net_term_days == 45


def test_yearly_plan_mrr_is_a_twelfth(cb: Chargebee) -> None:
    sub = cb.Subscription.create_with_items(
        "cust_1", {"subscription_items": [{"item_price_id": "core-USD-yearly"}]}
    ).subscription
    assert sub.mrr == 40_000
    assert sub.remaining_billing_cycles is None and sub.contract_term is None


def test_a_discount_needs_exactly_one_of_percentage_and_amount(cb: Chargebee) -> None:
    with pytest.raises(chargebee.InvalidRequestError) as exc:
        cb.Subscription.create_with_items(
            "cust_1",
            {
                "subscription_items": [{"item_price_id": "core-USD-monthly"}],
                "discounts": [
                    {
                        "apply_on": "invoice_amount",
                        "duration_type": "forever",
                        "percentage": 5,
                        "amount": 100,
                    }
                ],
            },
        )
    assert exc.value.param == "discounts[percentage][0]"
    assert cb.Subscription.list({"customer_id": {"is": "cust_1"}}).list == []  # nothing made


def test_limited_period_coupon_gets_apply_till_and_lowers_mrr(cb: Chargebee) -> None:
    sub = cb.Subscription.create_with_items(
        "cust_1", {"subscription_items": [{"item_price_id": "core-USD-monthly"}]}
    ).subscription
    cb.Coupon.create_for_items(
        {
            "id": "RET25",
            "name": "Retention 25%",
            "discount_type": "percentage",
            "discount_percentage": 25,
            "duration_type": "limited_period",
            "period": 2,
            "period_unit": "month",
            "apply_on": "invoice_amount",
        }
    )
    changed = cb.Subscription.update_for_items(sub.id, {"coupon_ids": ["RET25"]}).subscription
    assert changed.mrr == 37_500
    [applied] = changed.coupons
    assert applied.coupon_id == "RET25" and 55 * DAY < applied.apply_till - time.time() < 63 * DAY


def test_update_for_items_logs_subscription_changed_with_the_new_state(cb: Chargebee) -> None:
    sub = cb.Subscription.create_with_items(
        "cust_1",
        {
            "subscription_items": [
                {"item_price_id": "core-USD-monthly"},
                {"item_price_id": "seat-USD-monthly", "quantity": 10},
            ]
        },
    ).subscription
    cb.Subscription.update_for_items(
        sub.id, {"subscription_items": [{"item_price_id": "seat-USD-monthly", "quantity": 4}]}
    )
    events = cb.Event.list(
        {
            "event_type": {"in": ["subscription_created", "subscription_changed"]},
            "occurred_at": {"after": int(time.time()) - 60},
            "sort_by": {"asc": "occurred_at"},
        }
    ).list
    kinds = [(e.event.event_type, e.event.content["subscription"]["mrr"]) for e in events]
    assert kinds == [("subscription_created", 90_000), ("subscription_changed", 66_000)]


def test_cancel_for_items_terminates_the_contract_and_refuses_a_second_cancel(
    cb: Chargebee,
) -> None:
    sub = cb.Subscription.create_with_items(
        "cust_1",
        {
            "subscription_items": [{"item_price_id": "core-USD-monthly"}],
            "billing_cycles": 12,
            "contract_term": {"action_at_term_end": "renew"},
        },
    ).subscription
    params = {
        "end_of_term": False,
        "credit_option_for_current_term_charges": "none",
        "contract_term_cancel_option": "terminate_immediately",
    }
    with pytest.raises(chargebee.InvalidRequestError) as bad:
        cb.Subscription.cancel_for_items(sub.id, {"credit_option_for_current_term_charges": "some"})
    assert bad.value.param == "credit_option_for_current_term_charges"
    done = cb.Subscription.cancel_for_items(sub.id, dict(params)).subscription
    assert (done.status, done.contract_term.status, done.mrr) == ("cancelled", "terminated", 0)
    with pytest.raises(chargebee.InvalidRequestError) as exc:
        cb.Subscription.cancel_for_items(sub.id, dict(params))
    assert (exc.value.http_status_code, exc.value.api_error_code) == (
        400,
        "invalid_state_for_request",
    )


def test_delete_customer_then_not_found(cb: Chargebee) -> None:
    cb.Customer.delete("cust_1")
    with pytest.raises(chargebee.InvalidRequestError) as exc:
        cb.Customer.delete("cust_1")
    assert (exc.value.http_status_code, exc.value.api_error_code) == (404, "resource_not_found")


# --- usages and pagination --------------------------------------------------------------------------


def test_usages_are_recorded_filtered_and_paged(cb: Chargebee) -> None:
    sub = cb.Subscription.create_with_items(
        "cust_1",
        {
            "subscription_items": [
                {"item_price_id": "core-USD-monthly"},
                {"item_price_id": "calls-USD-monthly"},
            ]
        },
    ).subscription
    now = int(time.time())
    for i in range(5):
        cb.Usage.create(
            sub.id,
            {
                "item_price_id": "calls-USD-monthly",
                "quantity": str(10 * (i + 1)),
                "usage_date": now - i * 10 * DAY,
            },
        )
    first = cb.Usage.list({"subscription_id": {"is": sub.id}, "limit": 2})
    assert len(first.list) == 2 and first.next_offset
    rest = cb.Usage.list(
        {"subscription_id": {"is": sub.id}, "limit": 2, "offset": first.next_offset}
    )
    last = cb.Usage.list(
        {"subscription_id": {"is": sub.id}, "limit": 2, "offset": rest.next_offset}
    )
    assert last.next_offset is None
    quantities = [e.usage.quantity for page in (first, rest, last) for e in page.list]
    assert quantities == ["10", "20", "30", "40", "50"]  # newest first
    recent = cb.Usage.list(
        {"subscription_id": {"in": [sub.id]}, "usage_date": {"after": now - 25 * DAY}}
    ).list
    assert sorted(e.usage.quantity for e in recent) == ["10", "20", "30"]
    with pytest.raises(chargebee.InvalidRequestError) as exc:
        cb.Usage.create(
            sub.id, {"item_price_id": "core-USD-monthly", "quantity": "1", "usage_date": now}
        )
    assert exc.value.param == "item_price_id"


def test_customers_page_oldest_first(cb: Chargebee, url: str) -> None:
    base = int(time.time()) - 1_000 * DAY
    httpx.post(
        url + "/_sandbox/seed",
        json={"customers": [{"id": f"c{i:02d}", "created_at": base + i} for i in range(25)]},
    ).raise_for_status()
    ids: list[str] = []
    offset = None
    while True:
        params: dict = {"limit": 10, "sort_by": {"asc": "created_at"}}
        if offset:
            params["offset"] = offset
        page = cb.Customer.list(params)
        ids += [e.customer.id for e in page.list]
        offset = page.next_offset
        if not offset:
            break
    assert ids[:25] == [f"c{i:02d}" for i in range(25)] and ids[25:] == ["cust_1"]
