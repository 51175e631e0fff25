"""Checks a JSON document against the generated models of ``zuora-sdk`` 3.21.0 (the JSON Schemas
in ``../shared/specs/zuora/zuora-api.json``): every field must be one the model knows (or a
``…__c`` custom field) with the model's type, recursively. jsonschema is not a dependency, so
this walks the subset those schemas use: ``$ref``, ``anyOf``, ``type``, ``items``,
``properties``, ``required``.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any


def spec_path() -> Path:
    """``<checkout>/../shared/specs/zuora/zuora-api.json``, or under ``$REVBRIDGE_SHARED_DIR``
    (as sandbox/hubspot/spec.py finds HubSpot's specs)."""
    shared = os.environ.get("REVBRIDGE_SHARED_DIR")
    root = Path(shared) if shared else Path(__file__).resolve().parents[3] / "shared"
    return root / "specs" / "zuora" / "zuora-api.json"


_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
    "null": type(None),
}
#: documented differences between the SDK models and what Zuora sends: the SDK types
#: ``FailedReason.code`` as a string, Zuora's own error pages show 8-digit numbers, which we send
NUMBER_AS_STRING = {("FailedReason", "code")}


@cache
def spec() -> dict[str, Any]:
    return json.loads(spec_path().read_text())


def operation(method: str, path: str) -> dict[str, Any]:
    return next(o for o in spec()["operations"] if o["method"] == method and o["path"] == path)


def _schema(name: str) -> dict[str, Any]:
    s = spec()["schemas"].get(name) or spec()["$defs"].get(name)
    if s is None:
        raise KeyError(name)
    return s


def problems(model: str, doc: Any, *, request: bool = False) -> list[str]:
    """Everything in ``doc`` that does not fit ``model`` (an empty list: it fits). With
    ``request``, the model's required fields must be present too."""
    out: list[str] = []
    _check(_schema(model), doc, model, model, out, request)
    return out


def _check(
    schema: dict[str, Any], doc: Any, where: str, model: str, out: list[str], req: bool
) -> None:
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        _check(_schema(name), doc, where, name, out, req)
        return
    if "anyOf" in schema:
        options = schema["anyOf"]
        if doc is None and any(o.get("type") == "null" for o in options):
            return
        trials = []
        for o in options:
            if o.get("type") == "null":
                continue
            errs: list[str] = []
            _check(o, doc, where, model, errs, req)
            if not errs:
                return
            trials.append(errs)
        out.extend(min(trials, key=len) if trials else [f"{where}: no option fits"])
        return
    kind = schema.get("type")
    if kind is None:
        return
    if kind == "object" or "properties" in schema:
        if not isinstance(doc, dict):
            out.append(f"{where}: expected object, got {type(doc).__name__}")
            return
        props = schema.get("properties", {})
        for key, value in doc.items():
            if key.endswith("__c"):
                continue
            if key not in props:
                out.append(f"{where}.{key}: not a field of {model}")
                continue
            if (model, key) in NUMBER_AS_STRING and isinstance(value, int):
                continue
            _check(props[key], value, f"{where}.{key}", model, out, req)
        if req:
            for key in schema.get("required", []):
                if key not in doc:
                    out.append(f"{where}.{key}: required by {model}")
        return
    if kind == "array":
        if not isinstance(doc, list):
            out.append(f"{where}: expected array, got {type(doc).__name__}")
            return
        for i, item in enumerate(doc):
            _check(schema.get("items", {}), item, f"{where}[{i}]", model, out, req)
        return
    expected = _TYPES.get(kind)
    if expected and (
        not isinstance(doc, expected) or (kind in ("integer", "number") and isinstance(doc, bool))
    ):
        out.append(f"{where}: expected {kind}, got {type(doc).__name__}")
