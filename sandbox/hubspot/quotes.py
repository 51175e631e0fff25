"""HubSpot quotes (object type ``0-14``): what a portal with Commerce / Sales Hub quotes has and
the rest of the emulator lacked — ``/crm/v3/objects/quotes`` (create, read, update, batch
create/read/update/upsert, search: the generic object routes), the quote properties, and the v4
association types between quotes, deals, line items, companies and contacts.

Registered into :mod:`sandbox.hubspot.catalog` when the package is imported (the store and the
routes are generic over the catalog's object types), so the emulator module does not grow.

Facts followed (HubSpot's quotes guide, developers.hubspot.com/docs/api/crm/quotes, and the
association type table of the v4 associations guide):

- A quote needs ``hs_title`` and ``hs_expiration_date`` on create (400 ``VALIDATION_ERROR``
  naming the missing one otherwise); ``hs_status`` starts at ``DRAFT``. A draft is only a record:
  publishing (``APPROVAL_NOT_NEEDED``) also needs a deal, a quote template and line items,
  which this emulator does not check.
- ``hs_quote_amount`` is calculated by HubSpot from the associated line items: a write to it is
  ignored (read-only), as for the other calculated properties.
- Association types (HUBSPOT_DEFINED): quote→deal 64 / deal→quote 63, quote→line item 67 /
  line item→quote 68, quote→contact 69 / contact→quote 70, quote→company 71 / company→quote 72.
- Quotes and line items have no unique-value properties (a property created with
  ``hasUniqueValue`` is refused, a read or upsert by ``idProperty`` other than the record ID too).
- A deal closed lost says why in ``closed_lost_reason`` (HubSpot-defined; added here too).
- Quotes send no webhooks of their own (``quote.*`` is not a subscription type): a change is an
  ``object.*`` event with ``objectTypeId`` ``0-14``.
"""

from __future__ import annotations

from typing import Any

from . import catalog, store
from .catalog import ObjectType, prop

QUOTES = ObjectType(
    "quotes",
    "0-14",
    "quote",
    None,
    (
        "createdate",
        "hs_expiration_date",
        "hs_lastmodifieddate",
        "hs_object_id",
        "hs_quote_amount",
        "hs_status",
        "hs_title",
    ),
    required_on_create=("hs_title", "hs_expiration_date"),
    searchable=("hs_title",),
    group="quoteinformation",
)

#: a quote's approval and publishing states (``hs_status``)
QUOTE_STATUSES = (
    ("DRAFT", "Draft"),
    ("APPROVAL_NOT_NEEDED", "Approval not needed"),
    ("PENDING_APPROVAL", "Pending approval"),
    ("APPROVED", "Approved"),
    ("REJECTED", "Rejected"),
)


def properties() -> dict[str, list[dict[str, Any]]]:
    """The quote's HubSpot-defined properties, and the deal's ``closed_lost_reason`` (HubSpot's
    own "Closed lost reason", which a deal closed lost by an integration carries)."""
    return {
        "quotes": _quote_properties(),
        "deals": [prop("closed_lost_reason", field_type="textarea", label="Closed lost reason")],
    }


def _quote_properties() -> list[dict[str, Any]]:
    return [
        prop("hs_title", label="Quote name"),
        prop("hs_expiration_date", "date", label="Expiration date"),
        prop("hs_status", "enumeration", "select", label="Quote status", options=QUOTE_STATUSES),
        prop(
            "hs_currency",
            "enumeration",
            "select",
            label="Currency",
            options=tuple((c, c) for c in catalog.CURRENCIES),
        ),
        prop("hs_language", label="Language"),
        prop("hs_comments", field_type="textarea", label="Comments"),
        prop("hs_terms", field_type="textarea", label="Terms"),
        prop("hs_quote_amount", "number", label="Amount", read_only=True),
    ]


def register() -> None:
    """Add quotes to the catalog (once; importing the package twice changes nothing)."""
    if QUOTES.name in catalog.OBJECT_TYPES:
        return
    catalog.OBJECT_TYPES[QUOTES.name] = QUOTES
    for alias in (QUOTES.name, QUOTES.type_id, QUOTES.singular):
        catalog._ALIASES[alias] = QUOTES
    catalog.EXTRA_PROPERTIES.append(properties)
    store._CREATE_DEFAULTS[QUOTES.name] = {"hs_status": "DRAFT"}
    catalog._pair("quotes", "deals", 64, 63)
    catalog._pair("quotes", "line_items", 67, 68)
    catalog._pair("quotes", "contacts", 69, 70)
    catalog._pair("quotes", "companies", 71, 72)
    # unique-value properties exist for contacts, companies, deals, tickets and custom objects
    # only (HubSpot's changelog "Unique Properties support for newly created Contact
    # properties"): neither quotes nor line items can have one
    catalog.NO_UNIQUE_PROPERTIES = catalog.NO_UNIQUE_PROPERTIES | {"quotes", "line_items"}


register()
