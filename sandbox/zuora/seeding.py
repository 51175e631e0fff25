"""``POST /_sandbox/seed`` for the Zuora emulator (seeding sends no callouts).

::

    {"products": [{"id"?, "name", "sku", "rate_plans": [{"id"?, "number", "name", "currency",
                    "charges": [{"id"?, "name", "type": Recurring|OneTime|Usage,
                                 "model": PerUnit|FlatFee|DiscountPercentage, "price" (cents),
                                 "billingPeriod"?, "uom"?, "discountPercentage"?,
                                 "includedUnits"?, "overagePrice"?, "tiers"? (metering)}],
                    "…__c"?}]}],
     "accounts": [{"id"?, "accountNumber"?, "name", "currency"?, "crmId"?, "notes"?, "…__c"?,
                   "email"?, "createdDate"? (unix), "card": {"decline_code"} | null}],
     "subscriptions": [{"id"?, "subscriptionNumber"?, "account", "start"? (unix),
                        "plans": [{"plan": rate plan number or ID, "quantity"?, "price"?,
                                   "discountPercentage"?}], "status"?, "cancelAtTermEnd"?}],
     "invoices": [{"id"?, "invoiceNumber"?, "account", "subscription"?, "amount" (cents),
                   "balance"?, "invoiceDate"? (unix), "status"? (Posted | Draft)}],
     "payments": [{"account", "invoice"?, "amount"?, "status": Processed|Error,
                   "gatewayResponseCode"?, "createdDate"? (unix)}],
     "usages": [{"account", "subscription"?, "uom", "quantity", "startDateTime" (unix)}]}

A product or rate plan seeded again under the same number replaces nothing (idempotent).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .api import GATEWAY_MESSAGES
from .metering import seeded_charge
from .state import new_id

if TYPE_CHECKING:
    from .emulator import ZuoraEmulator


def seed(em: ZuoraEmulator, data: Mapping[str, Any]) -> dict[str, Any]:
    s = em.store
    api = em.api
    out: dict[str, list[str]] = {
        "products": [],
        "rate_plans": [],
        "accounts": [],
        "subscriptions": [],
        "invoices": [],
        "payments": [],
        "usages": [],
    }
    for spec in data.get("products") or []:
        prod = next((p for p in s.products.values() if p["sku"] == spec["sku"]), None)
        if prod is None:
            prod = {
                "id": spec.get("id") or new_id(),
                "name": spec["name"],
                "sku": spec["sku"],
                "productNumber": s.number("PC-"),
                "_seq": s.next_seq(),
            }
            s.products[prod["id"]] = prod
        out["products"].append(prod["id"])
        for rp in spec.get("rate_plans") or []:
            if any(
                p["productRatePlanNumber"] == rp["number"] for p in s.product_rate_plans.values()
            ):
                continue
            prp = {
                "id": rp.get("id") or new_id(),
                "productRatePlanNumber": rp["number"],
                "name": rp["name"],
                "productId": prod["id"],
                "currency": rp.get("currency", "USD"),
                "charges": [
                    {
                        "id": ch.get("id") or new_id(),
                        "name": ch["name"],
                        "type": ch.get("type", "Recurring"),
                        "model": ch.get("model", "PerUnit"),
                        "price": int(ch.get("price", 0)),
                        "billingPeriod": ch.get("billingPeriod", "Month")
                        if ch.get("type", "Recurring") == "Recurring"
                        else None,
                        "uom": ch.get("uom"),
                        "discountPercentage": ch.get("discountPercentage"),
                        "defaultQuantity": ch.get("defaultQuantity", 1),
                        **seeded_charge(ch),
                    }
                    for ch in rp["charges"]
                ],
                **{k: v for k, v in rp.items() if k.endswith("__c")},
            }
            s.product_rate_plans[prp["id"]] = prp
            out["rate_plans"].append(prp["id"])

    for spec in data.get("accounts") or []:
        fields = {
            k: v
            for k, v in spec.items()
            if k in ("id", "accountNumber", "name", "crmId", "notes", "paymentTerm", "autoPay")
            or k.endswith("__c")
        }
        fields["currency"] = str(spec.get("currency", "USD")).upper()
        card = spec.get("card", {}) if "card" in spec else True
        acct = api.new_account(
            fields,
            {
                "firstName": spec.get("firstName", "Billing"),
                "lastName": spec.get("lastName", "Contact"),
                "workEmail": spec.get("email"),
            },
            card=card if card is not None else None,
        )
        if spec.get("id") and acct["id"] != spec["id"]:
            s.accounts[spec["id"]] = s.accounts.pop(acct["id"])
            acct["id"] = spec["id"]
            s.contacts[acct["billToId"]]["accountId"] = acct["id"]
            pm = s.payment_methods.get(acct.get("defaultPaymentMethodId") or "")
            if pm:
                pm["accountId"] = acct["id"]
        if spec.get("createdDate"):
            acct["createdDate"] = float(spec["createdDate"])
        out["accounts"].append(acct["id"])

    for spec in data.get("subscriptions") or []:
        acct = s.account(spec["account"])
        start = float(spec.get("start") or s.now())
        sub = api.new_subscription(
            acct,
            start,
            number=spec.get("subscriptionNumber"),
            status=spec.get("status", "Active"),
            initial_term=int(spec.get("initialTerm", 12)),
        )
        if spec.get("id"):
            s.subscriptions[spec["id"]] = s.subscriptions.pop(sub["id"])
            sub["id"] = spec["id"]
        sub["createdDate"] = start
        term = sub["termEndDate"] - sub["termStartDate"] if sub.get("termEndDate") else 0
        while term and sub["termEndDate"] <= s.now():  # renewed every term since it started
            sub["termStartDate"] += term
            sub["termEndDate"] += term
        if spec.get("cancelAtTermEnd"):  # cancelled with EndOfCurrentTerm: active until then
            sub["scheduledCancelDate"] = sub["termEndDate"]
        for plan in spec.get("plans") or []:
            override: dict[str, Any] = {}
            for k in ("quantity", "discountPercentage"):
                if plan.get(k) is not None:
                    override[k] = plan[k]
            if plan.get("price") is not None:
                override["price"] = plan["price"] / 100
            if override:
                override["productRatePlanChargeId"] = s.rate_plan(plan["plan"])["charges"][0]["id"]
            api.add_rate_plan(
                sub,
                {
                    "productRatePlanNumber": plan["plan"],
                    "chargeOverrides": [override] if override else [],
                },
                start,
                order_style=False,
            )
        out["subscriptions"].append(sub["id"])

    for spec in data.get("invoices") or []:
        acct = s.account(spec["account"])
        sub = s.subscription(spec["subscription"]) if spec.get("subscription") else None
        inv = api.new_invoice(
            acct,
            int(spec["amount"]),
            sub=sub,
            invoice_date=float(spec.get("invoiceDate") or s.now()),
            number=spec.get("invoiceNumber"),
            id_=spec.get("id"),
            status=spec.get("status", "Posted"),
        )
        if spec.get("balance") is not None:
            inv["balance"] = int(spec["balance"])
            inv["paymentAmount"] = inv["amount"] - inv["balance"]
        out["invoices"].append(inv["id"])

    for spec in data.get("payments") or []:
        acct = s.account(spec["account"])
        inv = s.invoice(spec["invoice"]) if spec.get("invoice") else None
        amount = int(spec.get("amount") or (inv["amount"] if inv else 0))
        pay = api.new_payment(acct, amount, "Electronic", acct.get("defaultPaymentMethodId"))
        if spec.get("createdDate"):
            pay["createdDate"] = float(spec["createdDate"])
        if spec.get("status", "Processed") == "Error":
            code = spec.get("gatewayResponseCode", "card_declined")
            pay.update(
                status="Error",
                gatewayResponseCode=code,
                gatewayResponse=GATEWAY_MESSAGES.get(code, "Transaction declined."),
            )
        elif inv is not None:
            pay["applications"].append({"id": new_id(), "invoiceId": inv["id"], "amount": amount})
            pay["applied"] = amount
        out["payments"].append(pay["id"])

    for spec in data.get("usages") or []:
        acct = s.account(spec["account"])
        u = {
            "id": new_id(),
            "accountId": acct["id"],
            "subscriptionNumber": spec.get("subscription"),
            "chargeNumber": None,
            "uom": spec["uom"],
            "quantity": float(spec["quantity"]),
            "startDateTime": float(spec["startDateTime"]),
            "endDateTime": None,
            "createdDate": float(spec["startDateTime"]),
            "_seq": s.next_seq(),
        }
        s.usages[u["id"]] = u
        out["usages"].append(u["id"])
    return out
