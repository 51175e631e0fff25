"""SOQL: a small tokenizer, a recursive-descent parser and an evaluator over the store.

Supported (reference §1.5)::

    SELECT item, ... FROM Obj [WHERE cond] [ORDER BY path [ASC|DESC] [NULLS FIRST|LAST], ...]
                              [LIMIT n] [OFFSET n]
    item := path | (SELECT ... FROM ChildRelationship [WHERE] [ORDER BY] [LIMIT]) | COUNT()
          | FIELDS(ALL|STANDARD|CUSTOM)
    path := Field | Rel.Field | Rel.Rel.Field          (Account.Name, Account__r.Name, What.Name)
    cond := cond OR cond | cond AND cond | NOT cond | (cond)
          | path op literal | path [NOT] IN (literal, ... | SELECT one_field FROM ...)
          | path LIKE 'pat%' | path INCLUDES|EXCLUDES ('a;b', 'c')
    literal := 'string' | 12 | 1.5 | 2024-01-31 | 2024-01-31T00:00:00Z | null | true | false
             | TODAY | YESTERDAY | TOMORROW | LAST_N_DAYS:n | NEXT_N_DAYS:n | N_DAYS_AGO:n
             | THIS_WEEK | LAST_WEEK | THIS_MONTH | LAST_MONTH | NEXT_MONTH | THIS_YEAR | LAST_YEAR

Names are case-insensitive; results use canonical casing. Text comparisons are case-insensitive,
``!=`` and ``NOT IN`` match nulls (as in SOQL). Date literals are ranges in UTC. Errors are 400
``MALFORMED_QUERY`` / ``INVALID_FIELD`` / ``INVALID_TYPE`` with Salesforce's row/column message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from .errors import SfError, bad
from .schema import NUMBER_TYPES, TEXT_TYPES, Field, SObject, normalize_id
from .store import Store, attributes
from .values import parse_datetime, to_json

MAX_OFFSET = 2000

# --- tokens ------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:\\.|[^'\\])*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<punct>[(),:])
    """,
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "'": "'", '"': '"', "\\": "\\"}
_DATE_LITERALS = {
    "TODAY", "YESTERDAY", "TOMORROW", "THIS_WEEK", "LAST_WEEK", "THIS_MONTH", "LAST_MONTH",
    "NEXT_MONTH", "THIS_YEAR", "LAST_YEAR", "LAST_90_DAYS", "NEXT_90_DAYS",
}  # fmt: skip
_DATE_N_LITERALS = {"LAST_N_DAYS", "NEXT_N_DAYS", "N_DAYS_AGO"}


@dataclass
class Token:
    kind: str  # string, datetime, date, number, ident, op, punct, end
    text: str
    pos: int

    def kw(self, *words: str) -> bool:
        return self.kind == "ident" and self.text.upper() in words


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise _located(text, pos, f"unexpected token: {text[pos]!r}"[:80].replace('"', ""))
        if m.lastgroup != "ws":
            tokens.append(Token(m.lastgroup or "", m.group(), pos))
        pos = m.end()
    tokens.append(Token("end", "<EOF>", len(text)))
    return tokens


def _located(text: str, pos: int, message: str, code: str = "MALFORMED_QUERY") -> SfError:
    """Salesforce's error text: the query line, a caret, ``ERROR at Row:r:Column:c``, the reason."""
    row = text.count("\n", 0, pos) + 1
    line_start = text.rfind("\n", 0, pos) + 1
    line_end = text.find("\n", pos)
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    col = pos - line_start
    return bad(code, f"\n{line}\n{' ' * col}^\nERROR at Row:{row}:Column:{col + 1}\n{message}")


# --- syntax tree -------------------------------------------------------------------------------


@dataclass
class Ident:
    text: str
    pos: int


@dataclass
class Literal:
    kind: str  # string, number, date, datetime, null, bool, range
    value: Any
    pos: int


@dataclass
class CountAll:
    pos: int


@dataclass
class FieldsFn:
    kind: str  # ALL, STANDARD, CUSTOM
    pos: int


@dataclass
class OrderItem:
    path: Ident
    desc: bool
    nulls_first: bool


@dataclass
class Query:
    select: list[Any]  # Ident | Query (subquery) | CountAll | FieldsFn
    source: Ident
    where: Any = None
    order: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


@dataclass
class BoolOp:
    op: str  # AND | OR
    items: list[Any]


@dataclass
class NotOp:
    item: Any


@dataclass
class Compare:
    path: Ident
    op: str  # = != < <= > >= LIKE INCLUDES EXCLUDES IN NOTIN
    value: Any  # Literal | list[Literal] | Query (semi-join)


# --- parser ------------------------------------------------------------------------------------


class Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def parse(self) -> Query:
        q = self.query()
        if self.peek().kind != "end":
            raise self.error()
        return q

    # helpers
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        tok = self.peek()
        self.i += 1
        return tok

    def accept_kw(self, *words: str) -> Token | None:
        return self.take() if self.peek().kw(*words) else None

    def expect_kw(self, word: str) -> Token:
        if not self.peek().kw(word):
            raise self.error()
        return self.take()

    def accept(self, text: str) -> bool:
        if self.peek().kind in ("punct", "op") and self.peek().text == text:
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise self.error()

    def ident(self) -> Ident:
        tok = self.take()
        if tok.kind != "ident":
            raise self.error(tok)
        return Ident(tok.text, tok.pos)

    def error(self, tok: Token | None = None, message: str | None = None) -> SfError:
        tok = tok or self.peek()
        return _located(self.text, tok.pos, message or f"unexpected token: {tok.text}")

    def integer(self) -> int:
        tok = self.take()
        if tok.kind != "number" or not tok.text.isdigit():
            raise self.error(tok)
        return int(tok.text)

    # grammar
    def query(self) -> Query:
        self.expect_kw("SELECT")
        select = [self.select_item()]
        while self.accept(","):
            select.append(self.select_item())
        self.expect_kw("FROM")
        q = Query(select, self.ident())
        if self.accept_kw("WHERE"):
            q.where = self.condition()
        if self.accept_kw("ORDER"):
            self.expect_kw("BY")
            q.order = [self.order_item()]
            while self.accept(","):
                q.order.append(self.order_item())
        if self.accept_kw("LIMIT"):
            q.limit = self.integer()
        if self.accept_kw("OFFSET"):
            q.offset = self.integer()
        return q

    def select_item(self) -> Any:
        tok = self.peek()
        if self.accept("("):
            sub = self.query()
            self.expect(")")
            return sub
        if tok.kw("COUNT") and self.peek(1).text == "(":
            self.i += 2
            if not self.accept(")"):
                raise self.error(message="emulator: only COUNT() is supported, not COUNT(field)")
            return CountAll(tok.pos)
        if tok.kw("FIELDS") and self.peek(1).text == "(":
            self.i += 2
            kind = self.take()
            if not kind.kw("ALL", "STANDARD", "CUSTOM"):
                raise self.error(kind)
            self.expect(")")
            return FieldsFn(kind.text.upper(), tok.pos)
        if tok.kind == "ident" and self.peek(1).text == "(":
            raise self.error(message=f"emulator: function {tok.text}() is not supported")
        if tok.kw("FROM"):
            raise self.error()
        return self.ident()

    def order_item(self) -> OrderItem:
        path = self.ident()
        desc = False
        if self.accept_kw("DESC"):
            desc = True
        else:
            self.accept_kw("ASC")
        nulls_first = not desc
        if self.accept_kw("NULLS"):
            which = self.take()
            if not which.kw("FIRST", "LAST"):
                raise self.error(which)
            nulls_first = which.text.upper() == "FIRST"
        return OrderItem(path, desc, nulls_first)

    def condition(self) -> Any:
        items = [self.conjunction()]
        while self.accept_kw("OR"):
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else BoolOp("OR", items)

    def conjunction(self) -> Any:
        items = [self.negation()]
        while self.accept_kw("AND"):
            items.append(self.negation())
        return items[0] if len(items) == 1 else BoolOp("AND", items)

    def negation(self) -> Any:
        if self.accept_kw("NOT"):
            return NotOp(self.negation())
        if self.accept("("):
            inner = self.condition()
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> Compare:
        path = self.ident()
        if self.accept_kw("NOT"):
            self.expect_kw("IN")
            return Compare(path, "NOTIN", self.in_values())
        if self.accept_kw("IN"):
            return Compare(path, "IN", self.in_values())
        if self.accept_kw("LIKE"):
            return Compare(path, "LIKE", self.literal())
        word = self.accept_kw("INCLUDES", "EXCLUDES")
        if word:
            values = self.in_values()
            if isinstance(values, Query):
                raise self.error()
            return Compare(path, word.text.upper(), values)
        tok = self.take()
        if tok.kind != "op":
            raise self.error(tok)
        return Compare(path, "!=" if tok.text == "<>" else tok.text, self.literal())

    def in_values(self) -> list[Literal] | Query:
        self.expect("(")
        if self.peek().kw("SELECT"):
            sub = self.query()
            self.expect(")")
            return sub
        values = [self.literal()]
        while self.accept(","):
            values.append(self.literal())
        self.expect(")")
        return values

    def literal(self) -> Literal:
        tok = self.take()
        if tok.kind == "string":
            return Literal("string", _unescape(tok.text[1:-1]), tok.pos)
        if tok.kind == "number":
            value = float(tok.text) if "." in tok.text else int(tok.text)
            return Literal("number", value, tok.pos)
        if tok.kind == "date":
            try:
                return Literal("date", date.fromisoformat(tok.text), tok.pos)
            except ValueError:
                raise self.error(tok) from None
        if tok.kind == "datetime":
            dt = parse_datetime(tok.text)
            if dt is None:
                raise self.error(tok)
            return Literal("datetime", dt, tok.pos)
        if tok.kind == "ident":
            word = tok.text.upper()
            if word == "NULL":
                return Literal("null", None, tok.pos)
            if word in ("TRUE", "FALSE"):
                return Literal("bool", word == "TRUE", tok.pos)
            if word in _DATE_LITERALS:
                return Literal("range", (word, 0), tok.pos)
            if word in _DATE_N_LITERALS:
                self.expect(":")
                return Literal("range", (word, self.integer()), tok.pos)
        raise self.error(tok)


def _unescape(body: str) -> str:
    """Backslash escapes; ``\\%`` and ``\\_`` stay escaped for LIKE."""
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append("\\" + nxt if nxt in "%_" else _ESCAPES.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# --- compiled plans ----------------------------------------------------------------------------


@dataclass
class Path:
    """A resolved field path. ``rels`` are relationship names to follow (lower case)."""

    rels: list[str]
    field_lower: str
    field: Field  # static type information (first match for polymorphic lookups)
    keys: list[str]  # canonical names, one per part

    def value(self, store: Store, sobj: SObject, rec: dict[str, Any]) -> Any:
        for rel in self.rels:
            ref = sobj.relationship(rel)
            hit = store.get_any(rec.get(ref.name)) if ref else None
            if hit is None or hit[1]["IsDeleted"]:
                return None
            sobj, rec = hit
        f = sobj.fields.get(self.field_lower)
        return rec.get(f.name) if f else None


@dataclass
class Leaf:
    field_lower: str


@dataclass
class RelNode:
    rel: str
    children: dict[str, Any] = field(default_factory=dict)


@dataclass
class SubNode:
    plan: Plan
    link_field: str  # the lookup on the child that points at the parent


@dataclass
class Plan:
    sobj: SObject
    tree: dict[str, Any]
    where: Callable[[SObject, dict[str, Any]], bool] | None
    order: list[tuple[Path, bool, bool]]
    limit: int | None
    offset: int | None
    count_only: bool = False
    paths: list[Path] = field(default_factory=list)  # the plain select paths (semi-joins)
    #: the only records the WHERE can match, found in an index (None: scan the table)
    candidates: set[str] | None = None


class Compiler:
    def __init__(self, store: Store, text: str) -> None:
        self.store = store
        self.schema = store.schema
        self.text = text

    def err(self, pos: int, message: str, code: str) -> SfError:
        return _located(self.text, pos, message, code)

    def compile(self, q: Query, sobj: SObject | None = None) -> Plan:
        if sobj is None:
            found = self.schema.get(q.source.text)
            if found is None:
                raise self.err(
                    q.source.pos,
                    f"sObject type '{q.source.text}' is not supported. If you are attempting to "
                    "use a custom object, be sure to append the '__c' after the entity name. "
                    "Please reference your WSDL or the describe call for the appropriate names.",
                    "INVALID_TYPE",
                )
            sobj = found
        if q.offset is not None and q.offset > MAX_OFFSET:
            raise bad("NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}")
        plan = Plan(sobj, {}, None, [], q.limit, q.offset)
        for item in q.select:
            if isinstance(item, CountAll):
                if len(q.select) > 1:
                    raise self.err(
                        item.pos,
                        "COUNT() must be the only element in the SELECT list",
                        "MALFORMED_QUERY",
                    )
                plan.count_only = True
            elif isinstance(item, FieldsFn):
                if item.kind != "STANDARD" and (q.limit is None or q.limit > 200):
                    raise self.err(
                        item.pos,
                        "The SOQL FIELDS function must have a LIMIT of at most 200",
                        "MALFORMED_QUERY",
                    )
                for f in sobj.fields.values():
                    if item.kind == "ALL" or (item.kind == "CUSTOM") == f.custom:
                        plan.tree.setdefault(f.name, Leaf(f.name.lower()))
            elif isinstance(item, Query):
                self._subquery(plan, item)
            else:
                path = self.path(sobj, item)
                plan.paths.append(path)
                node = plan.tree
                for rel, key in zip(path.rels, path.keys, strict=False):
                    rel_node = node.setdefault(key, RelNode(rel))
                    node = rel_node.children
                node.setdefault(path.keys[-1], Leaf(path.field_lower))
        if q.where is not None:
            plan.where = self.condition(sobj, q.where)
            plan.candidates = self.candidates(sobj, q.where)
        plan.order = [(self.path(sobj, o.path), o.desc, o.nulls_first) for o in q.order]
        return plan

    def _subquery(self, plan: Plan, q: Query) -> None:
        rel = plan.sobj.children.get(q.source.text.lower())
        child = self.schema.get(rel.child) if rel else None
        if rel is None or child is None:
            raise self.err(
                q.source.pos,
                f"Didn't understand relationship '{q.source.text}' in FROM part of query call. "
                "If you are attempting to use a custom relationship, be sure to append the '__r' "
                "after the custom relationship name. Please reference your WSDL or the describe "
                "call for the appropriate names.",
                "INVALID_TYPE",
            )
        sub = self.compile(q, child)
        if sub.count_only or any(isinstance(n, SubNode) for n in sub.tree.values()):
            raise self.err(
                q.source.pos,
                "nested subqueries and COUNT() are not supported here",
                "MALFORMED_QUERY",
            )
        plan.tree[rel.name] = SubNode(sub, rel.field)

    def path(self, sobj: SObject, ident: Ident) -> Path:
        parts = ident.text.split(".")
        if (
            len(parts) > 1
            and parts[0].lower() == sobj.name.lower()
            and not sobj.relationship(parts[0])
        ):
            parts = parts[1:]  # "Account.Name" FROM Account may name the object itself
        objs, keys = [sobj], []
        for part in parts[:-1]:
            ref = next((r for o in objs if (r := o.relationship(part))), None)
            if ref is None:
                raise self.err(
                    ident.pos,
                    f"Didn't understand relationship '{part}' in field path. If you are attempting "
                    "to use a custom relationship, be sure to append the '__r' after the custom "
                    "relationship name. Please reference your WSDL or the describe call for the "
                    "appropriate names.",
                    "INVALID_FIELD",
                )
            keys.append(ref.relationship_name or part)
            objs = [o for t in ref.reference_to if (o := self.schema.get(t))]
        last = parts[-1]
        f = next((x for o in objs if (x := o.field(last))), None)
        if f is None:
            raise self.err(
                ident.pos,
                f"No such column '{last}' on entity '{objs[0].name if objs else sobj.name}'. If you "
                "are attempting to use a custom field, be sure to append the '__c' after the custom "
                "field name. Please reference your WSDL or the describe call for the appropriate "
                "names.",
                "INVALID_FIELD",
            )
        keys.append(f.name)
        return Path([p.lower() for p in parts[:-1]], last.lower(), f, keys)

    # conditions ---------------------------------------------------------------------------------

    def condition(self, sobj: SObject, node: Any) -> Callable[[SObject, dict[str, Any]], bool]:
        if isinstance(node, BoolOp):
            fns = [self.condition(sobj, item) for item in node.items]
            if node.op == "AND":
                return lambda o, r: all(fn(o, r) for fn in fns)
            return lambda o, r: any(fn(o, r) for fn in fns)
        if isinstance(node, NotOp):
            inner = self.condition(sobj, node.item)
            return lambda o, r: not inner(o, r)
        assert isinstance(node, Compare)
        path = self.path(sobj, node.path)
        store, ftype = self.store, path.field.type

        def get(o: SObject, r: dict[str, Any]) -> Any:
            return path.value(store, o, r)

        if node.op in ("IN", "NOTIN"):
            negate = node.op == "NOTIN"
            if isinstance(node.value, Query):
                keys = self._semi_join(node.value, path)
            else:
                keys = {_norm(self.literal(path.field, lit), ftype) for lit in node.value}
            return lambda o, r: (_norm(get(o, r), ftype) in keys) != negate
        if node.op == "LIKE":
            if path.field.type not in TEXT_TYPES or node.value.kind != "string":
                raise self.err(
                    node.value.pos, "invalid operator on field or value for LIKE", "MALFORMED_QUERY"
                )
            regex = _like_regex(node.value.value)
            return lambda o, r: isinstance(v := get(o, r), str) and regex.fullmatch(v) is not None
        if node.op in ("INCLUDES", "EXCLUDES"):
            wanted = [
                {p.strip().casefold() for p in lit.value.split(";")}
                for lit in node.value
                if lit.kind == "string"
            ]
            excludes = node.op == "EXCLUDES"

            def includes(o: SObject, r: dict[str, Any]) -> bool:
                have = {p.casefold() for p in (get(o, r) or "").split(";") if p}
                return any(w <= have for w in wanted) != excludes

            return includes
        value = self.literal(path.field, node.value)
        op = node.op
        if node.value.kind == "range":
            lo, hi = _date_range(*node.value.value, path.field.type)
            return lambda o, r: _in_range(op, get(o, r), lo, hi)
        if value is None and op not in ("=", "!="):
            raise self.err(node.value.pos, "invalid operator for null", "MALFORMED_QUERY")
        key = _norm(value, ftype)
        return lambda o, r: _compare(op, _norm(get(o, r), ftype), key)

    def candidates(self, sobj: SObject, node: Any) -> set[str] | None:
        """The IDs a WHERE can only match among, from the store's indexes: ``=`` / ``IN`` on the
        Id, a unique or external-ID field, or a lookup, alone or in an AND. The WHERE still runs
        on them; this only spares a large org a scan of the whole table per query."""
        if isinstance(node, BoolOp):
            if node.op != "AND":
                return None
            found = [c for item in node.items if (c := self.candidates(sobj, item)) is not None]
            return set.intersection(*found) if found else None
        if not isinstance(node, Compare) or node.op not in ("=", "IN"):
            return None
        if isinstance(node.value, Query):
            return None
        path = self.path(sobj, node.path)
        f = path.field
        if path.rels or not (f.name == "Id" or f.external_id or f.unique or f.type == "reference"):
            return None
        ids: set[str] = set()
        for lit in node.value if node.op == "IN" else [node.value]:
            if lit.kind != "string" or not lit.value.isascii():
                return None
            try:
                value = self.literal(f, lit)
                ids.update(self.store.find_by(sobj, f, value))
            except SfError:
                return None  # let the WHERE itself answer (or refuse) as before
        return ids

    def _semi_join(self, q: Query, path: Path) -> set[Any]:
        sub = self.compile(q)
        if len(sub.paths) != 1 or len(q.select) != 1:
            raise self.err(
                q.source.pos, "a semi-join subquery selects exactly one field", "MALFORMED_QUERY"
            )
        rows = execute_rows(self.store, sub, include_deleted=False)
        inner, ftype = sub.paths[0], path.field.type
        return {_norm(inner.value(self.store, sub.sobj, r), ftype) for r in rows} - {None}

    def literal(self, f: Field, lit: Literal) -> Any:
        """Check a literal against the field's type (Salesforce is strict) and convert it."""
        if lit.kind == "null":
            return None
        kind, want = lit.kind, f.type
        if want in ("id", "reference"):
            if kind != "string":
                raise self._type_error(f, lit, "id", quoted=True)
            nid = normalize_id(lit.value)
            if nid is None:
                raise self.err(
                    lit.pos, f"invalid ID field: {lit.value}", "INVALID_QUERY_FILTER_OPERATOR"
                )
            return nid
        if want in TEXT_TYPES:
            if kind != "string":
                raise self._type_error(f, lit, "string", quoted=True)
            return lit.value
        if want == "boolean" and kind != "bool":
            raise self._type_error(f, lit, "boolean", quoted=False)
        if want in NUMBER_TYPES and kind != "number":
            raise self._type_error(f, lit, "double" if want != "int" else "int", quoted=False)
        if want == "date" and kind not in ("date", "range"):
            raise self._type_error(f, lit, "date", quoted=False)
        if want == "datetime" and kind not in ("datetime", "range"):
            raise self._type_error(f, lit, "dateTime", quoted=False)
        return lit.value

    def _type_error(self, f: Field, lit: Literal, type_name: str, quoted: bool) -> SfError:
        how = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
        return self.err(
            lit.pos,
            f"value of filter criterion for field '{f.name}' must be of type {type_name} and {how}",
            "INVALID_FIELD" if f.type in ("date", "datetime") else "MALFORMED_QUERY",
        )


def _norm(value: Any, ftype: str) -> Any:
    """Comparable form: text compares case-insensitively (IDs are canonical, case-sensitive)."""
    if isinstance(value, str) and ftype not in ("id", "reference"):
        return value.casefold()
    return value


def _compare(op: str, value: Any, lit: Any) -> bool:
    if op == "=":
        return value == lit
    if op == "!=":
        return value != lit
    if value is None or lit is None:
        return False
    if isinstance(value, datetime) and isinstance(lit, date) and not isinstance(lit, datetime):
        value = value.date()
    try:
        return {"<": value < lit, "<=": value <= lit, ">": value > lit, ">=": value >= lit}[op]
    except TypeError:
        return False


def _date_range(name: str, n: int, ftype: str) -> tuple[Any, Any]:
    """[lo, hi) of a date literal, as dates (date fields) or UTC datetimes (datetime fields)."""
    t = datetime.now(UTC).date()
    week = t - timedelta(days=(t.weekday() + 1) % 7)  # weeks start on Sunday (en_US)
    month = t.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    last_month = (month - timedelta(days=1)).replace(day=1)
    ranges = {
        "TODAY": (t, t + timedelta(1)),
        "YESTERDAY": (t - timedelta(1), t),
        "TOMORROW": (t + timedelta(1), t + timedelta(2)),
        "LAST_N_DAYS": (t - timedelta(n), t + timedelta(1)),
        "NEXT_N_DAYS": (t + timedelta(1), t + timedelta(n + 1)),
        "N_DAYS_AGO": (t - timedelta(n), t - timedelta(n - 1)),
        "LAST_90_DAYS": (t - timedelta(90), t + timedelta(1)),
        "NEXT_90_DAYS": (t + timedelta(1), t + timedelta(91)),
        "THIS_WEEK": (week, week + timedelta(7)),
        "LAST_WEEK": (week - timedelta(7), week),
        "THIS_MONTH": (month, next_month),
        "LAST_MONTH": (last_month, month),
        "NEXT_MONTH": (next_month, (next_month + timedelta(days=32)).replace(day=1)),
        "THIS_YEAR": (t.replace(month=1, day=1), t.replace(year=t.year + 1, month=1, day=1)),
        "LAST_YEAR": (t.replace(year=t.year - 1, month=1, day=1), t.replace(month=1, day=1)),
    }
    lo, hi = ranges[name]
    if ftype == "datetime":
        return datetime.combine(lo, time(), UTC), datetime.combine(hi, time(), UTC)
    return lo, hi


def _in_range(op: str, value: Any, lo: Any, hi: Any) -> bool:
    if value is None:
        return op == "!="
    inside = lo <= value < hi
    return {
        "=": inside,
        "!=": not inside,
        "<": value < lo,
        "<=": value < hi,
        ">": value >= hi,
        ">=": value >= lo,
    }[op]


def _like_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


# --- execution ---------------------------------------------------------------------------------


def _sort_key(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    return int(value) if isinstance(value, bool) else value


def execute_rows(
    store: Store, plan: Plan, *, include_deleted: bool, rows: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Filter, sort and window the records of ``plan.sobj`` (or ``rows``, for subqueries)."""
    if rows is None and plan.candidates is not None and not include_deleted:
        table = store.table(plan.sobj)
        rows = [table[i] for i in sorted(plan.candidates)]  # IDs sort in creation order
    elif rows is None:
        rows = [r for r in store.table(plan.sobj).values() if include_deleted or not r["IsDeleted"]]
    if plan.where is not None:
        where, sobj = plan.where, plan.sobj
        rows = [r for r in rows if where(sobj, r)]
    else:
        rows = list(rows)
    for path, desc, nulls_first in reversed(plan.order):
        null_rank = 0 if nulls_first != desc else 1

        def key(r: dict[str, Any], path: Path = path, null_rank: int = null_rank) -> Any:
            v = path.value(store, plan.sobj, r)
            return (null_rank, 0) if v is None else (1 - null_rank, _sort_key(v))

        rows.sort(key=key, reverse=desc)
    start = plan.offset or 0
    end = None if plan.limit is None else start + plan.limit
    return rows[start:end]


class _Projector:
    def __init__(self, store: Store, version: str, include_deleted: bool) -> None:
        self.store = store
        self.version = version
        self.include_deleted = include_deleted
        self._children: dict[int, dict[str, list[dict[str, Any]]]] = {}

    def record(self, sobj: SObject, rec: dict[str, Any], tree: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": attributes(sobj, rec["Id"], self.version)}
        for key, node in tree.items():
            if isinstance(node, Leaf):
                f = sobj.fields.get(node.field_lower)
                out[key] = to_json(f, rec.get(f.name)) if f else None
            elif isinstance(node, RelNode):
                ref = sobj.relationship(node.rel)
                hit = self.store.get_any(rec.get(ref.name)) if ref else None
                live = hit is not None and not hit[1]["IsDeleted"]
                out[key] = self.record(hit[0], hit[1], node.children) if hit and live else None
            else:
                out[key] = self.subquery(rec["Id"], node)
        return out

    def subquery(self, parent_id: str, node: SubNode) -> dict[str, Any] | None:
        groups = self._children.get(id(node))
        link = node.plan.sobj.field(node.link_field)
        if groups is None and link is not None and not self.include_deleted:
            # the lookup's index: this parent's children without a scan of the child table
            table = self.store.table(node.plan.sobj)
            ids = self.store.find_by(node.plan.sobj, link, parent_id)
            groups = {parent_id: [table[i] for i in ids]}
        elif groups is None:
            groups = {}
            for r in self.store.table(node.plan.sobj).values():
                parent = r.get(node.link_field)
                if parent and (self.include_deleted or not r["IsDeleted"]):
                    groups.setdefault(parent, []).append(r)
            self._children[id(node)] = groups
        rows = groups.get(parent_id)
        if not rows:
            return None
        rows = execute_rows(self.store, node.plan, include_deleted=self.include_deleted, rows=rows)
        if not rows:
            return None
        records = [self.record(node.plan.sobj, r, node.plan.tree) for r in rows]
        return {"totalSize": len(records), "done": True, "records": records}


def run(
    store: Store, soql: str, *, include_deleted: bool = False, version: str = "62.0"
) -> tuple[int, list[dict[str, Any]]]:
    """Run a query: (totalSize, records). ``COUNT()`` gives (count, [])."""
    if not soql or not soql.strip():
        raise bad("MALFORMED_QUERY", "SOQL statement cannot be empty")
    plan = Compiler(store, soql).compile(Parser(soql).parse())
    rows = execute_rows(store, plan, include_deleted=include_deleted)
    if plan.count_only:
        return len(rows), []
    projector = _Projector(store, version, include_deleted)
    return len(rows), [projector.record(plan.sobj, r, plan.tree) for r in rows]
