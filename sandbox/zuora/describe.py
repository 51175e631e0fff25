"""Zuora's Describe API in the sandbox tenant: ``GET /v1/describe/{object}`` answers the object's
fields — standard and custom — as XML, the way a tenant does (Describe has no JSON form):

    <?xml version="1.0" encoding="UTF-8"?>
    <object href="https://rest.zuora.com/v1/describe/Account">
      <name>Account</name><label>Account</label>
      <fields>
        <field><name>AccountNumber</name><label>Account Number</label>
          <selectable>true</selectable><createable>true</createable>
          <updateable>true</updateable><filterable>true</filterable>
          <custom>false</custom><maxlength>70</maxlength><required>false</required>
          <type>text</type><contexts><context>soap</context><context>export</context></contexts>
        </field>
        …
      </fields>
      <related-objects><object href="…/v1/describe/BillToContact">
        <name>BillToContact</name><label>Bill To</label></object></related-objects>
    </object>

A bearer token is needed (401 ``{"message": "Authentication error"}`` without). An object the
tenant does not know answers 404 with the classic error body.

Custom fields: the tenant's, by object (:data:`DEFAULT_CUSTOM_FIELDS`: those RevBridge's
connector writes, as a tenant an admin prepared has them). :func:`fresh_tenant` is a tenant as
Zuora delivers it — no custom field at all — and :func:`define_custom_field` adds one (what an
admin does under Settings > Custom Fields). Simpler than a tenant: writes naming a custom field
the tenant lacks are still stored (Describe is what tells), and Describe ignores the
``Accept-Language`` and ``showCurrencyConversionInformation`` options.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from .emulator import ZuoraEmulator

#: (name, label, type, maxlength or 0, createable, updateable, required)
_F = tuple[str, str, str, int, bool, bool, bool]
_STANDARD: dict[str, tuple[str, list[_F]]] = {
    "Account": ("Account", [
        ("Id", "Account ID", "text", 32, False, False, False),
        ("AccountNumber", "Account Number", "text", 70, True, True, False),
        ("Name", "Account Name", "text", 255, True, True, True),
        ("Currency", "Currency", "picklist", 0, True, True, True),
        ("Status", "Status", "picklist", 0, True, True, True),
        ("Balance", "Account Balance", "decimal", 0, False, False, False),
        ("BillCycleDay", "Bill Cycle Day", "integer", 0, True, True, True),
        ("PaymentTerm", "Payment Term", "text", 100, True, True, False),
        ("CrmId", "CRM Account ID", "text", 100, True, True, False),
        ("Notes", "Notes", "text", 65535, True, True, False),
        ("AutoPay", "Auto Pay", "boolean", 0, True, True, False),
        ("CreatedDate", "Created Date", "datetime", 0, False, False, False),
        ("UpdatedDate", "Updated Date", "datetime", 0, False, False, False),
    ]),
    "Contact": ("Contact", [
        ("Id", "Contact ID", "text", 32, False, False, False),
        ("AccountId", "Account ID", "text", 32, True, False, True),
        ("FirstName", "First Name", "text", 100, True, True, True),
        ("LastName", "Last Name", "text", 100, True, True, True),
        ("WorkEmail", "Work Email", "text", 80, True, True, False),
        ("Country", "Country", "text", 64, True, True, False),
    ]),
    "Subscription": ("Subscription", [
        ("Id", "Subscription ID", "text", 32, False, False, False),
        ("Name", "Subscription Number", "text", 100, True, False, False),
        ("AccountId", "Account ID", "text", 32, True, False, True),
        ("Status", "Status", "picklist", 0, False, False, False),
        ("TermType", "Term Type", "picklist", 0, True, True, True),
        ("InitialTerm", "Initial Term", "integer", 0, True, True, False),
        ("RenewalTerm", "Renewal Term", "integer", 0, True, True, False),
        ("ContractEffectiveDate", "Contract Effective Date", "date", 0, True, False, True),
        ("TermStartDate", "Term Start Date", "date", 0, True, False, False),
        ("TermEndDate", "Term End Date", "date", 0, False, False, False),
        ("Notes", "Notes", "text", 500, True, True, False),
    ]),
    "Order": ("Order", [
        ("Id", "Order ID", "text", 32, False, False, False),
        ("OrderNumber", "Order Number", "text", 100, True, False, False),
        ("OrderDate", "Order Date", "date", 0, True, False, True),
        ("Status", "Status", "picklist", 0, False, False, False),
        ("Description", "Description", "text", 500, True, True, False),
    ]),
    "Invoice": ("Invoice", [
        ("Id", "Invoice ID", "text", 32, False, False, False),
        ("InvoiceNumber", "Invoice Number", "text", 255, False, False, False),
        ("AccountId", "Account ID", "text", 32, True, False, True),
        ("Amount", "Amount", "decimal", 0, False, False, False),
        ("Balance", "Balance", "decimal", 0, False, False, False),
        ("DueDate", "Due Date", "date", 0, True, True, False),
        ("Status", "Status", "picklist", 0, False, False, False),
    ]),
    "Payment": ("Payment", [
        ("Id", "Payment ID", "text", 32, False, False, False),
        ("PaymentNumber", "Payment Number", "text", 32, False, False, False),
        ("AccountId", "Account ID", "text", 32, True, False, True),
        ("Amount", "Amount", "decimal", 0, True, False, True),
        ("Status", "Status", "picklist", 0, False, False, False),
        ("GatewayResponseCode", "Gateway Response Code", "text", 50, False, False, False),
    ]),
    "Product": ("Product", [
        ("Id", "Product ID", "text", 32, False, False, False),
        ("Name", "Name", "text", 255, True, True, True),
        ("SKU", "SKU", "text", 50, True, True, False),
    ]),
    "ProductRatePlan": ("Product Rate Plan", [
        ("Id", "Product Rate Plan ID", "text", 32, False, False, False),
        ("Name", "Name", "text", 255, True, True, True),
        ("ProductId", "Product ID", "text", 32, True, False, True),
    ]),
    "Usage": ("Usage", [
        ("Id", "Usage ID", "text", 32, False, False, False),
        ("AccountId", "Account ID", "text", 32, True, False, False),
        ("Quantity", "Quantity", "decimal", 0, True, True, True),
        ("StartDateTime", "Start Date Time", "datetime", 0, True, True, True),
        ("UOM", "Unit of Measure", "text", 100, True, True, True),
    ]),
}  # fmt: skip
_RELATED = {
    "Account": [("BillToContact", "Bill To"), ("SoldToContact", "Sold To")],
    "Subscription": [("Account", "Account")],
    "Invoice": [("Account", "Account")],
    "Payment": [("Account", "Account")],
    "Contact": [("Account", "Account")],
}
#: the values of the picklists above, as a tenant lists them under ``<options>``
_OPTIONS = {
    ("Account", "Currency"): ("USD", "EUR", "GBP"),
    ("Account", "Status"): ("Draft", "Active", "Canceled"),
    ("Subscription", "Status"): (
        "Draft", "Pending Activation", "Pending Acceptance", "Active", "Cancelled", "Suspended",
        "Expired",
    ),
    ("Subscription", "TermType"): ("TERMED", "EVERGREEN"),
    ("Order", "Status"): ("Draft", "Pending", "Completed", "Cancelled", "Scheduled"),
    ("Invoice", "Status"): ("Draft", "Posted", "Canceled", "Error"),
    ("Payment", "Status"): ("Draft", "Processing", "Processed", "Error", "Voided", "Canceled"),
}  # fmt: skip
#: the custom fields a prepared tenant has (what RevBridge's Zuora connector writes)
DEFAULT_CUSTOM_FIELDS: dict[str, dict[str, tuple[str, int]]] = {
    "Account": {"RevBridgeCrm__c": ("text", 255)},
    "Subscription": {"CrmOpportunityId__c": ("text", 255), "RevBridgeCrm__c": ("text", 255)},
    "Order": {"RevBridgeKey__c": ("text", 255)},
}
HOST = "https://rest.zuora.com"


def custom_fields(em: ZuoraEmulator) -> dict[str, dict[str, tuple[str, int]]]:
    """The tenant's custom fields by object (kept on the store: a reset brings the defaults)."""
    found = getattr(em.store, "custom_fields", None)
    if found is None:
        found = {obj: dict(fields) for obj, fields in DEFAULT_CUSTOM_FIELDS.items()}
        em.store.custom_fields = found  # type: ignore[attr-defined]
    return found


def fresh_tenant(em: ZuoraEmulator) -> None:
    """The tenant as Zuora delivers it: no custom field on any object."""
    with em.lock:
        em.store.custom_fields = {}  # type: ignore[attr-defined]


def define_custom_field(
    em: ZuoraEmulator, obj: str, name: str, kind: str = "text", length: int = 255
) -> None:
    """What an admin does under Settings > Custom Fields (``name`` ends in ``__c``)."""
    if obj not in _STANDARD or not name.endswith("__c"):
        raise ValueError(f"no custom field {obj}.{name} in this sandbox")
    with em.lock:
        custom_fields(em).setdefault(obj, {})[name] = (kind, length)


def route(em: ZuoraEmulator) -> Route:
    async def describe(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with em.lock:
            expires = em.store.tokens.get(token)
            valid = expires is not None and expires > em.store.now()
            obj = request.path_params["object"]
            known = _known(obj)
            fields = list(custom_fields(em).get(known or "", {}).items())
        headers = {"Zuora-Request-Id": str(uuid.uuid4())}
        if not valid:
            return JSONResponse(
                {"message": "Authentication error"}, status_code=401, headers=headers
            )
        if known is None:
            return JSONResponse(
                {
                    "success": False,
                    "processId": uuid.uuid4().hex[:16].upper(),
                    "reasons": [{"code": 50000040, "message": f"Invalid object: {obj}"}],
                },
                status_code=404,
                headers=headers,
            )
        return Response(
            render(known, fields), media_type="text/xml; charset=utf-8", headers=headers
        )

    return Route("/v1/describe/{object}", describe, methods=["GET"])


def _known(obj: str) -> str | None:
    for name in _STANDARD:
        if name.lower() == obj.lower():
            return name
    return None


def render(obj: str, custom: list[tuple[str, tuple[str, int]]]) -> str:
    label, standard = _STANDARD[obj]
    rows = [_field(obj, *f, custom=False) for f in standard]
    rows += [
        _field(obj, name, name.removesuffix("__c"), kind, length, True, True, False, custom=True)
        for name, (kind, length) in custom
    ]
    related = "".join(
        f'<object href="{HOST}/v1/describe/{name}"><name>{name}</name>'
        f"<label>{escape(text)}</label></object>"
        for name, text in _RELATED.get(obj, [])
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<object href="{HOST}/v1/describe/{obj}"><name>{obj}</name>'
        f"<label>{escape(label)}</label><fields>{''.join(rows)}</fields>"
        f"<related-objects>{related}</related-objects></object>"
    )


def _field(
    obj: str,
    name: str,
    label: str,
    kind: str,
    length: int,
    createable: bool,
    updateable: bool,
    required: bool,
    custom: bool,
) -> str:
    def flag(value: Any) -> str:
        return "true" if value else "false"

    size = f"<maxlength>{length}</maxlength>" if length else ""
    values = _OPTIONS.get((obj, name), ()) if kind == "picklist" else ()
    options = (
        "<options>" + "".join(f"<option>{escape(v)}</option>" for v in values) + "</options>"
        if values
        else ""
    )
    return (
        f"<field><name>{name}</name><label>{escape(label)}</label>"
        f"<selectable>true</selectable><createable>{flag(createable)}</createable>"
        f"<updateable>{flag(updateable)}</updateable><filterable>true</filterable>"
        f"<custom>{flag(custom)}</custom>{size}<required>{flag(required)}</required>"
        f"<type>{kind}</type>{options}<contexts><context>soap</context><context>export</context>"
        "</contexts></field>"
    )
