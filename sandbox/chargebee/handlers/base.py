"""Shared plumbing of the vendor handlers: the :class:`Call`, lookups and response wrappers.

Each handler gets a :class:`Call` (decoded params, path params) and returns the response body or
raises :class:`ChargebeeError`. Events it records go to ``call.events``; the route wrapper emits
them as webhooks after the state change, even when the call ends in an error (a declined
``collect_payment`` commits a failed transaction, then answers a payment error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import models
from ..errors import ChargebeeError, not_found, param_error
from ..forms import to_int
from ..state import Store, public

if TYPE_CHECKING:
    from ..emulator import ChargebeeEmulator


@dataclass
class Call:
    params: dict[str, Any]
    path: dict[str, str] = field(default_factory=dict)
    source: str = "api"
    events: list[dict[str, Any]] = field(default_factory=list)


def _required(params: dict[str, Any], name: str, label: str | None = None) -> str:
    value = params.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise param_error(label or name)
    if not isinstance(value, str):
        raise param_error(label or name, f"{label or name} : invalid value")
    return value


def _opt_int(params: dict[str, Any], name: str, label: str | None = None) -> int | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    return to_int(value, label or name)


class Base:
    def __init__(self, emulator: ChargebeeEmulator) -> None:
        self.em = emulator

    @property
    def store(self) -> Store:
        return self.em.store

    # --- helpers --------------------------------------------------------------------------------

    def net_term_days(self, params: dict[str, Any]) -> int | None:
        """``net_term_days`` when given, refused unless the site offers that payment term."""
        days = _opt_int(params, "net_term_days")
        offered = self.store.site.get("net_terms")
        if days is not None and offered is not None and days not in offered:
            raise param_error(
                "net_term_days",
                f"net_term_days : {days} is not a payment term configured for this site",
            )
        return days

    def require_contract_terms(self) -> None:
        if not self.store.site.get("contract_terms"):
            raise ChargebeeError(
                400,
                "configuration_incompatible",
                "Contract terms is not enabled for this site",
                type="invalid_request",
                param="contract_term[action_at_term_end]",
            )

    def event(self, call: Call, event_type: str, content: dict[str, Any]) -> dict[str, Any]:
        ev = models.new_event(
            self.store, event_type, content, call.source, bool(self.em.webhook_targets)
        )
        if call.source == "api":  # events carry who caused them: {source, user?} (§2d)
            ev["user"] = self.em.api_user
        call.events.append(ev)
        return ev

    def customer(self, id_: str, param: str = "id") -> dict[str, Any]:
        c = self.store.customers.get(id_)
        if c is None or c["deleted"]:
            raise not_found("Customer", id_, param)
        return c

    def subscription(self, id_: str, param: str = "id") -> dict[str, Any]:
        s = self.store.subscriptions.get(id_)
        if s is None or s.get("deleted"):
            raise not_found("Subscription", id_, param)
        return s

    def invoice(self, id_: str, param: str = "id") -> dict[str, Any]:
        inv = self.store.invoices.get(id_)
        if inv is None or inv.get("deleted"):
            raise not_found("Invoice", id_, param)
        return inv

    def card_of(self, customer_id: str) -> dict[str, Any] | None:
        card = self.store.cards.get(customer_id)
        return public(card) if card else None

    def customer_wrap(self, c: dict[str, Any]) -> dict[str, Any]:
        out = {"customer": public(c)}
        card = self.card_of(c["id"])
        if card:
            out["card"] = card
        return out

    def subscription_wrap(self, sub: dict[str, Any]) -> dict[str, Any]:
        out = {
            "subscription": models.render_subscription(self.store, sub),
            "customer": public(self.store.customers[sub["customer_id"]]),
        }
        card = self.card_of(sub["customer_id"])
        if card:
            out["card"] = card
        return out

    def payment_content(self, txn: dict[str, Any], inv: dict[str, Any]) -> dict[str, Any]:
        sub = self.store.subscriptions.get(inv.get("subscription_id") or "")
        return {
            "transaction": public(txn),
            "invoice": public(inv),
            "customer": public(self.store.customers[inv["customer_id"]]),
            "subscription": models.render_subscription(self.store, sub) if sub else None,
            "card": self.card_of(inv["customer_id"]),
        }
