"""Zuora's side of the reconciliation: four Object Query walks, 99 rows a request (Zuora's
``pageSize`` maximum, ``nextPage`` cursors) — never one call per account:

- ``GET /object-query/accounts`` (the CRM link: ``crmId`` with ``RevBridgeCrm__c``);
- ``GET /object-query/subscriptions`` with ``expand[]=rateplans``,
  ``rateplans.rateplancharges``, ``rateplans.rateplancharges.rateplanchargetiers`` and
  ``rateplans.productrateplan``: each subscription's products (the catalogue plan's number,
  mapped through policies/products.yaml), quantities, prices (the charge's tier), discounts
  (discount-percentage charges: Zuora has no coupon object) and term end;
- ``GET /object-query/invoices`` (Posted and Canceled; ``expand[]=invoiceitems``, each item
  naming its product rate plan);
- ``GET /object-query/payments`` (Processed; ``expand[]=paymentapplications``: what each
  payment was applied to);
- and only when an invoice item bills a catalogue plan no subscription holds any more,
  ``GET /object-query/product-rate-plans`` with ``id.IN`` (its number, for the product map).

Zuora's facts in the domain's words: a subscription is named by its number (``name``: what
quote-to-cash links the deal to); an invoice is ``paid`` when Posted with nothing left to pay,
``void`` when Canceled, and its total is what payments had to cover — the amount less the credit
memos applied to it. Zuora never applies more than an invoice's balance, so money paid beyond it
stays on the payment, unapplied (the reconciliation's "unapplied payment", never an
"overpayment").
"""

from __future__ import annotations

from datetime import date
from typing import Any

from connectors.reconcile.views import BillingSide
from connectors.zuora import CRM_SYSTEM_FIELD, ZuoraBilling, minor, subscription_status
from domain.reconcile import LIVE, Customer, Invoice, Line, Payment, Sub

#: a safety bound on one walk (99 rows a page): about 10 million rows
MAX_PAGES = 100_000
#: IDs in one ``IN`` filter
BULK_IN = 99
SUBSCRIPTION_EXPAND = [
    "rateplans",
    "rateplans.rateplancharges",
    "rateplans.rateplancharges.rateplanchargetiers",
    "rateplans.productrateplan",
]


class ZuoraBook:
    name = "zuora"

    def __init__(self, billing: ZuoraBilling) -> None:
        self.billing = billing

    def _all(
        self, kind: str, filters: list[str], expand: list[str] | None = None
    ) -> list[dict[str, Any]]:
        return list(
            self.billing._query_all(kind, filters, max_pages=MAX_PAGES, expand=expand or [])
        )

    def read_billing(self, since: date | None, product_of: dict[str, str]) -> BillingSide:
        accounts = self._all("accounts", [])
        raw_subs = self._all("subscriptions", ["isLatestVersion.EQ:true"], SUBSCRIPTION_EXPAND)
        dated = [f"invoiceDate.GE:{since.isoformat()}"] if since else []
        invoices = self._all("invoices", dated, ["invoiceitems"])
        plan_number: dict[str, str] = {}  # product rate plan ID → its number
        paid_on = [f"effectiveDate.GE:{since.isoformat()}"] if since else []
        payments = self._all("payments", ["status.EQ:Processed", *paid_on], ["paymentapplications"])

        def code(plan_id: str | None, number: str | None = None) -> str:
            """policies/products.yaml names a catalogue plan by its number (PRP-…) or its ID."""
            number = number or plan_number.get(plan_id or "")
            return (
                product_of.get(number or "") or product_of.get(plan_id or "") or number or plan_id
            ) or ""

        subs, number_of = [], {}
        for s in raw_subs:
            currency = str(s.get("currency") or "USD").upper()
            lines, keep, main = [], 1.0, None
            for rp in s.get("ratePlans") or []:
                prp = rp.get("productRatePlan") or {}
                number = prp.get("productRatePlanNumber")
                if rp.get("productRatePlanId") and number:
                    plan_number[rp["productRatePlanId"]] = number
                product = code(rp.get("productRatePlanId"), number)
                for ch in rp.get("ratePlanCharges") or []:
                    if not _current(ch):
                        continue
                    tier = (ch.get("ratePlanChargeTiers") or [{}])[0]
                    if _is_discount(ch, tier):
                        keep *= 1 - float(tier.get("discountPercentage") or 0) / 100
                        continue
                    lines.append(
                        Line(
                            product=product,
                            quantity=int(float(ch.get("quantity") or 1)),
                            unit_price=minor(tier.get("price"), currency),
                        )
                    )
                    if main is None and ch.get("chargeType") == "Recurring":
                        # the plan as the account sync writes it: the catalogue plan's number
                        main = number or rp.get("productRatePlanId")
            discount = round((1 - keep) * 100, 4)
            number = str(s.get("name") or s["id"])
            number_of[s["id"]] = number
            subs.append(
                Sub(
                    id=number,
                    customer_id=str(s.get("accountId") or ""),
                    status=subscription_status(s),
                    lines=[ln.model_copy(update={"discount_percent": discount}) for ln in lines],
                    mrr=minor(s.get("cMRR"), currency),
                    plan=main,
                    renewal=date.fromisoformat(str(s["termEndDate"])[:10])
                    if s.get("termEndDate")
                    else None,
                )
            )
        # an invoice item may bill a catalogue plan no subscription holds any more: its number
        # from the catalogue, in one query for all of them (usually none)
        unknown = sorted(
            {
                it["productRatePlanId"]
                for inv in invoices
                for it in inv.get("invoiceItems") or []
                if it.get("productRatePlanId") and it["productRatePlanId"] not in plan_number
            }
        )
        for i in range(0, len(unknown), BULK_IN):
            ids = ",".join(unknown[i : i + BULK_IN])
            for prp in self._all("product-rate-plans", [f"id.IN:[{ids}]"]):
                if prp.get("productRatePlanNumber"):
                    plan_number[prp["id"]] = prp["productRatePlanNumber"]
        out_invoices = []
        for inv in invoices:
            status = str(inv.get("status") or "")
            if status not in ("Posted", "Canceled", "Cancelled"):
                continue  # drafts and errors are not invoices yet
            currency = str(inv.get("currency") or "USD").upper()
            items = inv.get("invoiceItems") or []
            lines, sub_id = [], None
            for it in items:
                if str(it.get("processingType") or "Charge") != "Charge":
                    continue
                ref = it.get("productRatePlanId")
                qty = int(float(it.get("quantity") or 1))
                lines.append(
                    Line(
                        product=code(ref) if ref else f"adhoc:{it.get('chargeName')}",
                        quantity=qty,
                        unit_price=minor(it.get("unitPrice"), currency)
                        or minor(it.get("chargeAmount"), currency) // max(qty, 1),
                    )
                )
                sub_id = sub_id or it.get("subscriptionId")
            amount = minor(inv.get("amount"), currency)
            owed = amount - minor(inv.get("creditMemoAmount"), currency)
            balance = minor(inv.get("balance"), currency)
            out_invoices.append(
                Invoice(
                    id=str(inv["id"]),
                    customer_id=str(inv.get("accountId") or ""),
                    subscription_id=number_of.get(sub_id or "", sub_id),
                    status="void"
                    if status != "Posted"
                    else ("paid" if balance == 0 and amount > 0 else "open"),
                    total=max(owed, 0),
                    lines=lines,
                )
            )
        out_payments = []
        for p in payments:
            currency = str(p.get("currency") or "USD").upper()
            applied: dict[str, int] = {}
            for a in p.get("paymentApplications") or []:
                if a.get("invoiceId") and str(a.get("paymentApplicationStatus") or "") in (
                    "",
                    "Processed",
                ):
                    applied[a["invoiceId"]] = applied.get(a["invoiceId"], 0) + minor(
                        a.get("applyAmount"), currency
                    )
            out_payments.append(
                Payment(
                    id=str(p["id"]),
                    customer_id=str(p.get("accountId") or ""),
                    amount=minor(p.get("amount"), currency)
                    - minor(p.get("refundAmount"), currency),
                    applied={k: v for k, v in applied.items() if v},
                )
            )
        live = {s.customer_id for s in subs if s.status in LIVE}
        return BillingSide(
            customers=[
                Customer(
                    id=str(a["id"]),
                    crm_account_id=(a.get("crmId") or None) if a.get(CRM_SYSTEM_FIELD) else None,
                    active=a["id"] in live and str(a.get("status") or "Active") == "Active",
                )
                for a in accounts
            ],
            subscriptions=subs,
            invoices=out_invoices,
            payments=out_payments,
        )

    def urls(self) -> dict[str, str]:
        base = str(self.billing._http.base_url).rstrip("/").replace("://rest.", "://")
        return {
            "customer": base + "/apps/CustomerAccount.do?method=view&id={id}",
            "subscription": base + "/apps/Subscription.do?method=viewByName&name={id}",
            "invoice": base + "/apps/InvoiceDetail.do?method=view&id={id}",
            "payment": base + "/apps/Payment.do?method=view&id={id}",
        }


def _current(ch: dict[str, Any]) -> bool:
    """A charge still in force: its segment not ended (a removed product's charge ends)."""
    if ch.get("isLastSegment") is False:
        return False
    end = ch.get("effectiveEndDate")
    return not end or date.fromisoformat(str(end)[:10]) > date.today()


def _is_discount(ch: dict[str, Any], tier: dict[str, Any]) -> bool:
    model = str(ch.get("chargeModel") or "").replace("-", "").replace(" ", "").lower()
    return model.startswith("discount") or (
        tier.get("discountPercentage") is not None and tier.get("price") is None
    )
