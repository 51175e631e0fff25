"""Scripted replies: what the "model" answers next, one entry per successful-looking request.

An entry is a JSON object, one of:

- ``{"tool_input": {...}}`` — a ``tool_use`` block for the requested tool (``tool_choice`` ``tool``
  names it, else the first custom tool), ``stop_reason: "tool_use"``. With no tool in the request
  the object comes back as JSON text (that is also the answer to ``output_config.format``).
- ``{"malformed": <any JSON>}`` — the same, but the value goes out verbatim as the tool input even
  if it is not an object or breaks the schema (the real API can return such input too, e.g. cut off
  at ``max_tokens``; telling good from bad is the client's job).
- ``{"text": "..."}`` — a text block, ``stop_reason: "end_turn"``. Next to ``tool_input`` /
  ``malformed`` it becomes a text block before the tool use.
- ``{"error": {"status": 529, "type"?: ..., "message"?: ..., "retry_after"?: s, "error_code"?: ...}}``
  (or just ``{"error": 529}``) — that error, in the API's envelope. A 429 carries ``retry-after: 1``
  unless ``retry_after`` says otherwise (``null`` for none); retry-after is capped at 60 s.

Optional on the non-error ones: ``"stop_reason"`` (override) and ``"usage"`` (override any of
``input_tokens``, ``output_tokens``, ``cache_read_input_tokens``, ``cache_creation_input_tokens``).

The queue empty, the emulator answers :func:`example_for` the tool's ``input_schema`` (or the
``output_config`` schema, as text): a deterministic minimal instance, so an unscripted request
still gets a well-formed answer.
"""

from __future__ import annotations

from typing import Any

from .errors import ERROR_TYPES, MAX_RETRY_AFTER_S

_KINDS = ("tool_input", "malformed", "error")
_USAGE_KEYS = frozenset(
    {"input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"}
)
_EXTRA_KEYS = frozenset({"text", "stop_reason", "usage"})
STOP_REASONS = frozenset(
    {
        "end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
        "model_context_window_exceeded",
    }
)  # fmt: skip
#: the string the default answer puts wherever a schema wants text
DEFAULT_STRING = "sandbox default reply"


def tool_reply(tool_input: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"tool_input": tool_input, **extra}


def malformed_reply(value: Any, **extra: Any) -> dict[str, Any]:
    return {"malformed": value, **extra}


def text_reply(text: str, **extra: Any) -> dict[str, Any]:
    return {"text": text, **extra}


def error_reply(
    status: int,
    message: str | None = None,
    *,
    error_type: str | None = None,
    retry_after: float | None = None,
    error_code: str | None = None,
) -> dict[str, Any]:
    err: dict[str, Any] = {"status": status}
    if message is not None:
        err["message"] = message
    if error_type is not None:
        err["type"] = error_type
    if retry_after is not None:
        err["retry_after"] = retry_after
    if error_code is not None:
        err["error_code"] = error_code
    return {"error": err}


def normalize(entry: Any) -> dict[str, Any]:
    """Check one scripted entry and fill in defaults; raises ValueError with a reason."""
    if not isinstance(entry, dict):
        raise ValueError("a scripted reply must be a JSON object")
    kinds = [k for k in _KINDS if k in entry]
    if len(kinds) > 1:
        raise ValueError(f"a scripted reply has one of {_KINDS}, got {kinds}")
    if not kinds and "text" not in entry:
        raise ValueError("a scripted reply needs tool_input, malformed, text or error")
    if kinds == ["error"]:
        return {"error": _normalize_error(entry)}
    unknown = set(entry) - set(_KINDS) - _EXTRA_KEYS
    if unknown:
        raise ValueError(f"unknown keys in a scripted reply: {sorted(unknown)}")
    out = dict(entry)
    if "tool_input" in out and not isinstance(out["tool_input"], dict):
        raise ValueError("tool_input must be an object (script anything else as 'malformed')")
    if "text" in out and not (isinstance(out["text"], str) and out["text"]):
        raise ValueError("text must be a non-empty string")
    if "stop_reason" in out and out["stop_reason"] not in STOP_REASONS:
        raise ValueError(f"stop_reason must be one of {sorted(STOP_REASONS)}")
    usage = out.get("usage")
    if usage is not None:
        if not isinstance(usage, dict) or set(usage) - _USAGE_KEYS:
            raise ValueError(f"usage may override only {sorted(_USAGE_KEYS)}")
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in usage.values()
        ):
            raise ValueError("usage values must be non-negative integers")
    return out


def _normalize_error(entry: dict[str, Any]) -> dict[str, Any]:
    if set(entry) != {"error"}:
        raise ValueError("an error reply has no other keys")
    err = entry["error"]
    if isinstance(err, int) and not isinstance(err, bool):
        err = {"status": err}
    if not isinstance(err, dict):
        raise ValueError("error must be a status code or an object with 'status'")
    unknown = set(err) - {"status", "type", "message", "retry_after", "error_code"}
    if unknown:
        raise ValueError(f"unknown keys in a scripted error: {sorted(unknown)}")
    status = err.get("status")
    if not (isinstance(status, int) and 400 <= status <= 599):
        raise ValueError("error.status must be an HTTP error status (400-599)")
    out = dict(err)
    if "retry_after" not in out:
        out["retry_after"] = 1 if status == 429 else None
    ra = out["retry_after"]
    if ra is not None:
        if not isinstance(ra, int | float) or isinstance(ra, bool) or ra < 0:
            raise ValueError("error.retry_after must be a non-negative number of seconds")
        out["retry_after"] = min(ra, MAX_RETRY_AFTER_S)
    out.setdefault("type", ERROR_TYPES.get(status))
    return out


def example_for(schema: Any, root: Any = None, depth: int = 0) -> Any:
    """A deterministic, minimal instance of a JSON schema: required properties only, enums take
    ``"unknown"`` when allowed (the least assertive answer) else their first value, strings are
    :data:`DEFAULT_STRING` cut to ``maxLength``, numbers their minimum or 0, booleans false,
    arrays ``minItems`` copies of one example item. Local ``$ref`` s are followed."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 16:
        return None
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return example_for(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return "unknown" if "unknown" in enum else enum[0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            return example_for((usable or options)[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties") or {}
        return {
            name: example_for(props.get(name, {}), root, depth + 1)
            for name in schema.get("required") or []
        }
    if kind == "array":
        count = schema.get("minItems") or 0
        return [example_for(schema.get("items") or {}, root, depth + 1) for _ in range(count)]
    if kind == "string":
        text = DEFAULT_STRING
        min_len, max_len = schema.get("minLength") or 0, schema.get("maxLength")
        text = text.ljust(min_len, ".")
        return text[:max_len] if isinstance(max_len, int) else text
    if kind in ("integer", "number"):
        if "minimum" in schema:
            value = schema["minimum"]
        elif "exclusiveMinimum" in schema:
            value = schema["exclusiveMinimum"] + 1
        else:
            value = min(0, schema.get("maximum", 0))
        return int(value) if kind == "integer" else value
    if kind == "boolean":
        return False
    return None
