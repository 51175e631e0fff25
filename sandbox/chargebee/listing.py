"""List endpoints: filters (``field[op]=value``), ``sort_by[asc|desc]``, ``limit``/``offset``.

Pagination is keyset based: ``next_offset`` is an opaque string ``["<sort value>","<seq>"]`` (the
shape Chargebee's offsets have) naming the last row served, so inserts between pages neither
duplicate nor skip rows. There is no ``next_offset`` on the last page.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from .errors import param_error
from .forms import FormError, parse_list_literal, to_bool, to_int

CONTROL_PARAMS = {"limit", "offset", "sort_by", "include_deleted"}
OPERATORS = {
    "is",
    "is_not",
    "starts_with",
    "in",
    "not_in",
    "is_present",
    "after",
    "before",
    "on",
    "between",
    "lt",
    "lte",
    "gt",
    "gte",
}
Getter = Callable[[dict[str, Any]], Any]
#: sorts after every ``_seq`` (an index entry's second item) of a sort value
_END = float("inf")


def _num(raw: Any, param: str) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise FormError(param, f"{param} : invalid number {raw!r}") from None


def _day(ts: float) -> Any:
    return datetime.fromtimestamp(ts, UTC).date()


class _Options:
    """An ``[in]`` / ``[not_in]`` list parsed once per request (not once per row scanned)."""

    __slots__ = ("strings", "values")

    def __init__(self, values: list[Any]) -> None:
        self.values = values
        self.strings = frozenset(str(v) for v in values)


def _match_one(value: Any, op: str, raw: Any, param: str) -> bool:
    if op == "is_present":
        return (value not in (None, "")) == to_bool(raw, param)
    if value is None:
        return op in ("is_not", "not_in")
    if isinstance(value, bool):
        value = "true" if value else "false"
    numeric = isinstance(value, int | float)
    if op in ("is", "is_not"):
        eq = value == _num(raw, param) if numeric else str(value) == str(raw)
        return eq if op == "is" else not eq
    if op == "starts_with":
        return str(value).startswith(str(raw))
    if op in ("in", "not_in"):
        options = raw if isinstance(raw, _Options) else _Options(parse_list_literal(raw, param))
        if numeric:
            hit = any(value == _num(o, param) for o in options.values)
        else:
            hit = str(value) in options.strings
        return hit if op == "in" else not hit
    if not numeric:
        raise FormError(param, f"{param} : operator not supported for this attribute")
    if op in ("after", "gt"):
        return value > _num(raw, param)
    if op == "gte":
        return value >= _num(raw, param)
    if op in ("before", "lt"):
        return value < _num(raw, param)
    if op == "lte":
        return value <= _num(raw, param)
    if op == "on":
        return _day(value) == _day(_num(raw, param))
    if op == "between":
        bounds = parse_list_literal(raw, param)
        if len(bounds) != 2:
            raise FormError(param, f"{param} : between needs two values")
        return _num(bounds[0], param) <= value <= _num(bounds[1], param)
    raise FormError(param, f"{param} : unknown filter operator {op!r}")


def wanted_ids(params: dict[str, Any], name: str) -> list[str] | None:
    """The IDs a ``name[in]`` / ``name[is]`` filter names (None: no such filter), so a list can
    read those rows by key instead of scanning the table; the filters still run on them."""
    spec = params.get(name)
    if not isinstance(spec, dict):
        return None
    if "in" in spec:
        return parse_list_literal(spec["in"], f"{name}[in]")
    if "is" in spec:
        return [str(spec["is"])]
    return None


def apply_filters(
    rows: Iterable[dict[str, Any]],
    params: dict[str, Any],
    virtual: dict[str, Getter] | None = None,
    ignore: Iterable[str] = (),
) -> list[dict[str, Any]]:
    match = row_filter(params, virtual, ignore)
    return [row for row in rows if match(row)]


def row_filter(
    params: dict[str, Any],
    virtual: dict[str, Getter] | None = None,
    ignore: Iterable[str] = (),
) -> Callable[[dict[str, Any]], bool]:
    """The request's filters, parsed once (an unknown operator is refused here), as a test of
    one row (``apply_filters`` over a table, ``paginate_indexed`` over the rows it walks)."""
    virtual = virtual or {}
    ignored = CONTROL_PARAMS | set(ignore)
    filters: list[tuple[str, str, Any, Getter]] = []
    for name, spec in params.items():
        if name in ignored or not isinstance(spec, dict):
            continue
        getter = virtual.get(name) or (lambda row, n=name: row.get(n))
        for op, raw in spec.items():
            if op not in OPERATORS:
                raise FormError(f"{name}[{op}]", f"{name}[{op}] : unknown filter operator")
            if op in ("in", "not_in"):
                raw = _Options(parse_list_literal(raw, f"{name}[{op}]"))
            filters.append((name, op, raw, getter))

    def match(row: dict[str, Any]) -> bool:
        for name, op, raw, getter in filters:
            value = getter(row)
            param = f"{name}[{op}]"
            if isinstance(value, list):
                hit = (
                    any(_match_one(v, op, raw, param) for v in value)
                    if value
                    else (_match_one(None, op, raw, param))
                )
            else:
                hit = _match_one(value, op, raw, param)
            if not hit:
                return False
        return True

    return match


def _order(
    params: dict[str, Any], sort_fields: tuple[str, ...], default_sort: str, default_desc: bool
) -> tuple[str, bool, int, tuple[int, int] | None]:
    """A list request's sort field, direction, page size and keyset cursor (None: first page)."""
    field, desc = default_sort, default_desc
    sort_by = params.get("sort_by")
    if sort_by is not None:
        if not isinstance(sort_by, dict) or len(sort_by) != 1:
            raise param_error("sort_by", "sort_by : use sort_by[asc] or sort_by[desc]")
        ((direction, field),) = sort_by.items()
        if direction not in ("asc", "desc"):
            raise param_error(f"sort_by[{direction}]", "sort_by : use asc or desc")
        if field not in sort_fields:
            raise param_error(
                f"sort_by[{direction}]",
                f"sort_by[{direction}] : invalid value {field!r}; supported: {', '.join(sort_fields)}",
            )
        desc = direction == "desc"

    limit = to_int(params.get("limit", 10), "limit")
    if not 1 <= limit <= 100:
        raise param_error("limit", "limit : should be between 1 and 100")

    cursor = None
    offset = params.get("offset")
    if offset not in (None, ""):
        try:
            value, seq = json.loads(offset)
            cursor = (int(value), int(seq))
        except (TypeError, ValueError):
            raise param_error("offset", f"offset : invalid value {offset!r}") from None
    return field, desc, limit, cursor


def _page(
    ordered: list[dict[str, Any]],
    key: Callable[[dict[str, Any]], tuple[int, int]],
    limit: int,
    render: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    """``ordered``: the page's rows and, if there is a next page, one row more."""
    page = ordered[:limit]
    out: dict[str, Any] = {"list": [render(r) for r in page]}
    if len(ordered) > limit:
        last = key(page[-1])
        out["next_offset"] = json.dumps([str(last[0]), str(last[1])], separators=(",", ":"))
    return out


def _row_key(field: str) -> Callable[[dict[str, Any]], tuple[int, int]]:
    def key(row: dict[str, Any]) -> tuple[int, int]:
        return (int(row.get(field) or 0), int(row["_seq"]))

    return key


def paginate(
    rows: list[dict[str, Any]],
    params: dict[str, Any],
    render: Callable[[dict[str, Any]], dict[str, Any]],
    sort_fields: tuple[str, ...],
    default_sort: str,
    default_desc: bool = True,
) -> dict[str, Any]:
    field, desc, limit, cursor = _order(params, sort_fields, default_sort, default_desc)
    key = _row_key(field)
    ordered = sorted(rows, key=key, reverse=desc)
    if cursor is not None:
        ordered = [r for r in ordered if (key(r) < cursor if desc else key(r) > cursor)]
    return _page(ordered, key, limit, render)


def paginate_indexed(
    index: list[tuple[int, int, str]],
    rows: dict[str, dict[str, Any]],
    keep: Callable[[dict[str, Any]], bool],
    params: dict[str, Any],
    render: Callable[[dict[str, Any]], dict[str, Any]],
    sort_fields: tuple[str, ...],
    default_sort: str,
    default_desc: bool = True,
    low: int | None = None,
    high: int | None = None,
) -> dict[str, Any] | None:
    """``paginate`` over a table's rows kept sorted by ``(default_sort, _seq, id)`` (``index``),
    for a request sorted by that field: a bisect to the cursor and a walk of one page (skipping
    the rows ``keep`` refuses), not a filter and sort of every row per request, which made
    paging a 100,000-customer site quadratic. ``low`` / ``high``: no row ``keep`` accepts has
    its sort value outside them (the walk starts and stops there). A row no longer in ``rows``
    is skipped. None: sorted by another field (use ``paginate``)."""
    field, desc, limit, cursor = _order(params, sort_fields, default_sort, default_desc)
    if field != default_sort:
        return None
    if desc:
        start = len(index) - 1
        if cursor is not None:  # the rows sorting before the cursor
            start = min(start, bisect_left(index, cursor) - 1)
        if high is not None:
            start = min(start, bisect_right(index, (high, _END)) - 1)
    else:
        start = 0
        if cursor is not None:
            start = bisect_right(index, (cursor[0], cursor[1], "\uffff"))
        if low is not None:
            start = max(start, bisect_left(index, (low,)))
    step = -1 if desc else 1
    ordered: list[dict[str, Any]] = []
    i = start
    while 0 <= i < len(index) and len(ordered) <= limit:
        value, _, id_ = index[i]
        if (desc and low is not None and value < low) or (
            not desc and high is not None and value > high
        ):
            break
        row = rows.get(id_)
        if row is not None and keep(row):
            ordered.append(row)
        i += step
    return _page(ordered, _row_key(field), limit, render)
