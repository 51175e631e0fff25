"""Chargebee (API v2, Product Catalog 2.0) through the official ``chargebee`` client."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import httpx
from chargebee import Chargebee
from chargebee.api_error import APIError

from connectors.base import ConnectorError, ErrorKind, NotFound
from domain.models import (
    BillingCustomer,
    Invoice,
    InvoiceContext,
    InvoiceStatus,
    NoteTarget,
    Payment,
    PaymentAttempt,
)
from domain.settings import ChargebeeSettings

_STATUS = {
    "paid": InvoiceStatus.PAID,
    "payment_due": InvoiceStatus.OPEN,
    "not_paid": InvoiceStatus.OPEN,
    "posted": InvoiceStatus.OPEN,
    "voided": InvoiceStatus.VOID,
}
_PERMANENT_4XX = {400, 401, 402, 403, 404, 405, 409, 422}


def _ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


class ChargebeeBilling:
    name = "chargebee"

    def __init__(self, settings: ChargebeeSettings, timeout_s: float = 20.0) -> None:
        key = settings.api_key.get_secret_value()
        protocol = urlparse(settings.api_url).scheme if settings.api_url else "https"
        # The client picks http only when this *class* attribute is off; TLS to the real API is
        # still verified by httpx's defaults (see billing-apis.md §2a).
        Chargebee.verify_ca_certs = False
        self._cb = Chargebee(
            api_key=key,
            site=settings.site,
            protocol=protocol,
            connection_time_out=max(1, int(timeout_s)),
            read_time_out=max(1, int(timeout_s)),
        )
        if settings.api_url:
            base = settings.api_url.rstrip("/")
            self._cb.env.api_url = lambda url, subDomain=None: f"{base}/api/v2{url}"
        # SDK retries stay off (the default RetryConfig): Temporal owns retries.

    # --- BillingPlatform ---------------------------------------------------------------------------

    def get_invoice_context(self, invoice_id: str, payments: int = 5) -> InvoiceContext:
        inv = self._call(
            lambda: self._cb.Invoice.retrieve(invoice_id), what=f"invoice {invoice_id}"
        ).invoice
        cust = self._call(
            lambda: self._cb.Customer.retrieve(inv.customer_id), what=f"customer {inv.customer_id}"
        ).customer
        mrr = 0
        if inv.subscription_id:
            sub = self._call(
                lambda: self._cb.Subscription.retrieve(inv.subscription_id),
                what=f"subscription {inv.subscription_id}",
            ).subscription
            mrr = int(getattr(sub, "mrr", 0) or 0)
        txns = self._call(
            lambda: self._cb.Transaction.list(
                {
                    "customer_id": {"is": inv.customer_id},
                    "type": {"is": "payment"},
                    "sort_by": {"desc": "date"},
                    "limit": payments,
                }
            ),
            what="transactions",
        )
        recent = [self._payment(entry.transaction, invoice_id) for entry in txns.list]
        return InvoiceContext(
            invoice=Invoice(
                id=inv.id,
                customer_id=inv.customer_id,
                subscription_id=inv.subscription_id,
                status=_STATUS.get(inv.status, InvoiceStatus.OTHER),
                total=int(inv.total or 0),
                amount_due=int(inv.amount_due or 0),
                currency=inv.currency_code,
                issued_at=_ts(inv.date),
            ),
            customer=BillingCustomer(
                id=cust.id,
                company=cust.company,
                created_at=_ts(cust.created_at),
                metadata=_metadata(getattr(cust, "meta_data", None)),
                mrr=mrr,
                currency=inv.currency_code,
            ),
            recent_payments=recent,
        )

    def add_note(self, target: NoteTarget, target_id: str, text: str, idempotency_key: str) -> str:
        resp = self._call(
            lambda: self._cb.Comment.create(
                {"entity_type": target.value, "entity_id": target_id, "notes": text},
                headers={"chargebee-idempotency-key": idempotency_key},
            ),
            what=f"{target.value} {target_id}",
        )
        return resp.comment.id

    def retry_payment(self, invoice_id: str, idempotency_key: str) -> PaymentAttempt:
        try:
            self._call(
                lambda: self._cb.Invoice.collect_payment(
                    invoice_id, {}, headers={"chargebee-idempotency-key": idempotency_key}
                ),
                what=f"invoice {invoice_id}",
            )
        except ConnectorError as err:
            if err.status in (400, 402) and err.code == "payment_processing_failed":
                return PaymentAttempt(succeeded=False, decline_code=None, message=str(err)[:200])
            raise
        return PaymentAttempt(succeeded=True)

    def apply_credit(
        self, customer_id: str, amount: int, currency: str, reason: str, idempotency_key: str
    ) -> str:
        resp = self._call(
            lambda: self._cb.PromotionalCredit.add(
                {"customer_id": customer_id, "amount": amount, "description": reason[:250]},
                headers={"chargebee-idempotency-key": idempotency_key},
            ),
            what=f"customer {customer_id}",
        )
        return resp.promotional_credit.id

    def list_notes(self, target: NoteTarget, target_id: str) -> list[str]:
        resp = self._call(
            lambda: self._cb.Comment.list(
                {"entity_type": target.value, "entity_id": target_id, "limit": 100}
            ),
            what=f"{target.value} {target_id}",
        )
        return [entry.comment.notes for entry in resp.list]

    @property
    def client(self) -> Chargebee:
        """The configured official client (the demo and tests drive the sandbox with it)."""
        return self._cb

    # --- helpers ------------------------------------------------------------------------------------

    @staticmethod
    def _payment(txn: Any, invoice_id: str) -> Payment:
        linked = [li.invoice_id for li in (getattr(txn, "linked_invoices", None) or [])]
        return Payment(
            id=txn.id,
            invoice_id=linked[0] if linked else invoice_id if txn.status == "failure" else None,
            succeeded=txn.status == "success",
            amount=int(txn.amount or 0),
            currency=txn.currency_code,
            decline_code=getattr(txn, "error_code", None),
            decline_message=getattr(txn, "error_text", None),
            at=_ts(txn.date),
        )

    def _call(self, fn: Any, what: str) -> Any:
        try:
            return fn()
        except APIError as exc:
            raise _classify(exc, what) from None
        except httpx.TimeoutException as exc:
            raise ConnectorError(
                self.name, ErrorKind.RETRYABLE, f"timeout: {type(exc).__name__}"
            ) from None
        except httpx.HTTPError as exc:
            raise ConnectorError(
                self.name, ErrorKind.RETRYABLE, f"network: {type(exc).__name__}"
            ) from None
        except Exception as exc:
            # The client raises plain Exceptions for non-JSON 5xx bodies ("http_status_code: 503").
            text = str(exc)
            if "http_status_code: 5" in text:
                raise ConnectorError(
                    self.name, ErrorKind.RETRYABLE, "server error (non-JSON body)"
                ) from None
            raise


def _classify(exc: APIError, what: str) -> ConnectorError:
    status = int(exc.http_status_code or 0)
    code = exc.api_error_code
    if status == 404 or code == "resource_not_found":
        return NotFound("chargebee", what, status)
    if status == 429 or code == "api_request_limit_exceeded":
        headers = exc.http_headers or {}
        retry_after = _float(headers.get("Retry-After") or headers.get("retry-after")) or 60.0
        return ConnectorError(
            "chargebee",
            ErrorKind.RATE_LIMITED,
            "rate limited",
            status=status,
            code=code,
            retry_after=retry_after,
        )
    kind = ErrorKind.PERMANENT if status in _PERMANENT_4XX else ErrorKind.RETRYABLE
    return ConnectorError("chargebee", kind, f"{code}: {exc}", status=status, code=code)


def _metadata(raw: Any) -> dict[str, str]:
    """Chargebee's meta_data is free-form JSON; keep its top level as strings."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {"meta_data": raw[:500]}
    if not isinstance(raw, dict):
        return {}
    return {str(k)[:40]: (v if isinstance(v, str) else json.dumps(v))[:500] for k, v in raw.items()}


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
