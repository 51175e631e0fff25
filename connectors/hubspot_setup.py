"""``revbridge setup crm`` on HubSpot: the plan (the RevBridge property group and each property of
:data:`~connectors.hubspot.REQUIRED_PROPERTIES`, and the use cases' own, that the portal lacks)
and its application (the properties API, one request each), through
:class:`~connectors.hubspot.HubSpotCrm`'s client and error mapping. A property that exists but will
not do is judged by ``preflight``'s own check, so setup and ``revbridge doctor`` agree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.base import ConnectorError
from connectors.hubspot import REQUIRED_PROPERTIES, VENDOR, HubSpotCrm, _property_check
from connectors.setup_steps import SetupStep

# --- setup (revbridge setup crm) ------------------------------------------------------------------
#
# RevBridge needs properties only (its audit trail is notes, its keys unique properties on
# tickets): no custom object, so no schemas call. Every property it creates sits in one group,
# created first on each object type (HubSpot refuses a property in a group that does not exist).
# Driven by REQUIRED_PROPERTIES, the table ``preflight`` checks.

SETUP_GROUP = "revbridge"
SETUP_GROUP_LABEL = "RevBridge"
#: field types other than the type's default (string → text)
_SETUP_FIELD_TYPES = {"churn_reasons": "textarea", "churn_narrative": "textarea"}
#: enumeration options, (value, label)
_SETUP_OPTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "churn_level": tuple((v, v.title()) for v in ("low", "medium", "high", "critical")),
    "payment_terms": tuple((v, v) for v in ("Net 15", "Net 30", "Net 45", "Net 60")),
}
_DEFAULT_FIELD_TYPES = {
    "string": "text",
    "number": "number",
    "date": "date",
    "datetime": "date",
    "enumeration": "select",
}


def property_definition(name: str, kind: str, unique: bool) -> dict[str, Any]:
    """The ``POST /crm/v3/properties/{objectType}`` body of one RevBridge property."""
    body: dict[str, Any] = {
        "name": name,
        "label": name.replace("_", " ").title().replace("Mrr", "MRR"),
        "type": kind,
        "fieldType": _SETUP_FIELD_TYPES.get(name, _DEFAULT_FIELD_TYPES[kind]),
        "groupName": SETUP_GROUP,
        "hasUniqueValue": unique,
        "description": "Written by RevBridge (revbridge setup crm)",
    }
    if kind == "enumeration":
        body["options"] = [
            {"value": v, "label": label, "displayOrder": i, "hidden": False}
            for i, (v, label) in enumerate(_SETUP_OPTIONS[name])
        ]
    return body


def setup_plan(
    crm: HubSpotCrm, extra: tuple[tuple[str, str, str, bool], ...] = ()
) -> list[SetupStep]:
    """What the portal lacks, two reads per object type (its property groups, its properties):
    the RevBridge group and each missing property of :data:`REQUIRED_PROPERTIES` (and ``extra``:
    the use cases' own, cli/crm_use_cases.py) to create, and what setup must not change itself
    (a property of the wrong type, or without unique values, holds data: a person archives it)
    with its fix."""
    from hubspot.crm.properties import GroupsApi

    groups_api = GroupsApi(crm._properties.api_client)
    by_type: dict[str, list[tuple[str, str, bool]]] = {}
    for otype, name, kind, unique in (*REQUIRED_PROPERTIES, *extra):
        by_type.setdefault(otype, []).append((name, kind, unique))
    steps: list[SetupStep] = []
    for otype, wanted in by_type.items():
        groups = crm._call(groups_api.get_all, otype, what=f"{otype} property groups")
        have_groups = {g.name for g in groups.results or [] if not getattr(g, "archived", False)}
        page = crm._call(crm._properties.get_all, otype, what=f"{otype} properties")
        have = {p.name: p for p in page.results or [] if not getattr(p, "archived", False)}
        missing = [(n, k, u) for n, k, u in wanted if n not in have]
        if missing and SETUP_GROUP not in have_groups:
            steps.append(
                SetupStep(
                    VENDOR,
                    "create property group",
                    f"{otype}.{SETUP_GROUP}",
                    SETUP_GROUP_LABEL,
                    ("group", otype, {"name": SETUP_GROUP, "label": SETUP_GROUP_LABEL}),
                )
            )
        for name, kind, unique in wanted:
            if name not in have:
                body = property_definition(name, kind, unique)
                detail = f"{kind} ({body['fieldType']}{', unique values' if unique else ''})"
                if body.get("options"):
                    detail += f" [{', '.join(o['value'] for o in body['options'])}]"
                steps.append(
                    SetupStep(
                        VENDOR,
                        "create property",
                        f"{otype}.{name}",
                        detail,
                        ("property", otype, body),
                    )
                )
                continue
            check = _property_check(otype, name, kind, unique, have[name])
            if check.failed:
                steps.append(
                    SetupStep(
                        VENDOR, "fix", f"{otype}.{name}", f"by hand: {check.detail}: {check.fix}"
                    )
                )
    return steps


def setup_apply(crm: HubSpotCrm, steps: list[SetupStep]) -> list[str]:
    """Create the groups, then the properties, the automatic steps name (one request each); a
    409 (made meanwhile, or by an earlier run) counts as done. Returns ``created …`` /
    ``exists …`` per step."""
    from hubspot.crm.properties import GroupsApi, OptionInput, PropertyCreate, PropertyGroupCreate

    groups_api = GroupsApi(crm._properties.api_client)
    done: list[str] = []
    for step in steps:
        if not step.automatic:
            continue
        what, otype, body = step.request
        if what == "group":
            fn: Callable[..., Any] = groups_api.create
            payload: Any = PropertyGroupCreate(name=body["name"], label=body["label"])
        else:
            fn = crm._properties.create
            payload = PropertyCreate(
                name=body["name"],
                label=body["label"],
                type=body["type"],
                field_type=body["fieldType"],
                group_name=body["groupName"],
                has_unique_value=body["hasUniqueValue"],
                description=body["description"],
                options=[
                    OptionInput(
                        value=o["value"],
                        label=o["label"],
                        display_order=o["displayOrder"],
                        hidden=o["hidden"],
                    )
                    for o in body.get("options", [])
                ]
                or None,
            )
        try:
            crm._call(fn, otype, payload, what=f"{step.action} {step.target}")
        except ConnectorError as exc:
            if exc.status != 409:
                raise
            done.append(f"exists  {step.target}")
            continue
        done.append(f"created {step.target}")
    return done
