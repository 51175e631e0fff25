"""Dunning on Stripe: an invoice with its customer, subscription and payment attempts in one
call; audit notes as metadata entries keyed by a hash of the idempotency key (the same key
overwrites the same entry; room is made when an object's 50 keys are full); payment retries
and balance credits under our idempotency keys; the paid and failed events since a time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import stripe

from connectors.stripe.client import StripeClientBase, classify
from connectors.stripe.values import (
    _EPOCH,
    _INVOICE_EXPAND,
    _NOTE_HEADROOM,
    _STATUS,
    DESCRIPTION_MAX,
    METADATA_KEYS_MAX,
    METADATA_PREFIX,
    METADATA_VALUE_MAX,
    _customer,
    _cut,
    _payment,
    _subscription_of,
    _ts,
    _upper,
    monthly_recurring,
    note_key,
)
from domain.models import (
    Invoice,
    InvoiceContext,
    InvoicePaid,
    InvoiceStatus,
    NoteTarget,
    PaymentAttempt,
    PaymentFailed,
)


class Invoices(StripeClientBase):
    """Dunning: an invoice's context, notes in metadata, payment retries, credits, and the
    catch-up's paid and failed events."""

    def get_invoice_context(self, invoice_id: str, payments: int = 5) -> InvoiceContext:
        inv = self._call(
            lambda: self._client.v1.invoices.retrieve(invoice_id, {"expand": _INVOICE_EXPAND}),
            what=f"invoice {invoice_id}",
        ).to_dict()
        currency = _upper(inv.get("currency"))
        customer = inv.get("customer")
        cust: dict[str, Any] = customer if isinstance(customer, dict) else {"id": customer}
        sub = _subscription_of(inv)
        sub_id = sub.get("id") if isinstance(sub, dict) else sub
        mrr = monthly_recurring(sub) if isinstance(sub, dict) else 0
        attempts = [
            p
            for ip in ((inv.get("payments") or {}).get("data") or [])
            if (p := _payment(ip, inv["id"], currency)) is not None
        ]
        # newest first; Stripe lists invoice payments oldest first, ties keep the later one first
        recent = sorted(reversed(attempts), key=lambda p: p.at or _EPOCH, reverse=True)
        return InvoiceContext(
            invoice=Invoice(
                id=inv["id"],
                customer_id=str(cust["id"]),
                subscription_id=sub_id,
                status=_STATUS.get(inv.get("status") or "", InvoiceStatus.OTHER),
                total=int(inv.get("total") or 0),
                amount_due=int(inv.get("amount_due") or 0),
                currency=currency,
                issued_at=_ts(inv.get("created")),
            ),
            customer=_customer(cust, mrr=mrr, currency=currency),
            recent_payments=recent[:payments],
        )

    def add_note(self, target: NoteTarget, target_id: str, text: str, idempotency_key: str) -> str:
        key = note_key(idempotency_key)
        value = text if len(text) <= METADATA_VALUE_MAX else text[: METADATA_VALUE_MAX - 1] + "…"
        params = {"metadata": {key: value}}
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        service = self._service(target)
        what = f"{target.value} {target_id}"
        try:
            service.update(target_id, params, options)
        except stripe.InvalidRequestError as exc:
            if "50 metadata keys" not in str(exc.user_message or ""):
                raise classify(exc, what) from None
            self._add_note_making_room(service, target_id, key, value, idempotency_key, what)
        except stripe.StripeError as exc:
            raise classify(exc, what) from None
        return f"{target_id}#metadata.{key}"

    def _add_note_making_room(
        self, service: Any, target_id: str, key: str, value: str, idempotency_key: str, what: str
    ) -> None:
        """Stripe keeps at most 50 metadata keys per object: when the object is full, the
        RevBridge notes whose keys sort first are dropped in the same update (keys are hashes,
        so which ones is arbitrary; the CRM's audit log keeps every entry), with room for
        :data:`_NOTE_HEADROOM` more. Never touches metadata RevBridge did not write."""
        current: dict[str, str] = (
            self._call(lambda: service.retrieve(target_id), what).to_dict().get("metadata") or {}
        )
        if key in current:
            return  # an earlier attempt wrote it
        ours = sorted(k for k in current if k.startswith(METADATA_PREFIX))
        excess = len(current) + 1 - METADATA_KEYS_MAX
        drop = ours[: max(0, excess + _NOTE_HEADROOM)] if excess > 0 else []
        params = {"metadata": {**dict.fromkeys(drop, ""), key: value}}
        # another key: the first request was refused before Stripe ran it, but not re-sent as is
        options: stripe.RequestOptions = {"idempotency_key": f"{idempotency_key}-room"}
        self._call(lambda: service.update(target_id, params, options), what)  # type: ignore[arg-type]

    def retry_payment(self, invoice_id: str, idempotency_key: str) -> PaymentAttempt:
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        try:
            self._client.v1.invoices.pay(invoice_id, {}, options)
        except stripe.CardError as exc:  # a decline is an outcome of the retry, not a failure
            err = exc.error
            return PaymentAttempt(
                succeeded=False,
                decline_code=(err.decline_code or err.code) if err else None,
                message=(err.message or "")[:200] if err else None,
            )
        except stripe.StripeError as exc:
            raise classify(exc, f"invoice {invoice_id}") from None
        return PaymentAttempt(succeeded=True)

    def apply_credit(
        self, customer_id: str, amount: int, currency: str, reason: str, idempotency_key: str
    ) -> str:
        # A negative balance transaction is a credit the next invoices draw down.
        params = {
            "amount": -amount,
            "currency": currency.lower(),
            "description": _cut(reason, DESCRIPTION_MAX),
        }
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        txn = self._call(
            lambda: self._client.v1.customers.balance_transactions.create(
                customer_id,
                params,  # type: ignore[arg-type]
                options,
            ),
            what=f"customer {customer_id}",
        )
        return txn.id

    def list_notes(self, target: NoteTarget, target_id: str) -> list[str]:
        """The audit notes on a customer or invoice (RevBridge's metadata entries, in key order)."""
        service = self._service(target)
        obj = self._call(
            lambda: service.retrieve(target_id), what=f"{target.value} {target_id}"
        ).to_dict()
        metadata: dict[str, str] = obj.get("metadata") or {}
        return [metadata[k] for k in sorted(metadata) if k.startswith(METADATA_PREFIX)]

    def paid_invoices(self, since: datetime, limit: int = 200) -> list[InvoicePaid]:
        """``invoice.paid`` / ``invoice.voided`` events since ``since`` (a credit note that
        settles an invoice pays it), oldest first, one per invoice, with the event's ID."""
        events = self._events_since(["invoice.paid", "invoice.voided"], since, limit)
        found: dict[str, InvoicePaid] = {}
        for evt in events:
            inv = (evt.get("data") or {}).get("object") or {}
            if inv.get("id") and inv.get("customer") and inv["id"] not in found:
                found[inv["id"]] = InvoicePaid(
                    billing=self.name,
                    event_id=str(evt["id"]),
                    invoice_id=str(inv["id"]),
                    customer_id=str(inv["customer"]),
                    occurred_at=_ts(evt.get("created")) or datetime.now(UTC),
                )
        return list(found.values())

    def failed_payments(self, since: datetime, limit: int = 200) -> list[PaymentFailed]:
        """``invoice.payment_failed`` events since ``since``, oldest first, as the webhook reads
        them (the same event ID: a run that had the webhook counts the failure once)."""
        found: list[PaymentFailed] = []
        for evt in self._events_since(["invoice.payment_failed"], since, limit):
            inv = (evt.get("data") or {}).get("object") or {}
            if not inv.get("id") or not inv.get("customer"):
                continue
            sub = _subscription_of(inv)
            found.append(
                PaymentFailed(
                    billing=self.name,
                    event_id=str(evt["id"]),
                    invoice_id=str(inv["id"]),
                    customer_id=str(inv["customer"]),
                    subscription_id=(sub.get("id") if isinstance(sub, dict) else sub) or None,
                    amount_due=int(inv.get("amount_due") or 0),
                    currency=_upper(inv.get("currency")),
                    occurred_at=_ts(evt.get("created")) or datetime.now(UTC),
                )
            )
        return found
