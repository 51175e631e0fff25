"""The normalized halves of the book each vendor module reads (no vendor code here)."""

from __future__ import annotations

from typing import Any

from domain.models import Frozen
from domain.reconcile import Account, Customer, Deal, Invoice, Payment, Sub


class BillingSide(Frozen):
    subscriptions: list[Sub] = []
    invoices: list[Invoice] = []
    payments: list[Payment] = []
    customers: list[Customer] = []


class CrmSide(Frozen):
    deals: list[Deal] = []
    accounts: list[Account] = []


def minor(amount: Any) -> int:
    """A CRM currency value (major units, float) → minor units."""
    return round(float(amount or 0) * 100)
