"""A seeded book for the reconciliation (tests/reconcile, ``revbridge demo --scenario
reconcile``): clean customers, and one customer per planted discrepancy of every kind, in
Chargebee and a CRM (Salesforce or HubSpot), through the official clients and the sandboxes'
seed endpoints. ``PLANTED`` says which kind each planted customer must produce — exactly one
discrepancy each, none on the clean ones. The unapplied payment needs the Chargebee emulator
object itself (no API leaves a payment unused): without it that customer is not planted."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from domain.reconcile import Kind
from harness.drivers import ChargebeeDriver, HubSpotDriver, SalesforceDriver

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

    def __init__(self, sf: SalesforceDriver, billing: str = "chargebee") -> None:
        self.sf = sf
        self.billing = billing

    def catalog(self) -> None:
        self.sf.seed_catalog()

    def account(self, name: str, customer_id: str | None) -> str:
        fields = {"Name": name, "Type": "Customer - Direct"}
        if customer_id:
            fields.update(Billing_Customer_Id__c=customer_id, Billing_Platform__c=self.billing)
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


class HubSpotSide:
    """The CRM half of the book in HubSpot (companies, deals with line items)."""

    crm = "hubspot"

    def __init__(self, hs: HubSpotDriver, billing: str = "chargebee") -> None:
        self.hs = hs
        self.billing = billing

    def catalog(self) -> None:
        self.hs.seed_catalog()

    def account(self, name: str, customer_id: str | None) -> str:
        acc = self.hs.create_account(
            name, "SMB", customer_id, self.billing if customer_id else None
        )
        self._set("companies", acc, {"lifecyclestage": "customer"})
        return acc

    def billing_fields(self, account: str, mrr: int, status: str) -> None:
        self._set("companies", account, {"mrr": f"{mrr / 100:.2f}", "billing_status": status})

    def won_deal(self, account: str, name: str, lines: list, subscription: str | None) -> None:
        deal = self.hs.create_opportunity(account, name, lines)
        props = {"dealstage": "closedwon"}
        if subscription:
            props["billing_subscription_id"] = subscription
        self._set("deals", deal, props)

    def _set(self, kind: str, oid: str, props: dict[str, str]) -> None:
        from hubspot.crm.objects import SimplePublicObjectInput

        self.hs.client.crm.objects.basic_api.update(
            kind, oid, SimplePublicObjectInput(properties=props)
        )


def planted_kinds(cb_emulator: Any) -> dict[str, Kind]:
    """What :func:`seed` plants (the unapplied payment only with the emulator at hand)."""
    return {t: k for t, k in PLANTED.items() if cb_emulator is not None or t != "unapplied"}


def seed(cb: ChargebeeDriver, sf: Any, cb_emulator: Any, prefix: str, clean: int = 3) -> Planted:
    """``sf``: a :class:`SalesforceDriver`, a :class:`HubSpotDriver` or a CRM side with the
    same four methods; ``cb_emulator``: the in-process Chargebee emulator, or None."""
    if isinstance(sf, SalesforceDriver):
        side: Any = SalesforceSide(sf)
    elif isinstance(sf, HubSpotDriver):
        side = HubSpotSide(sf)
    else:
        side = sf
    cb.seed_catalog()
    side.catalog()
    out = Planted()
    now = int(time.time())
    tags = [f"clean{i}" for i in range(clean)] + list(planted_kinds(cb_emulator))
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
    if cb_emulator is not None:
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
