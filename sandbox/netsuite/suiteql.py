"""The SuiteQL subset the emulator answers (erp-support-email-apis.md §1.3.5, §1.8 item 10):

``SELECT col[, col...] | * FROM table [WHERE cond [AND cond]...] [ORDER BY col [ASC|DESC]]``
with ``cond`` one of ``col = | <> | != | < | <= | > | >= 'literal' | number`` or
``col LIKE 'pattern'`` (``%`` and ``_``). Column names are lower case; booleans are ``'T'``/``'F'``.
Anything else is NetSuite's 400 ``INVALID_PARAMETER`` "Invalid search query".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import NetSuiteError

_QUERY = re.compile(
    r"^\s*SELECT\s+(?P<cols>.+?)\s+FROM\s+(?P<table>\w+)"
    r"(?:\s+WHERE\s+(?P<where>.+?))?"
    r"(?:\s+ORDER\s+BY\s+(?P<order>\w+)(?:\s+(?P<dir>ASC|DESC))?)?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_COND = re.compile(
    r"^\s*(?P<col>\w+)\s*(?P<op>=|<>|!=|<=|>=|<|>|LIKE)\s*"
    r"(?P<lit>'(?:[^']|'')*'|-?\d+(?:\.\d+)?)\s*$",
    re.IGNORECASE,
)


def _bad(reason: str) -> NetSuiteError:
    return NetSuiteError(
        400,
        "INVALID_PARAMETER",
        "Invalid search query. Detailed unprocessed description follows. "
        f"Search error occurred: {reason}",
    )


def _split_and(where: str) -> list[str]:
    """Split on AND outside quoted literals."""
    parts, buf, quoted, i = [], [], False, 0
    while i < len(where):
        ch = where[i]
        if ch == "'":
            quoted = not quoted
        if not quoted and re.match(r"\s+AND\s+", where[i:], re.IGNORECASE):
            m = re.match(r"\s+AND\s+", where[i:], re.IGNORECASE)
            assert m
            parts.append("".join(buf))
            buf = []
            i += m.end()
            continue
        buf.append(ch)
        i += 1
    parts.append("".join(buf))
    return parts


def _like(pattern: str) -> re.Pattern[str]:
    out = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile(f"^{out}$", re.IGNORECASE | re.DOTALL)


def _compare(value: Any, op: str, lit: Any) -> bool:
    if value is None:
        return False
    if isinstance(lit, float) and not isinstance(value, int | float):
        try:
            value = float(value)
        except ValueError:
            return False
    elif isinstance(lit, str):
        value = str(value)
    if op == "=":
        return value == lit
    if op in ("<>", "!="):
        return value != lit
    if op == "<":
        return value < lit
    if op == "<=":
        return value <= lit
    if op == ">":
        return value > lit
    return value >= lit


def run(q: str, tables: Mapping[str, Iterable[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """All rows of ``q`` (paging is the caller's)."""
    m = _QUERY.match(q or "")
    if not m:
        raise _bad("the query could not be parsed")
    table = m["table"].lower()
    if table not in tables:
        raise _bad(f"Record '{table}' was not found.")
    rows = [dict(r) for r in tables[table]]
    known = set().union(*(r.keys() for r in rows)) if rows else set()
    conds = []
    for raw in _split_and(m["where"]) if m["where"] else []:
        c = _COND.match(raw)
        if not c:
            raise _bad(f"the condition {raw.strip()!r} could not be parsed")
        col = c["col"].lower()
        if rows and col not in known:
            raise _bad(f"Field '{col}' for record '{table}' was not found.")
        lit_raw = c["lit"]
        lit: Any = lit_raw[1:-1].replace("''", "'") if lit_raw.startswith("'") else float(lit_raw)
        conds.append((col, c["op"].upper(), lit))
    out = []
    for row in rows:
        ok = True
        for col, op, lit in conds:
            if op == "LIKE":
                ok = row.get(col) is not None and bool(_like(str(lit)).match(str(row[col])))
            else:
                ok = _compare(row.get(col), op, lit)
            if not ok:
                break
        if ok:
            out.append(row)
    if m["order"]:
        col = m["order"].lower()
        out.sort(key=lambda r: (r.get(col) is None, _sort_key(r.get(col))))
        if (m["dir"] or "").upper() == "DESC":
            out.reverse()
    cols = [c.strip().lower() for c in m["cols"].split(",")]
    if cols != ["*"]:
        for c in cols:
            if not re.fullmatch(r"\w+", c):
                raise _bad(f"the column {c!r} could not be parsed")
            if rows and c not in known:
                raise _bad(f"Field '{c}' for record '{table}' was not found.")
        out = [{c: r.get(c) for c in cols} for r in out]
    return out


def _sort_key(v: Any) -> Any:
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v):
        return (0, int(v), "")
    return (1, 0, str(v))
