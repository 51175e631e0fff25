"""The door every route shares: a bounded JSON parser and field validators.

Everything that leaves here is either a value RevBridge can use as it is, or a :class:`Rejected`
with a status and a one-line reason. Nothing else may escape (no ``RecursionError`` from
200,000 nested ``[``, no ``OverflowError`` from ``1e400``, no ``ValueError`` from a 5,000-digit
integer): an exception here would be a 500, which every vendor retries for days.

Routes validate the whole event with these helpers before any Temporal call, so an event either
starts (or signals) everything it should, or nothing.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from domain.ids import PROVIDER_ID
from webhooks.errors import Rejected

#: bytes; vendor events are far smaller (HubSpot's 100-event batches are the largest)
MAX_BODY = 1_000_000
#: nesting of objects and arrays; vendor events nest 5 or 6 deep (Stripe's expanded objects)
MAX_DEPTH = 32
#: digits in one JSON integer literal; amounts in minor units fit in 15
MAX_INT_DIGITS = 40
#: the largest amount accepted, in minor units (10 billion in major units)
MAX_AMOUNT = 10**12
#: timestamps accepted: from 2000-01-01 to 2100-01-01 (UTC)
MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)
#: free text kept from an event (decline codes, names of event types)
MAX_TEXT = 200

#: the tokens that decide nesting: an escape (two bytes), a quote, a bracket; one linear pass
_STRUCTURE = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)
_CURRENCY = re.compile(r"[A-Za-z]{3}")


async def read_body(request: Request) -> bytes:
    """The raw body, refused (413) past :data:`MAX_BODY` without reading more than that."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared[:12]) > MAX_BODY:
        raise Rejected(413, "body too large", "too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise Rejected(413, "body too large", "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _check_depth(body: bytes, max_depth: int) -> None:
    """Reject nesting deeper than ``max_depth`` before the recursive decoder sees it: one linear
    pass over escapes, quotes and brackets (brackets inside strings do not count), stopping at
    the first level too deep."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return
    depth = 0
    in_string = False
    for match in _STRUCTURE.finditer(body):
        token = match.group()
        if len(token) == 2:  # an escape: only meaningful inside a string
            continue
        if token == b'"':
            in_string = not in_string
        elif in_string:
            continue
        elif token in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise Rejected(400, f"JSON nested deeper than {max_depth} levels", "too_deep")
        else:
            depth -= 1


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise Rejected(400, f"JSON integer longer than {MAX_INT_DIGITS} digits", "bad_number")
    return int(text)


def _parse_float(text: str) -> float:
    if len(text) > MAX_INT_DIGITS * 2:
        raise Rejected(400, "JSON number too long", "bad_number")
    value = float(text)
    if not math.isfinite(value):
        raise Rejected(400, "JSON number out of range", "bad_number")
    return value


def _no_constant(name: str) -> Any:
    raise Rejected(400, f"{name} is not JSON", "bad_number")


def parse_json(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Strict, bounded JSON: UTF-8, at most ``max_depth`` levels, finite numbers of bounded
    length, no ``NaN``/``Infinity``. Only :class:`Rejected` (400) ever leaves this function."""
    if len(body) > MAX_BODY:
        raise Rejected(413, "body too large", "too_large")
    _check_depth(body, max_depth)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8", "malformed_json") from None
    try:
        return json.loads(
            text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_no_constant
        )
    except json.JSONDecodeError as exc:
        raise Rejected(400, f"malformed JSON at position {exc.pos}", "malformed_json") from None
    except RecursionError:  # cannot happen after _check_depth; never a 500 if it does
        raise Rejected(400, "JSON nested too deeply", "too_deep") from None
    except ValueError:
        raise Rejected(400, "malformed JSON", "malformed_json") from None


@dataclass(frozen=True)
class Echo:
    """The event is our own write coming back: acknowledged (200) and dropped, with the reason."""

    reason: str


# --- field validators: each returns a clean value or raises Rejected(422) --------------------------


def _bad(where: str, what: str) -> Rejected:
    return Rejected(422, f"{where} is {what}", "bad_field")


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Rejected(422, f"{where} is missing", "missing_field")
    return value


def provider_id(value: Any, where: str) -> str:
    """A provider ID as workflow IDs and search attributes may carry it (``domain.ids``)."""
    if value is None or value == "":
        raise Rejected(422, f"{where} is missing", "missing_field")
    if isinstance(value, bool):
        raise _bad(where, "not a provider ID")
    if isinstance(value, int) and 0 <= value < 10**30:
        value = str(value)
    if not isinstance(value, str) or not PROVIDER_ID.fullmatch(value):
        raise Rejected(422, f"{where} is not a provider ID", "bad_id")
    return value


def optional_provider_id(value: Any, where: str) -> str | None:
    return None if value in (None, "") else provider_id(value, where)


def amount(value: Any, where: str, default: int | None = None) -> int:
    """An amount in minor units: an integer from 0 to :data:`MAX_AMOUNT`."""
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(where, "not an amount in minor units")
    if not 0 <= value <= MAX_AMOUNT:
        raise _bad(where, "out of range")
    return value


def currency(value: Any, where: str, default: str | None = None) -> str:
    """An ISO 4217 code, upper-cased."""
    if value in (None, "") and default is not None:
        return default
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise _bad(where, "not a currency code")
    return value.upper()


def _in_range(at: datetime, where: str) -> datetime:
    if not MIN_TIME <= at < MAX_TIME:
        raise _bad(where, "out of range")
    return at


def unix_seconds(value: Any, where: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(where, "not a unix timestamp")
    if not MIN_TIME.timestamp() <= value < MAX_TIME.timestamp():
        raise _bad(where, "out of range")
    return datetime.fromtimestamp(value, UTC)


def epoch_ms(value: Any, where: str) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(where, "not epoch milliseconds")
    if not MIN_TIME.timestamp() * 1000 <= value < MAX_TIME.timestamp() * 1000:
        raise _bad(where, "out of range")
    return datetime.fromtimestamp(value / 1000, UTC)


def iso_timestamp(value: Any, where: str) -> datetime:
    """ISO 8601 with an offset (Salesforce writes ``+0000``); a naive one is taken as UTC."""
    if not isinstance(value, str) or len(value) > 40:
        raise _bad(where, "not an ISO 8601 timestamp")
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(where, "not an ISO 8601 timestamp") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return _in_range(at, where)


def text(value: Any, where: str, max_len: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or not value:
        raise Rejected(422, f"{where} is missing", "missing_field")
    if len(value) > max_len or not value.isprintable():
        raise _bad(where, "not a short single-line text")
    return value


def optional_text(value: Any, where: str, max_len: int = MAX_TEXT) -> str | None:
    return None if value in (None, "") else text(value, where, max_len)
