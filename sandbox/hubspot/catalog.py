"""Static HubSpot facts: object types, default property definitions, pipelines, association types.

Everything here is data; :mod:`sandbox.hubspot.store` copies the property definitions per reset so
custom properties created through the API never leak into the defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ObjectType:
    name: str  # path name, plural: "companies"
    type_id: str  # "0-2"
    singular: str  # "company"
    #: subscriptionType prefix of its webhooks; None means the generic ``object.*`` types
    webhook_prefix: str | None
    #: properties returned when a read names none [reference §2.4]
    default_properties: tuple[str, ...]
    required_on_create: tuple[str, ...] = ()
    #: properties the free-text ``query`` of a search looks at
    searchable: tuple[str, ...] = ()
    group: str = "information"
    #: the key of its ids under a v3 read's ``associations`` (HubSpot writes "line items")
    association_key: str = ""

    @property
    def assoc_key(self) -> str:
        return self.association_key or self.name


OBJECT_TYPES: dict[str, ObjectType] = {
    t.name: t
    for t in (
        ObjectType(
            "contacts",
            "0-1",
            "contact",
            "contact",
            ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
            searchable=("email", "firstname", "lastname", "phone", "company"),
            group="contactinformation",
        ),
        ObjectType(
            "companies",
            "0-2",
            "company",
            "company",
            ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
            searchable=("name", "domain", "website", "phone"),
            group="companyinformation",
        ),
        ObjectType(
            "deals",
            "0-3",
            "deal",
            "deal",
            (
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ),
            searchable=("dealname",),
            group="dealinformation",
        ),
        ObjectType(
            "tickets",
            "0-5",
            "ticket",
            "ticket",
            (
                "content",
                "createdate",
                "hs_lastmodifieddate",
                "hs_object_id",
                "hs_pipeline",
                "hs_pipeline_stage",
                "hs_ticket_category",
                "hs_ticket_priority",
                "subject",
            ),
            searchable=("subject", "content"),
            group="ticketinformation",
        ),
        ObjectType(
            "products",
            "0-7",
            "product",
            "product",
            ("createdate", "description", "hs_lastmodifieddate", "hs_object_id", "name", "price"),
            searchable=("name", "hs_sku", "description"),
            group="productinformation",
        ),
        ObjectType(
            "line_items",
            "0-8",
            "line_item",
            "line_item",
            (
                "amount",
                "createdate",
                "hs_lastmodifieddate",
                "hs_object_id",
                "hs_product_id",
                "name",
                "price",
                "quantity",
            ),
            searchable=("name", "hs_sku"),
            group="lineiteminformation",
            association_key="line items",
        ),
        ObjectType(
            "tasks",
            "0-27",
            "task",
            None,
            ("createdate", "hs_lastmodifieddate", "hs_object_id"),
            required_on_create=("hs_timestamp",),
            searchable=("hs_task_subject", "hs_task_body"),
            group="task",
        ),
        ObjectType(
            "notes",
            "0-46",
            "note",
            None,
            ("createdate", "hs_lastmodifieddate", "hs_object_id"),
            required_on_create=("hs_timestamp",),
            searchable=("hs_note_body",),
            group="note",
        ),
    )
}

_ALIASES = {alias: t for t in OBJECT_TYPES.values() for alias in (t.name, t.type_id, t.singular)}
_ALIASES["lineitem"] = _ALIASES["lineitems"] = OBJECT_TYPES["line_items"]


def resolve_type(name: str) -> ObjectType | None:
    """Accept the plural name, the singular name or the ``0-N`` id, as HubSpot does."""
    return _ALIASES.get(name.lower())


# --- pipelines -----------------------------------------------------------------------------------

DEAL_STAGES = (
    ("appointmentscheduled", "Appointment Scheduled", "0.2", False),
    ("qualifiedtobuy", "Qualified To Buy", "0.4", False),
    ("presentationscheduled", "Presentation Scheduled", "0.6", False),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", False),
    ("contractsent", "Contract Sent", "0.9", False),
    ("closedwon", "Closed Won", "1.0", True),
    ("closedlost", "Closed Lost", "0.0", True),
)
TICKET_STAGES = (
    ("1", "New", "OPEN"),
    ("2", "Waiting on contact", "OPEN"),
    ("3", "Waiting on us", "OPEN"),
    ("4", "Closed", "CLOSED"),
)
_EPOCH = "2024-01-01T00:00:00.000Z"


def _stage(i: int, sid: str, label: str, metadata: dict[str, str]) -> dict[str, Any]:
    return {
        "id": sid,
        "label": label,
        "displayOrder": i,
        "metadata": metadata,
        "createdAt": _EPOCH,
        "updatedAt": _EPOCH,
        "archived": False,
        "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
    }


PIPELINES: dict[str, list[dict[str, Any]]] = {
    "deals": [
        {
            "id": "default",
            "label": "Sales Pipeline",
            "displayOrder": 0,
            "createdAt": _EPOCH,
            "updatedAt": _EPOCH,
            "archived": False,
            "stages": [
                _stage(i, sid, label, {"isClosed": str(closed).lower(), "probability": p})
                for i, (sid, label, p, closed) in enumerate(DEAL_STAGES)
            ],
        }
    ],
    "tickets": [
        {
            "id": "0",
            "label": "Support Pipeline",
            "displayOrder": 0,
            "createdAt": _EPOCH,
            "updatedAt": _EPOCH,
            "archived": False,
            "stages": [
                _stage(i, sid, label, {"ticketState": state})
                for i, (sid, label, state) in enumerate(TICKET_STAGES)
            ],
        }
    ],
}


# --- property definitions ------------------------------------------------------------------------

#: properties the server computes; writes to them are ignored, as HubSpot ignores them
READ_ONLY = {
    "hs_object_id",
    "lastmodifieddate",
    "hs_lastmodifieddate",
    "hs_is_closed",
    "hs_is_closed_won",
}
#: per-type calculated properties (a deal's ``amount`` is writable, a line item's is not)
READ_ONLY_BY_TYPE = {"line_items": {"amount"}}


def prop(
    name: str,
    type_: str = "string",
    field_type: str | None = None,
    *,
    group: str = "",
    label: str | None = None,
    options: tuple[str | tuple[str, str], ...] = (),
    unique: bool = False,
    hubspot_defined: bool = True,
    description: str = "",
    read_only: bool = False,
) -> dict[str, Any]:
    """A property definition in the shape the properties API returns (``Property``)."""
    field_type = (
        field_type
        or {
            "string": "text",
            "number": "number",
            "datetime": "date",
            "date": "date",
            "bool": "booleancheckbox",
            "enumeration": "select",
        }[type_]
    )
    return {
        "name": name,
        "label": label or name.replace("_", " ").title(),
        "type": type_,
        "fieldType": field_type,
        "description": description,
        "groupName": group,
        "options": [
            {"label": label, "value": value, "displayOrder": i, "hidden": False}
            for i, (value, label) in enumerate(
                o if isinstance(o, tuple) else (o, o.title()) for o in options
            )
        ],
        "displayOrder": -1,
        "calculated": False,
        "externalOptions": False,
        "hasUniqueValue": unique,
        "hidden": False,
        "hubspotDefined": hubspot_defined,
        "formField": False,
        "archived": False,
        "createdAt": _EPOCH,
        "updatedAt": _EPOCH,
        "modificationMetadata": {
            "archivable": not hubspot_defined,
            "readOnlyDefinition": hubspot_defined,
            "readOnlyValue": read_only or name in READ_ONLY,
        },
    }


LIFECYCLE = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)


#: HubSpot's billing frequency options on products and line items
BILLING_FREQUENCIES = (
    ("weekly", "Weekly"),
    ("biweekly", "Biweekly"),
    ("monthly", "Monthly"),
    ("quarterly", "Quarterly"),
    ("per_six_months", "Every six months"),
    ("annually", "Annually"),
    ("per_two_years", "Every two years"),
    ("per_three_years", "Every three years"),
)
#: the currencies this portal has turned on (a portal setting in HubSpot)
CURRENCIES = ("USD", "EUR", "GBP", "CAD", "AUD")
PAYMENT_TERMS = ("Net 15", "Net 30", "Net 45", "Net 60")
CHURN_LEVELS = ("low", "medium", "high", "critical")


def _common() -> list[dict[str, Any]]:
    return [
        prop("hs_object_id", "number", label="Record ID"),
        prop("createdate", "datetime", label="Create Date"),
        prop("lastmodifieddate", "datetime", label="Last Modified Date"),
        prop("hs_lastmodifieddate", "datetime", label="Last Modified Date"),
        # an owner id; the emulator has no owners registry, so any value is accepted
        prop("hubspot_owner_id", "enumeration", "select", label="Owner"),
    ]


def _defaults() -> dict[str, list[dict[str, Any]]]:
    return {
        "contacts": [
            prop("email", label="Email"),
            prop("firstname"),
            prop("lastname"),
            prop("phone", field_type="phonenumber"),
            prop("company"),
            prop("jobtitle"),
            prop("lifecyclestage", "enumeration", "radio", options=LIFECYCLE),
        ],
        "companies": [
            prop("name"),
            prop("domain"),
            prop("website"),
            prop("industry"),
            prop("phone", field_type="phonenumber"),
            prop("address"),
            prop("address2"),
            prop("city"),
            prop("state"),
            prop("zip"),
            prop("country"),
            prop("description", field_type="textarea"),
            prop("numberofemployees", "number"),
            prop("annualrevenue", "number"),
            prop("lifecyclestage", "enumeration", "radio", options=LIFECYCLE),
        ],
        "deals": [
            prop("dealname"),
            prop("amount", "number"),
            prop(
                "dealstage",
                "enumeration",
                "radio",
                options=tuple((s[0], s[1]) for s in DEAL_STAGES),
            ),
            prop("pipeline", "enumeration", "select", options=(("default", "Sales Pipeline"),)),
            prop("closedate", "datetime"),
            prop("dealtype", "enumeration", "radio", options=("newbusiness", "existingbusiness")),
            prop("description", field_type="textarea"),
            prop("hs_is_closed", "bool"),
            prop("hs_is_closed_won", "bool"),
            prop(
                "deal_currency_code",
                "enumeration",
                "select",
                options=tuple((c, c) for c in CURRENCIES),
            ),
        ],
        "tickets": [
            prop("subject"),
            prop("content", field_type="textarea"),
            prop("hs_pipeline", "enumeration", "select", options=(("0", "Support Pipeline"),)),
            prop(
                "hs_pipeline_stage",
                "enumeration",
                "radio",
                options=tuple((s[0], s[1]) for s in TICKET_STAGES),
            ),
            prop(
                "hs_ticket_priority",
                "enumeration",
                "select",
                options=("LOW", "MEDIUM", "HIGH", "URGENT"),
            ),
            prop("hs_ticket_category"),
        ],
        "products": [
            prop("name"),
            prop("description", field_type="textarea"),
            prop("price", "number", label="Unit price"),
            prop("hs_sku", label="SKU"),
            prop("hs_cost_of_goods_sold", "number", label="Unit cost"),
            prop("recurringbillingfrequency", "enumeration", "select", options=BILLING_FREQUENCIES),
            prop("hs_recurring_billing_period", label="Term"),
        ],
        "line_items": [
            prop("name"),
            prop("description", field_type="textarea"),
            prop("hs_product_id", label="Product ID"),
            prop("hs_sku", label="SKU"),
            prop("quantity", "number"),
            prop("price", "number", label="Unit price"),
            prop("discount", "number", label="Unit discount"),
            prop("hs_discount_percentage", "number", label="Discount percentage"),
            prop("amount", "number", label="Net price", read_only=True),
            prop("recurringbillingfrequency", "enumeration", "select", options=BILLING_FREQUENCIES),
            prop("hs_recurring_billing_period", label="Term"),
            prop("hs_recurring_billing_start_date", "date", label="Billing start date"),
        ],
        "tasks": [
            prop("hs_timestamp", "datetime", label="Due date"),
            prop("hs_task_subject"),
            prop("hs_task_body", field_type="html"),
            prop(
                "hs_task_status",
                "enumeration",
                "select",
                options=("NOT_STARTED", "IN_PROGRESS", "WAITING", "COMPLETED", "DEFERRED"),
            ),
            prop(
                "hs_task_priority",
                "enumeration",
                "select",
                options=("NONE", "LOW", "MEDIUM", "HIGH"),
            ),
            prop(
                "hs_task_type",
                "enumeration",
                "select",
                options=("TODO", "CALL", "EMAIL", "LINKED_IN", "MEETING"),
            ),
        ],
        "notes": [
            prop("hs_timestamp", "datetime", label="Activity date"),
            prop("hs_note_body", field_type="html"),
            prop("hs_attachment_ids", "enumeration", "checkbox"),
        ],
    }


def _revbridge() -> dict[str, list[dict[str, Any]]]:
    """The RevBridge custom properties a real portal gets from the project's setup step."""

    def custom(
        name: str,
        type_: str = "string",
        unique: bool = False,
        field_type: str | None = None,
        options: tuple[str | tuple[str, str], ...] = (),
    ) -> dict[str, Any]:
        return prop(
            name,
            type_,
            field_type,
            group="revbridge",
            unique=unique,
            hubspot_defined=False,
            options=options,
        )

    key = [custom("revbridge_key", unique=True)]
    return {
        "companies": [
            custom("billing_customer_id", unique=True),
            custom("billing_platform"),
            custom("billing_subscription_id"),
            custom("mrr", "number"),
            custom("customer_tier"),
            custom("billing_status"),
            custom("churn_risk"),
            custom(
                "churn_level",
                "enumeration",
                options=tuple((v, v.title()) for v in CHURN_LEVELS),
            ),
            custom("churn_reasons", field_type="textarea"),
            custom("churn_narrative", field_type="textarea"),
            custom("churn_scored_at", "datetime"),
            # the account sync's golden fields (issue 19)
            custom("billing_plan"),
            custom("next_renewal", "date"),
            custom("payment_health"),
            custom("billing_contact_email"),
            custom("billing_contact_name"),
            # the account sync's health profile
            custom("health_summary"),
            custom("subscription_health", field_type="textarea"),
            custom("tenure_months", "number"),
            custom("payment_success_rate", "number"),
            custom("open_dunning", "number"),
            custom("usage_trend"),
        ],
        "deals": [
            custom("term_months", "number"),
            custom("payment_terms", "enumeration", options=tuple((v, v) for v in PAYMENT_TERMS)),
            custom("start_date", "date"),
            custom("billing_subscription_id"),
            custom("billing_status"),
            custom("mrr", "number"),
        ],
        "tickets": key,
    }


#: object types that cannot have a unique-value property: HubSpot documents unique properties for
#: contacts, companies, deals, tickets and custom objects only; activities (engagements) have none
NO_UNIQUE_PROPERTIES = frozenset({"notes", "tasks", "calls", "meetings", "emails"})


#: HubSpot-defined properties another module of this package adds (quotes.py), per object type
EXTRA_PROPERTIES: list[Callable[[], dict[str, list[dict[str, Any]]]]] = []


def default_properties() -> dict[str, dict[str, dict[str, Any]]]:
    """Fresh, mutable property definitions per object type (HubSpot-defined + RevBridge custom)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    defaults, custom = _defaults(), _revbridge()
    for extra in EXTRA_PROPERTIES:
        for name, more in extra().items():
            defaults[name] = [*defaults.get(name, []), *more]
    for name, otype in OBJECT_TYPES.items():
        props = [*_common(), *defaults[name], *custom.get(name, [])]
        for p in props:
            if not p["groupName"]:
                p["groupName"] = otype.group
        out[name] = {p["name"]: p for p in props}
    return out


# --- association types ---------------------------------------------------------------------------

#: (from, to) -> HUBSPOT_DEFINED type ids, the first being the default (unlabeled) one [reference §2.4]
ASSOCIATION_TYPES: dict[tuple[str, str], tuple[int, ...]] = {}
#: type id -> the id of the same association seen from the other side
INVERSE: dict[int, int] = {}
#: type ids that are the "Primary" label (at most one per from-object and to-type)
PRIMARY: set[int] = set()


def _pair(a: str, b: str, ab: int, ba: int, primary: tuple[int, int] | None = None) -> None:
    ASSOCIATION_TYPES[(a, b)] = (ab, primary[0]) if primary else (ab,)
    ASSOCIATION_TYPES[(b, a)] = (ba, primary[1]) if primary else (ba,)
    INVERSE[ab], INVERSE[ba] = ba, ab
    if primary:
        INVERSE[primary[0]], INVERSE[primary[1]] = primary[1], primary[0]
        PRIMARY.add(primary[0] if b == "companies" else primary[1])


_pair("contacts", "companies", 279, 280, (1, 2))
_pair("contacts", "deals", 4, 3)
_pair("contacts", "tickets", 15, 16)
_pair("deals", "companies", 341, 342, (5, 6))
_pair("tickets", "companies", 339, 340, (26, 25))
_pair("deals", "tickets", 27, 28)
_pair("deals", "line_items", 19, 20)
for _kind, _ids in (("notes", (202, 190, 214, 228)), ("tasks", (204, 192, 216, 230))):
    for _to, _id in zip(("contacts", "companies", "deals", "tickets"), _ids, strict=True):
        _pair(_kind, _to, _id, _id - 1)


def association_type_name(from_type: str, to_type: str, type_id: int) -> str:
    """The v3 ``associations.*.results[].type`` name, e.g. ``contact_to_company_unlabeled``."""
    base = f"{OBJECT_TYPES[from_type].singular}_to_{OBJECT_TYPES[to_type].singular}"
    ids = ASSOCIATION_TYPES.get((from_type, to_type), ())
    if len(ids) > 1 and type_id == ids[0]:
        return base + "_unlabeled"
    return base
