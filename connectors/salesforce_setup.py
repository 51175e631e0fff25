"""``revbridge setup crm`` on Salesforce: the plan (what the org lacks of
:data:`~connectors.salesforce_fields.NEEDS`, read in one ``/composite`` of describes) and its
application (Tooling API creates and safe field fixes, then the RevBridge Integration permission
set: object and field-level security, assigned to the integration user).

Everything goes through :class:`~connectors.salesforce.SalesforceCrm`'s session and error mapping;
the field checks are ``preflight``'s own (connectors/salesforce_fields.py), so setup and
``revbridge doctor`` judge an org alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simple_salesforce import format_soql

from connectors.base import ConnectorError, ErrorKind
from connectors.salesforce import SalesforceCrm
from connectors.salesforce_fields import (
    ACCESS_FIX,
    CREATES,
    FEATURES,
    NEEDS,
    VENDOR,
    Need,
    error_code,
    field_problem,
    object_checks,
)
from connectors.setup_steps import SetupStep
from domain.models import CustomerTier

# --- setup (revbridge setup crm) ------------------------------------------------------------------
#
# Custom fields and the custom object go through the Tooling API (``POST tooling/sobjects/
# CustomField`` / ``CustomObject`` with ``FullName`` + ``Metadata``): one synchronous REST call
# each, answering an ID or ``DUPLICATE_DEVELOPER_NAME``, over the same OAuth session and client as
# every other call. The Metadata API would also do it, but it is SOAP and asynchronous (deploy,
# then poll a status), which buys nothing for ~30 independent creates. Both are driven by
# :data:`NEEDS`, the table ``preflight`` checks, so setup and doctor cannot disagree.

#: the custom objects RevBridge deploys (label, plural, record name), fields from NEEDS
SETUP_OBJECTS: dict[str, dict[str, Any]] = {
    "AI_Agent_Log__c": {
        "label": "AI Agent Log",
        "pluralLabel": "AI Agent Logs",
        "nameField": {"type": "AutoNumber", "label": "Log Number", "displayFormat": "LOG-{0000}"},
        "deploymentStatus": "Deployed",
        "sharingModel": "ReadWrite",
    },
    "Expansion_Signal__c": {
        "label": "Expansion Signal",
        "pluralLabel": "Expansion Signals",
        "nameField": {
            "type": "AutoNumber",
            "label": "Signal Number",
            "displayFormat": "EXP-{0000}",
        },
        "deploymentStatus": "Deployed",
        "sharingModel": "ReadWrite",
    },
    "Billing_Exception__c": {
        "label": "Billing Exception",
        "pluralLabel": "Billing Exceptions",
        "nameField": {
            "type": "AutoNumber",
            "label": "Exception Number",
            "displayFormat": "EXC-{00000}",
        },
        "deploymentStatus": "Deployed",
        "sharingModel": "ReadWrite",
    },
}
#: values of the custom picklists RevBridge reads but does not write (NEEDS has none for them)
_SETUP_VALUES: dict[str, tuple[str, ...]] = {
    "Account.Customer_Tier__c": tuple(t.value for t in CustomerTier),
    "Opportunity.Payment_Terms__c": ("Net 15", "Net 30", "Net 45", "Net 60"),
}


def field_metadata(obj: str, name: str, need: Need) -> dict[str, Any]:
    """The Tooling API ``Metadata`` of one custom field in :data:`NEEDS`."""
    meta: dict[str, Any] = {"label": name.removesuffix("__c").replace("_", " ")}
    if need.type == "string":
        meta.update(type="Text", length=need.length, caseSensitive=False)
        if need.external_id:
            meta.update(externalId=True, unique=True)
    elif need.type == "textarea":
        if need.length > 255:
            meta.update(type="LongTextArea", length=need.length, visibleLines=5)
        else:
            meta.update(type="TextArea")
    elif need.type == "picklist":
        values = need.values or _SETUP_VALUES[f"{obj}.{name}"]
        meta.update(
            type="Picklist",
            valueSet={
                "restricted": True,
                "valueSetDefinition": {
                    "sorted": False,
                    "value": [{"fullName": v, "label": v, "default": False} for v in values],
                },
            },
        )
    elif need.type in ("double", "currency"):
        meta.update(type="Number" if need.type == "double" else "Currency", precision=18, scale=2)
    elif need.type == "percent":
        meta.update(type="Percent", precision=5, scale=2)
    elif need.type == "email":
        meta.update(type="Email")
    elif need.type in ("date", "datetime"):
        meta.update(type="Date" if need.type == "date" else "DateTime")
    elif need.type == "reference":
        target = name.removesuffix("__c")
        plural = SETUP_OBJECTS.get(obj, {}).get("pluralLabel", obj.removesuffix("__c"))
        meta.update(
            type="Lookup",
            referenceTo=target,
            relationshipName=obj.removesuffix("__c") + "s",
            relationshipLabel=plural,
            deleteConstraint="SetNull",
        )
    else:  # pragma: no cover - NEEDS holds only the types above
        raise ValueError(f"no metadata for {need.type}")
    return meta


def _kind(meta: dict[str, Any]) -> str:
    kind = str(meta["type"])
    if "length" in meta:
        kind += f"({meta['length']})"
    elif "precision" in meta:
        kind += f"({meta['precision']}, {meta['scale']})"
    if meta.get("type") == "Lookup":
        kind += f" to {meta['referenceTo']}"
    if meta.get("externalId"):
        kind += ", External ID, unique"
    if meta.get("valueSet"):
        values = [v["fullName"] for v in meta["valueSet"]["valueSetDefinition"]["value"]]
        kind += f" [{', '.join(values)}]"
    return kind


def setup_plan(crm: SalesforceCrm) -> list[SetupStep]:
    """What the org lacks, read in one ``/composite`` of describes (as ``preflight``): every
    custom object and custom field of :data:`NEEDS` that is absent (to create), and what setup
    cannot do for the integration user (object permissions, a standard object it cannot see, a
    field of the wrong type or length an admin must change) with its fix. Nothing that exists
    and will do is listed."""
    objects = list(NEEDS)
    base = f"/services/data/v{crm._settings.api_version}/sobjects"
    answer = crm._call(
        lambda sf: sf.restful(
            "composite",
            method="POST",
            json={
                "allOrNone": False,
                "compositeRequest": [
                    {"method": "GET", "url": f"{base}/{obj}/describe", "referenceId": f"d{i}"}
                    for i, obj in enumerate(objects)
                ],
            },
        ),
        what="describe",
    )
    results = (answer.get("compositeResponse") if isinstance(answer, dict) else None) or []
    steps: list[SetupStep] = []
    for obj, result in zip(objects, results, strict=False):
        steps += _object_steps(obj, result)
    access = _access_steps(crm)
    granted = {s.request[1].obj for s in access if s.request and s.request[0] == "grant"}
    granted |= {
        path for s in access if s.request and s.request[0] == "grant" for path in s.request[1].paths
    }
    # what a person would grant by hand, the permission set now grants
    steps = [s for s in steps if s.automatic or not _granted_by_set(s, granted)]
    return steps + access


def _granted_by_set(step: SetupStep, granted: set[str]) -> bool:
    if step.action == "grant":
        return step.target in granted and "permission set" in step.detail
    return step.target in granted and "field-level security" in step.detail


def _object_steps(obj: str, result: dict[str, Any]) -> list[SetupStep]:
    status = int(result.get("httpStatusCode") or 500)
    describe = result.get("body")
    missing = status == 404 or (
        status >= 400 and error_code(describe) in ("NOT_FOUND", "INVALID_TYPE")
    )
    if missing and obj not in SETUP_OBJECTS:
        enable = f"{FEATURES[obj]}, then " if obj in FEATURES else ""
        return [_manual("grant", obj, f"{enable}grant the integration user Read on {obj}")]
    if missing:
        meta = SETUP_OBJECTS[obj]
        steps = [
            SetupStep(
                VENDOR,
                "create object",
                obj,
                f"{meta['label']} ({meta['nameField']['type']} name)",
                ("CustomObject", {"FullName": obj, "Metadata": meta}),
            )
        ]
        return steps + [
            _create_field(obj, name, need)
            for name, need in NEEDS[obj].items()
            if name.endswith("__c")
        ]
    if status >= 300 or not isinstance(describe, dict):
        detail = f"describe answered {status} {error_code(describe) or ''}".strip()
        return [_manual("grant", obj, f"{detail}: {ACCESS_FIX}")]
    steps: list[SetupStep] = []
    fields = {f.get("name", "").lower(): f for f in describe.get("fields") or []}
    for name, need in NEEDS[obj].items():
        found = fields.get(name.lower())
        if found is None and name.endswith("__c"):
            steps.append(_create_field(obj, name, need))
            continue
        problem = field_problem(need, found)
        if problem:
            fixes = _safe_fixes(obj, name, need, found)
            if fixes:
                steps.append(
                    SetupStep(
                        VENDOR, "fix field", f"{obj}.{name}", "; ".join(fixes), ("fix", obj, name)
                    )
                )
                continue
            detail, fix = problem
            steps.append(
                _manual("fix", f"{obj}.{name}", f"{detail}: {fix.format(f'{obj}.{name}')}")
            )
    steps += [
        _manual("grant", obj, c.fix)
        for c in object_checks(obj, result)
        if c.name.endswith(":permissions")
    ]
    return steps


def _safe_fixes(obj: str, name: str, need: Need, found: dict[str, Any] | None) -> list[str]:
    """What setup changes on a custom field of a standard object that exists with the right
    type but will not do — none of it can lose data: a longer length, the External ID (and
    unique) flag, the picklist values RevBridge writes added. Empty when the problem is anything
    else (a type, field-level security, a custom object's field): a person fixes those."""
    if found is None or obj.endswith("__c") or not name.endswith("__c"):
        return []
    if found.get("type") != need.type:
        return []  # a type change can lose data
    if need.writes and not (found.get("createable") and found.get("updateable")):
        return []  # field-level security: a grant, not a change
    fixes = []
    length = int(found.get("length") or 0)
    if need.length and length < need.length:
        fixes.append(f"raise the length {length} → {need.length}")
    if need.external_id and not found.get("externalId"):
        fixes.append("mark External ID, unique")
    offered = {p.get("value") for p in found.get("picklistValues") or [] if p.get("active", True)}
    lacking = [v for v in need.values if v not in offered]
    if lacking and found.get("restrictedPicklist"):
        fixes.append(f"add picklist values {', '.join(lacking)}")
    return fixes


def _fix_field(crm: SalesforceCrm, obj: str, name: str) -> None:
    """Read the field's Tooling record (its whole Metadata), change what :func:`_safe_fixes`
    names, and PATCH it back: two Tooling API calls."""
    need = NEEDS[obj][name]
    soql = format_soql(
        "SELECT Id, FullName, Metadata FROM CustomField WHERE TableEnumOrId = {} "
        "AND DeveloperName = {}",
        obj,
        name.removesuffix("__c"),
    )
    rows = (
        crm._call(
            lambda sf: sf.toolingexecute("query/", params={"q": soql}), what=f"read {obj}.{name}"
        ).get("records")
        or []
    )
    if len(rows) != 1:
        raise ConnectorError(
            VENDOR, ErrorKind.PERMANENT, f"fix {obj}.{name}: not found through the Tooling API"
        )
    meta = dict(rows[0]["Metadata"])
    if need.length and int(meta.get("length") or 0) < need.length:
        meta["length"] = need.length
        if meta.get("type") == "LongTextArea":
            meta.setdefault("visibleLines", 5)
    if need.external_id:
        meta.update(externalId=True, unique=True)
    value_set = meta.get("valueSet")
    if need.values and isinstance(value_set, dict):
        definition = dict(value_set.get("valueSetDefinition") or {})
        values = list(definition.get("value") or [])
        have = {v.get("fullName") for v in values}
        values += [
            {"fullName": v, "label": v, "default": False} for v in need.values if v not in have
        ]
        meta["valueSet"] = {**value_set, "valueSetDefinition": {**definition, "value": values}}
    rid = rows[0]["Id"]
    crm._call(
        lambda sf: sf.toolingexecute(
            f"sobjects/CustomField/{rid}", method="PATCH", data={"Metadata": meta}
        ),
        what=f"fix {obj}.{name}",
    )


def _create_field(obj: str, name: str, need: Need) -> SetupStep:
    meta = field_metadata(obj, name, need)
    return SetupStep(
        VENDOR,
        "create field",
        f"{obj}.{name}",
        _kind(meta),
        ("CustomField", {"FullName": f"{obj}.{name}", "Metadata": meta}),
    )


def _manual(action: str, target: str, detail: str) -> SetupStep:
    return SetupStep(VENDOR, action, target, f"by hand: {detail}")


def setup_apply(crm: SalesforceCrm, steps: list[SetupStep]) -> list[str]:
    """Create what the automatic steps name, in order (each object before its fields), one
    Tooling API call each. A create answered ``DUPLICATE_DEVELOPER_NAME`` is done already (an
    earlier run, or a field the integration user cannot see: preflight says so afterwards).
    Returns one line per step: ``created …`` or ``exists …``."""
    done: list[str] = []
    access = [s for s in steps if s.automatic and s.request[0] in _ACCESS_KINDS]
    for step in steps:
        if not step.automatic or step in access:
            continue
        if step.request[0] == "fix":
            _fix_field(crm, step.request[1], step.request[2])
            done.append(f"fixed   {step.target}")
            continue
        kind, body = step.request
        try:
            crm._call(
                lambda sf, kind=kind, body=body: sf.toolingexecute(
                    f"sobjects/{kind}", method="POST", data=body
                ),
                what=f"{step.action} {step.target}",
            )
        except ConnectorError as exc:
            if exc.code != "DUPLICATE_DEVELOPER_NAME":
                raise ConnectorError(
                    VENDOR,
                    exc.kind,
                    f"{step.action} {step.target}: {exc.code or exc.status or exc.kind}",
                    status=exc.status,
                    code=exc.code,
                ) from None
            done.append(f"exists  {step.target}")
            continue
        done.append(f"created {step.target}")
    return done + (_apply_access(crm, access) if access else [])


# --- access: the RevBridge Integration permission set ---------------------------------------------
#
# A field or object created through the Tooling API grants nobody access: on a real org the
# integration user cannot see what setup just created (describe omits it, SOQL and DML answer
# INVALID_FIELD). Setup grants it the real way, through the REST API: one permission set
# (``PermissionSet`` RevBridge_Integration), an ``ObjectPermissions`` record per object RevBridge
# uses (Read, and Create/Edit where it writes), a ``FieldPermissions`` record per custom field
# (Read, and Edit where it writes), and a ``PermissionSetAssignment`` of the set to the user whose
# session setup runs under (the integration user: setup reads the same settings as the worker).
# Tasks have no object permissions (the set's "Edit Tasks" system permission), nor do quote lines
# (they follow their quote). Idempotent: the plan reads the set's records first and names only
# what is missing or weaker than needed; a record that appears meanwhile counts as done.

PERMISSION_SET = "RevBridge_Integration"
PERMISSION_SET_LABEL = "RevBridge Integration"
#: objects without object permissions of their own
_NO_OBJECT_PERMISSIONS = {"Task", "QuoteLineItem", "OpportunityLineItem"}
_COLLECTION = 200  # records per sObject Collections request
_ACCESS_KINDS = {"permission set", "edit task", "grant", "assign"}


def wanted_access() -> tuple[dict[str, tuple[bool, bool, bool]], dict[str, tuple[bool, bool]]]:
    """What the integration user needs, from :data:`NEEDS`: object → (Read, Create, Edit) and
    ``"<Object>.<custom field>"`` → (Read, Edit)."""
    objects: dict[str, tuple[bool, bool, bool]] = {}
    fields: dict[str, tuple[bool, bool]] = {}
    for obj, needs in NEEDS.items():
        writes = any(n.writes for n in needs.values())
        if obj not in _NO_OBJECT_PERMISSIONS:
            objects[obj] = (True, obj in CREATES, writes or obj in CREATES)
        for name, need in needs.items():
            if name.endswith("__c"):
                fields[f"{obj}.{name}"] = (True, need.writes)
    return objects, fields


@dataclass(frozen=True)
class _Grant:
    """The permission-set records one object needs created (no ``id``) or raised (``id``)."""

    obj: str
    object_perm: dict[str, Any] | None  # ObjectPermissions fields, with "Id" when it exists
    field_perms: tuple[dict[str, Any], ...]  # FieldPermissions fields, "Id" when it exists
    paths: tuple[str, ...] = ()  # the fields of field_perms, "<Object>.<custom field>"


def _access_steps(crm: SalesforceCrm) -> list[SetupStep]:
    """The permission set, its grants and its assignment, as far as they are missing (three
    queries: the set with its assignments, its object permissions, its field permissions)."""
    user = _session_user(crm)
    found = crm.query(
        format_soql(
            "SELECT Id, PermissionsEditTask, (SELECT AssigneeId FROM Assignments) "
            "FROM PermissionSet WHERE Name = {}",
            PERMISSION_SET,
        )
    )
    pset = found[0] if found else None
    have_objects: dict[str, dict[str, Any]] = {}
    have_fields: dict[str, dict[str, Any]] = {}
    if pset is not None:
        for row in crm.query(
            format_soql(
                "SELECT Id, SobjectType, PermissionsRead, PermissionsCreate, PermissionsEdit "
                "FROM ObjectPermissions WHERE ParentId = {}",
                pset["Id"],
            )
        ):
            have_objects[row["SobjectType"].lower()] = row
        for row in crm.query(
            format_soql(
                "SELECT Id, Field, PermissionsRead, PermissionsEdit FROM FieldPermissions "
                "WHERE ParentId = {}",
                pset["Id"],
            )
        ):
            have_fields[row["Field"].lower()] = row
    steps: list[SetupStep] = []
    where = f"in permission set {PERMISSION_SET}"
    if pset is None:
        steps.append(
            SetupStep(
                VENDOR,
                "create permission set",
                PERMISSION_SET,
                f"{PERMISSION_SET_LABEL} (Edit Tasks)",
                ("permission set", {"Name": PERMISSION_SET, "Label": PERMISSION_SET_LABEL}),
            )
        )
    elif not pset.get("PermissionsEditTask"):
        steps.append(
            SetupStep(VENDOR, "grant", "Task", f"Edit Tasks {where}", ("edit task", pset["Id"]))
        )
    objects, fields = wanted_access()
    for obj in NEEDS:
        grant = _grant(obj, objects.get(obj), fields, have_objects, have_fields)
        if grant is None:
            continue
        parts = []
        if grant.object_perm is not None:
            perms = [
                p for p in ("Read", "Create", "Edit") if grant.object_perm.get(f"Permissions{p}")
            ]
            parts.append(f"{', '.join(perms)} on {obj}")
        if grant.field_perms:
            edit = sum(1 for f in grant.field_perms if f["PermissionsEdit"])
            read = len(grant.field_perms) - edit
            counts = [f"read/edit on {edit} field{'s' if edit > 1 else ''}"] if edit else []
            counts += [f"read on {read} field{'s' if read > 1 else ''}"] if read else []
            parts.append(", ".join(counts))
        steps.append(
            SetupStep(VENDOR, "grant", obj, f"{'; '.join(parts)} {where}", ("grant", grant))
        )
    assigned = {
        a.get("AssigneeId") for a in ((pset or {}).get("Assignments") or {}).get("records") or []
    }
    if user and user not in assigned:
        steps.append(
            SetupStep(
                VENDOR,
                "assign",
                PERMISSION_SET,
                f"to the integration user {user}",
                ("assign", user),
            )
        )
    elif not user:
        steps.append(
            _manual(
                "assign",
                PERMISSION_SET,
                "assign it to the integration user (Setup > Permission Sets > Manage Assignments)",
            )
        )
    return steps


def _grant(
    obj: str,
    want: tuple[bool, bool, bool] | None,
    fields: dict[str, tuple[bool, bool]],
    have_objects: dict[str, dict[str, Any]],
    have_fields: dict[str, dict[str, Any]],
) -> _Grant | None:
    object_perm = None
    if want is not None:
        have = have_objects.get(obj.lower())
        flags = dict(
            zip(("PermissionsRead", "PermissionsCreate", "PermissionsEdit"), want, strict=True)
        )
        if have is None:
            object_perm = {"SobjectType": obj, **flags}
        elif any(v and not have.get(k) for k, v in flags.items()):
            object_perm = {
                "Id": have["Id"],
                **{k: v or bool(have.get(k)) for k, v in flags.items()},
            }
    field_perms, paths = [], []
    for path, (read, edit) in fields.items():
        if not path.startswith(f"{obj}."):
            continue
        have = have_fields.get(path.lower())
        paths.append(path)
        if have is None:
            field_perms.append(
                {
                    "SobjectType": obj,
                    "Field": path,
                    "PermissionsRead": read,
                    "PermissionsEdit": edit,
                }
            )
        elif (edit and not have.get("PermissionsEdit")) or not have.get("PermissionsRead"):
            field_perms.append({"Id": have["Id"], "PermissionsRead": True, "PermissionsEdit": edit})
        else:
            paths.pop()  # granted already
    if object_perm is None and not field_perms:
        return None
    return _Grant(obj, object_perm, tuple(field_perms), tuple(paths))


def _session_user(crm: SalesforceCrm) -> str:
    """The user ID of the session setup runs under, from the token's identity URL."""
    crm._client()
    return crm._identity.rstrip("/").rpartition("/")[2] if crm._identity else ""


def _apply_access(crm: SalesforceCrm, steps: list[SetupStep]) -> list[str]:
    """The permission set first, then every object permission, then every field permission (a
    custom object's fields need Read on the object in the same set), then the assignment; the
    permissions in sObject Collections of 200 (``allOrNone: false``)."""
    done: list[str] = []
    pset_id = ""
    for step in steps:
        if step.request[0] == "permission set":
            try:
                pset_id = str(
                    crm._call(
                        lambda sf, body=step.request[1]: sf.PermissionSet.create(
                            {**body, "PermissionsEditTask": True}
                        ),
                        what="permission set",
                    )["id"]
                )
                done.append(f"created permission set {PERMISSION_SET}")
            except ConnectorError as exc:
                if exc.code != "DUPLICATE_DEVELOPER_NAME":
                    raise
                done.append(f"exists  permission set {PERMISSION_SET}")
        elif step.request[0] == "edit task":
            pset_id = step.request[1]
            crm._call(
                lambda sf, pid=pset_id: sf.PermissionSet.update(pid, {"PermissionsEditTask": True}),
                what="permission set",
            )
            done.append("granted Edit Tasks")
    grants = [s.request[1] for s in steps if s.request[0] == "grant"]
    if grants or any(s.request[0] == "assign" for s in steps):
        pset_id = pset_id or _permission_set_id(crm)
    object_perms = [g.object_perm for g in grants if g.object_perm is not None]
    field_perms = [f for g in grants for f in g.field_perms]
    for kind, records in (("ObjectPermissions", object_perms), ("FieldPermissions", field_perms)):
        _write_permissions(crm, kind, pset_id, records)
    done += [f"granted {g.obj}" for g in grants]
    for step in steps:
        if step.request[0] != "assign":
            continue
        try:
            crm._call(
                lambda sf, user=step.request[1]: sf.PermissionSetAssignment.create(
                    {"AssigneeId": user, "PermissionSetId": pset_id}
                ),
                what="permission set assignment",
            )
            done.append(f"assigned {PERMISSION_SET}")
        except ConnectorError as exc:
            if exc.code != "DUPLICATE_VALUE":
                raise
            done.append(f"exists  assignment of {PERMISSION_SET}")
    return done


def _permission_set_id(crm: SalesforceCrm) -> str:
    rows = crm.query(format_soql("SELECT Id FROM PermissionSet WHERE Name = {}", PERMISSION_SET))
    if not rows:
        raise ConnectorError(VENDOR, ErrorKind.PERMANENT, f"{PERMISSION_SET}: not found")
    return str(rows[0]["Id"])


def _write_permissions(
    crm: SalesforceCrm, kind: str, pset_id: str, records: list[dict[str, Any]]
) -> None:
    """Create the new records (POST) and raise the existing ones (PATCH), 200 a request; a
    ``DUPLICATE_VALUE`` (a concurrent run's record) is done; any other refusal is one line."""
    new = [
        {"attributes": {"type": kind}, "ParentId": pset_id, **r} for r in records if "Id" not in r
    ]
    raised = [{"attributes": {"type": kind}, **r} for r in records if "Id" in r]
    for method, batch in (("POST", new), ("PATCH", raised)):
        for start in range(0, len(batch), _COLLECTION):
            chunk = batch[start : start + _COLLECTION]
            results = crm._call(
                lambda sf, method=method, chunk=chunk: sf.restful(
                    "composite/sobjects",
                    method=method,
                    json={"allOrNone": False, "records": chunk},
                ),
                what=kind,
            )
            for record, result in zip(chunk, results or [], strict=False):
                errors = [] if result.get("success") else result.get("errors") or [{}]
                codes = {e.get("statusCode") for e in errors}
                if errors and codes != {"DUPLICATE_VALUE"}:
                    what = record.get("Field") or record.get("SobjectType") or record.get("Id")
                    first = errors[0]
                    raise ConnectorError(
                        VENDOR,
                        ErrorKind.PERMANENT,
                        f"{kind} {what}: {first.get('statusCode')}: "
                        f"{str(first.get('message') or '')[:200]}",
                        code=first.get("statusCode"),
                    )
