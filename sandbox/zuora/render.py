"""Zuora's response shapes for the emulator's internal records (field names from the generated
models of ``zuora-sdk`` 3.21.0, ``../shared/specs/zuora/zuora-api.json``)."""

from __future__ import annotations

from typing import Any

from . import metering
from .state import Store, day, money, stamp

MONTHS = {"Month": 1, "Quarter": 3, "Semi_Annual": 6, "Annual": 12}


def custom_fields(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k.endswith("__c")}


def contact(store: Store, contact_id: str | None) -> dict[str, Any] | None:
    c = store.contacts.get(contact_id or "")
    if c is None:
        return None
    acct = store.accounts.get(c["accountId"])
    return {
        "id": c["id"],
        "accountId": c["accountId"],
        "accountNumber": acct["accountNumber"] if acct else None,
        "firstName": c.get("firstName"),
        "lastName": c.get("lastName"),
        "workEmail": c.get("workEmail"),
        "personalEmail": c.get("personalEmail"),
        "country": c.get("country"),
        "state": c.get("state"),
        "city": c.get("city"),
        "address1": c.get("address1"),
        "zipCode": c.get("zipCode"),
    }


# --- money on accounts and subscriptions -------------------------------------------------------


def charge_monthly(charge: dict[str, Any]) -> float:
    """A recurring per-unit / flat-fee charge's amount per month, in cents (before discounts)."""
    if charge["type"] != "Recurring" or charge["model"] == "DiscountPercentage":
        return 0.0
    months = MONTHS.get(charge.get("billingPeriod") or "Month", 1)
    qty = charge.get("quantity") or 1 if charge["model"] == "PerUnit" else 1
    return charge["price"] * qty / months


def active(rec: dict[str, Any], now: float) -> bool:
    end = rec.get("effectiveEndDate")
    return rec.get("effectiveStartDate", 0) <= now and (end is None or end > now)


def subscription_mrr(sub: dict[str, Any], now: float) -> tuple[int, int, float]:
    """(gross MRR, net MRR, total discount %) of the subscription's active rate plans."""
    if sub["status"] not in ("Active", "Suspended"):
        return 0, 0, 0.0
    gross = 0.0
    keep = 1.0
    for rp in sub["ratePlans"]:
        if rp.get("_removed") or not active(rp, now):
            continue
        for ch in rp["charges"]:
            if ch["model"] == "DiscountPercentage":
                keep *= 1 - float(ch.get("discountPercentage") or 0) / 100
            else:
                gross += charge_monthly(ch)
    return int(round(gross)), int(round(gross * keep)), round((1 - keep) * 100, 4)


def account_metrics(store: Store, acct: dict[str, Any]) -> dict[str, Any]:
    now = store.now()
    invoices = [i for i in store.invoices.values() if i["accountId"] == acct["id"]]
    balance = sum(i["balance"] for i in invoices if i["status"] == "Posted")
    unapplied = sum(
        m["unapplied"]
        for m in store.credit_memos.values()
        if m["accountId"] == acct["id"] and m["status"] == "Posted"
    )
    mrr = sum(
        subscription_mrr(s, now)[1]
        for s in store.subscriptions.values()
        if s["accountId"] == acct["id"]
    )
    return {
        "balance": money(balance),
        "totalInvoiceBalance": money(balance),
        "creditBalance": money(acct.get("_credit_balance", 0)),
        "unappliedCreditMemoAmount": money(unapplied),
        "contractedMrr": money(mrr),
        "currency": acct["currency"],
        "totalDebitMemoBalance": 0.0,
        "unappliedPaymentAmount": 0.0,
        "reservedPaymentAmount": 0.0,
    }


def account_detail(store: Store, acct: dict[str, Any]) -> dict[str, Any]:
    return {
        "basicInfo": {
            "id": acct["id"],
            "accountNumber": acct["accountNumber"],
            "name": acct["name"],
            "notes": acct.get("notes"),
            "crmId": acct.get("crmId"),
            "status": acct["status"],
            "batch": "Batch1",
            "salesRep": acct.get("salesRep"),
            "purchaseOrderNumber": acct.get("purchaseOrderNumber"),
            "lastMetricsUpdate": stamp(store.now()),
            "defaultPaymentMethodId": acct.get("defaultPaymentMethodId"),
            **custom_fields(acct),
        },
        "billingAndPayment": {
            "billCycleDay": acct.get("billCycleDay", 1),
            "currency": acct["currency"],
            "paymentTerm": acct.get("paymentTerm", "Due Upon Receipt"),
            "autoPay": acct.get("autoPay", True),
            "defaultPaymentMethodId": acct.get("defaultPaymentMethodId"),
            "invoiceDeliveryPrefsEmail": True,
            "invoiceDeliveryPrefsPrint": False,
        },
        "metrics": account_metrics(store, acct),
        "billToContact": contact(store, acct.get("billToId")),
        "soldToContact": contact(store, acct.get("soldToId") or acct.get("billToId")),
        "success": True,
    }


def expanded_account(store: Store, acct: dict[str, Any]) -> dict[str, Any]:
    """The object-query shape (flat, ``createdDate``, custom fields at the top level)."""
    m = account_metrics(store, acct)
    return {
        "id": acct["id"],
        "accountNumber": acct["accountNumber"],
        "name": acct["name"],
        "notes": acct.get("notes"),
        "crmId": acct.get("crmId"),
        "currency": acct["currency"],
        "autoPay": acct.get("autoPay", True),
        "paymentTerm": acct.get("paymentTerm", "Due Upon Receipt"),
        "billCycleDay": acct.get("billCycleDay", 1),
        "balance": m["balance"],
        "creditBalance": m["creditBalance"],
        "mrr": m["contractedMrr"],
        "billToId": acct.get("billToId"),
        "soldToId": acct.get("soldToId") or acct.get("billToId"),
        "defaultPaymentMethodId": acct.get("defaultPaymentMethodId"),
        "createdDate": stamp(acct["createdDate"]),
        "updatedDate": stamp(acct.get("updatedDate", acct["createdDate"])),
        "status": acct["status"],
        **custom_fields(acct),
    }


def expanded_contact(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": c["id"],
        "accountId": c["accountId"],
        "firstName": c.get("firstName"),
        "lastName": c.get("lastName"),
        "workEmail": c.get("workEmail"),
        # the Contact object's address fields (Object Query: postalCode; REST v1: zipCode)
        "address1": c.get("address1"),
        "address2": c.get("address2"),
        "city": c.get("city"),
        "state": c.get("state"),
        "postalCode": c.get("zipCode"),
        "country": c.get("country"),
        "createdDate": stamp(c["createdDate"]),
        "updatedDate": stamp(c["createdDate"]),
    }


# --- catalogue ---------------------------------------------------------------------------------


def product(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": p["id"],
        "name": p["name"],
        "sku": p["sku"],
        "productNumber": p["productNumber"],
        "description": p.get("description", ""),
        "category": p.get("category", "Base Products"),
        "effectiveStartDate": "2020-01-01",
        "effectiveEndDate": "2099-12-31",
        "productRatePlans": f"/v1/products/{p['id']}/product-rate-plans",
        "tags": "",
    }


def product_rate_plan(store: Store, prp: dict[str, Any]) -> dict[str, Any]:
    prod = store.products.get(prp["productId"], {})
    return {
        "id": prp["id"],
        "productRatePlanNumber": prp["productRatePlanNumber"],
        "name": prp["name"],
        "status": "Active",
        "description": prp.get("description", ""),
        "effectiveStartDate": "2020-01-01",
        "effectiveEndDate": "2099-12-31",
        "productId": prp["productId"],
        "productName": prod.get("name"),
        "productSku": prod.get("sku"),
        "productRatePlanCharges": [
            {
                "id": ch["id"],
                "name": ch["name"],
                "type": ch["type"],
                "model": ch["model"],
                "uom": ch.get("uom"),
                "billingPeriod": ch.get("billingPeriod"),
                "pricing": [
                    {
                        "currency": prp["currency"],
                        "price": money(ch.get("price", 0)),
                        "discountPercentage": ch.get("discountPercentage"),
                        **metering.pricing(ch),
                    }
                ],
                "defaultQuantity": ch.get("defaultQuantity", 1),
            }
            for ch in prp["charges"]
        ],
        **custom_fields(prp),
        "success": True,
    }


# --- subscriptions -----------------------------------------------------------------------------


def rate_plan(store: Store, rp: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": rp["id"],
        "productId": rp["productId"],
        "productName": rp["productName"],
        "productSku": rp.get("productSku"),
        "productRatePlanId": rp["productRatePlanId"],
        "productRatePlanNumber": rp.get("productRatePlanNumber"),
        "ratePlanName": rp["ratePlanName"],
        "subscriptionRatePlanNumber": rp.get("number"),
        "lastChangeType": rp.get("lastChangeType", "Add"),
        "ratePlanCharges": [
            {
                "id": ch["id"],
                "number": ch["number"],
                "name": ch["name"],
                "type": ch["type"],
                "model": ch["model"],
                "price": money(ch["price"]) if ch["model"] != "DiscountPercentage" else None,
                "discountPercentage": ch.get("discountPercentage"),
                "quantity": ch.get("quantity"),
                "billingPeriod": ch.get("billingPeriod"),
                "uom": ch.get("uom"),
                "currency": ch.get("currency"),
                "mrr": money(int(round(charge_monthly(ch)))),
                "effectiveStartDate": day(ch.get("effectiveStartDate", rp["effectiveStartDate"])),
                "effectiveEndDate": day(rp["effectiveEndDate"])
                if rp.get("effectiveEndDate")
                else None,
                "productRatePlanChargeId": ch["productRatePlanChargeId"],
            }
            for ch in rp["charges"]
        ],
    }


def subscription(store: Store, sub: dict[str, Any]) -> dict[str, Any]:
    now = store.now()
    gross, net, _ = subscription_mrr(sub, now)
    acct = store.accounts.get(sub["accountId"], {})
    return {
        "id": sub["id"],
        "subscriptionNumber": sub["subscriptionNumber"],
        "accountId": sub["accountId"],
        "accountNumber": acct.get("accountNumber"),
        "accountName": acct.get("name"),
        "invoiceOwnerAccountId": sub["accountId"],
        "invoiceOwnerAccountNumber": acct.get("accountNumber"),
        "status": sub["status"],
        "termType": sub["termType"],
        "initialTerm": sub.get("initialTerm"),
        "initialTermPeriodType": "Month",
        "currentTerm": sub.get("initialTerm"),
        "currentTermPeriodType": "Month",
        "renewalTerm": sub.get("renewalTerm"),
        "renewalTermPeriodType": "Month",
        "autoRenew": sub.get("autoRenew", True),
        "renewalSetting": "RENEW_WITH_SPECIFIC_TERM",
        "contractEffectiveDate": day(sub["contractEffectiveDate"]),
        "serviceActivationDate": day(sub["contractEffectiveDate"]),
        "customerAcceptanceDate": day(sub["contractEffectiveDate"]),
        "subscriptionStartDate": day(sub["contractEffectiveDate"]),
        "termStartDate": day(sub["termStartDate"]),
        "termEndDate": day(sub["termEndDate"]) if sub.get("termEndDate") else None,
        "subscriptionEndDate": day(sub["cancelledDate"]) if sub.get("cancelledDate") else None,
        "cancelReason": sub.get("cancelReason"),
        "scheduledCancelDate": day(sub["scheduledCancelDate"])
        if sub.get("scheduledCancelDate")
        else None,
        "notes": sub.get("notes"),
        "currency": acct.get("currency"),
        "paymentTerm": acct.get("paymentTerm"),
        "contractedMrr": money(gross),
        "contractedNetMrr": money(net),
        "totalContractedValue": money(net * (sub.get("initialTerm") or 12)),
        "orderNumber": sub.get("orderNumber"),
        "version": sub.get("version", 1),
        "isLatestVersion": True,
        "revision": f"{sub.get('version', 1)}.0",
        "createTime": stamp(sub["createdDate"]),
        "updateTime": stamp(sub.get("updatedDate", sub["createdDate"])),
        "ratePlans": [rate_plan(store, rp) for rp in sub["ratePlans"] if not rp.get("_removed")],
        "statusHistory": [
            {"status": h["status"], "startDate": day(h["at"]), "endDate": None}
            for h in sub.get("_status_history", [])
        ],
        **custom_fields(sub),
    }


def expanded_subscription(store: Store, sub: dict[str, Any]) -> dict[str, Any]:
    gross, net, _ = subscription_mrr(sub, store.now())
    return {
        "id": sub["id"],
        "name": sub["subscriptionNumber"],
        "accountId": sub["accountId"],
        "status": sub["status"],
        "termType": sub["termType"],
        "initialTerm": sub.get("initialTerm"),
        "renewalTerm": sub.get("renewalTerm"),
        "autoRenew": sub.get("autoRenew", True),
        "contractEffectiveDate": day(sub["contractEffectiveDate"]),
        "termStartDate": day(sub["termStartDate"]),
        "termEndDate": day(sub["termEndDate"]) if sub.get("termEndDate") else None,
        "cancelledDate": day(sub["cancelledDate"]) if sub.get("cancelledDate") else None,
        # ExpandedSubscription's own dates: the start, and the end a cancellation (made or
        # scheduled for a later date) sets; v1 shows the scheduled one as scheduledCancelDate
        "subscriptionStartDate": day(sub["contractEffectiveDate"]),
        "subscriptionEndDate": day(sub.get("cancelledDate") or sub.get("scheduledCancelDate"))
        if sub.get("cancelledDate") or sub.get("scheduledCancelDate")
        else None,
        "notes": sub.get("notes"),
        "cMRR": money(net),
        "currency": store.accounts.get(sub["accountId"], {}).get("currency"),
        "version": sub.get("version", 1),
        "isLatestVersion": True,
        "createdDate": stamp(sub["createdDate"]),
        "updatedDate": stamp(sub.get("updatedDate", sub["createdDate"])),
        **custom_fields(sub),
    }


# --- invoices, payments, credit memos, usage -----------------------------------------------------


def invoice(inv: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": inv["id"],
        "invoiceNumber": inv["invoiceNumber"],
        "accountId": inv["accountId"],
        "amount": money(inv["amount"]),
        "amountWithoutTax": money(inv["amount"]),
        "taxAmount": 0.0,
        "balance": money(inv["balance"]),
        "paymentAmount": money(inv.get("paymentAmount", 0)),
        "creditMemoAmount": money(inv.get("creditMemoAmount", 0)),
        "adjustmentAmount": 0.0,
        "refundAmount": 0.0,
        "currency": inv["currency"],
        "status": inv["status"],
        "invoiceDate": day(inv["invoiceDate"]),
        "dueDate": day(inv["dueDate"]),
        "targetDate": day(inv["invoiceDate"]),
        "postedDate": stamp(inv["invoiceDate"]) if inv["status"] == "Posted" else None,
        "comments": inv.get("comments"),
        "autoPay": inv.get("autoPay", True),
        "createdDate": stamp(inv["createdDate"]),
        "updatedDate": stamp(inv.get("updatedDate", inv["createdDate"])),
        "includesRecurring": True,
        "includesOneTime": False,
        "includesUsage": False,
        "source": "BillRun",
        "success": True,
    }


def expanded_invoice(inv: dict[str, Any]) -> dict[str, Any]:
    out = invoice(inv)
    for k in ("success", "taxAmount", "refundAmount", "targetDate", "source"):
        out.pop(k, None)
    return out


def invoice_item(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": item["id"],
        "subscriptionId": item.get("subscriptionId"),
        "subscriptionName": item.get("subscriptionNumber"),
        "chargeId": item.get("chargeId"),
        "chargeName": item.get("chargeName"),
        "chargeAmount": f"{money(item['amount']):.2f}",
        "balance": f"{money(item.get('balance', item['amount'])):.2f}",
        "taxAmount": "0.00",
        "quantity": item.get("quantity", 1),
        "unitPrice": money(item.get("unitPrice", item["amount"])),
        "productName": item.get("productName"),
        "serviceStartDate": day(item["serviceStartDate"]),
        "serviceEndDate": day(item["serviceEndDate"]),
        "chargeDate": stamp(item["serviceStartDate"]),
        "processingType": "Charge",
        "unitOfMeasure": item.get("uom"),
        "sku": item.get("sku"),
    }


def query_invoice_item(item: dict[str, Any]) -> dict[str, Any]:
    """An invoice item as Object Query expands it (``expand[]=invoiceitems``): flat, amounts
    as numbers, the service period as dates (the end date inclusive, as Zuora's is)."""
    return {
        "id": item["id"],
        "subscriptionId": item.get("subscriptionId"),
        "chargeName": item.get("chargeName"),
        "sku": item.get("sku"),
        "productName": item.get("productName"),
        "chargeAmount": money(item["amount"]),
        "taxAmount": 0.0,
        "quantity": item.get("quantity", 1),
        "serviceStartDate": day(item["serviceStartDate"]),
        "serviceEndDate": day(item["serviceEndDate"]),
        "processingType": "Charge",
    }


def query_memo_item(item: dict[str, Any]) -> dict[str, Any]:
    """A credit memo item as Object Query expands it (``expand[]=creditmemoitems``)."""
    return {
        "id": item["id"],
        "sourceItemId": item.get("sourceItemId"),
        "sourceItemType": "InvoiceDetail",
        "skuName": item.get("skuName"),
        "amount": money(item["amount"]),
        "amountWithoutTax": money(item["amount"]),
        "serviceStartDate": day(item["serviceStartDate"]),
        "serviceEndDate": day(item["serviceEndDate"]),
    }


def payment(store: Store, p: dict[str, Any]) -> dict[str, Any]:
    acct = store.accounts.get(p["accountId"], {})
    return {
        "id": p["id"],
        "number": p["number"],
        "accountId": p["accountId"],
        "accountNumber": acct.get("accountNumber"),
        "amount": money(p["amount"]),
        "appliedAmount": money(p["applied"]),
        "unappliedAmount": money(p["amount"] - p["applied"]),
        "refundAmount": 0.0,
        "creditBalanceAmount": 0.0,
        "currency": p["currency"],
        "effectiveDate": day(p["createdDate"]),
        "status": p["status"],
        "type": p["type"],
        "paymentMethodId": p.get("paymentMethodId"),
        "gatewayResponse": p.get("gatewayResponse"),
        "gatewayResponseCode": p.get("gatewayResponseCode"),
        "gatewayState": p.get("gatewayState"),
        "referenceId": p.get("referenceId"),
        "comment": p.get("comment"),
        "submittedOn": stamp(p["createdDate"]),
        "createdDate": stamp(p["createdDate"]),
        "updatedDate": stamp(p["createdDate"]),
        "success": True,
    }


def list_payment(store: Store, p: dict[str, Any]) -> dict[str, Any]:
    out = payment(store, p)
    out.pop("success")
    return out


def expanded_payment(store: Store, p: dict[str, Any]) -> dict[str, Any]:
    out = list_payment(store, p)
    for k in ("number", "accountNumber", "creditBalanceAmount"):
        out.pop(k)
    out["paymentNumber"] = p["number"]
    out["paymentApplications"] = [
        {
            "id": a["id"],
            "invoiceId": a["invoiceId"],
            "applyAmount": money(a["amount"]),
            "paymentId": p["id"],
            "paymentApplicationStatus": "Processed",
        }
        for a in p.get("applications", [])
    ]
    return out


def credit_memo(store: Store, m: dict[str, Any]) -> dict[str, Any]:
    acct = store.accounts.get(m["accountId"], {})
    return {
        "id": m["id"],
        "number": m["number"],
        "accountId": m["accountId"],
        "accountNumber": acct.get("accountNumber"),
        "amount": money(m["amount"]),
        "appliedAmount": money(m["amount"] - m["unapplied"]),
        "unappliedAmount": money(m["unapplied"]),
        "refundAmount": 0.0,
        "currency": acct.get("currency"),
        "status": m["status"],
        "reasonCode": m.get("reasonCode"),
        "comment": m.get("comment"),
        "referredInvoiceId": m.get("referredInvoiceId"),
        "creditMemoDate": day(m["createdDate"]),
        "source": m.get("source", "AdhocFromPrpc"),
        "sourceType": m.get("sourceType", "Standalone"),
        "createdDate": stamp(m["createdDate"]),
        "updatedDate": stamp(m["createdDate"]),
        "postedOn": stamp(m["createdDate"]) if m["status"] == "Posted" else None,
        "success": True,
    }


def usage_item(store: Store, u: dict[str, Any]) -> dict[str, Any]:
    acct = store.accounts.get(u["accountId"], {})
    return {
        "id": u["id"],
        "accountId": u["accountId"],
        "accountNumber": acct.get("accountNumber"),
        "accountName": acct.get("name"),
        "subscriptionNumber": u.get("subscriptionNumber"),
        "chargeNumber": u.get("chargeNumber"),
        "unitOfMeasure": u["uom"],
        "quantity": f"{u['quantity']:g}",
        "startDateTime": stamp(u["startDateTime"]),
        "submissionDateTime": stamp(u["createdDate"]),
        "sourceName": "API",
        "status": "Pending",
    }


def expanded_usage(store: Store, u: dict[str, Any]) -> dict[str, Any]:
    acct = store.accounts.get(u["accountId"], {})
    sub = next(
        (
            s
            for s in store.subscriptions.values()
            if s["subscriptionNumber"] == u.get("subscriptionNumber")
        ),
        None,
    )
    return {
        "id": u["id"],
        "accountId": u["accountId"],
        "accountNumber": acct.get("accountNumber"),
        "subscriptionId": sub["id"] if sub else None,
        "uOM": u["uom"],
        "quantity": u["quantity"],
        "startDateTime": stamp(u["startDateTime"]),
        "endDateTime": stamp(u["endDateTime"]) if u.get("endDateTime") else None,
        "submissionDateTime": stamp(u["createdDate"]),
        "description": u.get("description"),
        "sourceType": "API",
        "rbeStatus": "Pending",
        "createdDate": stamp(u["createdDate"]),
        "updatedDate": stamp(u["createdDate"]),
    }
