"""Request-body validation against HubSpot's own OpenAPI specs (``../shared/specs/hubspot``).

Cheap and structural: JSON types, enums and required keys, following ``$ref``s. HubSpot's generated
specs mark as required keys the service (and the official client, which drops ``None`` fields)
treats as optional, e.g. ``associations`` on create or ``sorts`` on search; :data:`OPTIONAL` lists
those. When the spec files are absent the emulator still runs, without this layer.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

#: spec files the emulator's routes come from
SPEC_FILES = ("objects.v3.json", "associations.v4.json", "properties.v3.json", "pipelines.v3.json")

#: required-in-spec keys the live API and the client treat as optional, per schema
OPTIONAL: dict[str, set[str]] = {
    "SimplePublicObjectInputForCreate": {"associations"},
    "SimplePublicObjectBatchInputForCreate": {"associations"},
    "PublicObjectSearchRequest": {"after", "filterGroups", "limit", "properties", "sorts"},
    "BatchReadInputSimplePublicObjectId": {"properties", "propertiesWithHistory"},
}
#: (schema, key) whose declared type is narrower than what HubSpot accepts
UNCHECKED: set[tuple[str, str]] = {
    # the spec (and typed client) say list[str]; the docs use [{"propertyName","direction"}]
    ("PublicObjectSearchRequest", "sorts"),
}

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    # property values arrive as JSON numbers and booleans too, and HubSpot stores them as strings
    "string": (str, int, float, bool),
}


def default_spec_dir() -> Path:
    """``<checkout>/../shared/specs/hubspot``, or ``$REVBRIDGE_SHARED_DIR/specs/hubspot``."""
    shared = os.environ.get("REVBRIDGE_SHARED_DIR")
    if shared:
        return Path(shared) / "specs" / "hubspot"
    return Path(__file__).resolve().parents[2].parent / "shared" / "specs" / "hubspot"


class SpecIndex:
    """Operations of the loaded specs, by ``(METHOD, path template)``."""

    def __init__(self, spec_dir: Path) -> None:
        self.operations: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
        for name in SPEC_FILES:
            path = spec_dir / name
            if not path.exists():
                continue
            doc = json.loads(path.read_text())
            for template, ops in doc.get("paths", {}).items():
                for method, op in ops.items():
                    if method != "parameters":
                        self.operations[(method.upper(), _normalise(template))] = (op, doc)

    def has(self, method: str, template: str) -> bool:
        return (method, _normalise(template)) in self.operations

    def success_statuses(self, method: str, template: str) -> set[int]:
        op, _ = self.operations[(method, _normalise(template))]
        return {int(code) for code in op["responses"] if code.isdigit() and code.startswith("2")}

    def validate(self, method: str, template: str, body: Any) -> list[str]:
        """Problems with ``body`` for the operation (empty if fine or the operation is unknown)."""
        found = self.operations.get((method, _normalise(template)))
        if found is None:
            return []
        op, doc = found
        schema = (
            op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        )
        if schema is None:
            return []
        problems: list[str] = []
        _check(schema, body, "$", doc, problems, None)
        return problems[:10]


def _normalise(template: str) -> str:
    """Path parameter names differ between spec files; compare templates by shape only."""
    return re.sub(r"\{[^}]+\}", "{}", template)


def _check(
    schema: dict[str, Any], value: Any, where: str, doc: dict, problems: list[str], name: str | None
) -> None:
    if "$ref" in schema:
        ref = schema["$ref"]
        name = ref.rsplit("/", 1)[-1]
        schema = doc["components"]["schemas"][name]
    if value is None:
        return  # nullable in practice; the client itself sends explicit nulls for some fields
    kind = schema.get("type")
    allowed = _TYPES.get(kind or "")
    if allowed and (
        not isinstance(value, allowed)
        or (kind in ("integer", "number") and isinstance(value, bool))
    ):
        problems.append(f"{where}: expected {kind}, got {type(value).__name__}")
        return
    if "enum" in schema and isinstance(value, str) and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if kind == "array" and "items" in schema:
        for i, item in enumerate(value):
            _check(schema["items"], item, f"{where}[{i}]", doc, problems, None)
    if isinstance(value, dict):
        optional = OPTIONAL.get(name or "", set())
        missing = [k for k in schema.get("required", []) if k not in value and k not in optional]
        if missing:
            problems.append(
                f"{where}: Cannot build {name or 'object'}, some of required attributes are not set {missing}"
            )
        for key, sub in schema.get("properties", {}).items():
            if key in value and (name or "", key) not in UNCHECKED:
                _check(sub, value[key], f"{where}.{key}", doc, problems, None)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, item in value.items():
                if key not in schema.get("properties", {}):
                    _check(extra, item, f"{where}.{key}", doc, problems, None)


@cache
def load(spec_dir: str) -> SpecIndex | None:
    path = Path(spec_dir)
    return SpecIndex(path) if path.is_dir() else None
