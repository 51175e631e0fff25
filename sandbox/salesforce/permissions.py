"""Permission sets in the sandbox org: the sObjects an admin (or ``revbridge setup crm``) grants
access with through the REST API, and — in the strict profile — field-level security enforced
on the integration user as a real org enforces it.

Objects (as the Salesforce object reference has them; key prefixes as a real org's):

- ``PermissionSet`` (``0PS``): ``Name`` (the API name: letters, digits and single underscores,
  starting with a letter, at most 80; a second set with the same name is ``DUPLICATE_DEVELOPER_NAME``),
  ``Label`` (required), ``Description``, ``PermissionsEditTask`` (the "Edit Tasks" system
  permission: tasks have no object permissions), ``IsOwnedByProfile`` (read-only).
- ``ObjectPermissions`` (``110``): ``ParentId`` (the set), ``SobjectType``, ``PermissionsRead``,
  ``…Create``, ``…Edit``, ``…Delete``, ``…ViewAllRecords``, ``…ModifyAllRecords``. One per set and
  object (``DUPLICATE_VALUE``); Create/Edit need Read, Delete needs Edit (``FIELD_INTEGRITY_
  EXCEPTION``, "Permission Create Foo depends on permission(s): Read Foo"); an object without object
  permissions of its own (``Task``: Edit Tasks; ``QuoteLineItem``, ``OpportunityLineItem``: their
  parent's) or unknown is ``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST``.
- ``FieldPermissions`` (``01k``): ``ParentId``, ``SobjectType``, ``Field`` (``"Account.MRR__c"``),
  ``PermissionsRead``, ``PermissionsEdit`` (Edit needs Read). One per set and field; a field that
  does not exist, or cannot have field-level security (required, auto-number, system fields), is
  ``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST`` ("Field Name: bad value for restricted picklist
  field: Account.Name"); a field of a custom object needs Read on the object in the same set.
- ``PermissionSetAssignment`` (``0Pa``): ``AssigneeId`` (a User), ``PermissionSetId``. One per
  user and set (``DUPLICATE_VALUE``).

``ParentId``/``PermissionSetId`` children: ``PermissionSet.ObjectPerms``, ``.FieldPerms``,
``.Assignments`` (SOQL subqueries). ``SobjectType``, ``Field`` and the parent are set on create
only.

What the grants do — for the integration user (the sandbox's API user), from the sets assigned to
it: an object's Create/Edit granted by a set adds to what its profile allows (``configure_org``'s
``access``); Edit Tasks makes tasks creatable; Edit on Quote makes quote lines creatable.

**Strict profile** (:func:`strict` — ``fresh_org(em, strict=True)``, off by default so every other
test keeps today's all-seeing integration user): custom objects and custom fields are visible to
the integration user only through its permission sets, as on a real org where a field created
through the API has no field-level security: without Read an object or field is absent from
describe and SOQL (``INVALID_TYPE`` / ``INVALID_FIELD``) and a write naming it is refused
(``INVALID_FIELD``); Read without Edit leaves it read-only (``INVALID_FIELD_FOR_INSERT_UPDATE``).
The Tooling API (an admin's view) still sees everything. Over HTTP: ``POST
/_sandbox/salesforce/org {"fresh": true, "strict": true}``.

Simpler than a real org: the grants apply to the sandbox's one API user (the integration user);
a permission write rolled back by an all-or-none request leaves the access computed with it
until the next permission write; profiles are not objects here (``configure_org``'s ``access``
stands for the profile).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import bad
from .schema import _RO, Field, Schema, _ref, define_object, text_field

if TYPE_CHECKING:
    from .emulator import SalesforceEmulator
    from .schema import SObject
    from .store import Store

OBJECTS = ("PermissionSet", "ObjectPermissions", "FieldPermissions", "PermissionSetAssignment")
_OBJECT_FLAGS = (
    "PermissionsRead",
    "PermissionsCreate",
    "PermissionsEdit",
    "PermissionsDelete",
    "PermissionsViewAllRecords",
    "PermissionsModifyAllRecords",
)
#: objects whose access is not an object permission: Edit Tasks, or the parent's
NO_OBJECT_PERMISSIONS = {"Task", "Event", "QuoteLineItem", "OpportunityLineItem", "User"}
_FOLLOWS_PARENT = {"QuoteLineItem": "Quote", "OpportunityLineItem": "Opportunity"}
_NAME_RE = re.compile(r"[A-Za-z](?:[A-Za-z0-9]|_(?!_))*")
_SYSTEM = {"Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate"}
_SYSTEM |= {"LastModifiedById", "SystemModstamp", "OwnerId", "Name"}
INTEGRATION = "integration@revbridge.local"  # the sandbox's API user (emulator.py)


def add_permission_objects(s: Schema) -> None:
    flag = {"default": False}
    define_object(s, "PermissionSet", "Permission Set", "Permission Sets", "0PS", [
        text_field("Name", 80, required=True, label="Name"),
        text_field("Label", 80, required=True),
        Field("Description", "textarea", length=255),
        Field("PermissionsEditTask", "boolean", "Edit Tasks", **flag),
        Field("PermissionsApiEnabled", "boolean", "API Enabled", **flag),
        Field("IsOwnedByProfile", "boolean", "Is Owned by Profile", **_RO),
    ], owner=False)  # fmt: skip
    define_object(s, "ObjectPermissions", "Object Permissions", "Object Permissions", "110", [
        _ref("ParentId", "PermissionSet", "Parent", label="Parent ID", required=True,
             updateable=False, child_name="ObjectPerms"),
        text_field("SobjectType", 40, required=True, updateable=False, label="Sobject Type Name"),
        *(Field(f, "boolean", **flag) for f in _OBJECT_FLAGS),
    ], owner=False)  # fmt: skip
    define_object(s, "FieldPermissions", "Field Permissions", "Field Permissions", "01k", [
        _ref("ParentId", "PermissionSet", "Parent", label="Parent ID", required=True,
             updateable=False, child_name="FieldPerms"),
        text_field("SobjectType", 40, required=True, updateable=False, label="Sobject Type Name"),
        text_field("Field", 255, required=True, updateable=False, label="Field Name"),
        Field("PermissionsRead", "boolean", "Read Access", **flag),
        Field("PermissionsEdit", "boolean", "Edit Access", **flag),
    ], owner=False)  # fmt: skip
    define_object(s, "PermissionSetAssignment", "Permission Set Assignment",
                  "Permission Set Assignments", "0Pa", [
        _ref("AssigneeId", "User", "Assignee", label="Assignee ID", required=True,
             updateable=False),
        _ref("PermissionSetId", "PermissionSet", "PermissionSet", label="Permission Set ID",
             required=True, updateable=False, child_name="Assignments"),
    ], owner=False)  # fmt: skip


# --- the save hooks (automation.before_save / after_save) --------------------------------------


def before_save(
    store: Store, sobj: SObject, old: Mapping[str, Any] | None, rec: dict[str, Any]
) -> None:
    """Refuse what a real org refuses for the four permission objects."""
    if sobj.name == "PermissionSet":
        name = rec.get("Name") or ""
        if not _NAME_RE.fullmatch(name) or name.endswith("_"):
            raise bad(
                "FIELD_INTEGRITY_EXCEPTION",
                "The API Name can only contain underscores and alphanumeric characters, must "
                "begin with a letter, not include spaces, not end with an underscore, and not "
                "contain two consecutive underscores.",
                ["Name"],
            )
        if _others(store, sobj.name, rec, lambda r: r["Name"].lower() == name.lower()):
            raise bad(
                "DUPLICATE_DEVELOPER_NAME",
                "The API Name you entered is already in use. Enter a unique API Name.",
                ["Name"],
            )
    elif sobj.name == "ObjectPermissions":
        obj = rec.get("SobjectType") or ""
        target = _visible_or_hidden(store.schema, obj)
        if target is None or target.name in NO_OBJECT_PERMISSIONS or target.name in OBJECTS:
            raise _restricted("Sobject Type Name", obj)
        rec["SobjectType"] = target.name
        _depends(rec, "PermissionsCreate", "PermissionsRead", target.name)
        _depends(rec, "PermissionsEdit", "PermissionsRead", target.name)
        _depends(rec, "PermissionsDelete", "PermissionsEdit", target.name)
        _depends(rec, "PermissionsModifyAllRecords", "PermissionsDelete", target.name)
        _depends(rec, "PermissionsViewAllRecords", "PermissionsRead", target.name)
        _unique(store, sobj.name, rec, ("ParentId", "SobjectType"))
    elif sobj.name == "FieldPermissions":
        path = rec.get("Field") or ""
        obj_name, _, field_name = path.partition(".")
        target = _visible_or_hidden(store.schema, obj_name)
        f = _field_or_hidden(store.schema, target, field_name) if target else None
        if target is None or f is None or not _permissionable(f):
            raise _restricted("Field Name", path)
        if (rec.get("SobjectType") or "").lower() != target.name.lower():
            raise _restricted("Sobject Type Name", rec.get("SobjectType") or "")
        rec["SobjectType"], rec["Field"] = target.name, f"{target.name}.{f.name}"
        _depends(rec, "PermissionsEdit", "PermissionsRead", rec["Field"])
        if target.custom and not _object_read(store, rec["ParentId"], target.name):
            raise bad(
                "FIELD_INTEGRITY_EXCEPTION",
                f"Permission Read {rec['Field']} depends on permission(s): Read {target.name}",
            )
        _unique(store, sobj.name, rec, ("ParentId", "Field"))
    elif sobj.name == "PermissionSetAssignment":
        _unique(store, sobj.name, rec, ("AssigneeId", "PermissionSetId"))


def after_save(store: Store, sobj: SObject) -> None:
    """A grant changed: recompute what the integration user may see and do."""
    apply(store)


# --- the integration user's access -------------------------------------------------------------


def strict(em: SalesforceEmulator) -> None:
    """Turn on the strict profile until the next reset (the schema is replaced then)."""
    with em.lock:
        _state(em.schema)["strict"] = True
        apply(em.store)


def is_strict(em: SalesforceEmulator) -> bool:
    return bool(_state(em.schema).get("strict"))


@contextmanager
def unveiled(em: SalesforceEmulator) -> Iterator[None]:
    """Everything visible (the Tooling API's admin view) for the duration; grants re-applied
    afterwards, so a field or object created meanwhile starts with no access in strict mode."""
    with em.lock:
        _restore(em.schema)
        try:
            yield
        finally:
            apply(em.store)


def apply(store: Store) -> None:
    """Set each object's and (strict) each custom field's access from the grants: an object's
    own flags (its profile, ``configure_org``) are its base; a set's grants add to them."""
    schema = store.schema
    _restore(schema)
    grants = _grants(store)
    state = _state(schema)
    for sobj in list(schema.objects.values()):
        now = (sobj.createable, sobj.updateable)
        if state["set"].get(sobj.name) != now:  # changed by someone else since: the new base
            state["base"][sobj.name] = now
        base = state["base"][sobj.name]
        granted = grants["objects"].get(sobj.name, {})
        parent = grants["objects"].get(_FOLLOWS_PARENT.get(sobj.name, ""), {})
        create = bool(granted.get("PermissionsCreate") or parent.get("PermissionsEdit"))
        edit = bool(granted.get("PermissionsEdit") or parent.get("PermissionsEdit"))
        if sobj.name == "Task" and grants["edit_task"]:
            create = edit = True
        if state["strict"] and sobj.custom:
            sobj.createable, sobj.updateable = create, edit
            state["set"][sobj.name] = (create, edit)
            if not granted.get("PermissionsRead"):
                _hide_object(schema, sobj)
            continue
        sobj.createable, sobj.updateable = base[0] or create, base[1] or edit
        state["set"][sobj.name] = (sobj.createable, sobj.updateable)
        if not state["strict"] or sobj.name in OBJECTS:
            continue
        for f in list(sobj.fields.values()):
            if f.custom and _permissionable(f):
                _limit_field(state, grants, sobj, f)
    for sobj in [o for o in schema.objects.values() if o.custom and state["strict"]]:
        for f in list(sobj.fields.values()):
            if f.custom and _permissionable(f):
                _limit_field(state, grants, sobj, f)


def _limit_field(state: dict[str, Any], grants: dict[str, Any], sobj: SObject, f: Field) -> None:
    read, write = grants["fields"].get(f"{sobj.name}.{f.name}".lower(), (False, False))
    if not read:
        state["fields"].append((sobj, f))
        del sobj.fields[f.name.lower()]
    elif not write:
        state["readonly"].append((f, f.createable, f.updateable))
        f.createable = f.updateable = False


def _grants(store: Store) -> dict[str, Any]:
    tables = store.tables
    user = next(
        (r["Id"] for r in tables.get("User", {}).values() if r.get("Username") == INTEGRATION),
        None,
    )
    sets = {
        r["PermissionSetId"]
        for r in tables.get("PermissionSetAssignment", {}).values()
        if not r["IsDeleted"] and r["AssigneeId"] == user
    }
    objects: dict[str, dict[str, bool]] = {}
    for r in tables.get("ObjectPermissions", {}).values():
        if not r["IsDeleted"] and r["ParentId"] in sets:
            have = objects.setdefault(r["SobjectType"], {})
            for flag in _OBJECT_FLAGS:
                have[flag] = have.get(flag, False) or bool(r[flag])
    fields: dict[str, tuple[bool, bool]] = {}
    for r in tables.get("FieldPermissions", {}).values():
        if not r["IsDeleted"] and r["ParentId"] in sets:
            read, write = fields.get(r["Field"].lower(), (False, False))
            fields[r["Field"].lower()] = (
                read or bool(r["PermissionsRead"]),
                write or bool(r["PermissionsEdit"]),
            )
    edit_task = any(
        r["PermissionsEditTask"] and not r["IsDeleted"]
        for rid, r in tables.get("PermissionSet", {}).items()
        if rid in sets
    )
    return {"objects": objects, "fields": fields, "edit_task": edit_task}


def _state(schema: Schema) -> dict[str, Any]:
    state = getattr(schema, "_fls", None)
    if state is None:
        state = {
            "strict": False,
            "base": {},  # object → (createable, updateable) its profile gives
            "set": {},  # object → the flags ``apply`` last set
            "objects": [],  # hidden: (object, child relationships taken off its parents)
            "fields": [],  # hidden: (object, field)
            "readonly": [],  # (field, createable, updateable) before it was made read-only
        }
        schema._fls = state  # type: ignore[attr-defined]
    return state


def _hide_object(schema: Schema, sobj: SObject) -> None:
    state = _state(schema)
    del schema.objects[sobj.name.lower()]
    removed = []
    for other in schema.objects.values():
        for key, child in list(other.children.items()):
            if child.child == sobj.name:
                removed.append((other, key, child))
                del other.children[key]
    state["objects"].append((sobj, removed))


def _restore(schema: Schema) -> None:
    state = _state(schema)
    for sobj, removed in state["objects"]:
        schema.objects[sobj.name.lower()] = sobj
        for other, key, child in removed:
            other.children[key] = child
    for sobj, f in state["fields"]:
        sobj.fields.setdefault(f.name.lower(), f)
    for f, create, update in state["readonly"]:
        f.createable, f.updateable = create, update
    state["objects"], state["fields"], state["readonly"] = [], [], []


# --- helpers -----------------------------------------------------------------------------------


def _visible_or_hidden(schema: Schema, name: str) -> SObject | None:
    found = schema.get(name)
    if found is not None:
        return found
    for sobj, _ in _state(schema)["objects"]:
        if sobj.name.lower() == name.lower():
            return sobj
    return None


def _field_or_hidden(schema: Schema, sobj: SObject, name: str) -> Field | None:
    found = sobj.field(name)
    if found is not None:
        return found
    for owner, f in _state(schema)["fields"]:
        if owner is sobj and f.name.lower() == name.lower():
            return f
    return None


def _permissionable(f: Field) -> bool:
    return not (f.name in _SYSTEM or f.required or f.auto_number or f.calculated or f.type == "id")


def _restricted(label: str, value: str) -> Exception:
    return bad(
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        f"{label}: bad value for restricted picklist field: {value}",
        ["Field" if label == "Field Name" else "SobjectType"],
    )


def _depends(rec: Mapping[str, Any], flag: str, needs: str, what: str) -> None:
    if rec.get(flag) and not rec.get(needs):
        verb = flag.removeprefix("Permissions")
        need = needs.removeprefix("Permissions")
        raise bad(
            "FIELD_INTEGRITY_EXCEPTION",
            f"Permission {verb} {what} depends on permission(s): {need} {what}",
        )


def _others(store: Store, obj: str, rec: Mapping[str, Any], match: Any) -> list[str]:
    return [
        rid
        for rid, r in store.tables.get(obj, {}).items()
        if rid != rec.get("Id") and not r["IsDeleted"] and match(r)
    ]


def _unique(store: Store, obj: str, rec: Mapping[str, Any], keys: tuple[str, ...]) -> None:
    def same(r: Mapping[str, Any]) -> bool:
        return all(str(r.get(k) or "").lower() == str(rec.get(k) or "").lower() for k in keys)

    found = _others(store, obj, rec, same)
    if found:
        raise bad(
            "DUPLICATE_VALUE",
            f"duplicate value found: <unknown> duplicates value on record with id: {found[0]}",
        )


def _object_read(store: Store, parent: str, obj: str) -> bool:
    return any(
        r["ParentId"] == parent and r["SobjectType"] == obj and r["PermissionsRead"]
        for r in store.tables.get("ObjectPermissions", {}).values()
        if not r["IsDeleted"]
    )
