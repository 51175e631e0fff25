"""The shapes every vendor module of the account sync reports and writes (issue 19): the golden
billing address and the fields billing may be handed, and the view and health prologue the
billing modules share (which subscriptions are live, the main one, the party's fields). A module
of its own, imported by the vendor modules, so that none of them imports the package that picks
them (no import cycle)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from domain.health import HealthInputs

#: the golden ``billing_address``: a dict of these keys (strings; empty ones left out, and an
#: address with none of them is no address: the field is left out of the view)
ADDRESS_KEYS = ("line1", "line2", "city", "state", "postal_code", "country")
#: the fields billing holds a copy of and the CRM may change (``policies/sync.yaml``): what
#: :meth:`SyncBilling.sync_write` is handed
BILLING_WRITABLE = ("account_name", "billing_contact", "billing_contact_name", "billing_address")


def address(parts: dict[str, Any]) -> dict[str, str] | None:
    """The golden ``billing_address`` from a vendor's parts named as :data:`ADDRESS_KEYS`:
    trimmed strings, empty parts left out; None when nothing is left (so every vendor reports
    the same address as the same value, and an echo is recognised by equality)."""
    out = {k: str(parts[k]).strip() for k in ADDRESS_KEYS if parts.get(k) not in (None, "")}
    out = {k: v for k, v in out.items() if v}
    return out or None


# --- the view and health prologue Zuora's and Recurly's modules share ---------------------------

#: how far back the health profile's payment attempts go
YEAR_S = 365 * 86_400
#: a subscription that still bills, in the domain's words (the main one is the live one with the
#: highest MRR; Recurly's "canceled" is non_renewing)
LIVE = ("active", "non_renewing", "paused", "future")


def year_ago() -> datetime:
    """The start of the health profile's payment window (now − 365 days, UTC)."""
    return datetime.fromtimestamp(time.time() - YEAR_S, UTC)


def party_view(
    company: Any, email: Any, first: Any, last: Any, parts: dict[str, Any]
) -> dict[str, Any]:
    """The golden fields of the billing party: ``account_name``, ``billing_contact``,
    ``billing_contact_name`` (first and last, joined) and ``billing_address`` — each left out
    when the vendor holds nothing for it."""
    view: dict[str, Any] = {}
    if company:
        view["account_name"] = company
    if email:
        view["billing_contact"] = email
    name = " ".join(n for n in (first, last) if n)
    if name:
        view["billing_contact_name"] = name
    if addr := address(parts):
        view["billing_address"] = addr
    return view


def main_subscription(subs: list[Any], fallback: Any) -> tuple[list[Any], Any]:
    """The live subscriptions and the main one: the live one with the highest MRR, else
    ``fallback`` (the vendor's newest)."""
    live = [s for s in subs if s.status in LIVE]
    return live, max(live, key=lambda s: (s.mrr, s.id), default=None) or fallback


def subscription_view(view: dict[str, Any], live: list[Any], main: Any, failing: bool) -> None:
    """The billing-owned fields from the main subscription (MRR and ARR: every live one's)."""
    view["plan"] = main.plan
    view["subscription_status"] = main.status
    view["next_renewal"] = (
        main.current_term_end.date().isoformat() if main.current_term_end else None
    )
    view["mrr"] = sum(s.mrr for s in live)
    view["arr"] = view["mrr"] * 12
    view["payment_health"] = "failing" if failing else "ok"


def health_inputs(
    since: str | None,
    ok: int,
    failed: int,
    payments: bool,
    dunning: int,
    main: Any,
    currency: str,
) -> HealthInputs:
    """The health profile's inputs: seats and currency from the main subscription (else the
    account's currency)."""
    return HealthInputs(
        customer_since=since,
        payments_ok=ok,
        payments_failed=failed,
        payments_read=payments,
        open_dunning=dunning,
        seats=main.quantity if main is not None else None,
        currency=main.currency if main is not None else currency,
    )
