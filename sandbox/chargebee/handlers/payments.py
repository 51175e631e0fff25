"""Invoices, payment collection (the card scenario decides), transactions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import models
from ..errors import ChargebeeError, invalid_state, not_found, param_error
from ..forms import to_bool
from ..listing import apply_filters, paginate, wanted_ids
from ..state import public
from .base import Base, Call, _opt_int, _required

OFFLINE_PAYMENT_METHODS = {
    "cash",
    "check",
    "bank_transfer",
    "other",
    "custom",
    "card",
    "chargeback",
    "ach_credit",
    "sepa_credit",
    "boleto",
    "us_automated_bank_transfer",
    "eu_automated_bank_transfer",
    "uk_automated_bank_transfer",
    "jp_automated_bank_transfer",
    "mx_automated_bank_transfer",
}


class PaymentHandlers(Base):
    def _payment_error(self, code: str, inv: dict[str, Any], prefix: str) -> ChargebeeError:
        text, cause = models.decline_text(code)
        amount = f"{inv['currency_code']} {inv['amount_due'] / 100:,.2f}"
        return ChargebeeError(
            self.em.payment_error_status,
            "payment_processing_failed",
            f"{prefix} as we are not able to collect {amount} from the card on file. "
            f"Error message: ({code}) {text}",
            type="payment",
            error_cause_id=cause,
            error_code="payment_declined",
        )

    def charge(
        self,
        call: Call,
        inv: dict[str, Any],
        outcome: str | None = None,
        decline_code: str | None = None,
        amount: int | None = None,
    ) -> dict[str, Any]:
        """Charge the customer's card for ``inv``. ``outcome`` forces ``success``/``failure``;
        otherwise the card's scenario decides. Returns the transaction (state committed)."""
        store = self.store
        if inv["status"] in ("paid", "voided") or inv["amount_due"] <= 0:
            raise invalid_state(f"Invoice {inv['id']} is {inv['status']}: nothing to collect")
        card = store.cards.get(inv["customer_id"])
        if outcome is None:
            if card is None:
                raise ChargebeeError(
                    400,
                    "payment_method_not_present",
                    "The customer has no payment method on file",
                    type="payment",
                )
            decline_code = card["_decline_code"]
            outcome = "failure" if decline_code else "success"
        elif outcome == "failure":
            decline_code = decline_code or (card or {}).get("_decline_code") or "card_declined"
        amount = amount or inv["amount_due"]
        now = store.now()
        if outcome == "failure":
            text, _ = models.decline_text(decline_code or "card_declined")
            txn = models.new_transaction(
                store, inv, amount, "failure", card, error_code=decline_code, error_text=text
            )
            attempt = len(inv["dunning_attempts"]) + 1
            inv["dunning_attempts"].append(
                {
                    "attempt": attempt - 1,
                    "transaction_id": txn["id"],
                    "dunning_type": "auto_collect",
                    "created_at": now,
                    "txn_status": "failure",
                    "txn_amount": amount,
                    "retry_engine": "chargebee",
                }
            )
            retry_days = self.em.dunning_retry_days
            if attempt <= len(retry_days):
                inv.update(
                    status="payment_due",
                    dunning_status="in_progress",
                    next_retry_at=now + int(retry_days[attempt - 1] * 86400),
                )
            else:
                inv.update(status="not_paid", dunning_status="exhausted", next_retry_at=None)
            event_type = "payment_failed"
        else:
            txn = models.new_transaction(store, inv, amount, "success", card)
            inv["amount_paid"] += amount
            inv["amount_due"] = max(inv["amount_due"] - amount, 0)
            inv["linked_payments"].append(
                {
                    "txn_id": txn["id"],
                    "applied_amount": amount,
                    "applied_at": now,
                    "txn_status": "success",
                    "txn_date": txn["date"],
                    "txn_amount": amount,
                }
            )
            if inv["amount_due"] == 0:
                inv.update(status="paid", paid_at=now, next_retry_at=None)
                if inv.get("dunning_status"):
                    inv["dunning_status"] = "success"
            event_type = "payment_succeeded"
        inv["amount_to_collect"] = inv["amount_due"]
        txn["linked_invoices"][0]["invoice_status"] = inv["status"]
        store.stamp(inv)
        store.transactions[txn["id"]] = txn
        self.event(call, event_type, self.payment_content(txn, inv))
        return txn

    def list_invoices(self, call: Call) -> dict[str, Any]:
        include_deleted = to_bool(call.params.get("include_deleted", False), "include_deleted")
        ids = wanted_ids(call.params, "customer_id")
        source = (
            self.store.invoices.values()
            if ids is None
            else self.store.rows_of_customers("invoices", ids)
        )
        rows = [i for i in source if include_deleted or not i.get("deleted")]
        rows = apply_filters(rows, call.params, ignore=("einvoice", "paid_on_after"))
        return paginate(
            rows, call.params, lambda i: {"invoice": public(i)}, ("date", "updated_at"), "date"
        )

    def invoices_for(self, key: str) -> Callable[[Call], dict[str, Any]]:
        def handler(call: Call) -> dict[str, Any]:
            owner = call.path["id"]
            (self.customer if key == "customer_id" else self.subscription)(owner)
            rows = [i for i in self.store.invoices.values() if i.get(key) == owner]
            return paginate(
                rows, call.params, lambda i: {"invoice": public(i)}, ("date", "updated_at"), "date"
            )

        return handler

    def retrieve_invoice(self, call: Call) -> dict[str, Any]:
        return {"invoice": public(self.invoice(call.path["id"]))}

    def collect_payment(self, call: Call) -> dict[str, Any]:
        p = call.params
        inv = self.invoice(call.path["id"])
        amount = _opt_int(p, "amount")
        if amount is not None and not 0 < amount <= inv["amount_due"]:
            raise param_error("amount", "amount : should be between 1 and the amount due")
        card = self.store.cards.get(inv["customer_id"])
        ps = p.get("payment_source_id")
        if ps and (card is None or card["payment_source_id"] != ps):
            raise not_found("Payment source", ps, "payment_source_id")
        if inv["status"] in ("paid", "voided") or inv["amount_due"] <= 0:
            raise invalid_state(f"Invoice {inv['id']} is {inv['status']}: nothing to collect")
        due_before = dict(inv)
        txn = self.charge(call, inv, amount=amount)
        if txn["status"] == "failure":
            raise self._payment_error(txn["error_code"], due_before, "Payment cannot be processed")
        return {"invoice": public(inv), "transaction": public(txn)}

    def record_payment(self, call: Call) -> dict[str, Any]:
        p = call.params
        inv = self.invoice(call.path["id"])
        t = p.get("transaction")
        if not isinstance(t, dict):
            raise param_error("transaction[payment_method]")
        method = _required(t, "payment_method", "transaction[payment_method]")
        if method not in OFFLINE_PAYMENT_METHODS:
            raise param_error(
                "transaction[payment_method]", "transaction[payment_method] : invalid value"
            )
        if inv["status"] in ("paid", "voided") or inv["amount_due"] <= 0:
            raise invalid_state(f"Invoice {inv['id']} is {inv['status']}: cannot record a payment")
        amount = _opt_int(t, "amount", "transaction[amount]") or inv["amount_due"]
        if not 0 < amount <= inv["amount_due"]:
            raise param_error(
                "transaction[amount]", "transaction[amount] : cannot be more than the amount due"
            )
        status = t.get("status") or "success"
        if status not in ("success", "failure"):
            raise param_error("transaction[status]", "transaction[status] : invalid value")
        date = _opt_int(t, "date", "transaction[date]")
        store = self.store
        if status == "success":
            txn = models.new_transaction(
                store,
                inv,
                amount,
                "success",
                None,
                payment_method=method,
                date=date,
                reference_number=t.get("reference_number"),
            )
            inv["amount_paid"] += amount
            inv["amount_due"] -= amount
            inv["linked_payments"].append(
                {
                    "txn_id": txn["id"],
                    "applied_amount": amount,
                    "applied_at": store.now(),
                    "txn_status": "success",
                    "txn_date": txn["date"],
                    "txn_amount": amount,
                }
            )
            if inv["amount_due"] == 0:
                inv.update(status="paid", paid_at=txn["date"], next_retry_at=None)
                if inv.get("dunning_status"):
                    inv["dunning_status"] = "success"
            event_type = "payment_succeeded"
        else:
            txn = models.new_transaction(
                store,
                inv,
                amount,
                "failure",
                None,
                payment_method=method,
                date=date,
                error_code=t.get("error_code"),
                error_text=t.get("error_text"),
                reference_number=t.get("reference_number"),
            )
            event_type = "payment_failed"
        inv["amount_to_collect"] = inv["amount_due"]
        txn["linked_invoices"][0]["invoice_status"] = inv["status"]
        store.stamp(inv)
        store.transactions[txn["id"]] = txn
        if p.get("comment"):
            cm = models.new_comment(store, "invoice", inv["id"], p["comment"])
            store.comments[cm["id"]] = cm
        self.event(call, event_type, self.payment_content(txn, inv))
        return {"invoice": public(inv), "transaction": public(txn)}

    # --- transactions --------------------------------------------------------------------------

    def _txn(self, txn: dict[str, Any]) -> dict[str, Any]:
        """A transaction as read now: its ``linked_invoices[].invoice_status`` is the invoice's
        current status (a failed payment's invoice paid later reads ``paid``), as Chargebee
        reports the linked invoice, not the status it had when the attempt was made."""
        out = public(txn)
        links = out.get("linked_invoices") or []
        if links:
            out["linked_invoices"] = [
                {**link, "invoice_status": inv["status"]}
                if (inv := self.store.invoices.get(link.get("invoice_id"))) is not None
                else link
                for link in links
            ]
        return out

    def _list_txns(self, call: Call, rows: list[dict[str, Any]]) -> dict[str, Any]:
        rows = apply_filters(rows, call.params)
        return paginate(
            rows,
            call.params,
            lambda t: {"transaction": self._txn(t)},
            ("date", "updated_at"),
            "date",
        )

    def list_transactions(self, call: Call) -> dict[str, Any]:
        ids = wanted_ids(call.params, "customer_id")
        if ids is not None:
            return self._list_txns(call, self.store.rows_of_customers("transactions", ids))
        return self._list_txns(call, list(self.store.transactions.values()))

    def transactions_for(self, key: str) -> Callable[[Call], dict[str, Any]]:
        def handler(call: Call) -> dict[str, Any]:
            owner = call.path["id"]
            if key == "customer_id":
                self.customer(owner)
            elif key == "subscription_id":
                self.subscription(owner)
            else:
                self.invoice(owner)
            rows = [t for t in self.store.transactions.values() if t.get(key) == owner]
            return self._list_txns(call, rows)

        return handler

    def retrieve_transaction(self, call: Call) -> dict[str, Any]:
        txn = self.store.transactions.get(call.path["id"])
        if txn is None:
            raise not_found("Transaction", call.path["id"])
        return {"transaction": self._txn(txn)}
