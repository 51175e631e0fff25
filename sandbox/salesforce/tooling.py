"""The Tooling API's metadata writes RevBridge's ``setup crm`` makes: custom fields and custom
objects, as ``POST /services/data/vXX.X/tooling/sobjects/CustomField`` (or ``CustomObject``) with
``{"FullName": "Account.Billing_Platform__c", "Metadata": {...}}``.

Answers as the Tooling API does: 201 ``{"id", "success": true, "errors": [], "warnings": [],
"infos": []}`` (IDs with the ``00N`` / ``01I`` key prefixes), 400 ``DUPLICATE_DEVELOPER_NAME``
when the field or object exists already, 400 ``FIELD_INTEGRITY_EXCEPTION`` for metadata the org
would refuse (an unknown type, a text field without a length, a lookup to an unknown object).
The field shows in ``sobjects/{Obj}/describe`` and SOQL at once; ``GET tooling/sobjects/
CustomField/{id}`` and ``CustomObject/{id}`` read one back.

What is simpler than a real org: a real org grants no field-level security or object
permission on a field or object created through the API (an admin grants them in the
integration user's permission set); here the integration user can see and write what it
created. Anything else under ``tooling/`` is 404 ``NOT_FOUND``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from .errors import SfError, bad, not_found
from .schema import Field, define_object, make_id

if TYPE_CHECKING:
    from .app import Ctx
    from .emulator import SalesforceEmulator

FIELD_PREFIX = "00N"
OBJECT_PREFIX = "01I"
#: Metadata ``type`` → the describe type the field then has
_TYPES = {
    "Text": "string",
    "TextArea": "textarea",
    "LongTextArea": "textarea",
    "Picklist": "picklist",
    "MultiselectPicklist": "multipicklist",
    "Number": "double",
    "Currency": "currency",
    "Percent": "percent",
    "Date": "date",
    "DateTime": "datetime",
    "Checkbox": "boolean",
    "Email": "email",
    "Phone": "phone",
    "Url": "url",
    "Lookup": "reference",
}
#: (min, max) length of the types that take one
_LENGTHS = {"Text": (1, 255), "LongTextArea": (256, 131072)}
_FIXED_LENGTH = {"TextArea": 255, "Email": 80, "Phone": 40, "Url": 255}


def route(em: SalesforceEmulator, ctx: Ctx, rest: list[str]) -> Response:
    """``tooling/...`` under ``/services/data/vXX.X/``."""
    if len(rest) < 2 or rest[0] != "sobjects" or rest[1] not in ("CustomField", "CustomObject"):
        raise not_found()
    kind = rest[1]
    if len(rest) == 2:
        if ctx.method != "POST":
            raise SfError(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{ctx.method}' not allowed")
        body = ctx.json_object()
        full_name = body.get("FullName")
        metadata = body.get("Metadata")
        if not isinstance(full_name, str) or not isinstance(metadata, dict):
            raise bad("REQUIRED_FIELD_MISSING", "Required fields are missing: [FullName, Metadata]")
        tooling = _state(em)
        if kind == "CustomField":
            rid = _create_field(em, tooling, full_name, metadata)
        else:
            rid = _create_object(em, tooling, full_name, metadata)
        return JSONResponse(
            {"id": rid, "success": True, "errors": [], "warnings": [], "infos": []},
            status_code=201,
        )
    if len(rest) == 3 and ctx.method == "GET":
        found = _state(em)["records"].get(rest[2])
        if found is None or found["attributes"]["type"] != kind:
            raise not_found()
        return JSONResponse(found)
    raise not_found()


def fresh_org(em: SalesforceEmulator) -> None:
    """The org as Salesforce delivers it: no custom field on a standard object, no custom
    object (what ``revbridge setup crm`` starts from)."""
    with em.lock:
        fields = [
            f"{obj.name}.{f.name}"
            for obj in em.schema.objects.values()
            if not obj.custom
            for f in obj.fields.values()
            if f.custom
        ]
        objects = [obj.name for obj in em.schema.objects.values() if obj.custom]
    em.configure_org(drop_fields=fields, drop_objects=objects)


# --- internals ---------------------------------------------------------------------------------


def _state(em: SalesforceEmulator) -> dict[str, Any]:
    """The Tooling records made since the last reset (kept on the schema, which a reset replaces)."""
    schema = em.schema
    state = getattr(schema, "_tooling", None)
    if state is None:
        state = {"records": {}, "seq": itertools.count(1)}
        schema._tooling = state  # type: ignore[attr-defined]
    return state


def _record(tooling: dict[str, Any], kind: str, prefix: str, full_name: str, meta: Any) -> str:
    rid = make_id(prefix, next(tooling["seq"]))
    developer = full_name.rpartition(".")[2].removesuffix("__c")
    tooling["records"][rid] = {
        "attributes": {"type": kind, "url": f"/services/data/v62.0/tooling/sobjects/{kind}/{rid}"},
        "Id": rid,
        "FullName": full_name,
        "DeveloperName": developer,
        "Metadata": meta,
    }
    return rid


def _create_field(
    em: SalesforceEmulator, tooling: dict[str, Any], full_name: str, meta: Mapping[str, Any]
) -> str:
    obj_name, dot, field_name = full_name.partition(".")
    if not dot or not field_name.endswith("__c") or len(field_name) > 43:
        raise bad(
            "FIELD_INTEGRITY_EXCEPTION",
            f"FullName {full_name!r}: a custom field is <Object>.<Name>__c (at most 40 characters)",
            ["FullName"],
        )
    sobj = em.schema.get(obj_name)
    if sobj is None:
        raise bad("FIELD_INTEGRITY_EXCEPTION", f"Cannot find entity: {obj_name}", ["FullName"])
    if sobj.field(field_name) is not None:
        raise bad(
            "DUPLICATE_DEVELOPER_NAME",
            f"There is already a field named {field_name.removesuffix('__c')} on {sobj.label}.",
            ["FullName"],
        )
    spec = _field_spec(em, sobj.name, field_name, meta)
    em.add_field(sobj.name, spec)
    return _record(tooling, "CustomField", FIELD_PREFIX, f"{sobj.name}.{field_name}", dict(meta))


def _field_spec(
    em: SalesforceEmulator, obj_name: str, field_name: str, meta: Mapping[str, Any]
) -> dict[str, Any]:
    kind = meta.get("type")
    if kind not in _TYPES:
        raise bad("FIELD_INTEGRITY_EXCEPTION", f"Invalid field type: {kind}", ["type"])
    spec: dict[str, Any] = {
        "name": field_name,
        "type": _TYPES[kind],
        "label": str(meta.get("label") or field_name.removesuffix("__c").replace("_", " ")),
        "externalId": bool(meta.get("externalId", False)),
        "unique": bool(meta.get("unique", False)),
        "required": bool(meta.get("required", False)),
    }
    if kind in _LENGTHS:
        low, high = _LENGTHS[kind]
        length = meta.get("length")
        if not isinstance(length, int) or not low <= length <= high:
            raise bad(
                "FIELD_INTEGRITY_EXCEPTION",
                f"Length: a {kind} field needs a length from {low} to {high}",
                ["length"],
            )
        if kind == "LongTextArea" and not meta.get("visibleLines"):
            raise bad("FIELD_INTEGRITY_EXCEPTION", "Visible Lines is required", ["visibleLines"])
        spec["length"] = length
    elif kind in _FIXED_LENGTH:
        spec["length"] = _FIXED_LENGTH[kind]
    if spec["externalId"] and kind not in ("Text", "Number", "Email"):
        raise bad(
            "FIELD_INTEGRITY_EXCEPTION",
            f"External ID: a {kind} field cannot be an External ID",
            ["externalId"],
        )
    if kind in ("Picklist", "MultiselectPicklist"):
        value_set = meta.get("valueSet") or {}
        definition = value_set.get("valueSetDefinition") or {}
        values = [v.get("fullName") for v in definition.get("value") or [] if isinstance(v, dict)]
        if not values or not all(isinstance(v, str) and v for v in values):
            raise bad("FIELD_INTEGRITY_EXCEPTION", "Values: a picklist needs values", ["valueSet"])
        spec["picklistValues"] = values
        spec["restrictedPicklist"] = bool(value_set.get("restricted", False))
    if kind == "Lookup":
        target = em.schema.get(str(meta.get("referenceTo") or ""))
        if target is None:
            raise bad(
                "FIELD_INTEGRITY_EXCEPTION",
                f"Related To: cannot find entity {meta.get('referenceTo')}",
                ["referenceTo"],
            )
        child = meta.get("relationshipName")
        if not isinstance(child, str) or not child:
            raise bad(
                "FIELD_INTEGRITY_EXCEPTION",
                "Child Relationship Name is required",
                ["relationshipName"],
            )
        spec["referenceTo"] = target.name
        spec["relationshipName"] = field_name.removesuffix("__c") + "__r"
        spec["childRelationshipName"] = child + "__r"
    return spec


def _create_object(
    em: SalesforceEmulator, tooling: dict[str, Any], full_name: str, meta: Mapping[str, Any]
) -> str:
    if not full_name.endswith("__c") or "." in full_name or len(full_name) > 43:
        raise bad(
            "FIELD_INTEGRITY_EXCEPTION",
            f"FullName {full_name!r}: a custom object is <Name>__c (at most 40 characters)",
            ["FullName"],
        )
    if em.schema.get(full_name) is not None:
        raise bad(
            "DUPLICATE_DEVELOPER_NAME",
            f"There is already an object named {full_name.removesuffix('__c')}.",
            ["FullName"],
        )
    label, plural = meta.get("label"), meta.get("pluralLabel")
    name_field = meta.get("nameField") or {}
    if not (isinstance(label, str) and label and isinstance(plural, str) and plural):
        raise bad("FIELD_INTEGRITY_EXCEPTION", "Label and Plural Label are required", ["label"])
    if meta.get("deploymentStatus", "Deployed") not in ("Deployed", "InDevelopment"):
        raise bad("FIELD_INTEGRITY_EXCEPTION", "Invalid deploymentStatus", ["deploymentStatus"])
    if name_field.get("type") == "AutoNumber":
        fmt = name_field.get("displayFormat")
        if not isinstance(fmt, str) or "{0" not in fmt:
            raise bad(
                "FIELD_INTEGRITY_EXCEPTION",
                "Display Format: an auto number needs {0…}",
                ["nameField"],
            )
        name = Field(
            "Name",
            "string",
            str(name_field.get("label") or f"{label} Name"),
            length=80,
            auto_number=fmt,
            createable=False,
            updateable=False,
        )
    elif name_field.get("type") in (None, "Text"):
        name = Field("Name", "string", str(name_field.get("label") or f"{label} Name"), length=80)
    else:
        raise bad("FIELD_INTEGRITY_EXCEPTION", "Record Name: Text or AutoNumber", ["nameField"])
    with em.lock:
        prefix = em.schema.next_custom_prefix()
        define_object(em.schema, full_name, label, plural, prefix, [name])
    return _record(tooling, "CustomObject", OBJECT_PREFIX, full_name, dict(meta))
