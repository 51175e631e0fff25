"""Typed field values: JSON input → Python value (with Salesforce's validation errors), and
Python value → JSON output the way the REST API writes it.

Stored values are Python-typed: ``str``, ``bool``, ``int``, ``float``, ``datetime.date``,
timezone-aware UTC ``datetime.datetime`` (millisecond precision) or ``None``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from .errors import bad
from .schema import NUMBER_TYPES, TEXT_TYPES, Field

_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?"
)


def now() -> datetime:
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def parse_datetime(text: str) -> datetime | None:
    """ISO 8601 with ``Z``, ``+00:00`` or ``+0000``; a value without an offset is UTC."""
    m = _DATETIME_RE.fullmatch(text.strip())
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        ms = int((frac or "0")[:3].ljust(3, "0"))
        dt = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), ms * 1000)
    except ValueError:
        return None
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        return dt.replace(tzinfo=offset).astimezone(UTC)
    return dt.replace(tzinfo=UTC)


def parse_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        return None


def _deserialize_error(f: Field, value: Any) -> Exception:
    kind = {"int": "int", "date": "date", "datetime": "datetime", "boolean": "boolean"}.get(
        f.type, "double"
    )
    token = "VALUE_STRING" if isinstance(value, str) else type(value).__name__.upper()
    return bad(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from {token} value {value} "
        "or request may be missing a required field",
    )


def coerce(f: Field, value: Any) -> Any:
    """Validate and convert one input value for field ``f`` (errors are 400 SfErrors)."""
    if value is None:
        return False if f.type == "boolean" else None
    if isinstance(value, dict | list):
        raise bad(
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {f.type} from START_OBJECT value for {f.name}",
        )
    if f.type in TEXT_TYPES or f.type in ("id", "reference"):
        text = value if isinstance(value, str) else _num_text(value)
        if text == "":
            return None  # Salesforce stores an empty string as null
        return _check_text(f, text)
    if f.type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _deserialize_error(f, value)
    if f.type in NUMBER_TYPES:
        return _number(f, value)
    if f.type == "date":
        d = parse_date(value) if isinstance(value, str) else None
        if d is None:
            raise _deserialize_error(f, value)
        return d
    if f.type == "datetime":
        dt = parse_datetime(value) if isinstance(value, str) else None
        if dt is None:
            raise _deserialize_error(f, value)
        return dt
    return value


def _num_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_text(f: Field, text: str) -> str:
    if f.type == "picklist" and f.restricted and text not in f.picklist:
        raise bad(
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            f"{f.label}: bad value for restricted picklist field: {text}",
            [f.name],
        )
    if f.type == "multipicklist" and f.restricted:
        for part in text.split(";"):
            if part not in f.picklist:
                raise bad(
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    f"{f.label}: bad value for restricted picklist field: {part}",
                    [f.name],
                )
    if f.type == "email" and not _EMAIL_RE.fullmatch(text):
        raise bad("INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {text}", [f.name])
    if f.length and len(text) > f.length and f.type not in ("id", "reference"):
        raise bad(
            "STRING_TOO_LONG",
            f"{f.label}: data value too large: {text[:80]} (max length={f.length})",
            [f.name],
        )
    return text


def _number(f: Field, value: Any) -> int | float:
    if isinstance(value, bool):
        raise _deserialize_error(f, value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _deserialize_error(f, value) from None
    if f.type == "int":
        if isinstance(value, float) and not value.is_integer():
            raise _deserialize_error(f, value)
        return int(value)
    return float(value)


def to_json(f: Field, value: Any) -> Any:
    """How the REST API writes a stored value."""
    if value is None:
        return None
    if f.type == "datetime":
        return format_datetime(value)
    if f.type == "date":
        return value.isoformat()
    if f.type == "int":
        return int(value)
    if f.type in NUMBER_TYPES:
        return float(value)
    return value


def format_datetime(value: datetime) -> str:
    """``2024-05-01T12:00:00.000+0000``: milliseconds and a ``+0000`` offset, like Salesforce."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000"
