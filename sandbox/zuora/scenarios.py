"""The shared demo customers and catalogue (``sandbox.scenarios``) in Zuora's seed shape.

Zuora has no coupons and no item prices: each catalogue entry is a product with one monthly
product rate plan (its number, ``PRP-…``, is what ``policies/products.yaml`` maps CRM codes to);
discounts are a discount-percentage rate plan, and courtesy credits are credit memos from a
one-time "Courtesy credit" charge.
"""

from __future__ import annotations

import time

from sandbox.scenarios import CATALOG, DAY, ITEM_PRICES, DunningCustomer

#: the retention discount rate plan (added to a subscription for N months)
DISCOUNT_PLAN = "PRP-DISCOUNT-PERCENTAGE"
#: the one-time charge courtesy credits are made from
CREDIT_PLAN = "PRP-COURTESY-CREDIT"
#: the unit of measure of the usage charge on every catalogue product
USAGE_UOM = "API_CALL"


def rate_plan_number(price_id: str) -> str:
    """``core-USD-monthly`` → ``PRP-CORE-USD-MONTHLY``."""
    return "PRP-" + price_id.upper()


def catalog() -> list[dict]:
    products = [
        {
            "name": p["name"].split(" (")[0],
            "sku": "SKU-" + p["item_id"].upper(),
            "rate_plans": [
                {
                    "number": rate_plan_number(p["id"]),
                    "name": p["name"],
                    "charges": [
                        {"name": p["name"], "model": "PerUnit", "price": p["price"], "uom": "Seat"}
                    ],
                }
            ],
        }
        for p in ITEM_PRICES
    ]
    products += [
        {
            "name": p.name,
            "sku": p.code,
            "rate_plans": [
                {
                    "number": rate_plan_number(p.chargebee_item_price),
                    "name": f"{p.name} (monthly)",
                    "charges": [
                        {"name": p.name, "model": "PerUnit", "price": p.unit_price, "uom": "Each"}
                    ],
                }
            ],
        }
        for p in CATALOG
        if p.in_billing
    ]
    products += [
        {
            "name": "Discounts",
            "sku": "SKU-DISCOUNTS",
            "rate_plans": [
                {
                    "number": DISCOUNT_PLAN,
                    "name": "Percentage discount",
                    "charges": [
                        {
                            "name": "Percentage discount",
                            "model": "DiscountPercentage",
                            "discountPercentage": 10,
                        }
                    ],
                }
            ],
        },
        {
            "name": "Credits",
            "sku": "SKU-CREDITS",
            "rate_plans": [
                {
                    "number": CREDIT_PLAN,
                    "name": "Courtesy credit",
                    "charges": [{"name": "Courtesy credit", "type": "OneTime", "model": "FlatFee"}],
                }
            ],
        },
    ]
    return products


def zuora_seed(customers: tuple[DunningCustomer, ...], suffix: str, now: int | None = None) -> dict:
    """Accounts (ID = the shared customer ID), a subscription, one posted invoice each."""
    now = now or int(time.time())
    data: dict[str, list] = {
        "products": catalog(),
        "accounts": [],
        "subscriptions": [],
        "invoices": [],
    }
    for c in customers:
        ids = c.ids(suffix)
        data["accounts"].append(
            {
                "id": ids["customer"],
                "name": c.company,
                "currency": "USD",
                "email": f"billing+{ids['customer']}@example.com",
                "createdDate": now - c.tenure_days * DAY,
                "card": {"decline_code": c.decline_code},
            }
        )
        data["subscriptions"].append(
            {
                "subscriptionNumber": ids["subscription"],
                "account": ids["customer"],
                "start": now - c.tenure_days * DAY,
                "plans": [{"plan": rate_plan_number(c.plan), "quantity": c.quantity}],
            }
        )
        data["invoices"].append(
            {
                "id": ids["invoice"],
                "account": ids["customer"],
                "subscription": ids["subscription"],
                "amount": c.invoice_total,
                "invoiceDate": now - 3600,
            }
        )
    return data
