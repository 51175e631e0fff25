"""The Zuora REST v1 handlers: plain functions of a :class:`Req` under the emulator's lock.

A handler returns the 200 body, or raises :class:`ZuoraError` (rendered by the emulator in the
endpoint family's error shape). Callouts a request triggers are queued on ``req.callouts`` and
sent by the emulator after the response is committed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from . import metering
from . import render as r
from .query_expand import expand_page
from .state import (
    ACCOUNT,
    BUSINESS_RULE,
    CONTACT,
    CREDIT_MEMO,
    GENERIC,
    INTEGRATION,
    INVALID_VALUE,
    INVOICE,
    MISSING_FIELD,
    ORDER,
    PAYMENT,
    PAYMENT_RUN,
    SUBSCRIPTION,
    USAGE,
    Store,
    ZuoraError,
    cents,
    day,
    new_id,
    parse_day,
)
from .sync_events import account_changed, contact_changed

if TYPE_CHECKING:
    from .emulator import ZuoraEmulator

DAY_S = 86_400
MONTH_S = 30 * DAY_S
CLASSIC_PAGE_MAX = 40
QUERY_PAGE_MAX = 99
#: what gateways answer for the decline codes the scenarios use
GATEWAY_MESSAGES = {
    "card_declined": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "processing_error": "An error occurred while processing your card. Try again.",
    "fraudulent": "Your card was declined.",
    "do_not_honor": "Your card was declined.",
}


@dataclass
class Req:
    params: dict[str, str]
    query: list[tuple[str, str]]
    body: Any
    base_url: str
    path: str
    source: str = "API"
    callouts: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def q(self, name: str, default: str | None = None) -> str | None:
        return next((v for k, v in self.query if k == name), default)

    def qs(self, name: str) -> list[str]:
        return [v for k, v in self.query if k == name]

    def obj(self) -> dict[str, Any]:
        if self.body is None:
            return {}
        if not isinstance(self.body, dict):
            raise ZuoraError(GENERIC, INVALID_VALUE, "The request body must be a JSON object")
        return self.body


def _need(body: dict[str, Any], name: str, resource: int) -> Any:
    if body.get(name) in (None, "", []):
        raise ZuoraError(resource, MISSING_FIELD, f"'{name}' may not be null")
    return body[name]


def _customs(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k.endswith("__c")}


def _page(req: Req, rows: list[Any], key: str) -> dict[str, Any]:
    """Classic v1 paging: ``page`` (1-based) and ``pageSize`` (values above 40 count as 40);
    ``nextPage`` is a full URL when more rows exist."""
    try:
        page = max(1, int(req.q("page") or 1))
        size = min(max(1, int(req.q("pageSize") or 20)), CLASSIC_PAGE_MAX)
    except ValueError:
        raise ZuoraError(GENERIC, INVALID_VALUE, "page and pageSize must be integers") from None
    chunk = rows[(page - 1) * size : page * size]
    out: dict[str, Any] = {key: chunk}
    if page * size < len(rows):
        keep = [(k, v) for k, v in req.query if k not in ("page", "pageSize")]
        out["nextPage"] = (
            f"{req.base_url}{req.path}?{urlencode([*keep, ('page', page + 1), ('pageSize', size)])}"
        )
    out["success"] = True
    return out


class Api:
    def __init__(self, em: ZuoraEmulator) -> None:
        self.em = em

    @property
    def store(self) -> Store:
        return self.em.store

    # --- accounts and contacts ------------------------------------------------------------------

    def create_account(self, req: Req) -> dict[str, Any]:
        body = req.obj()
        name = _need(body, "name", ACCOUNT)
        currency = _need(body, "currency", ACCOUNT)
        bill_to = _need(body, "billToContact", ACCOUNT)
        if not isinstance(bill_to, dict):
            raise ZuoraError(ACCOUNT, INVALID_VALUE, "'billToContact' must be an object")
        _need(bill_to, "firstName", CONTACT)
        _need(bill_to, "lastName", CONTACT)
        number = body.get("accountNumber")
        if number and any(a["accountNumber"] == number for a in self.store.accounts.values()):
            raise ZuoraError(
                ACCOUNT, BUSINESS_RULE, f"The account number {number} is invalid or already exists."
            )
        acct = self.new_account(
            {
                **{k: body[k] for k in ("notes", "crmId", "paymentTerm", "autoPay") if k in body},
                **_customs(body),
                "name": name,
                "currency": str(currency).upper(),
                "accountNumber": number,
            },
            bill_to,
            card=body.get("creditCard") or (True if self.em.default_card else None),
        )
        return {
            "success": True,
            "accountId": acct["id"],
            "accountNumber": acct["accountNumber"],
            "billToContactId": acct["billToId"],
            "soldToContactId": acct["billToId"],
            "paymentMethodId": acct.get("defaultPaymentMethodId"),
        }

    def new_account(
        self, fields: dict[str, Any], bill_to: dict[str, Any], card: Any = True
    ) -> dict[str, Any]:
        s = self.store
        now = s.now()
        acct: dict[str, Any] = {
            "id": new_id(),
            "status": "Active",
            "autoPay": True,
            "paymentTerm": "Due Upon Receipt",
            "createdDate": now,
            "_seq": s.next_seq(),
            **{k: v for k, v in fields.items() if v is not None},
        }
        acct.setdefault("accountNumber", s.number("A"))
        if not acct.get("accountNumber"):
            acct["accountNumber"] = s.number("A")
        s.accounts[acct["id"]] = acct
        c = self.new_contact(acct["id"], bill_to)
        acct["billToId"] = c["id"]
        if card:
            pm = {
                "id": new_id(),
                "accountId": acct["id"],
                "type": "CreditCard",
                "cardNumber": "************4242",
                "_decline": card.get("decline_code") if isinstance(card, dict) else None,
                "numConsecutiveFailures": 0,
            }
            s.payment_methods[pm["id"]] = pm
            acct["defaultPaymentMethodId"] = pm["id"]
        return acct

    def new_contact(self, account_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        c = {
            "id": new_id(),
            "accountId": account_id,
            "createdDate": self.store.now(),
            **{
                k: spec.get(k)
                for k in (
                    "firstName",
                    "lastName",
                    "workEmail",
                    "personalEmail",
                    "country",
                    "state",
                    "city",
                    "address1",
                    "zipCode",
                )
                if spec.get(k) is not None
            },
        }
        self.store.contacts[c["id"]] = c
        return c

    def get_account(self, req: Req) -> dict[str, Any]:
        return r.account_detail(self.store, self.store.account(req.params["key"]))

    def account_summary(self, req: Req) -> dict[str, Any]:
        s = self.store
        acct = s.account(req.params["key"])
        now = s.now()
        invs = sorted(
            (i for i in s.invoices.values() if i["accountId"] == acct["id"]),
            key=lambda i: (i["invoiceDate"], i["_seq"]),
            reverse=True,
        )
        pays = sorted(
            (p for p in s.payments.values() if p["accountId"] == acct["id"]),
            key=lambda p: p["_seq"],
            reverse=True,
        )
        subs = [x for x in s.subscriptions.values() if x["accountId"] == acct["id"]]
        usage = [
            u
            for u in s.usages.values()
            if u["accountId"] == acct["id"] and u["startDateTime"] >= now - 180 * DAY_S
        ]
        pm = s.payment_methods.get(acct.get("defaultPaymentMethodId") or "")
        last_paid = next((p for p in pays if p["status"] == "Processed"), None)
        return {
            "basicInfo": {
                "id": acct["id"],
                "accountNumber": acct["accountNumber"],
                "name": acct["name"],
                "balance": f"{r.account_metrics(s, acct)['balance']:.2f}",
                "currency": acct["currency"],
                "status": acct["status"],
                "autoPay": acct.get("autoPay", True),
                "billCycleDay": acct.get("billCycleDay", 1),
                "lastInvoiceDate": day(invs[0]["invoiceDate"]) if invs else None,
                "lastPaymentAmount": f"{last_paid['amount'] / 100:.2f}" if last_paid else None,
                "lastPaymentDate": day(last_paid["createdDate"]) if last_paid else None,
                "defaultPaymentMethod": {
                    "id": pm["id"],
                    "paymentMethodType": pm["type"],
                    "creditCardNumber": pm["cardNumber"],
                    "creditCardType": "Visa",
                    "creditCardExpirationMonth": "12",
                    "creditCardExpirationYear": "2027",
                }
                if pm
                else None,
            },
            "billToContact": r.contact(s, acct.get("billToId")),
            "soldToContact": r.contact(s, acct.get("billToId")),
            "invoices": [
                {
                    "id": i["id"],
                    "invoiceNumber": i["invoiceNumber"],
                    "invoiceDate": day(i["invoiceDate"]),
                    "dueDate": day(i["dueDate"]),
                    "amount": r.money(i["amount"]),
                    "balance": r.money(i["balance"]),
                    "status": i["status"],
                }
                for i in invs[:6]
            ],
            "payments": [
                {
                    "id": p["id"],
                    "paymentNumber": p["number"],
                    "paymentType": p["type"],
                    "status": p["status"],
                    "effectiveDate": day(p["createdDate"]),
                    "paidInvoices": [
                        {
                            "invoiceId": a["invoiceId"],
                            "invoiceNumber": s.invoices[a["invoiceId"]]["invoiceNumber"],
                            "appliedPaymentAmount": r.money(a["amount"]),
                        }
                        for a in p.get("applications", [])
                    ],
                }
                for p in pays[:6]
            ],
            "subscriptions": [
                {
                    "id": x["id"],
                    "subscriptionNumber": x["subscriptionNumber"],
                    "status": x["status"],
                    "termType": x["termType"],
                    "autoRenew": x.get("autoRenew", True),
                    "initialTerm": f"{x.get('initialTerm') or 0} Months",
                    "renewalTerm": f"{x.get('renewalTerm') or 0} Months",
                    "subscriptionStartDate": day(x["contractEffectiveDate"]),
                    "termStartDate": day(x["termStartDate"]),
                    "termEndDate": day(x["termEndDate"]) if x.get("termEndDate") else None,
                    "ratePlans": [
                        {
                            "productId": rp["productId"],
                            "productName": rp["productName"],
                            "productRatePlanId": rp["productRatePlanId"],
                            "ratePlanName": rp["ratePlanName"],
                            "productSku": rp.get("productSku"),
                        }
                        for rp in x["ratePlans"]
                        if not rp.get("_removed")
                    ],
                }
                for x in subs
            ],
            "usage": [
                {
                    "unitOfMeasure": u["uom"],
                    "quantity": f"{u['quantity']:g}",
                    "startDate": day(u["startDateTime"])[:7],
                }
                for u in usage[:6]
            ],
            "success": True,
        }

    def update_account(self, req: Req) -> dict[str, Any]:
        body = req.obj()
        acct = self.store.account(req.params["key"])
        for k in ("name", "notes", "crmId", "paymentTerm", "autoPay", "salesRep"):
            if k in body:
                acct[k] = body[k]
        for k, v in _customs(body).items():
            acct[k] = v
        if isinstance(body.get("billToContact"), dict):
            self.store.contacts[acct["billToId"]].update(
                {k: v for k, v in body["billToContact"].items() if isinstance(v, str)}
            )
        acct["updatedDate"] = self.store.now()
        req.callouts.append(account_changed(acct))  # a custom event (sync_events.py)
        return {"success": True}

    def delete_account(self, req: Req) -> dict[str, Any]:
        acct = self.store.account(req.params["key"])
        acct["_deleted"] = True
        acct["status"] = "Canceled"
        return {"success": True, "id": acct["id"], "jobId": new_id(), "jobStatus": "Completed"}

    def create_contact(self, req: Req) -> dict[str, Any]:
        body = req.obj()
        acct = self.store.account(
            body.get("accountId") or body.get("accountNumber") or _need(body, "accountId", CONTACT)
        )
        _need(body, "lastName", CONTACT)
        c = self.new_contact(acct["id"], body)
        return {**(r.contact(self.store, c["id"]) or {}), "success": True}

    def get_contact(self, req: Req) -> dict[str, Any]:
        found = r.contact(self.store, req.params["id"])
        if found is None:
            raise ZuoraError(CONTACT, 40, f"Cannot find entity by key: '{req.params['id']}'.")
        return {**found, "success": True}

    def update_contact(self, req: Req) -> dict[str, Any]:
        c = self.store.contacts.get(req.params["id"])
        if c is None:
            raise ZuoraError(CONTACT, 40, f"Cannot find entity by key: '{req.params['id']}'.")
        c.update({k: v for k, v in req.obj().items() if isinstance(v, str)})
        req.callouts.append(contact_changed(c))  # a custom event (sync_events.py)
        return {**(r.contact(self.store, c["id"]) or {}), "success": True}

    # --- catalogue --------------------------------------------------------------------------------

    def list_products(self, req: Req) -> dict[str, Any]:
        rows = [r.product(p) for p in sorted(self.store.products.values(), key=lambda p: p["_seq"])]
        return _page(req, rows, "products")

    def get_product_rate_plan(self, req: Req) -> dict[str, Any]:
        return r.product_rate_plan(self.store, self.store.rate_plan(req.params["id"]))

    # --- subscriptions (classic) ------------------------------------------------------------------

    def create_subscription(self, req: Req) -> dict[str, Any]:
        body = req.obj()
        acct = self.store.account(_need(body, "accountKey", SUBSCRIPTION))
        start = parse_day(
            _need(body, "contractEffectiveDate", SUBSCRIPTION),
            "contractEffectiveDate",
            SUBSCRIPTION,
        )
        term_type = _need(body, "termType", SUBSCRIPTION)
        if term_type not in ("TERMED", "EVERGREEN"):
            raise ZuoraError(
                SUBSCRIPTION, INVALID_VALUE, "'termType' value should be one of: TERMED, EVERGREEN"
            )
        plans = _need(body, "subscribeToRatePlans", SUBSCRIPTION)
        sub = self.new_subscription(
            acct,
            start,
            term_type=term_type,
            initial_term=int(body.get("initialTerm") or 12),
            renewal_term=int(body.get("renewalTerm") or 12),
            auto_renew=bool(body.get("autoRenew", True)),
            number=body.get("subscriptionNumber"),
            notes=body.get("notes"),
            customs=_customs(body),
        )
        for spec in plans:
            self.add_rate_plan(sub, spec, start, order_style=False)
        gross, net, _ = r.subscription_mrr(sub, self.store.now())
        return {
            "success": True,
            "subscriptionId": sub["id"],
            "subscriptionNumber": sub["subscriptionNumber"],
            "contractedMrr": r.money(net),
            "totalContractedValue": r.money(net * sub["initialTerm"]),
        }

    def new_subscription(
        self,
        acct: dict[str, Any],
        start: float,
        *,
        term_type: str = "TERMED",
        initial_term: int = 12,
        renewal_term: int = 12,
        auto_renew: bool = True,
        number: str | None = None,
        notes: str | None = None,
        customs: dict[str, Any] | None = None,
        order_number: str | None = None,
        status: str = "Active",
    ) -> dict[str, Any]:
        s = self.store
        if number and any(x["subscriptionNumber"] == number for x in s.subscriptions.values()):
            raise ZuoraError(
                SUBSCRIPTION, BUSINESS_RULE, f"The subscription number {number} already exists."
            )
        if notes and len(notes) > 500:
            raise ZuoraError(
                SUBSCRIPTION, INVALID_VALUE, "The length of field 'notes' should not exceed 500."
            )
        sub: dict[str, Any] = {
            "id": new_id(),
            "subscriptionNumber": number or s.number("S-"),
            "accountId": acct["id"],
            "status": status,
            "termType": term_type,
            "initialTerm": initial_term if term_type == "TERMED" else None,
            "renewalTerm": renewal_term if term_type == "TERMED" else None,
            "autoRenew": auto_renew,
            "contractEffectiveDate": start,
            "termStartDate": start,
            "termEndDate": start + initial_term * MONTH_S if term_type == "TERMED" else None,
            "notes": notes,
            "orderNumber": order_number,
            "ratePlans": [],
            "createdDate": s.now(),
            "version": 1,
            "_seq": s.next_seq(),
            "_history": [],
            "_status_history": [{"status": status, "at": s.now()}],
            **(customs or {}),
        }
        s.subscriptions[sub["id"]] = sub
        return sub

    def add_rate_plan(
        self, sub: dict[str, Any], spec: dict[str, Any], start: float, *, order_style: bool
    ) -> dict[str, Any]:
        s = self.store
        key = spec.get("productRatePlanId") or spec.get("productRatePlanNumber")
        if not key:
            raise ZuoraError(SUBSCRIPTION, MISSING_FIELD, "'productRatePlanId' may not be null")
        prp = s.rate_plan(key)
        acct = s.accounts[sub["accountId"]]
        if prp["currency"] != acct["currency"]:
            raise ZuoraError(
                SUBSCRIPTION,
                BUSINESS_RULE,
                f"The currency {acct['currency']} is not supported by product rate plan {key}.",
            )
        overrides: dict[str, dict[str, Any]] = {}
        known = {c["id"] for c in prp["charges"]}
        for o in spec.get("chargeOverrides") or []:
            charge_id = o.get("productRatePlanChargeId") if isinstance(o, dict) else None
            if not charge_id:
                raise ZuoraError(
                    SUBSCRIPTION, MISSING_FIELD, "'productRatePlanChargeId' may not be null"
                )
            if charge_id not in known:
                raise ZuoraError(
                    SUBSCRIPTION,
                    INVALID_VALUE,
                    f"Invalid productRatePlanChargeId {charge_id} for product rate plan {key}.",
                )
            overrides[charge_id] = o
        rp: dict[str, Any] = {
            "id": new_id(),
            "number": s.number("SRP-"),
            "productId": prp["productId"],
            "productName": s.products[prp["productId"]]["name"],
            "productSku": s.products[prp["productId"]]["sku"],
            "productRatePlanId": prp["id"],
            "productRatePlanNumber": prp["productRatePlanNumber"],
            "ratePlanName": prp["name"],
            "effectiveStartDate": start,
            "effectiveEndDate": None,
            "lastChangeType": "Add",
            "charges": [],
        }
        for ch in prp["charges"]:
            o = overrides.get(ch["id"], {})
            price, qty, pct = ch.get("price", 0), ch.get("defaultQuantity", 1), None
            if ch["model"] == "DiscountPercentage":
                pct = float(ch.get("discountPercentage") or 0)
            if order_style:
                pricing = o.get("pricing") or {}
                per_unit = pricing.get("recurringPerUnit") or {}
                flat = pricing.get("recurringFlatFee") or {}
                disc = pricing.get("discount") or {}
                if per_unit.get("listPrice") is not None:
                    price = cents(per_unit["listPrice"], "listPrice", ORDER)
                if flat.get("listPrice") is not None:
                    price = cents(flat["listPrice"], "listPrice", ORDER)
                if per_unit.get("quantity") is not None:
                    qty = per_unit["quantity"]
                if disc.get("discountPercentage") is not None:
                    pct = float(disc["discountPercentage"])
                end = o.get("endDate") or {}
                if end.get("endDateCondition") == "Fixed_Period" and end.get("upToPeriods"):
                    rp["effectiveEndDate"] = start + int(end["upToPeriods"]) * MONTH_S
            else:
                if o.get("price") is not None:
                    price = cents(o["price"], "price", SUBSCRIPTION)
                if o.get("quantity") is not None:
                    qty = o["quantity"]
                if o.get("discountPercentage") is not None:
                    pct = float(o["discountPercentage"])
                if o.get("upToPeriods"):
                    rp["effectiveEndDate"] = start + int(o["upToPeriods"]) * MONTH_S
            try:
                qty = float(qty)
            except (TypeError, ValueError):
                raise ZuoraError(
                    SUBSCRIPTION, INVALID_VALUE, "'quantity' must be a number"
                ) from None
            if qty <= 0:
                raise ZuoraError(SUBSCRIPTION, INVALID_VALUE, "'quantity' must be greater than 0")
            if pct is not None and not 0 < pct <= 100:
                raise ZuoraError(
                    SUBSCRIPTION, INVALID_VALUE, "'discountPercentage' must be in (0, 100]"
                )
            rp["charges"].append(
                {
                    "id": new_id(),
                    "number": s.number("C-"),
                    "productRatePlanChargeId": ch["id"],
                    "name": ch["name"],
                    "type": ch["type"],
                    "model": ch["model"],
                    "price": price,
                    "quantity": int(qty) if qty == int(qty) else qty,
                    "discountPercentage": pct,
                    "billingPeriod": ch.get("billingPeriod"),
                    "uom": ch.get("uom"),
                    "currency": prp["currency"],
                    "effectiveStartDate": start,
                }
            )
        sub["ratePlans"].append(rp)
        return rp

    def get_subscription(self, req: Req) -> dict[str, Any]:
        return {
            **r.subscription(self.store, self.store.subscription(req.params["key"])),
            "success": True,
        }

    def subscriptions_by_account(self, req: Req) -> dict[str, Any]:
        acct = self.store.account(req.params["key"])
        subs = sorted(
            (x for x in self.store.subscriptions.values() if x["accountId"] == acct["id"]),
            key=lambda x: x["_seq"],
        )
        return _page(req, [r.subscription(self.store, x) for x in subs], "subscriptions")

    def update_subscription(self, req: Req) -> dict[str, Any]:
        body = req.obj()
        sub = self.store.subscription(req.params["key"])
        before = r.subscription_mrr(sub, self.store.now())
        if "notes" in body:
            notes = body["notes"] or ""
            if len(notes) > 500:
                raise ZuoraError(
                    SUBSCRIPTION,
                    INVALID_VALUE,
                    "The length of field 'notes' should not exceed 500.",
                )
            sub["notes"] = notes
        for k, v in _customs(body).items():
            sub[k] = v
        if "autoRenew" in body:
            sub["autoRenew"] = bool(body["autoRenew"])
        now = self.store.now()
        for spec in body.get("add") or []:
            start = parse_day(
                spec.get("contractEffectiveDate") or day(now), "contractEffectiveDate", SUBSCRIPTION
            )
            self.add_rate_plan(sub, spec, start, order_style=False)
        for spec in body.get("remove") or []:
            self._remove_plan(sub, spec.get("ratePlanId"))
        for spec in body.get("update") or []:
            self._update_plan(sub, spec.get("ratePlanId"), spec.get("chargeUpdateDetails") or [])
        sub["updatedDate"] = now
        after = r.subscription_mrr(sub, now)
        if body.get("add") or body.get("remove") or body.get("update"):
            self._record_change(sub, "Amendment", before[0], after[0])
        return {
            "success": True,
            "subscriptionId": sub["id"],
            "totalDeltaMrr": r.money(after[1] - before[1]),
        }

    def _find_plan(self, sub: dict[str, Any], rate_plan_id: Any) -> dict[str, Any]:
        rp = next(
            (p for p in sub["ratePlans"] if p["id"] == rate_plan_id and not p.get("_removed")),
            None,
        )
        if rp is None:
            raise ZuoraError(
                SUBSCRIPTION,
                INVALID_VALUE,
                f"Invalid ratePlanId {rate_plan_id!r} for this subscription.",
            )
        return rp

    def _remove_plan(self, sub: dict[str, Any], rate_plan_id: Any) -> None:
        rp = self._find_plan(sub, rate_plan_id)
        rp["_removed"] = True
        rp["effectiveEndDate"] = self.store.now()
        rp["lastChangeType"] = "Remove"

    def _update_plan(self, sub: dict[str, Any], rate_plan_id: Any, updates: list[Any]) -> None:
        rp = self._find_plan(sub, rate_plan_id)
        for u in updates:
            ch = next(
                (
                    c
                    for c in rp["charges"]
                    if c["number"] == u.get("chargeNumber") or c["id"] == u.get("ratePlanChargeId")
                ),
                None,
            )
            if ch is None:
                raise ZuoraError(SUBSCRIPTION, INVALID_VALUE, "Unknown charge in update")
            pricing = u.get("pricing") or {}
            per_unit = pricing.get("recurringPerUnit") or {}
            qty = per_unit.get("quantity", u.get("quantity"))
            price = per_unit.get("listPrice", u.get("price"))
            if qty is not None:
                ch["quantity"] = qty
            if price is not None:
                ch["price"] = cents(price, "price", SUBSCRIPTION)
        rp["lastChangeType"] = "Update"

    def _record_change(self, sub: dict[str, Any], kind: str, before: int, after: int) -> None:
        sub["_history"].append(
            {"at": self.store.now(), "type": kind, "gross_before": before, "gross_after": after}
        )
        sub["version"] = sub.get("version", 1) + 1

    def cancel_subscription(self, req: Req) -> dict[str, Any]:
        body = req.obj()
        sub = self.store.subscription(req.params["key"])
        policy = _need(body, "cancellationPolicy", SUBSCRIPTION)
        when = self._cancel(sub, policy, body.get("cancellationEffectiveDate"))
        return {
            "success": True,
            "subscriptionId": sub["id"],
            "cancelledDate": day(when),
            "status": sub["status"],
            "totalDeltaMrr": 0.0,
        }

    def _cancel(self, sub: dict[str, Any], policy: str, date: Any) -> float:
        if sub["status"] != "Active" and sub["status"] != "Suspended":
            raise ZuoraError(
                SUBSCRIPTION,
                BUSINESS_RULE,
                "The subscription has been cancelled or is not active; only an active "
                "subscription can be cancelled.",
            )
        now = self.store.now()
        if policy == "SpecificDate":
            when = parse_day(date, "cancellationEffectiveDate", SUBSCRIPTION) if date else now
        elif policy == "EndOfCurrentTerm":
            when = sub.get("termEndDate") or now
        elif policy == "EndOfLastInvoicePeriod":
            when = now
        else:
            raise ZuoraError(
                SUBSCRIPTION,
                INVALID_VALUE,
                "'cancellationPolicy' value should be one of: EndOfCurrentTerm, "
                "EndOfLastInvoicePeriod, SpecificDate",
            )
        gross = r.subscription_mrr(sub, now)[0]
        sub["cancelledDate"] = when
        if when <= now + DAY_S:
            sub["status"] = "Cancelled"
            sub["_status_history"].append({"status": "Cancelled", "at": now})
            self._record_change(sub, "CancelSubscription", gross, 0)
        else:
            sub["scheduledCancelDate"] = when
        return when

    def suspend_subscription(self, req: Req) -> dict[str, Any]:
        sub = self.store.subscription(req.params["key"])
        if sub["status"] != "Active":
            raise ZuoraError(
                SUBSCRIPTION, BUSINESS_RULE, "Only an active subscription can be suspended."
            )
        sub["status"] = "Suspended"
        sub["_status_history"].append({"status": "Suspended", "at": self.store.now()})
        return {"success": True, "subscriptionId": sub["id"], "suspendDate": day(self.store.now())}

    def resume_subscription(self, req: Req) -> dict[str, Any]:
        sub = self.store.subscription(req.params["key"])
        if sub["status"] != "Suspended":
            raise ZuoraError(
                SUBSCRIPTION, BUSINESS_RULE, "Only a suspended subscription can be resumed."
            )
        sub["status"] = "Active"
        sub["_status_history"].append({"status": "Active", "at": self.store.now()})
        return {"success": True, "subscriptionId": sub["id"], "resumeDate": day(self.store.now())}

    # --- orders ------------------------------------------------------------------------------------

    def create_order(self, req: Req) -> dict[str, Any]:
        body = req.obj()
        s = self.store
        order_date = parse_day(_need(body, "orderDate", ORDER), "orderDate", ORDER)
        number = body.get("orderNumber")
        if number and number in s.orders:
            raise ZuoraError(ORDER, BUSINESS_RULE, f"The order number {number} already exists.")
        if body.get("existingAccountNumber"):
            acct = s.account(body["existingAccountNumber"])
        elif isinstance(body.get("newAccount"), dict):
            na = body["newAccount"]
            acct = self.new_account(
                {
                    "name": _need(na, "name", ORDER),
                    "currency": str(_need(na, "currency", ORDER)).upper(),
                    "accountNumber": na.get("accountNumber"),
                    "crmId": na.get("crmId"),
                    "notes": na.get("notes"),
                    **(na.get("customFields") or {}),
                },
                (na.get("billToContact") or {"firstName": "Billing", "lastName": "Contact"}),
            )
        else:
            raise ZuoraError(ORDER, MISSING_FIELD, "'existingAccountNumber' may not be null")
        subs_in = _need(body, "subscriptions", ORDER)
        number = number or s.number("O-")
        order: dict[str, Any] = {
            "orderNumber": number,
            "id": new_id(),
            "orderDate": order_date,
            "accountId": acct["id"],
            "existingAccountNumber": acct["accountNumber"],
            "status": "Completed",
            "customFields": dict(body.get("customFields") or {}),
            "description": body.get("description"),
            "subscriptions": [],
            "createdDate": s.now(),
        }
        out_subs = []
        types_by_sub: list[tuple[dict[str, Any], list[str]]] = []
        for spec in subs_in:
            actions = _need(spec, "orderActions", ORDER)
            sub: dict[str, Any] | None = None
            if spec.get("subscriptionNumber") and not any(
                a.get("type") == "CreateSubscription" for a in actions
            ):
                sub = s.subscription(spec["subscriptionNumber"])
            types: list[str] = []
            metrics: list[dict[str, Any]] = []
            for action in actions:
                kind = _need(action, "type", ORDER)
                types.append(kind)
                before = r.subscription_mrr(sub, s.now()) if sub is not None else (0, 0, 0.0)
                sub = self._order_action(acct, sub, spec, action, kind, order)
                after = r.subscription_mrr(sub, s.now())
                discount = kind == "AddProduct" and after[0] == before[0] and after[1] != before[1]
                metrics.append(
                    {
                        "type": kind,
                        "at": s.now(),
                        # list-price MRR moves; a discount moves only the net (Zuora reports it
                        # as a negative MRR slice of the discount charge)
                        "delta": (after[1] - before[1]) if discount else (after[0] - before[0]),
                        "discount": discount,
                    }
                )
            if sub is None:
                raise ZuoraError(ORDER, MISSING_FIELD, "'subscriptionNumber' may not be null")
            if spec.get("notes") is not None:
                sub["notes"] = spec["notes"]
            for k, v in (spec.get("customFields") or {}).items():
                sub[k] = v
            order["subscriptions"].append(
                {
                    "subscriptionNumber": sub["subscriptionNumber"],
                    "orderActions": types,
                    "metrics": metrics,
                }
            )
            out_subs.append(sub)
            types_by_sub.append((sub, types))
        s.orders[number] = order
        for sub, types in types_by_sub:
            req.callouts.append(
                (
                    "OrderProcessed",
                    {
                        "Order.OrderNumber": number,
                        "Order.RevBridgeKey__c": str(
                            order["customFields"].get("RevBridgeKey__c") or ""
                        ),
                        "Account.Id": acct["id"],
                        "Account.AccountNumber": acct["accountNumber"],
                        "Subscription.Name": sub["subscriptionNumber"],
                        "Subscription.Id": sub["id"],
                        "OrderAction.Types": ",".join(types),
                    },
                )
            )
        return {
            "success": True,
            "orderNumber": number,
            "accountNumber": acct["accountNumber"],
            "accountId": acct["id"],
            "status": "Completed",
            "subscriptionNumbers": [x["subscriptionNumber"] for x in out_subs],
            "subscriptionIds": [x["id"] for x in out_subs],
            "subscriptions": [
                {
                    "subscriptionNumber": x["subscriptionNumber"],
                    "subscriptionId": x["id"],
                    "status": x["status"],
                }
                for x in out_subs
            ],
        }

    def _order_action(
        self,
        acct: dict[str, Any],
        sub: dict[str, Any] | None,
        spec: dict[str, Any],
        action: dict[str, Any],
        kind: str,
        order: dict[str, Any],
    ) -> dict[str, Any]:
        s = self.store
        dates = {
            d.get("name"): d.get("triggerDate")
            for d in action.get("triggerDates") or []
            if isinstance(d, dict)
        }
        when = (
            parse_day(dates["ContractEffective"], "triggerDate", ORDER)
            if dates.get("ContractEffective")
            else order["orderDate"]
        )
        if kind == "CreateSubscription":
            cs = _need(action, "createSubscription", ORDER)
            terms = cs.get("terms") or {}
            initial = terms.get("initialTerm") or {}
            renewals = terms.get("renewalTerms") or [{}]
            term_type = initial.get("termType", "TERMED")
            new = self.new_subscription(
                acct,
                when,
                term_type=term_type,
                initial_term=int(initial.get("period") or 12),
                renewal_term=int(renewals[0].get("period") or 12),
                auto_renew=bool(terms.get("autoRenew", True)),
                number=cs.get("subscriptionNumber") or spec.get("subscriptionNumber"),
                notes=cs.get("notes"),
                order_number=order["orderNumber"],
            )
            for rp in _need(cs, "subscribeToRatePlans", ORDER):
                self.add_rate_plan(new, rp, when, order_style=True)
            gross = r.subscription_mrr(new, s.now())[0]
            new["_history"].append(
                {"at": s.now(), "type": kind, "gross_before": 0, "gross_after": gross}
            )
            return new
        if sub is None:
            raise ZuoraError(ORDER, MISSING_FIELD, "'subscriptionNumber' may not be null")
        before = r.subscription_mrr(sub, s.now())[0]
        if kind == "AddProduct":
            self.add_rate_plan(sub, _need(action, "addProduct", ORDER), when, order_style=True)
        elif kind == "RemoveProduct":
            self._remove_plan(sub, (_need(action, "removeProduct", ORDER)).get("ratePlanId"))
        elif kind == "UpdateProduct":
            up = _need(action, "updateProduct", ORDER)
            self._update_plan(sub, up.get("ratePlanId"), up.get("chargeUpdates") or [])
        elif kind == "CancelSubscription":
            cs = _need(action, "cancelSubscription", ORDER)
            self._cancel(
                sub, _need(cs, "cancellationPolicy", ORDER), cs.get("cancellationEffectiveDate")
            )
            sub["orderNumber"] = order["orderNumber"]
            return sub
        elif kind == "ChangePlan":  # usage-based expansion's upgrade (metering.py)
            metering.change_plan(self, sub, action, when)
        elif kind == "Suspend":
            sub["status"] = "Suspended"
        elif kind == "Resume":
            sub["status"] = "Active"
        else:
            raise ZuoraError(ORDER, INVALID_VALUE, f"Unsupported order action type {kind!r}")
        sub["orderNumber"] = order["orderNumber"]
        sub["updatedDate"] = s.now()
        self._record_change(sub, kind, before, r.subscription_mrr(sub, s.now())[0])
        return sub

    def render_order(self, order: dict[str, Any]) -> dict[str, Any]:
        return {
            "orderNumber": order["orderNumber"],
            "orderDate": day(order["orderDate"]),
            "existingAccountNumber": order["existingAccountNumber"],
            "status": order["status"],
            "description": order.get("description"),
            "customFields": order["customFields"],
            "createdDate": r.stamp(order["createdDate"]),
            "subscriptions": [
                {
                    "subscriptionNumber": x["subscriptionNumber"],
                    "orderActions": [
                        {
                            "type": m["type"],
                            "sequence": n,
                            "orderMetrics": [
                                {
                                    "mrr": [
                                        {
                                            "amount": r.money(m["delta"]),
                                            "startDate": day(m["at"]),
                                            "discountChargeNumber": "DISCOUNT"
                                            if m["discount"]
                                            else None,
                                            "type": "Regular",
                                        }
                                    ]
                                }
                            ],
                        }
                        for n, m in enumerate(x["metrics"])
                    ],
                }
                for x in order["subscriptions"]
            ],
        }

    def get_order(self, req: Req) -> dict[str, Any]:
        order = self.store.orders.get(req.params["number"])
        if order is None:
            raise ZuoraError(ORDER, 40, f"Cannot find entity by key: '{req.params['number']}'.")
        return {"order": self.render_order(order), "success": True}

    def list_orders(self, req: Req) -> dict[str, Any]:
        """``GET /v1/orders`` (List orders): every order, oldest first, each with its order
        actions and their MRR metrics; ``dateFilterOption`` (orderDate, the default, or
        updatedDate) with ``startDate`` / ``endDate`` (yyyy-MM-dd, inclusive) narrows them."""
        option = req.q("dateFilterOption") or "orderDate"
        if option not in ("orderDate", "updatedDate"):
            raise ZuoraError(ORDER, INVALID_VALUE, "'dateFilterOption' is invalid")
        start = parse_day(req.q("startDate"), "startDate", ORDER) if req.q("startDate") else None
        end = parse_day(req.q("endDate"), "endDate", ORDER) + 86_400 if req.q("endDate") else None

        def when(o: dict[str, Any]) -> float:
            return (
                o["orderDate"] if option == "orderDate" else o.get("updatedDate", o["createdDate"])
            )

        rows = [
            self.render_order(o)
            for o in sorted(self.store.orders.values(), key=lambda o: o["createdDate"])
            if (start is None or when(o) >= start) and (end is None or when(o) < end)
        ]
        return _page(req, rows, "orders")

    def orders_by_subscription(self, req: Req) -> dict[str, Any]:
        """``GET /v1/orders/subscription/{subscriptionNumber}``: the orders that touched it,
        oldest first, each with its order actions and their MRR metrics."""
        number = self.store.subscription(req.params["number"])["subscriptionNumber"]
        rows = [
            self.render_order(o)
            for o in sorted(self.store.orders.values(), key=lambda o: o["createdDate"])
            if any(x["subscriptionNumber"] == number for x in o["subscriptions"])
        ]
        return _page(req, rows, "orders")

    # --- invoices ----------------------------------------------------------------------------------

    def get_invoice(self, req: Req) -> dict[str, Any]:
        return r.invoice(self.store.invoice(req.params["key"]))

    def invoice_items(self, req: Req) -> dict[str, Any]:
        inv = self.store.invoice(req.params["key"])
        return _page(req, [r.invoice_item(i) for i in inv["items"]], "invoiceItems")

    def update_invoice(self, req: Req) -> dict[str, Any]:
        body = req.obj()
        inv = self.store.invoice(req.params["key"])
        if "comments" in body:
            comments = body["comments"] or ""
            if len(comments) > 255:
                raise ZuoraError(
                    INVOICE, INVALID_VALUE, "The length of field 'comments' should not exceed 255."
                )
            inv["comments"] = comments
        if body.get("dueDate"):
            inv["dueDate"] = parse_day(body["dueDate"], "dueDate", INVOICE)
        inv["updatedDate"] = self.store.now()
        out = r.invoice(inv)
        # UpdateInvoiceResponse names two fields differently from InvoiceResponse
        out["number"] = out.pop("invoiceNumber")
        out["comment"] = out.pop("comments")
        keep = [
            "id",
            "number",
            "accountId",
            "amount",
            "balance",
            "currency",
            "status",
            "invoiceDate",
            "dueDate",
            "comment",
            "autoPay",
            "createdDate",
            "updatedDate",
            "postedOn",
            "success",
        ]
        out["postedOn"] = out.pop("postedDate")
        return {k: out[k] for k in keep}

    def post_invoice(self, req: Req) -> dict[str, Any]:
        """``PUT /v1/invoices/{key}/post``: a draft invoice is posted (its balance becomes due)
        and the Invoice Posted callout goes out."""
        inv = self.store.invoice(req.params["key"])
        if inv["status"] != "Draft":
            raise ZuoraError(INVOICE, BUSINESS_RULE, "Only a draft invoice can be posted.")
        inv["status"] = "Posted"
        inv["updatedDate"] = self.store.now()
        acct = self.store.accounts[inv["accountId"]]
        req.callouts.append(
            (
                "InvoicePosted",
                {
                    "Invoice.Id": inv["id"],
                    "Invoice.InvoiceNumber": inv["invoiceNumber"],
                    "Account.Id": acct["id"],
                    "Account.AccountNumber": acct["accountNumber"],
                },
            )
        )
        return r.invoice(inv)

    def cancel_invoice(self, req: Req) -> dict[str, Any]:
        """``PUT /v1/invoices/{key}/cancel``: only a draft invoice can be cancelled."""
        inv = self.store.invoice(req.params["key"])
        if inv["status"] != "Draft":
            raise ZuoraError(INVOICE, BUSINESS_RULE, "Only a draft invoice can be canceled.")
        inv["status"] = "Canceled"
        inv["updatedDate"] = self.store.now()
        return r.invoice(inv)

    def write_off_invoice(self, req: Req) -> dict[str, Any]:
        body = req.obj()
        inv = self.store.invoice(req.params["key"])
        if inv["status"] != "Posted" or inv["balance"] <= 0:
            raise ZuoraError(
                INVOICE, BUSINESS_RULE, "Only a posted invoice with a balance can be written off."
            )
        amount = inv["balance"]
        memo = self.new_memo(
            inv["accountId"], amount, body.get("reasonCode") or "Write-off", body.get("comment")
        )
        memo["referredInvoiceId"] = inv["id"]
        self.apply_memo(memo, inv, amount)
        return {
            "success": True,
            "creditMemo": {"id": memo["id"]},
        }

    def new_invoice(
        self,
        acct: dict[str, Any],
        amount: int,
        *,
        sub: dict[str, Any] | None = None,
        invoice_date: float | None = None,
        number: str | None = None,
        status: str = "Posted",
        id_: str | None = None,
    ) -> dict[str, Any]:
        s = self.store
        when = invoice_date if invoice_date is not None else s.now()
        inv: dict[str, Any] = {
            "id": id_ or new_id(),
            "invoiceNumber": number or s.number("INV"),
            "accountId": acct["id"],
            "amount": amount,
            "balance": amount if status == "Posted" else amount,
            "currency": acct["currency"],
            "status": status,
            "invoiceDate": when,
            "dueDate": when + 30 * DAY_S,
            "createdDate": when,
            "_seq": s.next_seq(),
            "items": [],
        }
        if sub is not None:
            for rp in sub["ratePlans"]:
                for ch in rp["charges"]:
                    if ch["model"] == "DiscountPercentage" or ch["type"] != "Recurring":
                        continue
                    inv["items"].append(
                        {
                            "id": new_id(),
                            "subscriptionId": sub["id"],
                            "subscriptionNumber": sub["subscriptionNumber"],
                            "chargeId": ch["id"],
                            "chargeName": ch["name"],
                            "productName": rp["productName"],
                            "sku": rp.get("productSku"),
                            "quantity": ch.get("quantity", 1),
                            "unitPrice": ch["price"],
                            "amount": 0,
                            "serviceStartDate": when,
                            "serviceEndDate": when + MONTH_S - DAY_S,
                        }
                    )
            if inv["items"]:
                # the items carry the invoice total (seeded totals win over catalogue prices)
                per = amount // len(inv["items"])
                for it in inv["items"]:
                    it["amount"] = per
                inv["items"][0]["amount"] += amount - per * len(inv["items"])
        s.invoices[inv["id"]] = inv
        return inv

    # --- payments, collection, payment runs -----------------------------------------------------------

    def charge(
        self, req: Req, inv: dict[str, Any], *, decline: str | None = None, source: str = "API"
    ) -> dict[str, Any]:
        """An electronic payment of the invoice's balance with the account's default payment
        method. A decline records a payment in ``Error`` with the gateway's response code and
        sends Payment Declined; success applies it and sends Payment Processed."""
        s = self.store
        acct = s.accounts[inv["accountId"]]
        pm = s.payment_methods.get(acct.get("defaultPaymentMethodId") or "")
        if pm is None:
            raise ZuoraError(PAYMENT, BUSINESS_RULE, "The account has no default payment method.")
        code = decline if decline is not None else pm.get("_decline")
        pay = self.new_payment(acct, inv["balance"], "Electronic", pm["id"])
        if code:
            pay["status"] = "Error"
            pay["gatewayState"] = "Submitted"
            pay["gatewayResponseCode"] = code
            pay["gatewayResponse"] = GATEWAY_MESSAGES.get(code, "Transaction declined.")
            pay["_invoiceId"] = inv["id"]
            pm["numConsecutiveFailures"] = pm.get("numConsecutiveFailures", 0) + 1
            req.callouts.append(("PaymentDeclined", self.payment_ctx(pay, inv)))
        else:
            self.apply_payment(pay, inv, inv["balance"])
            pm["numConsecutiveFailures"] = 0
            req.callouts.append(("PaymentProcessed", self.payment_ctx(pay, inv)))
        return pay

    def payment_ctx(self, pay: dict[str, Any], inv: dict[str, Any] | None) -> dict[str, str]:
        acct = self.store.accounts[pay["accountId"]]
        return {
            "Payment.Id": pay["id"],
            "Payment.PaymentNumber": pay["number"],
            "Payment.Amount": f"{pay['amount'] / 100:.2f}",
            "Payment.Currency": pay["currency"],
            "Payment.GatewayResponseCode": pay.get("gatewayResponseCode") or "",
            "Payment.GatewayResponse": pay.get("gatewayResponse") or "",
            "Payment.CreatedDate": r.stamp(pay["createdDate"]),
            "Account.Id": acct["id"],
            "Account.AccountNumber": acct["accountNumber"],
            "Account.Currency": acct["currency"],
            "Invoice.Id": inv["id"] if inv else "",
            "Invoice.InvoiceNumber": inv["invoiceNumber"] if inv else "",
        }

    def new_payment(
        self, acct: dict[str, Any], amount: int, kind: str, pm_id: str | None
    ) -> dict[str, Any]:
        s = self.store
        pay = {
            "id": new_id(),
            "number": s.number("P-"),
            "accountId": acct["id"],
            "amount": amount,
            "applied": 0,
            "currency": acct["currency"],
            "status": "Processed",
            "type": kind,
            "paymentMethodId": pm_id,
            "gatewayState": "Submitted" if kind == "Electronic" else "NotSubmitted",
            "createdDate": s.now(),
            "applications": [],
            "_seq": s.next_seq(),
        }
        s.payments[pay["id"]] = pay
        return pay

    def start_retry_cycle(self, inv: dict[str, Any], pay: dict[str, Any]) -> None:
        """Zuora Collect's Configurable Payment Retry: a declined scheduled collection puts the
        invoice in a retry cycle (attempts ``em.retry_days`` apart) that Zuora runs itself."""
        days = self.em.retry_days
        cycle = inv.get("_cycle")
        if not days:
            return
        if cycle is None or cycle["status"] != "Cycle Incomplete":
            cycle = inv["_cycle"] = {"status": "Cycle Incomplete", "attempts": []}
        cycle["attempts"].append(
            {
                "attempt_number": len(cycle["attempts"]) + 1,
                "payment_id": pay["id"],
                "time_of_execution": r.stamp(self.store.now()),
                "success": False,
                "gateway_response_code": pay.get("gatewayResponseCode"),
            }
        )
        n = len(cycle["attempts"])
        if n > len(days):
            cycle["status"], cycle["next"] = "Cycle Complete", None  # retries exhausted
        else:
            cycle["next"] = self.store.now() + days[n - 1] * DAY_S

    def apply_payment(self, pay: dict[str, Any], inv: dict[str, Any], amount: int) -> None:
        amount = min(amount, inv["balance"])
        cycle = inv.get("_cycle")
        if cycle and cycle["status"] == "Cycle Incomplete" and amount >= inv["balance"]:
            cycle.update(status="Cycle Complete", next=None)  # paid: the cycle ends
        inv["balance"] -= amount
        inv["paymentAmount"] = inv.get("paymentAmount", 0) + amount
        inv["updatedDate"] = self.store.now()
        pay["applied"] += amount
        pay["applications"].append({"id": new_id(), "invoiceId": inv["id"], "amount": amount})

    def create_payment(self, req: Req) -> dict[str, Any]:
        body = req.obj()
        s = self.store
        kind = _need(body, "type", PAYMENT)
        if kind not in ("Electronic", "External"):
            raise ZuoraError(
                PAYMENT, INVALID_VALUE, "'type' value should be one of: Electronic, External"
            )
        acct = s.account(
            body.get("accountId") or body.get("accountNumber") or _need(body, "accountId", PAYMENT)
        )
        amount = cents(_need(body, "amount", PAYMENT), "amount", PAYMENT)
        _need(body, "currency", PAYMENT)
        apps = body.get("invoices") or []
        invs = [
            (s.invoice(a.get("invoiceId") or ""), cents(a.get("amount"), "amount", PAYMENT))
            for a in apps
        ]
        if sum(a for _, a in invs) > amount:
            raise ZuoraError(
                PAYMENT, BUSINESS_RULE, "The applied amount exceeds the payment amount."
            )
        for inv, a in invs:
            if a > inv["balance"]:
                raise ZuoraError(
                    PAYMENT,
                    BUSINESS_RULE,
                    f"The amount applied to invoice {inv['invoiceNumber']} exceeds its balance.",
                )
        if kind == "Electronic":
            pm_id = body.get("paymentMethodId") or acct.get("defaultPaymentMethodId")
            pm = s.payment_methods.get(pm_id or "")
            if pm is None:
                raise ZuoraError(
                    PAYMENT, BUSINESS_RULE, "The account has no default payment method."
                )
            pay = self.new_payment(acct, amount, kind, pm["id"])
            if pm.get("_decline"):
                pay["status"] = "Error"
                pay["gatewayResponseCode"] = pm["_decline"]
                pay["gatewayResponse"] = GATEWAY_MESSAGES.get(
                    pm["_decline"], "Transaction declined."
                )
                pm["numConsecutiveFailures"] = pm.get("numConsecutiveFailures", 0) + 1
                req.callouts.append(
                    ("PaymentDeclined", self.payment_ctx(pay, invs[0][0] if invs else None))
                )
                raise ZuoraError(
                    PAYMENT,
                    INTEGRATION,
                    f"Transaction declined.402 - [{pm['_decline']}] {pay['gatewayResponse']}",
                )
            pm["numConsecutiveFailures"] = 0
        else:
            pay = self.new_payment(acct, amount, kind, None)
        pay["comment"] = body.get("comment")
        pay["referenceId"] = body.get("referenceId")
        for inv, a in invs:
            self.apply_payment(pay, inv, a)
        if kind == "Electronic":
            req.callouts.append(
                ("PaymentProcessed", self.payment_ctx(pay, invs[0][0] if invs else None))
            )
        return r.payment(s, pay)

    def get_payment(self, req: Req) -> dict[str, Any]:
        return r.payment(self.store, self.store.payment(req.params["key"]))

    def list_payments(self, req: Req) -> dict[str, Any]:
        rows = sorted(self.store.payments.values(), key=lambda p: p["_seq"], reverse=True)
        if req.q("accountId"):
            rows = [p for p in rows if p["accountId"] == req.q("accountId")]
        if req.q("status"):
            rows = [p for p in rows if p["status"] == req.q("status")]
        return _page(req, [r.list_payment(self.store, p) for p in rows], "payments")

    def invoice_collect(self, req: Req) -> dict[str, Any]:
        """``POST /v1/operations/invoice-collect``: collect the named invoice (or every posted
        invoice with a balance) with the default payment method. A decline is ``success:false``
        with a category-99 (gateway) reason; a zero balance collects nothing."""
        body = req.obj()
        s = self.store
        acct = s.account(_need(body, "accountKey", PAYMENT))
        if body.get("invoiceId"):
            inv = s.invoice(body["invoiceId"])
            if inv["accountId"] != acct["id"]:
                raise ZuoraError(
                    INVOICE, INVALID_VALUE, "The invoice does not belong to the account."
                )
            targets = [inv]
        else:
            targets = sorted(
                (i for i in s.invoices.values() if i["accountId"] == acct["id"]),
                key=lambda i: i["_seq"],
            )
        targets = [i for i in targets if i["status"] == "Posted" and i["balance"] > 0]
        collected = 0
        payment_id = None
        for inv in targets:
            amount = inv["balance"]
            pay = self.charge(req, inv)
            payment_id = pay["id"]
            if pay["status"] == "Error":
                raise ZuoraError(
                    PAYMENT,
                    INTEGRATION,
                    f"Transaction declined.402 - [{pay['gatewayResponseCode']}] "
                    f"{pay['gatewayResponse']}",
                )
            collected += amount
        return {
            "success": True,
            "amountCollected": f"{collected / 100:.2f}",
            "invoices": [
                {
                    "invoiceId": i["id"],
                    "invoiceNumber": i["invoiceNumber"],
                    "invoiceAmount": f"{i['amount'] / 100:.2f}",
                }
                for i in targets
            ],
            "paymentId": payment_id,
            "creditMemos": [],
        }

    def create_payment_run(self, req: Req) -> dict[str, Any]:
        """A payment run, processed at once: every posted invoice with a balance of the account
        (or of every auto-pay account) is collected; declines are counted, not raised."""
        body = req.obj()
        s = self.store
        accounts = (
            [s.account(body["accountId"])]
            if body.get("accountId")
            else [a for a in s.accounts.values() if a.get("autoPay") and not a.get("_deleted")]
        )
        run = {
            "id": new_id(),
            "number": s.number("PR-"),
            "status": "Completed",
            "accountId": body.get("accountId"),
            "createdDate": s.now(),
            "processed": 0,
            "errors": 0,
            "collected": 0,
        }
        for acct in accounts:
            for inv in sorted(
                (i for i in s.invoices.values() if i["accountId"] == acct["id"]),
                key=lambda i: i["_seq"],
            ):
                if inv["status"] != "Posted" or inv["balance"] <= 0:
                    continue
                amount = inv["balance"]
                try:
                    pay = self.charge(req, inv)
                except ZuoraError:
                    run["errors"] += 1
                    continue
                run["processed"] += 1
                if pay["status"] == "Error":
                    run["errors"] += 1
                    self.start_retry_cycle(inv, pay)
                else:
                    run["collected"] += amount
        s.payment_runs[run["id"]] = run
        return self._payment_run(run)

    def _payment_run(self, run: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": run["id"],
            "number": run["number"],
            "status": run["status"],
            "accountId": run["accountId"],
            "collectPayment": True,
            "createdDate": r.stamp(run["createdDate"]),
            "executedOn": r.stamp(run["createdDate"]),
            "completedOn": r.stamp(run["createdDate"]),
            "success": True,
        }

    def get_payment_run(self, req: Req) -> dict[str, Any]:
        run = self.store.payment_runs.get(req.params["key"]) or next(
            (x for x in self.store.payment_runs.values() if x["number"] == req.params["key"]), None
        )
        if run is None:
            raise ZuoraError(PAYMENT_RUN, 40, f"Cannot find entity by key: '{req.params['key']}'.")
        return self._payment_run(run)

    def payment_run_summary(self, req: Req) -> dict[str, Any]:
        run = self.store.payment_runs.get(req.params["key"])
        if run is None:
            raise ZuoraError(PAYMENT_RUN, 40, f"Cannot find entity by key: '{req.params['key']}'.")
        return {
            "numberOfErrors": run["errors"],
            "numberOfProcessed": run["processed"],
            "totalValueOfErrors": "0.00",
            "totalValueOfProcessed": f"{run['collected'] / 100:.2f}",
            "success": True,
        }

    # --- credit memos ---------------------------------------------------------------------------------

    def new_memo(
        self, account_id: str, amount: int, reason: str | None, comment: str | None
    ) -> dict[str, Any]:
        s = self.store
        memo = {
            "id": new_id(),
            "number": s.number("CM"),
            "accountId": account_id,
            "amount": amount,
            "unapplied": amount,
            "status": "Posted",
            "reasonCode": reason,
            "comment": comment,
            "createdDate": s.now(),
            "_seq": s.next_seq(),
        }
        s.credit_memos[memo["id"]] = memo
        return memo

    def apply_memo(self, memo: dict[str, Any], inv: dict[str, Any], amount: int) -> None:
        if amount > memo["unapplied"] or amount > inv["balance"] or amount <= 0:
            raise ZuoraError(
                CREDIT_MEMO,
                BUSINESS_RULE,
                "The amount to apply exceeds the unapplied amount or the invoice balance.",
            )
        memo["unapplied"] -= amount
        inv["balance"] -= amount
        inv["creditMemoAmount"] = inv.get("creditMemoAmount", 0) + amount

    def create_memo_from_charge(self, req: Req) -> dict[str, Any]:
        """``POST /v1/credit-memos``: a standalone credit memo from product rate plan charges
        (an account credit until applied)."""
        body = req.obj()
        acct = self.store.account(
            body.get("accountId")
            or body.get("accountNumber")
            or _need(body, "accountId", CREDIT_MEMO)
        )
        charges = _need(body, "charges", CREDIT_MEMO)
        total = 0
        for ch in charges:
            if not any(
                c["id"] == ch.get("productRatePlanChargeId")
                for p in self.store.product_rate_plans.values()
                for c in p["charges"]
            ):
                raise ZuoraError(CREDIT_MEMO, INVALID_VALUE, "Invalid productRatePlanChargeId.")
            total += cents(_need(ch, "amount", CREDIT_MEMO), "amount", CREDIT_MEMO)
        if total <= 0:
            raise ZuoraError(CREDIT_MEMO, INVALID_VALUE, "The credit memo amount must be positive.")
        memo = self.new_memo(acct["id"], total, body.get("reasonCode"), body.get("comment"))
        if body.get("autoPost") is False:
            memo["status"] = "Draft"
        return r.credit_memo(self.store, memo)

    def create_memo_from_invoice(self, req: Req) -> dict[str, Any]:
        body = req.obj()
        inv = self.store.invoice(req.params["key"])
        items = _need(body, "items", CREDIT_MEMO)
        total = 0
        for it in items:
            _need(it, "invoiceItemId", CREDIT_MEMO)
            _need(it, "skuName", CREDIT_MEMO)
            if not any(x["id"] == it["invoiceItemId"] for x in inv["items"]):
                raise ZuoraError(CREDIT_MEMO, INVALID_VALUE, "Invalid invoiceItemId.")
            total += cents(_need(it, "amount", CREDIT_MEMO), "amount", CREDIT_MEMO)
        if total > inv["amount"]:
            raise ZuoraError(
                CREDIT_MEMO, BUSINESS_RULE, "The credit memo amount exceeds the invoice amount."
            )
        memo = self.new_memo(inv["accountId"], total, body.get("reasonCode"), body.get("comment"))
        memo["referredInvoiceId"] = inv["id"]
        # each memo item credits an invoice item and carries its service period (object query
        # ``expand[]=creditmemoitems``)
        by_id = {x["id"]: x for x in inv["items"]}
        memo["items"] = [
            {
                "id": new_id(),
                "sourceItemId": it["invoiceItemId"],
                "skuName": it["skuName"],
                "amount": cents(it["amount"], "amount", CREDIT_MEMO),
                # the request may narrow the period (a cancellation credits its last days)
                "serviceStartDate": _day_ts(it.get("serviceStartDate"))
                or by_id[it["invoiceItemId"]]["serviceStartDate"],
                "serviceEndDate": _day_ts(it.get("serviceEndDate"))
                or by_id[it["invoiceItemId"]]["serviceEndDate"],
            }
            for it in items
        ]
        memo["source"], memo["sourceType"] = "Invoice", "Invoice"
        if body.get("autoPost") is False:
            memo["status"] = "Draft"
        elif body.get("autoApplyToInvoiceUponPosting"):
            self.apply_memo(memo, inv, min(total, inv["balance"]))
        return r.credit_memo(self.store, memo)

    def apply_credit_memo(self, req: Req) -> dict[str, Any]:
        body = req.obj()
        memo = self.store.credit_memo(req.params["key"])
        if memo["status"] != "Posted":
            raise ZuoraError(
                CREDIT_MEMO, BUSINESS_RULE, "Only a posted credit memo can be applied."
            )
        for app in _need(body, "invoices", CREDIT_MEMO):
            inv = self.store.invoice(_need(app, "invoiceId", CREDIT_MEMO))
            self.apply_memo(
                memo, inv, cents(_need(app, "amount", CREDIT_MEMO), "amount", CREDIT_MEMO)
            )
        return r.credit_memo(self.store, memo)

    def get_credit_memo(self, req: Req) -> dict[str, Any]:
        return r.credit_memo(self.store, self.store.credit_memo(req.params["key"]))

    # --- usage -------------------------------------------------------------------------------------

    def create_usage(self, req: Req) -> dict[str, Any]:
        """``POST /v1/object/usage`` (CRUD): PascalCase fields; errors in the CRUD shape."""
        body = req.obj()
        s = self.store
        key = body.get("AccountId") or body.get("AccountNumber")
        if not key:
            raise ZuoraError(USAGE, MISSING_FIELD, "AccountId or AccountNumber is required")
        acct = s.account(key)
        for name in ("UOM", "Quantity", "StartDateTime"):
            if body.get(name) in (None, ""):
                raise ZuoraError(USAGE, MISSING_FIELD, f"{name} is required")
        try:
            qty = float(body["Quantity"])
        except (TypeError, ValueError):
            raise ZuoraError(USAGE, INVALID_VALUE, "Quantity must be a number") from None
        sub_no = body.get("SubscriptionNumber")
        if sub_no:
            sub = s.subscription(sub_no)
            if sub["accountId"] != acct["id"]:
                raise ZuoraError(
                    USAGE, INVALID_VALUE, "The subscription does not belong to the account"
                )
        u = {
            "id": new_id(),
            "accountId": acct["id"],
            "subscriptionNumber": sub_no,
            "chargeNumber": body.get("ChargeNumber"),
            "uom": body["UOM"],
            "quantity": qty,
            "startDateTime": parse_day(body["StartDateTime"], "StartDateTime", USAGE),
            "endDateTime": parse_day(body["EndDateTime"], "EndDateTime", USAGE)
            if body.get("EndDateTime")
            else None,
            "description": body.get("Description"),
            "createdDate": s.now(),
            "_seq": s.next_seq(),
        }
        s.usages[u["id"]] = u
        req.callouts.append(
            (
                "UsageRecorded",
                {
                    "Usage.Id": u["id"],
                    "Account.Id": acct["id"],
                    "Account.AccountNumber": acct["accountNumber"],
                },
            )
        )
        return {"Success": True, "Id": u["id"]}

    def usage_by_account(self, req: Req) -> dict[str, Any]:
        acct = self.store.account(req.params["key"])
        rows = sorted(
            (u for u in self.store.usages.values() if u["accountId"] == acct["id"]),
            key=lambda u: (u["startDateTime"], u["_seq"]),
            reverse=True,
        )
        return _page(req, [r.usage_item(self.store, u) for u in rows], "usage")

    # --- object query ------------------------------------------------------------------------------

    def object_query(self, kind: str) -> Callable[[Req], dict[str, Any]]:
        def handler(req: Req) -> dict[str, Any]:
            s = self.store
            source: dict[
                str, tuple[list[dict[str, Any]], Callable[[dict[str, Any]], dict[str, Any]]]
            ] = {
                "accounts": (
                    [a for a in s.accounts.values() if not a.get("_deleted")],
                    lambda a: {
                        **r.expanded_account(s, a),
                        **(
                            {"billTo": r.expanded_contact(s.contacts[a["billToId"]])}
                            if "billto" in {e.lower() for e in req.qs("expand[]")}
                            else {}
                        ),
                    },
                ),
                "contacts": (list(s.contacts.values()), r.expanded_contact),
                "subscriptions": (
                    list(s.subscriptions.values()),
                    lambda x: r.expanded_subscription(s, x),
                ),
                "invoices": (
                    list(s.invoices.values()),
                    lambda i: _invoice_row(s, i, {e.lower() for e in req.qs("expand[]")}),
                ),
                "credit-memos": (
                    list(s.credit_memos.values()),
                    lambda m: {
                        **r.credit_memo(s, m),
                        **(
                            {"creditMemoItems": [r.query_memo_item(x) for x in m.get("items", [])]}
                            if "creditmemoitems" in {e.lower() for e in req.qs("expand[]")}
                            else {}
                        ),
                    },
                ),
                "payments": (list(s.payments.values()), lambda p: r.expanded_payment(s, p)),
                "usages": (list(s.usages.values()), lambda u: r.expanded_usage(s, u)),
            }
            recs, shape = source[kind]
            # key filters (id / accountId, EQ or IN) pick the records before they are rendered,
            # as an index would; every filter is still applied to the rendered rows below
            recs = _by_key(recs, req.qs("filter[]"))
            rows = [shape(x) for x in sorted(recs, key=lambda x: x.get("_seq", 0))]
            for f in req.qs("filter[]"):
                rows = _filter(rows, f)
            for spec in reversed(req.qs("sort[]")):
                field_, _, direction = spec.rpartition(".")
                if direction.upper() not in ("ASC", "DESC") or not field_:
                    raise ZuoraError(
                        GENERIC, INVALID_VALUE, f"invalid sort {spec!r}", http_status=400
                    )
                rows.sort(
                    key=lambda row, f=field_: _sort_key(row, f), reverse=direction.upper() == "DESC"
                )
            try:
                size = int(req.q("pageSize") or 10)
            except ValueError:
                raise ZuoraError(
                    GENERIC, INVALID_VALUE, "pageSize must be an integer", http_status=400
                ) from None
            if not 1 <= size <= QUERY_PAGE_MAX:
                raise ZuoraError(
                    GENERIC,
                    INVALID_VALUE,
                    f"pageSize must be between 1 and {QUERY_PAGE_MAX}",
                    http_status=400,
                )
            start = 0
            if req.q("cursor"):
                try:
                    start = int(json.loads(base64.urlsafe_b64decode(req.q("cursor") or ""))["o"])
                except (ValueError, KeyError, TypeError):
                    raise ZuoraError(
                        GENERIC, INVALID_VALUE, "invalid cursor", http_status=400
                    ) from None
            chunk = expand_page(s, kind, rows[start : start + size], req.qs("expand[]"))
            out: dict[str, Any] = {"data": chunk}
            if start + size < len(rows):
                out["nextPage"] = base64.urlsafe_b64encode(
                    json.dumps({"o": start + size}).encode()
                ).decode()
            return out

        return handler


def _day_ts(value: Any) -> float | None:
    """A ``YYYY-MM-DD`` request date as the store's timestamp (None when absent)."""
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise ZuoraError(
            CREDIT_MEMO, INVALID_VALUE, f"invalid date {str(value)[:20]!r}", http_status=400
        ) from None


def _lower(row: dict[str, Any]) -> dict[str, Any]:
    return {k.lower(): v for k, v in row.items()}


def _sort_key(row: dict[str, Any], name: str) -> tuple[int, Any]:
    v = _lower(row).get(name.lower())
    return (0, "") if v is None else (1, v)


def _invoice_row(s: Any, inv: dict[str, Any], asked: set[str]) -> dict[str, Any]:
    """An invoice as Object Query renders it, with what ``expand[]`` asked for: ``invoiceitems``
    (``invoiceitems.subscription``: each item's subscription, ``ExpandedSubscription`` with its
    ``name`` and ``cMRR``), ``account`` (``account.billto``: its bill-to contact), as Zuora's
    ``ExpandedInvoice`` / ``ExpandedInvoiceItem`` carry them (issue 15: the dunning run's one
    read of an invoice with what its case needs)."""
    row = r.expanded_invoice(inv)
    if "invoiceitems" in asked or "invoiceitems.subscription" in asked:
        items = []
        for x in inv["items"]:
            item = r.query_invoice_item(x)
            sub = s.subscriptions.get(x.get("subscriptionId") or "")
            if "invoiceitems.subscription" in asked:
                item["subscription"] = r.expanded_subscription(s, sub) if sub else None
            items.append(item)
        row["invoiceItems"] = items
    if "account" in asked or "account.billto" in asked:
        acct = s.accounts.get(inv["accountId"])
        account = r.expanded_account(s, acct) if acct else None
        if account is not None and "account.billto" in asked:
            contact = s.contacts.get(acct.get("billToId") or "")
            account["billTo"] = r.expanded_contact(contact) if contact else None
        row["account"] = account
    return row


def _by_key(recs: list[dict[str, Any]], specs: list[str]) -> list[dict[str, Any]]:
    """The stored records an ``id`` / ``accountId`` ``EQ`` or ``IN`` filter can match (the
    rendered rows carry those fields unchanged); other filters keep every record."""
    for spec in specs:
        head, sep, value = spec.partition(":")
        name, _, op = head.rpartition(".")
        if not sep or op.upper() not in ("EQ", "IN") or name.lower() not in ("id", "accountid"):
            continue
        key = "id" if name.lower() == "id" else "accountId"
        wanted = (
            {v.strip() for v in value.strip("[]").split(",")} if op.upper() == "IN" else {value}
        )
        recs = [r for r in recs if key not in r or str(r[key]) in wanted]
    return recs


def _filter(rows: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    """``field.OP:value`` with OP in EQ, NE, GT, GE, LT, LE, SW, IN (``IN:[a,b]``); field names
    are case-insensitive, as Object Query treats them."""
    head, sep, value = spec.partition(":")
    name, _, op = head.rpartition(".")
    op = op.upper()
    if not sep or not name or op not in ("EQ", "NE", "GT", "GE", "LT", "LE", "SW", "IN"):
        raise ZuoraError(GENERIC, INVALID_VALUE, f"invalid filter {spec!r}", http_status=400)
    key = name.lower()
    if op == "IN":
        wanted = {v.strip() for v in value.strip("[]").split(",")}

    def keep(row: dict[str, Any]) -> bool:
        v = _lower(row).get(key)
        text = "" if v is None else (str(v).lower() if isinstance(v, bool) else str(v))
        if op == "EQ":
            return text == value or (value == "null" and v is None)
        if op == "NE":
            return text != value
        if op == "SW":
            return text.lower().startswith(value.lower())
        if op == "IN":
            return text in wanted
        if v is None:
            return False
        try:
            a, b = float(v), float(value)  # numbers
        except (TypeError, ValueError):
            a, b = text, value  # ISO dates and strings compare as text
        return {"GT": a > b, "GE": a >= b, "LT": a < b, "LE": a <= b}[op]  # type: ignore[operator]

    return [row for row in rows if keep(row)]
