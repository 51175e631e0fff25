"""The shapes every vendor module of the account sync reports and writes (issue 19): the golden
billing address and the fields billing may be handed. A module of its own, imported by the vendor
modules, so that none of them imports the package that picks them (no import cycle)."""

from __future__ import annotations

from typing import Any

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
