"""Chargebee webhook bodies shaped like billing-apis.md §2d, and an auth header builder."""

from __future__ import annotations

import base64
import json
import time

from tests.conftest import WEBHOOK_PASSWORD, WEBHOOK_USER


def basic(user: str = WEBHOOK_USER, password: str = WEBHOOK_PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def payment_failed(
    invoice_id: str,
    customer_id: str = "cust_1",
    event_id: str | None = None,
    amount: int = 2000,
    error_code: str = "card_declined",
) -> bytes:
    return json.dumps(
        {
            "id": event_id or f"ev_{invoice_id}",
            "occurred_at": int(time.time()),
            "source": "scheduled_job",
            "object": "event",
            "api_version": "v2",
            "event_type": "payment_failed",
            "webhook_status": "scheduled",
            "content": {
                "transaction": {
                    "id": f"txn_{invoice_id}",
                    "customer_id": customer_id,
                    "type": "payment",
                    "status": "failure",
                    "amount": amount,
                    "currency_code": "USD",
                    "error_code": error_code,
                    "object": "transaction",
                },
                "invoice": {
                    "id": invoice_id,
                    "customer_id": customer_id,
                    "status": "payment_due",
                    "total": amount,
                    "amount_due": amount,
                    "currency_code": "USD",
                    "object": "invoice",
                },
                "customer": {"id": customer_id, "object": "customer"},
            },
        }
    ).encode()


def payment_succeeded(invoice_id: str, customer_id: str = "cust_1") -> bytes:
    return json.dumps(
        {
            "id": f"ev_paid_{invoice_id}",
            "occurred_at": int(time.time()),
            "object": "event",
            "api_version": "v2",
            "event_type": "payment_succeeded",
            "content": {
                "invoice": {
                    "id": invoice_id,
                    "customer_id": customer_id,
                    "status": "paid",
                    "object": "invoice",
                }
            },
        }
    ).encode()
