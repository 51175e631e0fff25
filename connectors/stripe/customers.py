"""Quote-to-cash on Stripe: the CRM link is customer metadata ``crm`` + ``crm_account_id``, found
with the Search API (eventually consistent: about a minute) plus the customer events of the
last ten minutes (a strongly consistent list); customers, prices, coupons and subscriptions
written once per idempotency key."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import stripe

from connectors.base import NotFound
from connectors.stripe.client import StripeClientBase, classify
from connectors.stripe.values import (
    _ENDED,
    CANCELLATION_COMMENT_MAX,
    COUPON_NAME_MAX,
    CRM_ACCOUNT_KEY,
    CRM_KEY,
    CRM_OPPORTUNITY_KEY,
    RECENT_EVENTS_MAX,
    SEARCH_LAG_WINDOW_S,
    _customer,
    _cut,
    _price,
    _quote,
    _ref,
    _replayed,
    _start_params,
)
from domain.models import (
    BillingCustomer,
)
from domain.records import (
    CustomerDraft,
    Price,
    SubscriptionDraft,
    SubscriptionRef,
)


class Customers(StripeClientBase):
    """Quote-to-cash: customers found by their CRM link or by email/company, created and
    linked, prices, subscriptions created and cancelled once per key."""

    def find_customer_by_crm(self, crm: str, account_id: str) -> BillingCustomer | None:
        """The customer whose metadata links it to this CRM account.

        Stripe's Search API is eventually consistent (a write is searchable "in less than a
        minute", longer during incidents), so search alone would miss a customer created or
        linked moments ago — and quote-to-cash would create a second one for the next deal of
        the same account. The window is closed with a strongly consistent read: the customer
        events of the last :data:`SEARCH_LAG_WINDOW_S` seconds (created, updated, deleted) are
        listed and their newest snapshots matched on metadata too. No wait is needed."""
        query = (
            f"metadata['{CRM_ACCOUNT_KEY}']:{_quote(account_id)}"
            f" AND metadata['{CRM_KEY}']:{_quote(crm)}"
        )
        found = self._call(
            lambda: self._client.v1.customers.search({"query": query, "limit": 10}),
            what="customer search",
        )
        hits = {c.id: c.to_dict() for c in found.data}
        for c in self._recent_customers():
            meta = c.get("metadata") or {}
            if meta.get(CRM_KEY) == crm and meta.get(CRM_ACCOUNT_KEY) == account_id:
                hits.setdefault(c["id"], c)
        # Oldest first: should a duplicate ever exist, the original stays the linked one.
        ordered = sorted(hits.values(), key=lambda c: c.get("created") or 0)
        return _customer(ordered[0]) if ordered else None

    def find_customers(self, email: str | None, company: str | None) -> list[BillingCustomer]:
        """Exact email through the (strongly consistent) list filter, then company names
        through search (``name~"…"``, case-insensitive substring; eventually consistent) and
        among the customers created too recently to be searchable.

        Stripe's ``email=`` filter is case-SENSITIVE: the address is tried as given and in
        lower case (how most systems store it), so ``Jane@Acme.com`` in the CRM finds
        ``jane@acme.com`` in Stripe."""
        found: dict[str, dict[str, Any]] = {}
        if email:
            for variant in dict.fromkeys([email.strip(), email.strip().lower()]):
                page = self._call(
                    lambda v=variant: self._client.v1.customers.list({"email": v, "limit": 10}),
                    what="customers",
                )
                for c in page.data:
                    found.setdefault(c.id, c.to_dict())
        name = (company or "").strip()
        if name and len(found) < 10:
            # A one- or two-letter substring would match half the book: match those exactly.
            op = "~" if len(name) >= 3 else ":"
            page = self._call(
                lambda: self._client.v1.customers.search(
                    {"query": f"name{op}{_quote(name)}", "limit": 10}
                ),
                what="customer search",
            )
            for c in page.data:
                found.setdefault(c.id, c.to_dict())
            wanted = name.casefold()
            for c in self._recent_customers():
                have = str(c.get("name") or "").casefold()
                if have and (wanted in have if op == "~" else wanted == have):
                    found.setdefault(c["id"], c)
        return [_customer(c) for c in list(found.values())[:10]]

    def _recent_customers(self) -> list[dict[str, Any]]:
        """The customers created, changed or deleted within the search lag window, as their
        newest event shows them (``GET /v1/events`` is strongly consistent; pages of 100,
        newest first, at most :data:`RECENT_EVENTS_MAX` events): what a search may not reflect
        yet, new links set on old customers included. Deleted ones are left out."""
        params = {
            "types": ["customer.created", "customer.updated", "customer.deleted"],
            "created": {"gte": int(time.time()) - SEARCH_LAG_WINDOW_S},
            "limit": 100,
        }
        newest: dict[str, dict[str, Any] | None] = {}
        try:
            pages = self._client.v1.events.list(params).auto_paging_iter()  # type: ignore[arg-type]
            for n, event in enumerate(pages):
                if n >= RECENT_EVENTS_MAX:
                    break  # a busy account: the newest ones are what search may miss
                evt = event.to_dict()
                obj = (evt.get("data") or {}).get("object") or {}
                if obj.get("id") and obj["id"] not in newest:
                    newest[obj["id"]] = None if evt.get("type") == "customer.deleted" else obj
        except stripe.StripeError as exc:
            raise classify(exc, "events") from None
        return [c for c in newest.values() if c is not None]

    def create_customer(self, draft: CustomerDraft) -> BillingCustomer:
        """POST /v1/customers with the CRM link in metadata; ``draft.key`` is the
        Idempotency-Key (a retry replays the first answer; other parameters under the same key
        are Stripe's ``idempotency_error``, PERMANENT). Stripe customers have no payment terms
        or currency of their own: those go on the subscription."""
        params: dict[str, Any] = {
            "name": draft.company,
            "metadata": {CRM_KEY: draft.crm, CRM_ACCOUNT_KEY: draft.crm_account_id},
        }
        if draft.email:
            params["email"] = draft.email
        options: stripe.RequestOptions = {"idempotency_key": draft.key}
        cus = self._call(
            lambda: self._client.v1.customers.create(params, options),  # type: ignore[arg-type]
            what="customer",
        )
        return _customer(cus.to_dict())

    def set_crm_link(
        self, customer_id: str, crm: str, account_id: str | None, idempotency_key: str
    ) -> None:
        # An empty string unsets a metadata key in Stripe.
        link = (
            {CRM_KEY: crm, CRM_ACCOUNT_KEY: account_id}
            if account_id
            else {
                CRM_KEY: "",
                CRM_ACCOUNT_KEY: "",
            }
        )
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        self._call(
            lambda: self._client.v1.customers.update(customer_id, {"metadata": link}, options),
            what=f"customer {customer_id}",
        )

    def delete_customer(self, customer_id: str, idempotency_key: str) -> None:
        """DELETE /v1/customers/{id} (Stripe also cancels its subscriptions). No key is sent:
        DELETE is idempotent by definition at Stripe, and a repeat answers 404 = done."""
        try:
            self._client.v1.customers.delete(customer_id)
        except stripe.StripeError as exc:
            err = classify(exc, f"customer {customer_id}")
            if not isinstance(err, NotFound):
                raise err from None

    def get_price(self, price_id: str) -> Price:
        """A price by ID or by lookup key (``GET /v1/prices?lookup_keys[]=…&active=true``).
        IDs that look like Stripe's (``price_…``) are tried as IDs first, anything else as a
        lookup key first; NotFound when neither exists."""
        lookups: list[Callable[[], dict[str, Any] | None]] = [
            lambda: self._price_by_id(price_id),
            lambda: self._price_by_lookup_key(price_id),
        ]
        if not price_id.startswith("price_"):
            lookups.reverse()
        for lookup in lookups:
            found = lookup()
            if found is not None:
                return _price(found)
        raise NotFound("stripe", f"price {price_id}")

    def create_subscription(self, draft: SubscriptionDraft) -> SubscriptionRef:
        """POST /v1/subscriptions under ``draft.key``.

        - lines → ``items[i][price]`` + ``[quantity]``; a price override → ``items[i][price_data]``
          (same product, currency and interval as the catalogue price);
        - the deal discount → a ``percent_off``/``forever`` coupon (its own key, derived from
          ``draft.key``) in ``discounts[0][coupon]``;
        - net terms → ``collection_method=send_invoice`` + ``days_until_due``;
        - metadata ``crm``, ``crm_opportunity_id``, ``term_months`` (Stripe subscriptions renew
          until cancelled; the term is recorded, not enforced);
        - a future ``start_date`` within one billing interval → ``billing_cycle_anchor`` at its
          midnight UTC with ``proration_behavior=none`` (active now, the time until the start is
          free, first full invoice on the start date). Further out, Stripe rejects such an
          anchor: the subscription gets ``trial_end`` at the start date instead (status
          ``trialing`` until then). Subscription schedules would model it exactly; not used.

        Stripe prunes idempotency keys after 24 h, so the customer's subscriptions are listed
        first (a strongly consistent read): a live one for the same opportunity is returned
        with ``created=False``. A replayed answer (``Idempotent-Replayed: true``) is too.
        """
        existing = self._subscription_for(draft)
        if existing is not None:
            return _ref(existing, draft.discount_percent, created=False)
        prices = [self.get_price(line.price_id) for line in draft.lines]
        items: list[dict[str, Any]] = []
        for line, price in zip(draft.lines, prices, strict=True):
            item: dict[str, Any] = {"quantity": line.quantity}
            if line.unit_amount is None or line.unit_amount == price.unit_amount:
                item["price"] = price.id
            else:
                item["price_data"] = {
                    "currency": price.currency.lower(),
                    "product": price.product,
                    "unit_amount": line.unit_amount,
                    "recurring": {"interval": price.period, "interval_count": price.period_count},
                }
            items.append(item)
        params: dict[str, Any] = {
            "customer": draft.customer_id,
            "items": items,
            "metadata": {
                CRM_KEY: draft.crm,
                CRM_OPPORTUNITY_KEY: draft.crm_opportunity_id,
                "term_months": str(draft.term_months),
            },
        }
        if draft.discount_percent > 0:
            coupon = self._create_coupon(
                {
                    "percent_off": draft.discount_percent,
                    "duration": "forever",
                    "name": f"Deal discount {draft.discount_percent:g}%",
                    "metadata": {CRM_KEY: draft.crm, CRM_OPPORTUNITY_KEY: draft.crm_opportunity_id},
                },
                f"{draft.key}-coupon",
            )
            params["discounts"] = [{"coupon": coupon}]
        if draft.net_term_days is not None:
            params["collection_method"] = "send_invoice"
            params["days_until_due"] = draft.net_term_days
        params.update(_start_params(draft.start_date, prices[0], time.time()))
        options: stripe.RequestOptions = {"idempotency_key": draft.key}
        sub = self._call(
            lambda: self._client.v1.subscriptions.create(params, options),  # type: ignore[arg-type]
            what=f"subscription for customer {draft.customer_id}",
        )
        return _ref(sub.to_dict(), draft.discount_percent, created=not _replayed(sub))

    def cancel_subscription(self, subscription_id: str, idempotency_key: str, reason: str) -> str:
        """DELETE /v1/subscriptions/{id} with ``prorate=false&invoice_now=false``. Stripe
        answers 404 for one already cancelled: a retrieve tells that apart from a missing one.
        No key is sent (Stripe ignores keys on DELETE)."""
        params = {
            "prorate": False,
            "invoice_now": False,
            "cancellation_details": {"comment": _cut(reason, CANCELLATION_COMMENT_MAX)},
        }
        what = f"subscription {subscription_id}"
        try:
            sub = self._client.v1.subscriptions.cancel(subscription_id, params)  # type: ignore[arg-type]
            return str(sub.status)
        except stripe.StripeError as exc:
            err = classify(exc, what)
            if not isinstance(err, NotFound):
                raise err from None
        current = self._call(lambda: self._client.v1.subscriptions.retrieve(subscription_id), what)
        if current.status in _ENDED:
            return str(current.status)
        raise NotFound("stripe", what)

    def _price_by_id(self, price_id: str) -> dict[str, Any] | None:
        try:
            return self._call(
                lambda: self._client.v1.prices.retrieve(price_id), what=f"price {price_id}"
            ).to_dict()
        except NotFound:
            return None

    def _price_by_lookup_key(self, key: str) -> dict[str, Any] | None:
        page = self._call(
            lambda: self._client.v1.prices.list({"lookup_keys": [key], "active": True, "limit": 1}),
            what=f"price {key}",
        )
        return page.data[0].to_dict() if page.data else None

    def _subscription_for(self, draft: SubscriptionDraft) -> dict[str, Any] | None:
        """A live subscription of the customer already made for this opportunity."""
        subs = self._list(
            self._client.v1.subscriptions,
            {"customer": draft.customer_id, "status": "all", "limit": 100},
            f"customer {draft.customer_id}",
        )
        for sub in subs:
            meta = sub.get("metadata") or {}
            if (
                sub.get("status") not in _ENDED
                and meta.get(CRM_KEY) == draft.crm
                and meta.get(CRM_OPPORTUNITY_KEY) == draft.crm_opportunity_id
            ):
                return sub
        return None

    def _create_coupon(self, params: dict[str, Any], idempotency_key: str) -> str:
        params = {**params, "name": _cut(str(params.get("name") or ""), COUPON_NAME_MAX) or None}
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        coupon = self._call(
            lambda: self._client.v1.coupons.create(params, options),  # type: ignore[arg-type]
            what="coupon",
        )
        return str(coupon.id)
