"""Property values: HubSpot stores and returns every value as a string. This module normalises
written values per property type and reads them back as comparable Python values."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

#: the most characters a text property value holds (single/multi-line text, note and task bodies)
TEXT_MAX = 65_536


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    """``2024-01-01T00:00:00.000Z``: the form HubSpot uses for timestamps."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def datetime_ms(value: str) -> int | None:
    """Epoch milliseconds, from ms since epoch or an ISO-8601 date/datetime; None if neither."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def as_text(raw: Any) -> str:
    """What the JSON value becomes as a HubSpot property string."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


def normalize(definition: dict[str, Any], raw: Any) -> tuple[str, dict[str, str] | None]:
    """The stored string for ``raw`` (``""`` clears), or a problem ``{"name","error","message"}``."""
    name = definition["name"]
    if raw is None or raw == "":
        return "", None
    if isinstance(raw, dict | list):
        return "", {
            "name": name,
            "error": "INVALID_TYPE",
            "message": f"Property values must be strings, got {type(raw).__name__} for {name}",
        }
    text = as_text(raw)
    kind = definition["type"]
    if kind == "string" and len(text) > TEXT_MAX:
        return "", {
            "name": name,
            "error": "INVALID_PROPERTY_VALUE",
            "message": f"{name} has {len(text)} characters; a text value holds at most {TEXT_MAX}.",
        }
    if kind == "number":
        if number(text) is None:
            return "", {
                "name": name,
                "error": "INVALID_FLOAT",
                "message": f"{text} was not a valid number.",
            }
        return text, None
    if kind in ("datetime", "date"):
        ms = datetime_ms(text)
        if ms is None:
            return "", {
                "name": name,
                "error": "INVALID_DATE",
                "message": f"{text} was not a valid date or datetime (ISO-8601 or epoch ms).",
            }
        if kind == "date" and ms % 86_400_000:
            return "", {
                "name": name,
                "error": "INVALID_DATE",
                "message": f"{text} is not midnight UTC, which a date property requires.",
            }
        return (iso(ms)[:10] if kind == "date" else iso(ms)), None
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            return "", {
                "name": name,
                "error": "INVALID_BOOLEAN",
                "message": f"{text} was not a valid boolean (true or false).",
            }
        return text.lower(), None
    if kind == "enumeration" and definition.get("options"):
        allowed = [o["value"] for o in definition["options"]]
        values = text.split(";") if definition.get("fieldType") == "checkbox" else [text]
        bad = [v for v in values if v not in allowed]
        if bad:
            return "", {
                "name": name,
                "error": "INVALID_OPTION",
                "message": f"{bad[0]} was not one of the allowed options: "
                + ", ".join(
                    f"[label: {o['label']}, value: {o['value']}]" for o in definition["options"]
                ),
            }
    return text, None


def comparable(definition: dict[str, Any] | None, value: str) -> Any:
    """A sortable/comparable form of a stored or filter value for the property's type."""
    kind = definition["type"] if definition else "string"
    if kind == "number":
        n = number(value)
        return n if n is not None else value.lower()
    if kind in ("datetime", "date"):
        ms = datetime_ms(value)
        return ms if ms is not None else value.lower()
    return value.lower()
