"""Charges and refunds: every successful card payment of an invoice is a ``charge`` (the payment
intent's ``latest_charge``); ``POST /v1/refunds`` refunds a charge or a payment intent in full or
in part, ``GET /v1/refunds`` lists them (``charge`` / ``payment_intent`` / ``created`` filters,
Stripe's cursors). A refund updates its charge's ``amount_refunded`` and ``refunded`` and sends
``charge.refunded`` (with ``previous_attributes``) and ``refund.created``. A credit note's
``refund_amount`` on a paid invoice refunds the invoice's charge the same way and names the refund
in the credit note's ``refunds``.

Refunds succeed at once (card refunds in test mode do); the invoice itself stays ``paid``, as on
Stripe (a refund does not reopen or credit an invoice — only a credit note does)."""

from __future__ import annotations

from typing import Any

from .errors import StripeError, no_such
from .forms import apply_metadata, as_enum, as_int, as_str, check_known
from .invoices import money
from .store import Store

REFUND_PARAMS = {
    "amount", "charge", "currency", "customer", "expand", "instructions_email", "metadata",
    "origin", "payment_intent", "reason", "refund_application_fee", "reverse_transfer",
}  # fmt: skip
REASONS = ("duplicate", "fraudulent", "requested_by_customer")


class RefundMixin(Store):
    # --- charges (made where a payment succeeds) -------------------------------------------------

    def attempt_payment(
        self, inv: dict[str, Any], *, decline: str | None = None, automatic: bool = False
    ) -> tuple[bool, StripeError | None]:
        ok, err = super().attempt_payment(inv, decline=decline, automatic=automatic)  # type: ignore[misc]
        if ok:
            pi = self.find(inv.get("_pi"), "payment_intent")
            if pi is not None and not pi.get("latest_charge"):
                self._new_charge(pi)
        return ok, err

    def _new_charge(self, pi: dict[str, Any]) -> dict[str, Any]:
        ch_id = self.new_id("ch")
        charge = {
            "id": ch_id,
            "object": "charge",
            "amount": pi["amount_received"],
            "amount_captured": pi["amount_received"],
            "amount_refunded": 0,
            "balance_transaction": self.new_id("txn"),
            "captured": True,
            "created": self.now(),
            "currency": pi["currency"],
            "customer": pi["customer"],
            "description": pi.get("description"),
            "disputed": False,
            "failure_code": None,
            "failure_message": None,
            "livemode": False,
            "metadata": {},
            "paid": True,
            "payment_intent": pi["id"],
            "payment_method": pi.get("payment_method"),
            "receipt_email": None,
            "refunded": False,
            "status": "succeeded",
        }
        self.put(charge)
        pi["latest_charge"] = ch_id
        return charge

    # --- refunds ---------------------------------------------------------------------------------

    def create_refund(self, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, REFUND_PARAMS)
        charge = self._refund_target(as_str(params, "charge"), as_str(params, "payment_intent"))
        left = charge["amount"] - charge["amount_refunded"]
        if charge["refunded"] or left <= 0:
            raise StripeError(
                400,
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = as_int(params, "amount")
        if amount is None:
            amount = left
        if amount <= 0:
            raise StripeError(400, "This value must be greater than or equal to 1.", param="amount")
        if amount > left:
            raise StripeError(
                400,
                f"Refund amount ({money(amount, charge['currency'])}) is greater than unrefunded "
                f"amount on charge ({money(left, charge['currency'])})",
                param="amount",
            )
        return self._refund(
            charge,
            amount,
            reason=as_enum(params, "reason", REASONS),
            metadata=apply_metadata({}, params.get("metadata")),
        )

    def _refund_target(self, charge_id: str | None, pi_id: str | None) -> dict[str, Any]:
        if not charge_id and not pi_id:
            raise StripeError(
                400,
                "One of the following params should be provided for this request: charge or "
                "payment_intent.",
                code="parameter_missing",
            )
        if pi_id:
            pi = self.find(pi_id, "payment_intent")
            if pi is None:
                raise no_such("payment_intent", pi_id, "payment_intent")
            charge = self.find(pi.get("latest_charge"), "charge")
            if pi["status"] != "succeeded" or charge is None:
                raise StripeError(
                    400,
                    f"This PaymentIntent ({pi_id}) does not have a successful charge to refund.",
                    param="payment_intent",
                )
            if charge_id and charge_id != charge["id"]:
                raise StripeError(
                    400,
                    f"The charge {charge_id} does not belong to the PaymentIntent {pi_id}.",
                    param="charge",
                )
            return charge
        charge = self.find(charge_id, "charge")
        if charge is None:
            raise no_such("charge", str(charge_id), "charge")
        return charge

    def _refund(
        self,
        charge: dict[str, Any],
        amount: int,
        *,
        reason: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        refund = {
            "id": self.new_id("re"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": self.new_id("txn"),
            "charge": charge["id"],
            "created": self.now(),
            "currency": charge["currency"],
            "destination_details": {"card": {"type": "refund"}, "type": "card"},
            "metadata": metadata or {},
            "payment_intent": charge["payment_intent"],
            "payment_method": charge["payment_method"],
            "reason": reason,
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
        self.put(refund)
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        self.event("charge.refunded", charge, previous)
        self.event("refund.created", refund)
        return refund

    def credit_note_refunds(self, inv: dict[str, Any], amount: int) -> list[dict[str, Any]]:
        """A credit note's ``refund_amount`` on a paid invoice: a refund of the invoice's charge
        (an invoice paid out of band or seeded as paid has none: the credit note names a refund
        ID only, as before)."""
        pi = self.find(inv.get("_pi"), "payment_intent")
        charge = self.find(pi.get("latest_charge"), "charge") if pi else None
        if charge is None:
            return [{"amount_refunded": amount, "refund": self.new_id("re"), "type": "refund"}]
        if amount > charge["amount"] - charge["amount_refunded"]:
            raise StripeError(
                400,
                f"Refund amount ({money(amount, charge['currency'])}) is greater than unrefunded "
                f"amount on charge "
                f"({money(charge['amount'] - charge['amount_refunded'], charge['currency'])})",
                param="refund_amount",
            )
        refund = self._refund(charge, amount)
        return [{"amount_refunded": amount, "refund": refund["id"], "type": "refund"}]

    def list_refunds(self, params: dict[str, Any]) -> dict[str, Any]:
        charge = params.get("charge")
        pi = params.get("payment_intent")
        return self.page(
            self.all("refund"),
            params,
            "/v1/refunds",
            lambda r: (
                (not charge or r["charge"] == charge) and (not pi or r["payment_intent"] == pi)
            ),
        )

    def update_refund(self, refund_id: str, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"expand", "metadata"})
        refund = self.get(refund_id, "refund")
        refund["metadata"] = apply_metadata(refund["metadata"], params.get("metadata"))
        return refund

    def list_charges(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = params.get("customer")
        pi = params.get("payment_intent")
        return self.page(
            self.all("charge"),
            params,
            "/v1/charges",
            lambda c: (
                (not customer or c["customer"] == customer)
                and (not pi or c["payment_intent"] == pi)
            ),
        )
