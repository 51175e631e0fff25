"""Decoding of the parameters the official ``chargebee`` client sends.

The client (``chargebee.util.serialize``) flattens its arguments like this:

- nested dicts: ``billing_address[city]=X``;
- lists of dicts put the index LAST: ``subscription_items[item_price_id][0]=p1``;
- lists of scalars: ``coupon_ids[0]=SAVE10``;
- booleans ``true``/``false``; ``None`` becomes an empty string;
- ``in``/``not_in``/``between`` filter values are the *Python repr* of a list of strings:
  ``status[in]=['active', 'in_trial']`` (parsed here with ``ast.literal_eval``, never ``eval``).

Everything is decoded into plain dicts, lists and strings; endpoints coerce the types they need.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SUB = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """A parameter that cannot be decoded; ``param`` names it the way the client sent it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class _Indexed(dict):
    """A list under construction: index -> element (indices may arrive in any order)."""


def parse_form(body: bytes) -> dict[str, Any]:
    return decode_pairs(parse_qsl(body.decode("utf-8"), keep_blank_values=True))


def parse_query(query: str) -> dict[str, Any]:
    return decode_pairs(parse_qsl(query, keep_blank_values=True))


def decode_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    seen: set[str] = set()
    for key, value in pairs:
        m = _KEY.match(key)
        parts = [m.group(1), *_SUB.findall(m.group(2))] if m else [key]
        # httpx turns a list value into a repeated key: keep every value.
        repeated = key in seen
        seen.add(key)
        if len(parts) >= 2 and parts[-1].isdigit():
            _put_indexed(out, key, parts[:-1], int(parts[-1]), value, repeated)
        else:
            _put(out, key, parts, value, repeated)
    return _finish(out)


def _walk(root: dict[str, Any], key: str, path: list[str]) -> dict[str, Any]:
    node = root
    for part in path:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict) or isinstance(nxt, _Indexed):
            raise FormError(key, f"{key} : conflicts with another parameter")
        node = nxt
    return node


def _set(node: dict[Any, Any], slot: Any, value: str, repeated: bool) -> None:
    if repeated and slot in node:
        prev = node[slot]
        node[slot] = [*prev, value] if isinstance(prev, list) else [prev, value]
    else:
        node[slot] = value


def _put(root: dict[str, Any], key: str, parts: list[str], value: str, repeated: bool) -> None:
    node = _walk(root, key, parts[:-1])
    if isinstance(node.get(parts[-1]), dict):
        raise FormError(key, f"{key} : conflicts with another parameter")
    _set(node, parts[-1], value, repeated)


def _put_indexed(
    root: dict[str, Any], key: str, path: list[str], idx: int, value: str, repeated: bool
) -> None:
    if len(path) == 1:  # coupon_ids[0]=X
        container = root.setdefault(path[0], _Indexed())
        if not isinstance(container, _Indexed):
            raise FormError(key, f"{key} : conflicts with another parameter")
        _set(container, idx, value, repeated)
        return
    # subscription_items[item_price_id][0]=X: element idx of list "subscription_items"
    parent = _walk(root, key, path[:-2])
    container = parent.setdefault(path[-2], _Indexed())
    if not isinstance(container, _Indexed):
        raise FormError(key, f"{key} : conflicts with another parameter")
    element = container.setdefault(idx, {})
    if not isinstance(element, dict):
        raise FormError(key, f"{key} : conflicts with another parameter")
    _set(element, path[-1], value, repeated)


def _finish(node: Any) -> Any:
    if isinstance(node, _Indexed):
        return [_finish(node[i]) for i in sorted(node)]
    if isinstance(node, dict):
        return {k: _finish(v) for k, v in node.items()}
    return node


# --- value coercion -----------------------------------------------------------------------------


def parse_list_literal(raw: Any, param: str) -> list[str]:
    """``['a', 'b']`` (Python repr, what the client sends), ``["a","b"]`` (JSON) or ``a,b``."""
    if isinstance(raw, list):
        return [str(x) for x in raw]
    if not isinstance(raw, str):
        raise FormError(param, f"{param} : invalid list value")
    text = raw.strip()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            try:
                value = json.loads(text)
            except ValueError:
                raise FormError(param, f"{param} : invalid list value {raw!r}") from None
        if not isinstance(value, list | tuple):
            raise FormError(param, f"{param} : invalid list value {raw!r}")
        return [str(x) for x in value]
    return [p.strip() for p in text.split(",") if p.strip()]


def to_int(raw: Any, param: str) -> int:
    if isinstance(raw, bool):
        raise FormError(param, f"{param} : invalid integer value")
    if isinstance(raw, int):
        return raw
    try:
        return int(str(raw).strip())
    except ValueError:
        raise FormError(param, f"{param} : invalid integer value {raw!r}") from None


def to_bool(raw: Any, param: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0", ""):
        return False
    raise FormError(param, f"{param} : invalid boolean value {raw!r}")


def to_json_object(raw: Any, param: str) -> dict[str, Any]:
    """A "json key" (``meta_data``): the client passes the value through as given, so callers
    must send ``json.dumps(...)``. A Python-repr dict is rejected like Chargebee does."""
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        raise FormError(param, f"{param} : invalid JSON {str(raw)[:60]!r}") from None
    if not isinstance(value, dict):
        raise FormError(param, f"{param} : must be a JSON object")
    return value
