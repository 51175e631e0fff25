"""The Tooling API's metadata writes RevBridge's ``setup crm`` makes: custom fields and custom
objects, as ``POST /services/data/vXX.X/tooling/sobjects/CustomField`` (or ``CustomObject``) with
``{"FullName": "Account.Billing_Platform__c", "Metadata": {...}}``.

Answers as the Tooling API does: 201 ``{"id", "success": true, "errors": [], "warnings": [],
"infos": []}`` (IDs with the ``00N`` / ``01I`` key prefixes), 400 ``DUPLICATE_DEVELOPER_NAME``
when the field or object exists already, 400 ``FIELD_INTEGRITY_EXCEPTION`` for metadata the org
would refuse (an unknown type, a text field without a length, a lookup to an unknown object).
The field shows in ``sobjects/{Obj}/describe`` and SOQL at once; ``GET tooling/sobjects/
CustomField/{id}`` and ``CustomObject/{id}`` read one back; ``PATCH tooling/sobjects/
CustomField/{id}`` with the whole ``Metadata`` changes a field (204): a longer length, the
External ID / unique flags, picklist values; ``GET tooling/query?q=SELECT Id, FullName, Metadata
FROM CustomField WHERE TableEnumOrId = 'Account' AND DeveloperName = 'MRR'`` finds a custom field
of a standard object (also one the org had before, which gets its Tooling ID then).

Field-level security: a real org grants no field-level security or object permission on a
field or object created through the API (an admin, or ``revbridge setup crm``, grants them in a
permission set assigned to the integration user: permissions.py). So does the strict profile
(``fresh_org(em, strict=True)``); in the default profile the integration user sees and writes
what it created. The Tooling API itself sees every field and object (an admin's view). A type change through PATCH, a shorter length, and any other Tooling query are refused
(400) rather than emulated. Anything else under ``tooling/`` is 404 ``NOT_FOUND``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from . import permissions
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
    """``tooling/...`` under ``/services/data/vXX.X/``: the admin's view of every field and
    object, whatever the integration user's field-level security (re-applied afterwards)."""
    with permissions.unveiled(em):
        return _route(em, ctx, rest)


def _route(em: SalesforceEmulator, ctx: Ctx, rest: list[str]) -> Response:
    if rest == ["query"] and ctx.method == "GET":
        return JSONResponse(_query(em, ctx.params.get("q", "")))
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
    if len(rest) == 3 and ctx.method in ("GET", "PATCH"):
        found = _state(em)["records"].get(rest[2])
        if found is None or found["attributes"]["type"] != kind:
            raise not_found()
        if ctx.method == "GET":
            return JSONResponse(found)
        if kind != "CustomField":
            raise SfError(405, "METHOD_NOT_ALLOWED", "the sandbox updates CustomField only")
        _update_field(em, found, ctx.json_object().get("Metadata"))
        return Response(status_code=204)
    raise not_found()


def fresh_org(em: SalesforceEmulator, strict: bool = False) -> None:
    """The org as Salesforce delivers it: no custom field on a standard object, no custom
    object (what ``revbridge setup crm`` starts from). ``strict``: field-level security as a
    real org enforces it too (permissions.py): what setup creates stays invisible to the
    integration user until a permission set grants it."""
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
    if strict:
        permissions.strict(em)


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


_FIELD_QUERY = re.compile(
    r"SELECT\s+Id\s*,\s*FullName\s*,\s*Metadata\s+FROM\s+CustomField\s+WHERE\s+"
    r"TableEnumOrId\s*=\s*'(?P<table>[A-Za-z0-9_]+)'\s+AND\s+"
    r"DeveloperName\s*=\s*'(?P<name>[A-Za-z0-9_]+)'\s*",
    re.IGNORECASE,
)
_REVERSE = {
    "string": "Text",
    "picklist": "Picklist",
    "multipicklist": "MultiselectPicklist",
    "double": "Number",
    "currency": "Currency",
    "percent": "Percent",
    "date": "Date",
    "datetime": "DateTime",
    "boolean": "Checkbox",
    "email": "Email",
    "phone": "Phone",
    "url": "Url",
    "reference": "Lookup",
}


def _query(em: SalesforceEmulator, soql: str) -> dict[str, Any]:
    m = _FIELD_QUERY.fullmatch(soql.strip())
    if m is None:
        raise bad(
            "MALFORMED_QUERY",
            "the sandbox's Tooling query answers only SELECT Id, FullName, Metadata FROM "
            "CustomField WHERE TableEnumOrId = '<Object>' AND DeveloperName = '<Name>'",
        )
    sobj = em.schema.get(m["table"])
    f = sobj.field(m["name"] + "__c") if sobj is not None and not sobj.custom else None
    rows = [] if f is None or sobj is None else [_field_record(em, sobj.name, f)]
    return {
        "size": len(rows),
        "totalSize": len(rows),
        "done": True,
        "queryLocator": None,
        "entityTypeName": "CustomField",
        "records": rows,
    }


def _field_record(em: SalesforceEmulator, obj_name: str, f: Field) -> dict[str, Any]:
    """The Tooling record of a custom field, made on first sight for one the org had already."""
    tooling = _state(em)
    full_name = f"{obj_name}.{f.name}"
    for record in tooling["records"].values():
        if record["FullName"] == full_name:
            return record
    meta: dict[str, Any] = {"label": f.label, "type": _REVERSE.get(f.type, "Text")}
    if f.type == "textarea":
        meta.update(
            {"type": "LongTextArea", "length": f.length, "visibleLines": 3}
            if f.length > 255
            else {"type": "TextArea"}
        )
    elif f.type == "string":
        meta["length"] = f.length
    if f.external_id or f.unique:
        meta.update(externalId=f.external_id, unique=f.unique)
    if f.picklist:
        meta["valueSet"] = {
            "restricted": f.restricted,
            "valueSetDefinition": {
                "sorted": False,
                "value": [{"fullName": v, "label": v, "default": False} for v in f.picklist],
            },
        }
    rid = _record(tooling, "CustomField", FIELD_PREFIX, full_name, meta)
    return tooling["records"][rid]


def _update_field(em: SalesforceEmulator, record: dict[str, Any], meta: Any) -> None:
    if not isinstance(meta, dict):
        raise bad("REQUIRED_FIELD_MISSING", "Required fields are missing: [Metadata]")
    obj_name, _, field_name = record["FullName"].partition(".")
    sobj = em.schema.get(obj_name)
    f = sobj.field(field_name) if sobj is not None else None
    if sobj is None or f is None:
        raise not_found()
    old = record["Metadata"]
    if meta.get("type") != old.get("type"):
        raise bad(
            "FIELD_INTEGRITY_EXCEPTION",
            f"the sandbox does not change a field's type ({old.get('type')} to {meta.get('type')})",
            ["type"],
        )
    spec = _field_spec(em, obj_name, field_name, meta)
    length = int(spec.get("length") or f.length)
    if length < f.length:
        raise bad(
            "FIELD_INTEGRITY_EXCEPTION",
            f"Length: {field_name} holds {f.length} characters; the sandbox does not shorten it",
            ["length"],
        )
    f.length = length
    f.label = spec["label"]
    f.external_id, f.unique = spec["externalId"], spec["unique"]
    if "picklistValues" in spec:
        f.picklist = tuple(spec["picklistValues"])
        f.restricted = spec["restrictedPicklist"]
    record["Metadata"] = dict(meta)
