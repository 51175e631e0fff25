"""Credit notes (pre- and post-payment) against invoices."""

from __future__ import annotations

from typing import Any

from .errors import StripeError, missing
from .forms import (
    apply_metadata,
    as_enum,
    as_int,
    as_list,
    as_str,
    check_known,
)
from .invoices import money
from .store import Store

CREDIT_NOTE_PARAMS = {
    "amount", "credit_amount", "effective_at", "email_type", "invoice", "lines", "memo",
    "metadata", "out_of_band_amount", "reason", "refund_amount", "refunds", "shipping_cost",
}  # fmt: skip


class CreditNoteMixin(Store):
    def create_credit_note(self, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, CREDIT_NOTE_PARAMS)
        inv = self.get(as_str(params, "invoice", required=True), "invoice", "invoice")
        if inv["status"] not in ("open", "paid"):
            raise StripeError(
                400,
                f"You can only create credit notes for open or paid invoices. This invoice is "
                f"{inv['status']}.",
                param="invoice",
            )
        cn_lines = []
        lines = as_list(params, "lines")
        if lines:
            by_id = {line["id"]: line for line in inv["_lines"]}
            for i, spec in enumerate(lines):
                param = f"lines[{i}]"
                ltype = as_enum(spec, "type", ("invoice_line_item", "custom_line_item"))
                qty = as_int(spec, "quantity", 1) or 1
                if ltype == "invoice_line_item":
                    src = by_id.get(spec.get("invoice_line_item"))
                    if src is None:
                        raise StripeError(
                            400, "No such invoice line item.", param=f"{param}[invoice_line_item]"
                        )
                    amt = as_int(spec, "amount")
                    if amt is None:
                        amt = round(src["amount"] * qty / (src["quantity"] or 1))
                    desc = src["description"]
                elif ltype == "custom_line_item":
                    unit = as_int(spec, "unit_amount", required=True) or 0
                    amt = unit * qty
                    desc = as_str(spec, "description", required=True)
                else:
                    raise missing(f"{param}[type]")
                cn_lines.append(
                    {
                        "id": self.new_id("cnli"),
                        "object": "credit_note_line_item",
                        "amount": amt,
                        "description": desc,
                        "discount_amount": 0,
                        "discount_amounts": [],
                        "invoice_line_item": spec.get("invoice_line_item"),
                        "livemode": False,
                        "metadata": apply_metadata({}, spec.get("metadata")),
                        "pretax_credit_amounts": [],
                        "quantity": qty,
                        "tax_rates": [],
                        "taxes": [],
                        "type": ltype,
                        "unit_amount": amt // qty if qty else amt,
                        "unit_amount_decimal": str(amt // qty if qty else amt),
                    }
                )
            amount = sum(line["amount"] for line in cn_lines)
        else:
            amount = as_int(params, "amount")
            if amount is None:
                raise StripeError(
                    400,
                    "You must pass either `amount` or `lines` to create a credit note.",
                    param="amount",
                )
            cn_lines.append(
                {
                    "id": self.new_id("cnli"),
                    "object": "credit_note_line_item",
                    "amount": amount,
                    "description": as_str(params, "memo") or "Credit",
                    "discount_amount": 0,
                    "discount_amounts": [],
                    "livemode": False,
                    "metadata": {},
                    "pretax_credit_amounts": [],
                    "quantity": 1,
                    "tax_rates": [],
                    "taxes": [],
                    "type": "custom_line_item",
                    "unit_amount": amount,
                    "unit_amount_decimal": str(amount),
                }
            )
        if amount <= 0:
            raise StripeError(400, "The credit note amount must be greater than 0.", param="amount")
        credited = sum(
            cn["amount"]
            for cn in self.all("credit_note")
            if cn["invoice"] == inv["id"] and cn["status"] != "void"
        )
        limit = inv["total"] - credited
        if inv["status"] == "open":
            limit = min(limit, inv["amount_remaining"])
        if amount > limit:
            raise StripeError(
                400,
                f"The maximum amount you can credit for this invoice is "
                f"{money(max(limit, 0), inv['currency'])}.",
                param="amount",
            )
        cus = self.get(inv["customer"], "customer", allow_deleted=True)
        pre = inv["status"] == "open"
        credit_amt = as_int(params, "credit_amount") or 0
        refund_amt = as_int(params, "refund_amount") or 0
        oob_amt = as_int(params, "out_of_band_amount") or 0
        if pre:
            if credit_amt or refund_amt or oob_amt:
                raise StripeError(
                    400,
                    "credit_amount, refund_amount and out_of_band_amount can only be set for "
                    "paid invoices.",
                    param="credit_amount",
                )
        else:
            if not (credit_amt or refund_amt or oob_amt):
                credit_amt = amount
            if credit_amt + refund_amt + oob_amt != amount:
                raise StripeError(
                    400,
                    "The sum of credit amount, refund amount and out of band amount "
                    f"({credit_amt + refund_amt + oob_amt}) must equal the credit note amount "
                    f"({amount}).",
                    param="amount",
                )
        count = 1 + sum(1 for cn in self.all("credit_note") if cn["invoice"] == inv["id"])
        now = self.now()
        cn_id = self.new_id("cn")
        cn = {
            "id": cn_id,
            "object": "credit_note",
            "amount": amount,
            "amount_shipping": 0,
            "created": now,
            "currency": inv["currency"],
            "customer": inv["customer"],
            "customer_balance_transaction": None,
            "discount_amount": 0,
            "discount_amounts": [],
            "effective_at": now,
            "invoice": inv["id"],
            "lines": {
                "object": "list",
                "data": cn_lines,
                "has_more": False,
                "total_count": len(cn_lines),
                "url": f"/v1/credit_notes/{cn_id}/lines",
            },
            "livemode": False,
            "memo": as_str(params, "memo"),
            "metadata": apply_metadata({}, params.get("metadata")),
            "number": f"{inv['number']}-CN-{count:02d}",
            "out_of_band_amount": oob_amt or None,
            "pdf": f"https://pay.stripe.com/credit_notes/acct_sandbox/test_{cn_id}/pdf",
            "post_payment_amount": 0 if pre else amount,
            "pre_payment_amount": amount if pre else 0,
            "pretax_credit_amounts": [],
            "reason": as_enum(
                params,
                "reason",
                ("duplicate", "fraudulent", "order_change", "product_unsatisfactory"),
            ),  # fmt: skip
            "refunds": self.credit_note_refunds(inv, refund_amt) if refund_amt else [],
            "shipping_cost": None,
            "status": "issued",
            "subtotal": amount,
            "subtotal_excluding_tax": amount,
            "total": amount,
            "total_excluding_tax": amount,
            "total_taxes": [],
            "type": "pre_payment" if pre else "post_payment",
            "voided_at": None,
        }
        self.put(cn)
        before = self.render(inv)
        if pre:
            inv["pre_payment_credit_notes_amount"] += amount
            inv["amount_due"] -= amount
            inv["amount_remaining"] -= amount
        else:
            inv["post_payment_credit_notes_amount"] += amount
            if credit_amt:
                txn = self.balance_txn(
                    cus, -credit_amt, "credit_note", invoice=inv["id"], credit_note=cn_id
                )
                cn["customer_balance_transaction"] = txn["id"]
        self.event("credit_note.created", cn)
        self._updated("invoice.updated", inv, before)
        if pre and inv["amount_remaining"] <= 0:
            self._mark_paid(inv, succeeded_event=False)
        return cn

    def void_credit_note(self, cn_id: str) -> dict[str, Any]:
        cn = self.get(cn_id, "credit_note")
        if cn["status"] == "void":
            raise StripeError(400, "This credit note has already been voided.")
        inv = self.objects[cn["invoice"]]
        if cn["type"] == "pre_payment":
            if inv["status"] != "open":
                raise StripeError(
                    400,
                    "A pre-payment credit note can only be voided while its invoice is open.",
                )
            inv["pre_payment_credit_notes_amount"] -= cn["amount"]
            inv["amount_due"] += cn["amount"]
            inv["amount_remaining"] += cn["amount"]
        else:
            inv["post_payment_credit_notes_amount"] -= cn["amount"]
            txn = self.find(cn["customer_balance_transaction"], "customer_balance_transaction")
            cus = self.find(cn["customer"], "customer")
            if txn and cus:
                self.balance_txn(
                    cus, -txn["amount"], "credit_note", invoice=inv["id"], credit_note=cn_id
                )
        cn["status"] = "void"
        cn["voided_at"] = self.now()
        self.event("credit_note.voided", cn)
        return cn

    def list_credit_notes(self, params: dict[str, Any]) -> dict[str, Any]:
        invoice = params.get("invoice")
        customer = params.get("customer")
        return self.page(
            self.all("credit_note"),
            params,
            "/v1/credit_notes",
            lambda cn: (
                (not invoice or cn["invoice"] == invoice)
                and (not customer or cn["customer"] == customer)
            ),
        )
