"""Rails-style bracket form decoding (what stripe-python sends) and parameter coercion.

``items[0][price]=p&metadata[k]=v&expand[0]=x`` decodes to
``{"items": [{"price": "p"}], "metadata": {"k": "v"}, "expand": ["x"]}``. Values stay strings;
the ``as_*`` helpers coerce them the way Stripe validates them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from .errors import StripeError, missing

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
# Maps whose keys are caller data: never turn their digit keys into a list.
_FREE_MAPS = {"metadata", "payload"}


def parse_pairs(raw: str) -> list[tuple[str, str]]:
    return parse_qsl(raw, keep_blank_values=True)


def decode(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in pairs:
        m = _KEY.match(key)
        if not m:
            raise StripeError(400, f"Invalid parameter name: {key}", param=key)
        tokens = [m.group(1), *re.findall(r"\[([^\[\]]*)\]", m.group(2))]
        node = root
        for i, tok in enumerate(tokens[:-1]):
            nxt = node.get(tok)
            if nxt is None or not isinstance(nxt, dict):
                if isinstance(nxt, str) and nxt != "":
                    raise StripeError(400, f"Invalid hash for {'.'.join(tokens[: i + 1])}")
                nxt = {}
                node[tok] = nxt
            node = nxt
        last = tokens[-1]
        if last == "":  # a[]=x appends
            last = str(len(node))
        node[last] = value
    return _listify(root, None)


def _listify(node: Any, name: str | None) -> Any:
    if not isinstance(node, dict):
        return node
    out = {k: _listify(v, k) for k, v in node.items()}
    if name not in _FREE_MAPS and out and all(k.isdigit() for k in out):
        return [out[k] for k in sorted(out, key=int)]
    return out


# --- coercion -------------------------------------------------------------------------------------


def as_int(
    params: Mapping[str, Any], name: str, default: int | None = None, *, required: bool = False
) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing(name)
        return default
    try:
        return int(str(value))
    except ValueError:
        raise StripeError(400, f"Invalid integer: {value}", param=name) from None


def as_float(params: Mapping[str, Any], name: str, default: float | None = None) -> float | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return float(str(value))
    except ValueError:
        raise StripeError(400, f"Invalid decimal: {value}", param=name) from None


def as_bool(params: Mapping[str, Any], name: str, default: bool | None = None) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if str(value).lower() == "true":
        return True
    if str(value).lower() == "false":
        return False
    raise StripeError(400, f"Invalid boolean: {value}", param=name)


def as_str(
    params: Mapping[str, Any], name: str, default: str | None = None, *, required: bool = False
) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise missing(name)
        return default
    if not isinstance(value, str):
        raise StripeError(400, f"Invalid string: {value!r}", param=name)
    return value


def as_enum(
    params: Mapping[str, Any], name: str, allowed: Iterable[str], default: str | None = None
) -> str | None:
    value = as_str(params, name, default)
    allowed = list(allowed)
    if value is not None and value not in allowed:
        raise StripeError(
            400,
            f"Invalid {name}: must be one of {', '.join(allowed)}",
            param=name,
            code="parameter_invalid_empty" if value == "" else None,
        )
    return value


def as_list(params: Mapping[str, Any], name: str) -> list[Any]:
    value = params.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):  # metadata-like digit keys kept as a map
        return list(value.values())
    return [value]


def as_dict(params: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise StripeError(400, f"Invalid hash for {name}", param=name)
    return value


def check_known(params: Mapping[str, Any], known: Iterable[str]) -> None:
    allowed = set(known) | {"expand"}
    for key in params:
        if key not in allowed:
            raise StripeError(
                400,
                f"Received unknown parameter: {key}",
                code="parameter_unknown",
                param=key,
            )


def apply_metadata(current: dict[str, str], update: Any, param: str = "metadata") -> dict[str, str]:
    """Stripe's metadata update: merge keys, ``""`` unsets a key, ``metadata=""`` clears all."""
    if update is None:
        return current
    if update == "":
        return {}
    if not isinstance(update, dict):
        raise StripeError(400, "Invalid hash", param=param)
    out = dict(current)
    for k, v in update.items():
        if len(k) > 40:
            raise StripeError(
                400,
                f"Metadata keys can have up to 40 characters. The key '{k}' is too long.",
                param=f"{param}[{k}]",
            )
        if v == "" or v is None:
            out.pop(k, None)
            continue
        v = str(v)
        if len(v) > 500:
            raise StripeError(
                400,
                f"Metadata values can have up to 500 characters, but you passed in a value "
                f"that is {len(v)} characters.",
                param=f"{param}[{k}]",
            )
        out[k] = v
    if len(out) > 50:
        raise StripeError(400, "You can have up to 50 metadata keys.", param=param)
    return out
