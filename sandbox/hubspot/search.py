"""The CRM search evaluator: ``filterGroups`` (groups ORed, filters ANDed), ``query``, ``sorts``,
``limit``/``after`` paging, with HubSpot's limits (reference §2.4)."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from typing import Any

from .errors import HubSpotError
from .values import as_text, comparable

MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 10
MAX_FILTERS = 25
MAX_LIMIT = 200
MAX_RESULTS = 10_000

OPERATORS = {
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
}

Definitions = dict[str, dict[str, Any]]
Predicate = Callable[[dict[str, str]], bool]


def _bad(message: str) -> HubSpotError:
    return HubSpotError(400, message, "VALIDATION_ERROR")


def _operand(definition: dict[str, Any], raw: Any, name: str) -> Any:
    if raw is None:
        raise _bad(f"Filter on {name} needs a value")
    value = comparable(definition, as_text(raw))
    if definition["type"] in ("number", "datetime", "date") and isinstance(value, str):
        raise _bad(f"{raw} is not a valid {definition['type']} value for {name}")
    return value


def _tokens(text: str) -> set[str]:
    lowered = text.lower()
    return {lowered, *lowered.split(), *(t for t in re.split(r"[^\w]+", lowered) if t)}


def _contains_token(stored: str, needle: str) -> bool:
    needle = needle.lower()
    tokens = _tokens(stored)
    if "*" in needle:
        return any(fnmatch.fnmatchcase(t, needle) for t in tokens)
    return needle in tokens


def compile_filter(f: dict[str, Any], definitions: Definitions) -> Predicate:
    name, op = f.get("propertyName"), f.get("operator")
    if op not in OPERATORS:
        raise _bad(f"Unknown filter operator {op!r}; use one of {', '.join(sorted(OPERATORS))}")
    definition = definitions.get(name or "")
    if definition is None:
        raise _bad(f"Property {name!r} does not exist, so it cannot be filtered on")
    if op == "HAS_PROPERTY":
        return lambda props: bool(props.get(name))
    if op == "NOT_HAS_PROPERTY":
        return lambda props: not props.get(name)
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        needle = as_text(f.get("value", ""))
        positive = op == "CONTAINS_TOKEN"
        return lambda props: (
            bool(props.get(name)) and _contains_token(props[name], needle) == positive
        )
    if op in ("IN", "NOT_IN"):
        values = f.get("values")
        if not isinstance(values, list) or not values:
            raise _bad(f"{op} filter on {name} needs a non-empty 'values' list")
        wanted = {_operand(definition, v, name) for v in values}
        if op == "IN":
            return lambda props: (
                bool(props.get(name)) and comparable(definition, props[name]) in wanted
            )
        return lambda props: comparable(definition, props.get(name) or "") not in wanted
    low = _operand(definition, f.get("value"), name)
    if op == "BETWEEN":
        high = _operand(definition, f.get("highValue"), name)
        return lambda props: _cmp(definition, props.get(name), lambda v: low <= v <= high)
    if op == "NEQ":
        return lambda props: comparable(definition, props.get(name) or "") != low
    test: Callable[[Any], bool] = {
        "EQ": lambda v: v == low,
        "LT": lambda v: v < low,
        "LTE": lambda v: v <= low,
        "GT": lambda v: v > low,
        "GTE": lambda v: v >= low,
    }[op]
    return lambda props: _cmp(definition, props.get(name), test)


def _cmp(definition: dict[str, Any], stored: str | None, test: Callable[[Any], bool]) -> bool:
    if not stored:
        return False
    value = comparable(definition, stored)
    try:
        return test(value)
    except TypeError:  # a stored value that does not parse as the property's type
        return False


def compile_request(
    body: dict[str, Any], definitions: Definitions, searchable: Iterable[str]
) -> Predicate:
    groups = body.get("filterGroups") or []
    if len(groups) > MAX_GROUPS:
        raise _bad(f"Too many filter groups: {len(groups)} (max {MAX_GROUPS})")
    total = 0
    compiled: list[list[Predicate]] = []
    for g in groups:
        filters = g.get("filters") or []
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise _bad(f"Too many filters in a group: {len(filters)} (max {MAX_FILTERS_PER_GROUP})")
        total += len(filters)
        compiled.append([compile_filter(f, definitions) for f in filters])
    if total > MAX_FILTERS:
        raise _bad(f"Too many filters: {total} (max {MAX_FILTERS})")
    query = (body.get("query") or "").strip().lower()
    fields = tuple(searchable)

    def matches(props: dict[str, str]) -> bool:
        if compiled and not any(all(p(props) for p in group) for group in compiled):
            return False
        if query:
            words = set()
            for field in fields:
                words |= _tokens(props.get(field) or "")
            return all(any(w.startswith(q) for w in words) for q in query.split())
        return True

    return matches


def sort_key(body: dict[str, Any], definitions: Definitions) -> tuple[Callable[[Any], Any], bool]:
    """A key over ``(id, props)`` pairs and whether to reverse; one sort, as HubSpot allows."""
    sorts = body.get("sorts") or []
    if len(sorts) > 1:
        raise _bad("Only one sort is supported")
    if not sorts:
        return (lambda item: int(item[0])), False
    spec = sorts[0]
    if isinstance(spec, str):
        name, descending = spec.lstrip("-"), spec.startswith("-")
    elif isinstance(spec, dict):
        name = spec.get("propertyName", "")
        descending = str(spec.get("direction", "ASCENDING")).upper() == "DESCENDING"
    else:
        raise _bad(f"Invalid sort {spec!r}")
    definition = definitions.get(name)
    if definition is None:
        raise _bad(f"Property {name!r} does not exist, so it cannot be sorted on")

    def key(item: Any) -> Any:
        object_id, props = item
        value = props.get(name)
        if not value:  # empty values sort last ascending (first descending)
            return (1, "", int(object_id))
        c = comparable(definition, value)
        return (0, (0, c) if isinstance(c, int | float) else (1, c), int(object_id))

    return key, descending


def page_window(body: dict[str, Any]) -> tuple[int, int]:
    """``(offset, limit)`` from ``after``/``limit``; ``after`` is a numeric offset string."""
    try:
        limit = int(body.get("limit") or 10)
        offset = int(body.get("after") or 0)
    except (TypeError, ValueError):
        raise _bad("'limit' must be an integer and 'after' a numeric offset string") from None
    if limit < 1 or limit > MAX_LIMIT:
        raise _bad(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0 or offset + limit > MAX_RESULTS:
        raise _bad(
            f"Search paging is limited to {MAX_RESULTS} results (after={offset}, limit={limit})"
        )
    return offset, limit
