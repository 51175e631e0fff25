"""The ``/v1`` route table: (method, path template, handler(state, params, **path_params))."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .forms import check_known
from .state import StripeState

Handler = Callable[..., Any]


def _get(kind: str) -> Handler:
    def handler(s: StripeState, p: dict[str, Any], id: str) -> Any:
        return s.get(id, kind, allow_deleted=kind in ("customer", "coupon", "product"))

    return handler


def _retrieve_txn(s: StripeState, p: dict[str, Any], id: str, txn: str) -> Any:
    return s._txn(id, txn)


def _finalize(s: StripeState, p: dict[str, Any], id: str) -> Any:
    return s.finalize_invoice(id, p)


def _void(s: StripeState, p: dict[str, Any], id: str) -> Any:
    check_known(p, ())
    return s.void_invoice(id)


def _uncollectible(s: StripeState, p: dict[str, Any], id: str) -> Any:
    check_known(p, ())
    return s.mark_uncollectible(id)


ROUTES: list[tuple[str, str, Handler]] = [
    # customers
    ("POST", "/v1/customers", lambda s, p: s.create_customer(p)),
    ("GET", "/v1/customers", lambda s, p: s.list_customers(p)),
    ("GET", "/v1/customers/search", lambda s, p: s.search("customer", p, "/v1/customers/search")),
    ("GET", "/v1/customers/{id}", _get("customer")),
    ("POST", "/v1/customers/{id}", lambda s, p, id: s.update_customer(id, p)),
    ("DELETE", "/v1/customers/{id}", lambda s, p, id: s.delete_customer(id)),
    (
        "POST",
        "/v1/customers/{id}/balance_transactions",
        lambda s, p, id: s.create_balance_txn(id, p),
    ),
    (
        "GET",
        "/v1/customers/{id}/balance_transactions",
        lambda s, p, id: s.list_balance_txns(id, p),
    ),
    ("GET", "/v1/customers/{id}/balance_transactions/{txn}", _retrieve_txn),
    (
        "POST",
        "/v1/customers/{id}/balance_transactions/{txn}",
        lambda s, p, id, txn: s.update_balance_txn(id, txn, p),
    ),
    ("GET", "/v1/payment_methods/{id}", _get("payment_method")),
    # catalog
    ("POST", "/v1/products", lambda s, p: s.create_product(p)),
    ("GET", "/v1/products", lambda s, p: s.list_products(p)),
    ("GET", "/v1/products/search", lambda s, p: s.search("product", p, "/v1/products/search")),
    ("GET", "/v1/products/{id}", _get("product")),
    ("POST", "/v1/products/{id}", lambda s, p, id: s.update_product(id, p)),
    ("POST", "/v1/prices", lambda s, p: s.create_price(p)),
    ("GET", "/v1/prices", lambda s, p: s.list_prices(p)),
    ("GET", "/v1/prices/search", lambda s, p: s.search("price", p, "/v1/prices/search")),
    ("GET", "/v1/prices/{id}", _get("price")),
    ("POST", "/v1/prices/{id}", lambda s, p, id: s.update_price(id, p)),
    ("POST", "/v1/coupons", lambda s, p: s.create_coupon(p)),
    ("GET", "/v1/coupons", lambda s, p: s.page(s.all("coupon"), p, "/v1/coupons")),
    ("GET", "/v1/coupons/{id}", _get("coupon")),
    ("POST", "/v1/coupons/{id}", lambda s, p, id: s.update_coupon(id, p)),
    ("DELETE", "/v1/coupons/{id}", lambda s, p, id: s.delete_coupon(id)),
    ("GET", "/v1/discounts/{id}", _get("discount")),
    # subscriptions
    ("POST", "/v1/subscriptions", lambda s, p: s.create_subscription(p)),
    ("GET", "/v1/subscriptions", lambda s, p: s.list_subscriptions(p)),
    (
        "GET",
        "/v1/subscriptions/search",
        lambda s, p: s.search("subscription", p, "/v1/subscriptions/search"),
    ),
    ("GET", "/v1/subscriptions/{id}", _get("subscription")),
    ("POST", "/v1/subscriptions/{id}", lambda s, p, id: s.update_subscription(id, p)),
    ("DELETE", "/v1/subscriptions/{id}", lambda s, p, id: s.cancel_subscription(id, p)),
    ("POST", "/v1/subscriptions/{id}/cancel", lambda s, p, id: s.cancel_subscription(id, p)),
    ("GET", "/v1/subscription_items", lambda s, p: s.list_subscription_items(p)),
    ("GET", "/v1/subscription_items/{id}", _get("subscription_item")),
    # invoices
    ("POST", "/v1/invoices", lambda s, p: s.create_invoice(p)),
    ("GET", "/v1/invoices", lambda s, p: s.list_invoices(p)),
    ("GET", "/v1/invoices/search", lambda s, p: s.search("invoice", p, "/v1/invoices/search")),
    ("GET", "/v1/invoices/{id}", _get("invoice")),
    ("POST", "/v1/invoices/{id}", lambda s, p, id: s.update_invoice(id, p)),
    ("DELETE", "/v1/invoices/{id}", lambda s, p, id: s.delete_invoice(id)),
    ("GET", "/v1/invoices/{id}/lines", lambda s, p, id: s.list_invoice_lines(id, p)),
    ("POST", "/v1/invoices/{id}/finalize", _finalize),
    ("POST", "/v1/invoices/{id}/pay", lambda s, p, id: s.pay_invoice(id, p)),
    ("POST", "/v1/invoices/{id}/void", _void),
    ("POST", "/v1/invoices/{id}/mark_uncollectible", _uncollectible),
    ("POST", "/v1/invoiceitems", lambda s, p: s.create_invoiceitem(p)),
    ("GET", "/v1/invoiceitems", lambda s, p: s.list_invoiceitems(p)),
    ("GET", "/v1/invoiceitems/{id}", _get("invoiceitem")),
    ("POST", "/v1/invoiceitems/{id}", lambda s, p, id: s.update_invoiceitem(id, p)),
    ("DELETE", "/v1/invoiceitems/{id}", lambda s, p, id: s.delete_invoiceitem(id)),
    ("GET", "/v1/invoice_payments", lambda s, p: s.list_invoice_payments(p)),
    ("GET", "/v1/invoice_payments/{id}", _get("invoice_payment")),
    # payments
    ("GET", "/v1/payment_intents", lambda s, p: s.list_payment_intents(p)),
    ("GET", "/v1/payment_intents/{id}", _get("payment_intent")),
    # credit notes
    ("POST", "/v1/credit_notes", lambda s, p: s.create_credit_note(p)),
    ("GET", "/v1/credit_notes", lambda s, p: s.list_credit_notes(p)),
    ("GET", "/v1/credit_notes/{id}", _get("credit_note")),
    ("POST", "/v1/credit_notes/{id}/void", lambda s, p, id: s.void_credit_note(id)),
    # charges and refunds (refunds.py)
    ("GET", "/v1/charges", lambda s, p: s.list_charges(p)),
    ("GET", "/v1/charges/{id}", _get("charge")),
    ("POST", "/v1/refunds", lambda s, p: s.create_refund(p)),
    ("GET", "/v1/refunds", lambda s, p: s.list_refunds(p)),
    ("GET", "/v1/refunds/{id}", _get("refund")),
    ("POST", "/v1/refunds/{id}", lambda s, p, id: s.update_refund(id, p)),
    # usage
    ("POST", "/v1/billing/meters", lambda s, p: s.create_meter(p)),
    (
        "GET",
        "/v1/billing/meters",
        lambda s, p: s.page(s.all("billing.meter"), p, "/v1/billing/meters"),
    ),
    ("GET", "/v1/billing/meters/{id}", _get("billing.meter")),
    (
        "GET",
        "/v1/billing/meters/{id}/event_summaries",
        lambda s, p, id: s.meter_event_summaries(id, p),
    ),
    ("POST", "/v1/billing/meter_events", lambda s, p: s.create_meter_event(p)),
    # events and webhook endpoints (read-only here: the sandbox's targets)
    ("GET", "/v1/events", lambda s, p: s.list_events(p)),
    (
        "GET",
        "/v1/webhook_endpoints",
        lambda s, p: s.page(s.webhook_endpoints(), p, "/v1/webhook_endpoints"),
    ),
    ("GET", "/v1/events/{id}", _get("event")),
]


def compile_routes() -> list[tuple[str, re.Pattern[str], Handler]]:
    out = []
    for method, template, handler in ROUTES:
        pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        out.append((method, re.compile(f"^{pattern}$"), handler))
    return out
