"""Scenario data for the sandboxes: realistic customers on both sides, linked by billing ID.

Pure data (the sandbox imports nothing of RevBridge). ``suffix`` keeps IDs unique across runs
against a long-lived stack, since dunning workflow IDs are one-shot per invoice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

DAY = 86_400


@dataclass(frozen=True)
class DunningCustomer:
    key: str
    company: str
    tier: str
    plan: str
    monthly_price: int  # cents
    quantity: int
    tenure_days: int
    decline_code: str | None  # what the card does on the next collection attempt

    def ids(self, suffix: str) -> dict[str, str]:
        return {
            "customer": f"{self.key}-{suffix}",
            "subscription": f"sub-{self.key}-{suffix}",
            "invoice": f"INV-{self.key}-{suffix}",
        }

    @property
    def invoice_total(self) -> int:
        return self.monthly_price * self.quantity


DEMO_CUSTOMERS = (
    DunningCustomer(
        "northwind", "Northwind Analytics", "SMB", "team-monthly", 4_900, 5, 730, "expired_card"
    ),
    DunningCustomer(
        "globex",
        "Globex Corporation",
        "Enterprise",
        "enterprise-monthly",
        46_000,
        40,
        1_200,
        "insufficient_funds",
    ),
    DunningCustomer(
        "initech", "Initech", "Mid-Market", "business-monthly", 9_900, 12, 45, "processing_error"
    ),
)

#: a strategic account: people, not automated email, chase its payments
DEMO_STRATEGIC = DunningCustomer(
    "umbrella",
    "Umbrella Holdings",
    "Strategic",
    "enterprise-monthly",
    46_000,
    60,
    2_400,
    "expired_card",
)

ITEM_PRICES = [
    {"id": "team-monthly", "item_id": "team", "name": "Team (monthly)", "price": 4_900},
    {"id": "business-monthly", "item_id": "business", "name": "Business (monthly)", "price": 9_900},
    {
        "id": "enterprise-monthly",
        "item_id": "enterprise",
        "name": "Enterprise (monthly)",
        "price": 46_000,
    },
]


@dataclass(frozen=True)
class CatalogProduct:
    """One product as both sides sell it: the CRM catalogue (Salesforce Product2.ProductCode,
    HubSpot product ``hs_sku``) and the billing catalogue (a Chargebee item price ID, a Stripe
    price ``lookup_key``). ``in_billing=False``: sold in the CRM, missing in billing (and in
    RevBridge's product mapping), so quote-to-cash must stop and ask."""

    code: str
    name: str
    unit_price: int  # cents per month
    chargebee_item_price: str
    stripe_lookup_key: str
    in_billing: bool = True

    @property
    def item_id(self) -> str:
        return self.chargebee_item_price.removesuffix("-USD-monthly")


CATALOG = (
    CatalogProduct("RB-CORE", "RevBridge Core", 50_000, "core-USD-monthly", "core_monthly"),
    CatalogProduct("RB-SEAT", "Seat", 4_000, "seat-USD-monthly", "seat_monthly"),
    CatalogProduct(
        "RB-SUPPORT",
        "Premium Support",
        20_000,
        "support-premium-USD-monthly",
        "support_premium_monthly",
    ),
    CatalogProduct(
        "RB-LEGACY",
        "Legacy Add-on",
        9_900,
        "legacy-addon-USD-monthly",
        "legacy_addon_monthly",
        in_billing=False,
    ),
)


def chargebee_seed(
    customers: tuple[DunningCustomer, ...], suffix: str, now: int | None = None
) -> dict:
    now = now or int(time.time())
    data: dict[str, list] = {
        "item_prices": [
            {**p, "currency_code": "USD", "period": 1, "period_unit": "month"} for p in ITEM_PRICES
        ]
        + [
            # the shared catalogue: Core is the plan, seats and support are add-ons to it
            # (Chargebee wants exactly one plan item price per subscription)
            {
                "id": p.chargebee_item_price,
                "item_id": p.item_id,
                "name": p.name,
                "price": p.unit_price,
                "currency_code": "USD",
                "period": 1,
                "period_unit": "month",
                "item_type": "plan" if p.code == "RB-CORE" else "addon",
            }
            for p in CATALOG
            if p.in_billing
        ],
        "customers": [],
        "subscriptions": [],
        "invoices": [],
    }
    for c in customers:
        ids = c.ids(suffix)
        data["customers"].append(
            {
                "id": ids["customer"],
                "company": c.company,
                "first_name": "Billing",
                "last_name": "Contact",
                "email": f"billing+{ids['customer']}@example.com",
                "created_at": now - c.tenure_days * DAY,
                "card": {
                    "decline_code": c.decline_code,
                    "last4": "4242",
                    "expiry_month": 12,
                    "expiry_year": 2027,
                },
            }
        )
        data["subscriptions"].append(
            {
                "id": ids["subscription"],
                "customer_id": ids["customer"],
                "items": [{"item_price_id": c.plan, "quantity": c.quantity}],
                "status": "active",
                "started_at": now - c.tenure_days * DAY,
            }
        )
        data["invoices"].append(
            {
                "id": ids["invoice"],
                "customer_id": ids["customer"],
                "subscription_id": ids["subscription"],
                "total": c.invoice_total,
                "amount_due": c.invoice_total,
                "currency_code": "USD",
                "status": "payment_due",
                "date": now - 3600,
            }
        )
    return data


def stripe_seed(
    customers: tuple[DunningCustomer, ...], suffix: str, now: int | None = None
) -> dict:
    now = now or int(time.time())
    plans = {c.plan for c in customers}
    prices = [p for p in ITEM_PRICES if p["id"] in plans]
    # The shared catalogue under fixed IDs and its lookup keys: the emulator keeps a product or
    # price it already has (same ID, or a lookup key already taken), so seeding again adds none.
    catalog = [p for p in CATALOG if p.in_billing]
    product_id = {p.code: "prod_rb_" + p.code.removeprefix("RB-").lower() for p in catalog}
    data: dict[str, list] = {
        "products": [
            *({"id": f"prod_{p['item_id']}_{suffix}", "name": p["name"]} for p in prices),
            *({"id": product_id[p.code], "name": p.name} for p in catalog),
        ],
        "prices": [
            *(
                {
                    "id": f"{p['id']}-{suffix}",
                    "product": f"prod_{p['item_id']}_{suffix}",
                    "unit_amount": p["price"],
                    "currency": "usd",
                    "recurring": {"interval": "month"},
                }
                for p in prices
            ),
            *(
                {
                    "id": f"price_{p.stripe_lookup_key}",
                    "product": product_id[p.code],
                    "lookup_key": p.stripe_lookup_key,
                    "unit_amount": p.unit_price,
                    "currency": "usd",
                    "recurring": {"interval": "month"},
                }
                for p in catalog
            ),
        ],
        "customers": [],
        "subscriptions": [],
        "invoices": [],
    }
    for c in customers:
        ids = c.ids(suffix)
        data["customers"].append(
            {
                "id": ids["customer"],
                "name": c.company,
                "email": f"billing+{ids['customer']}@example.com",
                "created": now - c.tenure_days * DAY,
                "card": {"decline_code": c.decline_code},
            }
        )
        data["subscriptions"].append(
            {
                "id": ids["subscription"],
                "customer": ids["customer"],
                "items": [{"price": f"{c.plan}-{suffix}", "quantity": c.quantity}],
                "created": now - c.tenure_days * DAY,
            }
        )
        data["invoices"].append(
            {
                "id": ids["invoice"],
                "customer": ids["customer"],
                "subscription": ids["subscription"],
                "status": "open",
                "lines": [{"amount": c.invoice_total, "description": f"{c.plan} × {c.quantity}"}],
            }
        )
    return data


def hubspot_seed(
    customers: tuple[DunningCustomer, ...], suffix: str, billing: str = "chargebee"
) -> dict:
    return {
        "objects": {
            "companies": [
                {
                    "properties": {
                        "name": c.company,
                        "customer_tier": c.tier,
                        "billing_customer_id": c.ids(suffix)["customer"],
                        "billing_platform": billing,
                        "mrr": str(c.invoice_total / 100),
                        # every company has an owner in a real portal (the owner's user ID)
                        "hubspot_owner_id": "7001",
                    }
                }
                for c in customers
            ]
        }
    }


def salesforce_seed(
    customers: tuple[DunningCustomer, ...], suffix: str, billing: str = "chargebee"
) -> dict:
    return {
        "records": {
            "Account": [
                {
                    "Name": c.company,
                    "Type": "Customer",
                    "Customer_Tier__c": c.tier,
                    "Billing_Customer_Id__c": c.ids(suffix)["customer"],
                    "Billing_Platform__c": billing,
                    "MRR__c": c.invoice_total / 100,
                }
                for c in customers
            ]
        }
    }
