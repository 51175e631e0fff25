"""Customers, their (test) cards, balance transactions and search."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import StripeError, missing
from .forms import apply_metadata, as_int, as_list, as_str, check_known
from .store import Store

CUSTOMER_PARAMS = {
    "address", "balance", "business_name", "cash_balance", "description", "email",
    "individual_name", "invoice_prefix", "invoice_settings", "metadata", "name",
    "next_invoice_sequence", "payment_method", "phone", "preferred_locales", "shipping",
    "source", "tax", "tax_exempt", "tax_id_data", "test_clock", "validate", "default_source",
}  # fmt: skip

#: last4 of Stripe's test card for each decline code (cosmetic)
_LAST4 = {
    None: "4242",
    "generic_decline": "0002",
    "insufficient_funds": "9995",
    "lost_card": "9987",
    "stolen_card": "9979",
    "expired_card": "0069",
    "incorrect_cvc": "0127",
    "processing_error": "0119",
    "fraudulent": "0019",
}


class CustomerMixin(Store):
    def create_customer(self, params: dict[str, Any], *, seeded: bool = False) -> dict[str, Any]:
        if not seeded:
            check_known(params, CUSTOMER_PARAMS)
        now = self.now()
        cus_id = as_str(params, "id") if seeded else None
        cus = {
            "id": cus_id or self.new_id("cus", 14),
            "object": "customer",
            "address": params.get("address") or None,
            "balance": 0,
            # a seeded customer may have history: tenure matters to whoever reads it
            "created": int(params["created"]) if seeded and params.get("created") else now,
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": as_str(params, "description"),
            "discount": None,
            "email": as_str(params, "email"),
            "invoice_prefix": as_str(params, "invoice_prefix") or self.new_id("x", 8)[2:].upper(),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": apply_metadata({}, params.get("metadata")),
            "name": as_str(params, "name"),
            "next_invoice_sequence": as_int(params, "next_invoice_sequence", 1),
            "phone": as_str(params, "phone"),
            "preferred_locales": as_list(params, "preferred_locales"),
            "shipping": params.get("shipping") or None,
            "tax_exempt": as_str(params, "tax_exempt", "none"),
            "test_clock": None,
            "_decline": None,
        }
        self.put(cus)
        pm = self._attach_card(cus)
        cus["invoice_settings"]["default_payment_method"] = pm["id"]
        balance = as_int(params, "balance", 0) or 0
        if balance:
            self.balance_txn(cus, balance, "initial", currency="usd")
        self.event("customer.created", cus)
        return cus

    def _attach_card(self, cus: dict[str, Any]) -> dict[str, Any]:
        pm = {
            "id": self.new_id("pm"),
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": {
                "address": None,
                "email": cus["email"],
                "name": cus["name"],
                "phone": None,
                "tax_id": None,
            },
            "card": {
                "brand": "visa",
                "checks": {"address_line1_check": None, "cvc_check": "pass"},
                "country": "US",
                "display_brand": "visa",
                "exp_month": 12,
                "exp_year": 2034,
                "funding": "credit",
                "last4": "4242",
            },
            "created": cus["created"],
            "customer": cus["id"],
            "livemode": False,
            "metadata": {},
            "type": "card",
        }
        return self.put(pm)

    def set_decline(self, customer_id: str, decline_code: str | None) -> None:
        cus = self.get(customer_id, "customer")
        cus["_decline"] = decline_code
        pm = self.find(cus["invoice_settings"]["default_payment_method"], "payment_method")
        if pm:
            pm["card"]["last4"] = _LAST4.get(decline_code, "0002")
            if decline_code == "expired_card":
                pm["card"]["exp_year"] = 2020

    def update_customer(self, cus_id: str, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, CUSTOMER_PARAMS - {"payment_method", "tax_id_data", "test_clock"})
        cus = self.get(cus_id, "customer")
        before = self.render(cus)
        for key in ("email", "name", "description", "phone", "tax_exempt", "invoice_prefix"):
            if key in params:
                cus[key] = as_str(params, key)
        for key in ("address", "shipping"):
            if key in params:
                cus[key] = params[key] or None
        if "preferred_locales" in params:
            cus["preferred_locales"] = as_list(params, "preferred_locales")
        if "next_invoice_sequence" in params:
            cus["next_invoice_sequence"] = as_int(params, "next_invoice_sequence")
        settings = params.get("invoice_settings")
        if isinstance(settings, dict):
            if "default_payment_method" in settings:
                pm = settings["default_payment_method"] or None
                if pm:
                    self.get(pm, "payment_method", "invoice_settings[default_payment_method]")
                cus["invoice_settings"]["default_payment_method"] = pm
            if "footer" in settings:
                cus["invoice_settings"]["footer"] = settings["footer"] or None
        cus["metadata"] = apply_metadata(cus["metadata"], params.get("metadata"))
        if "balance" in params:
            new_balance = as_int(params, "balance", 0) or 0
            if new_balance != cus["balance"]:
                self.balance_txn(cus, new_balance - cus["balance"], "adjustment", emit=False)
        self._updated("customer.updated", cus, before)
        return cus

    def delete_customer(self, cus_id: str) -> dict[str, Any]:
        cus = self.get(cus_id, "customer")
        for sub in self.all("subscription"):
            if sub["customer"] == cus["id"] and sub["status"] not in (
                "canceled",
                "incomplete_expired",
            ):
                self.cancel_subscription_now(sub, reason="cancellation_requested")
        self.event("customer.deleted", cus)
        cus["_deleted"] = True
        return cus

    def list_customers(self, params: dict[str, Any]) -> dict[str, Any]:
        email = params.get("email")
        return self.page(
            self.all("customer"),
            params,
            "/v1/customers",
            # case-SENSITIVE, as at Stripe ("Jane@x.com" does not find "jane@x.com")
            lambda c: not email or (c["email"] or "") == str(email),
        )

    # --- balance ----------------------------------------------------------------------------------

    def balance_txn(
        self,
        cus: dict[str, Any],
        amount: int,
        txn_type: str,
        *,
        currency: str | None = None,
        description: str | None = None,
        metadata: Any = None,
        invoice: str | None = None,
        credit_note: str | None = None,
        emit: bool = True,
    ) -> dict[str, Any]:
        currency = (currency or cus["currency"] or "usd").lower()
        if cus["currency"] and cus["currency"] != currency:
            raise StripeError(
                400,
                f"The currency {currency} does not match the customer's currency "
                f"{cus['currency']}.",
                param="currency",
            )
        before = self.render(cus)
        cus["currency"] = cus["currency"] or currency
        cus["balance"] += amount
        txn = {
            "id": self.new_id("cbtxn"),
            "object": "customer_balance_transaction",
            "amount": amount,
            "checkout_session": None,
            "created": self.now(),
            "credit_note": credit_note,
            "currency": currency,
            "customer": cus["id"],
            "description": description,
            "ending_balance": cus["balance"],
            "invoice": invoice,
            "livemode": False,
            "metadata": apply_metadata({}, metadata),
            "type": txn_type,
        }
        self.put(txn)
        if emit:
            self._updated("customer.updated", cus, before)
        return txn

    def create_balance_txn(self, cus_id: str, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"amount", "currency", "description", "metadata"})
        cus = self.get(cus_id, "customer", "customer")
        amount = as_int(params, "amount", required=True)
        currency = as_str(params, "currency", required=True)
        assert amount is not None
        return self.balance_txn(
            cus,
            amount,
            "adjustment",
            currency=currency,
            description=as_str(params, "description"),
            metadata=params.get("metadata"),
        )

    def update_balance_txn(
        self, cus_id: str, txn_id: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        check_known(params, {"description", "metadata"})
        txn = self._txn(cus_id, txn_id)
        if "description" in params:
            txn["description"] = as_str(params, "description")
        txn["metadata"] = apply_metadata(txn["metadata"] or {}, params.get("metadata"))
        return txn

    def _txn(self, cus_id: str, txn_id: str) -> dict[str, Any]:
        self.get(cus_id, "customer", "customer")
        txn = self.get(txn_id, "customer_balance_transaction", "transaction")
        if txn["customer"] != cus_id:
            raise StripeError(
                404,
                f"No such customer balance transaction: '{txn_id}'",
                code="resource_missing",
                param="transaction",
            )
        return txn

    def list_balance_txns(self, cus_id: str, params: dict[str, Any]) -> dict[str, Any]:
        self.get(cus_id, "customer", "customer")
        items = [t for t in self.all("customer_balance_transaction") if t["customer"] == cus_id]
        invoice = params.get("invoice")
        return self.page(
            items,
            params,
            f"/v1/customers/{cus_id}/balance_transactions",
            lambda t: not invoice or t["invoice"] == invoice,
        )

    # --- search -----------------------------------------------------------------------------------

    def search(self, kind: str, params: dict[str, Any], url: str) -> dict[str, Any]:
        query = as_str(params, "query")
        if not query:
            raise missing("query")
        pred = compile_query(query)
        limit = as_int(params, "limit", 10) or 10
        if not 1 <= limit <= 100:
            raise StripeError(400, "Invalid limit: must be between 1 and 100", param="limit")
        page = as_str(params, "page")
        offset = 0
        if page:
            if not page.startswith("page_"):
                raise StripeError(400, "Invalid page", param="page")
            offset = int(page[5:] or 0)
        # matched against the (lagging) index, answered with the objects as they are now
        hits = [o for o in self.all(kind) if (seen := self.indexed(o)) is not None and pred(seen)]
        data = hits[offset : offset + limit]
        more = len(hits) > offset + limit
        return {
            "object": "search_result",
            "data": [self.render(o) for o in data],
            "has_more": more,
            "next_page": f"page_{offset + limit}" if more else None,
            "total_count": len(hits),
            "url": url,
        }


_CLAUSE = re.compile(
    r"""\s*(-)?\s*([a-zA-Z_.]+(?:\[['"][^'"]+['"]\])?)\s*(:|~|>=|<=|>|<)\s*"""
    r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s]+)\s*"""
)


def compile_query(query: str) -> Callable[[dict[str, Any]], bool]:
    """Stripe's search query language, the useful subset: ``field:'v'``, ``field~'sub'``,
    ``metadata['k']:'v'``, ``-field:...``, numeric comparisons, joined by AND or OR."""
    joiner = " OR " if " OR " in query else " AND "
    if " OR " in query and " AND " in query:
        raise StripeError(400, "Search queries cannot mix AND and OR.", param="query")
    clauses = []
    for part in query.split(joiner):
        m = _CLAUSE.fullmatch(part)
        if not m:
            raise StripeError(400, f"Invalid query: {part.strip()!r}", param="query")
        neg, field, op, raw = m.groups()
        # quoted values may escape their quote character with a backslash: name:"Acme \"EU\""
        value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw[:1] in "'\"" else raw
        clauses.append((bool(neg), field, op, value))

    def lookup(obj: dict[str, Any], field: str) -> Any:
        m = re.fullmatch(r"""metadata\[['"]([^'"]+)['"]\]""", field)
        if m:
            return (obj.get("metadata") or {}).get(m.group(1))
        cur: Any = obj
        for piece in field.split("."):
            cur = cur.get(piece) if isinstance(cur, dict) else None
        return cur

    def one(obj: dict[str, Any], clause: tuple[bool, str, str, str]) -> bool:
        neg, field, op, value = clause
        got = lookup(obj, field)
        if op == ":":
            ok = (got is None) if value == "null" else str(got).lower() == value.lower()
        elif op == "~":
            ok = got is not None and value.lower() in str(got).lower()
        else:
            try:
                g, v = float(got), float(value)
            except (TypeError, ValueError):
                return False
            ok = {">": g > v, "<": g < v, ">=": g >= v, "<=": g <= v}[op]
        return ok != neg

    if joiner == " OR ":
        return lambda o: any(one(o, c) for c in clauses)
    return lambda o: all(one(o, c) for c in clauses)
