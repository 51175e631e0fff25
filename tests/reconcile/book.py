"""A seeded book for the reconciliation: clean customers, and one customer per planted
discrepancy of every kind (Chargebee × Salesforce, through the official clients and the
sandboxes' seed endpoints). ``Planted.expected`` says which kind each planted customer must
produce — exactly one discrepancy each, none on the clean ones."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from domain.reconcile import Kind
from harness.drivers import ChargebeeDriver, SalesforceDriver

CORE, SEAT, SUPPORT = "core-USD-monthly", "seat-USD-monthly", "support-premium-USD-monthly"
PLANTED = {
    "nosub": Kind.DEAL_WITHOUT_SUBSCRIPTION,
    "mismatch": Kind.SUBSCRIPTION_MISMATCH,
    "extraline": Kind.INVOICE_LINE_UNMATCHED,
    "nopay": Kind.PAID_WITHOUT_PAYMENT,
    "unapplied": Kind.UNAPPLIED_PAYMENT,
    "overpaid": Kind.OVERPAYMENT,
    "underpaid": Kind.UNDERPAYMENT,
    "drift": Kind.CRM_FIELD_DRIFT,
    "orphan": Kind.CUSTOMER_WITHOUT_ACCOUNT,
    "ghost": Kind.ACCOUNT_WITHOUT_CUSTOMER,
}


@dataclass
class Planted:
    #: tag → (CRM account ID or None, billing customer ID or None)
    who: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    invoices: dict[str, str] = field(default_factory=dict)
    clean: list[str] = field(default_factory=list)


class SalesforceSide:
    """The CRM half of the book in Salesforce."""

    crm = "salesforce"

    def __init__(self, sf: SalesforceDriver) -> None:
        self.sf = sf

    def catalog(self) -> None:
        self.sf.seed_catalog()

    def account(self, name: str, customer_id: str | None) -> str:
        fields = {"Name": name, "Type": "Customer - Direct"}
        if customer_id:
            fields.update(Billing_Customer_Id__c=customer_id, Billing_Platform__c="chargebee")
        return self.sf.connector.client.Account.create(fields)["id"]

    def billing_fields(self, account: str, mrr: int, status: str) -> None:
        self.sf.connector.client.Account.update(
            account, {"MRR__c": mrr / 100, "Billing_Status__c": status}
        )

    def won_deal(self, account: str, name: str, lines: list, subscription: str | None) -> None:
        opp = self.sf.create_opportunity(account, name, lines)
        won: dict[str, Any] = {"StageName": "Closed Won"}
        if subscription:
            won["Billing_Subscription_Id__c"] = subscription
        self.sf.connector.client.Opportunity.update(opp, won)


def seed(cb: ChargebeeDriver, sf: Any, cb_emulator: Any, prefix: str, clean: int = 3) -> Planted:
    """``sf``: a :class:`SalesforceDriver` or any CRM side with the same four methods."""
    side = SalesforceSide(sf) if isinstance(sf, SalesforceDriver) else sf
    cb.seed_catalog()
    side.catalog()
    out = Planted()
    now = int(time.time())
    tags = [f"clean{i}" for i in range(clean)] + list(PLANTED)
    data: dict[str, list] = {
        "customers": [],
        "subscriptions": [],
        "invoices": [],
        "transactions": [],
    }
    accounts: dict[str, str] = {}
    for tag in tags:
        cid = f"{prefix}-{tag}"
        if tag == "ghost":
            out.who[tag] = (side.account(f"Ghost {prefix}", None), None)
            continue
        if tag != "orphan":
            accounts[tag] = side.account(f"{tag} {prefix}", cid)
        meta = {"crm": side.crm, "crm_account_id": accounts[tag]} if tag in accounts else {}
        data["customers"].append({"id": cid, "company": f"{tag} {prefix}", "meta_data": meta})
        seats = 7 if tag == "mismatch" else 5
        sub = f"sub-{cid}"
        data["subscriptions"].append(
            {
                "id": sub,
                "customer_id": cid,
                "items": [
                    {"item_price_id": CORE, "quantity": 1},
                    {"item_price_id": SEAT, "quantity": seats},
                ],
                "started_at": now - 40 * 86400,
            }
        )
        lines = [
            {"entity_id": CORE, "quantity": 1, "unit_amount": 50_000, "amount": 50_000},
            {"entity_id": SEAT, "quantity": seats, "unit_amount": 4_000, "amount": 4_000 * seats},
        ]
        if tag == "extraline":
            lines.append(
                {"entity_id": SUPPORT, "quantity": 1, "unit_amount": 10_000, "amount": 10_000}
            )
        for li in lines:
            li["entity_type"] = "plan_item_price" if li["entity_id"] == CORE else "addon_item_price"
        total = sum(li["amount"] for li in lines)
        inv = f"inv-{cid}"
        out.invoices[tag] = inv
        data["invoices"].append(
            {
                "id": inv,
                "customer_id": cid,
                "subscription_id": sub,
                "total": total,
                "status": "paid",
                "date": now - 10 * 86400,
                "line_items": lines,
            }
        )
        pays = {"nopay": [], "overpaid": [total, total], "underpaid": [total - 10_000]}
        for n, amount in enumerate(pays.get(tag, [total])):
            data["transactions"].append(
                {"id": f"txn-{cid}-{n}", "invoice_id": inv, "status": "success", "amount": amount}
            )
        out.who[tag] = (accounts.get(tag), cid)
        if tag.startswith("clean"):
            out.clean.append(tag)
    resp = httpx.post(cb.url + "/_sandbox/seed", json=data, timeout=30)
    resp.raise_for_status()
    # an unapplied payment: 50.00 more than the invoice, left unused (Chargebee's amount_unused)
    with cb_emulator.lock:
        txn = cb_emulator.store.transactions[f"txn-{prefix}-unapplied-0"]
        txn["amount"] += 5_000
        txn["amount_unused"] = 5_000
    for tag, acc in accounts.items():
        sub = cb.connector.client.Subscription.retrieve(f"sub-{prefix}-{tag}").subscription
        mrr = 1_234_00 if tag == "drift" else int(sub.mrr or 0)
        side.billing_fields(acc, mrr, sub.status)
        deal = [("RB-CORE", 1, 50_000, 0), ("RB-SEAT", 5, 4_000, 0)]
        side.won_deal(acc, f"Deal {tag}", deal, sub.id)
        if tag == "nosub":
            side.won_deal(acc, f"Upsell {tag}", [("RB-SEAT", 2, 4_000, 0)], None)
    return out
