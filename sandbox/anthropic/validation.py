"""Request-body validation for ``POST /v1/messages`` (and ``/v1/messages/count_tokens``).

Checks what the Messages API checks before a model runs, with the API's field-path style messages
(``messages.1.content.0.text: ...``); every failure is a 400 ``invalid_request_error``.

Deliberate simplifications: roles must alternate and the first message must be ``user`` (the
newer API merges consecutive same-role turns instead [U]); sampling fields, ``thinking`` and
``output_config`` get shallow checks only; server tools (a ``type`` other than ``custom``) are
accepted without looking inside.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .errors import AnthropicApiError

#: top-level fields the API accepts (both SDK lines; anything else is "Extra inputs")
MESSAGE_FIELDS = frozenset(
    {
        "model", "max_tokens", "messages", "system", "tools", "tool_choice", "metadata",
        "stop_sequences", "stream", "temperature", "top_p", "top_k", "thinking", "output_config",
        "output_format", "cache_control", "container", "context_management", "mcp_servers",
        "service_tier", "inference_geo", "speed", "diagnostics",
    }
)  # fmt: skip
COUNT_TOKENS_FIELDS = frozenset(
    {
        "model", "messages", "system", "tools", "tool_choice", "thinking", "output_config",
        "output_format", "cache_control", "context_management", "mcp_servers", "speed",
    }
)  # fmt: skip

USER_BLOCKS = frozenset(
    {"text", "image", "document", "tool_result", "search_result", "container_upload"}
)
ASSISTANT_BLOCKS = frozenset(
    {
        "text", "tool_use", "thinking", "redacted_thinking", "server_tool_use",
        "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
        "mcp_tool_use", "mcp_tool_result", "container_upload",
    }
)  # fmt: skip
TOOL_CHOICE_TYPES = frozenset({"auto", "any", "tool", "none"})
CACHE_TTLS = frozenset({"5m", "1h"})
MAX_CACHE_BREAKPOINTS = 4
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")


def bad(message: str) -> AnthropicApiError:
    return AnthropicApiError(400, message)


@dataclass
class MessagesRequest:
    model: str
    messages: list[dict[str, Any]]
    max_tokens: int | None = None
    #: the system prompt as text blocks (a string becomes one block without cache_control)
    system: list[dict[str, Any]] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: dict[str, Any] | None = None
    stream: bool = False
    #: ``output_config.format`` (or the beta ``output_format``) JSON schema, if any
    output_schema: dict[str, Any] | None = None
    #: top-level automatic caching: marks the last cacheable block
    cache_control: dict[str, Any] | None = None
    breakpoints: int = 0

    @property
    def custom_tools(self) -> list[dict[str, Any]]:
        return [t for t in self.tools if t.get("type") in (None, "custom")]

    def forced_tool(self) -> dict[str, Any] | None:
        """The custom tool a scripted tool input answers with: ``tool_choice`` ``tool`` names it;
        otherwise the first custom tool (``none`` means no tool at all)."""
        choice = self.tool_choice or {"type": "auto"}
        if choice.get("type") == "none":
            return None
        tools = self.custom_tools
        if choice.get("type") == "tool":
            return next((t for t in tools if t["name"] == choice.get("name")), None)
        return tools[0] if tools else None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _cache_control(value: Any, where: str) -> int:
    """Validate a ``cache_control``; returns 1 when it is a breakpoint, else 0."""
    if value is None:
        return 0
    if not isinstance(value, dict):
        raise bad(f"{where}.cache_control: Input should be a valid dictionary")
    if value.get("type") != "ephemeral":
        raise bad(f"{where}.cache_control.type: Input should be 'ephemeral'")
    if "ttl" in value and value["ttl"] not in CACHE_TTLS:
        raise bad(f"{where}.cache_control.ttl: Input should be '5m' or '1h'")
    extra = set(value) - {"type", "ttl"}
    if extra:
        raise bad(f"{where}.cache_control.{sorted(extra)[0]}: Extra inputs are not permitted")
    return 1


def _text_block(block: dict[str, Any], where: str, section: str) -> None:
    text = block.get("text")
    if not isinstance(text, str):
        raise bad(f"{where}.text: Input should be a valid string")
    if not text:
        raise bad(f"{section}: text content blocks must be non-empty")


def _system(value: Any) -> tuple[list[dict[str, Any]], int]:
    if value is None:
        return [], 0
    if isinstance(value, str):
        return ([{"type": "text", "text": value}] if value else []), 0
    if not isinstance(value, list):
        raise bad("system: Input should be a valid string or a list of text blocks")
    breakpoints = 0
    for i, block in enumerate(value):
        where = f"system.{i}"
        if not isinstance(block, dict) or block.get("type") != "text":
            raise bad(f"{where}.type: Input should be 'text'")
        _text_block(block, where, "system")
        breakpoints += _cache_control(block.get("cache_control"), where)
    return list(value), breakpoints


def _tools(value: Any) -> tuple[list[dict[str, Any]], int]:
    if value is None:
        return [], 0
    if not isinstance(value, list):
        raise bad("tools: Input should be a valid list")
    names: set[str] = set()
    breakpoints = 0
    for i, tool in enumerate(value):
        where = f"tools.{i}"
        if not isinstance(tool, dict):
            raise bad(f"{where}: Input should be a valid dictionary")
        name = tool.get("name")
        if not isinstance(name, str):
            raise bad(f"{where}.name: Field required")
        if tool.get("type") in (None, "custom"):
            if not _TOOL_NAME.match(name):
                raise bad(f"{where}.name: String should match pattern '{_TOOL_NAME.pattern}'")
            schema = tool.get("input_schema")
            if schema is None:
                raise bad(f"{where}.input_schema: Field required")
            if not isinstance(schema, dict):
                raise bad(f"{where}.input_schema: Input should be a valid dictionary")
            if schema.get("type") != "object":
                raise bad(f"{where}.input_schema.type: Input should be 'object'")
            if "description" in tool and not isinstance(tool["description"], str):
                raise bad(f"{where}.description: Input should be a valid string")
            if "strict" in tool and not isinstance(tool["strict"], bool):
                raise bad(f"{where}.strict: Input should be a valid boolean")
        if name in names:
            raise bad("tools: Tool names must be unique.")
        names.add(name)
        breakpoints += _cache_control(tool.get("cache_control"), where)
    return list(value), breakpoints


def _tool_choice(value: Any, tools: list[dict[str, Any]]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in TOOL_CHOICE_TYPES:
        raise bad("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if not tools:
        raise bad("tool_choice may only be specified while providing tools")
    if value["type"] == "tool":
        name = value.get("name")
        if not isinstance(name, str):
            raise bad("tool_choice.tool.name: Field required")
        if name not in {t.get("name") for t in tools}:
            raise bad(f"tool_choice.tool.name: Tool '{name[:64]}' not found in provided tools")
    dptu = value.get("disable_parallel_tool_use")
    if dptu is not None and not isinstance(dptu, bool):
        raise bad(f"tool_choice.{value['type']}.disable_parallel_tool_use: Input should be a bool")
    return value


def _messages(value: Any) -> tuple[list[dict[str, Any]], int]:
    if value is None:
        raise bad("messages: Field required")
    if not isinstance(value, list):
        raise bad("messages: Input should be a valid list")
    if not value:
        raise bad("messages: at least one message is required")
    breakpoints = 0
    previous_role: str | None = None
    pending_tool_uses: list[str] = []
    for i, msg in enumerate(value):
        where = f"messages.{i}"
        if not isinstance(msg, dict):
            raise bad(f"{where}: Input should be a valid dictionary")
        role = msg.get("role")
        if role not in ("user", "assistant"):
            raise bad(f"{where}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise bad('messages: first message must use the "user" role')
        if role == previous_role:
            raise bad(
                'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row'
            )
        extra = set(msg) - {"role", "content"}
        if extra:
            raise bad(f"{where}.{sorted(extra)[0]}: Extra inputs are not permitted")
        content = msg.get("content")
        if "content" not in msg:
            raise bad(f"{where}.content: Field required")
        tool_results: list[str] = []
        tool_uses: list[str] = []
        if isinstance(content, str):
            if not content and not (role == "assistant" and i == len(value) - 1):
                raise bad(f"{where}: text content blocks must be non-empty")
        elif isinstance(content, list):
            allowed = USER_BLOCKS if role == "user" else ASSISTANT_BLOCKS
            for j, block in enumerate(content):
                bwhere = f"{where}.content.{j}"
                if not isinstance(block, dict):
                    raise bad(f"{bwhere}: Input should be a valid dictionary")
                btype = block.get("type")
                if btype not in allowed:
                    raise bad(
                        f"{bwhere}: Input tag '{str(btype)[:40]}' found using 'type' does not "
                        f"match any of the expected tags for a {role} message"
                    )
                if btype == "text":
                    _text_block(block, bwhere, "messages")
                elif btype == "tool_use":
                    if not isinstance(block.get("id"), str) or not isinstance(
                        block.get("name"), str
                    ):
                        raise bad(f"{bwhere}: tool_use blocks need a string id and name")
                    if not isinstance(block.get("input"), dict):
                        raise bad(f"{bwhere}.input: Input should be a valid dictionary")
                    tool_uses.append(block["id"])
                elif btype == "tool_result":
                    if not isinstance(block.get("tool_use_id"), str):
                        raise bad(f"{bwhere}.tool_use_id: Field required")
                    tool_results.append(block["tool_use_id"])
                breakpoints += _cache_control(block.get("cache_control"), bwhere)
        else:
            raise bad(f"{where}.content: Input should be a valid string or a list of blocks")
        if pending_tool_uses:
            missing = [t for t in pending_tool_uses if t not in tool_results]
            if missing:
                raise bad(
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(m[:40] for m in missing[:3])}. Each "
                    "`tool_use` block must have a corresponding `tool_result` block in the next "
                    "message."
                )
        unexpected = [t for t in tool_results if t not in pending_tool_uses]
        if unexpected:
            raise bad(
                f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{unexpected[0][:40]}. Each `tool_result` block must have a corresponding "
                "`tool_use` block in the previous message."
            )
        pending_tool_uses = tool_uses
        previous_role = role
    return value, breakpoints


def _output_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    config = body.get("output_config")
    fmt = None
    if config is not None:
        if not isinstance(config, dict):
            raise bad("output_config: Input should be a valid dictionary")
        fmt = config.get("format")
        where = "output_config.format"
    if fmt is None and body.get("output_format") is not None:
        fmt, where = body["output_format"], "output_format"
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise bad(f"{where}.type: Input should be 'json_schema'")
    if not isinstance(fmt.get("schema"), dict):
        raise bad(f"{where}.schema: Field required")
    return fmt["schema"]


def _shallow(body: dict[str, Any], max_tokens: int | None) -> None:
    if "temperature" in body and not (
        _is_number(body["temperature"]) and 0 <= body["temperature"] <= 1
    ):
        raise bad("temperature: range: 0..1")
    if "top_p" in body and not (_is_number(body["top_p"]) and 0 <= body["top_p"] <= 1):
        raise bad("top_p: range: 0..1")
    if "top_k" in body and not (_is_int(body["top_k"]) and body["top_k"] >= 0):
        raise bad("top_k: Input should be a non-negative integer")
    stops = body.get("stop_sequences")
    if stops is not None and not (
        isinstance(stops, list) and all(isinstance(s, str) for s in stops)
    ):
        raise bad("stop_sequences: Input should be a list of strings")
    meta = body.get("metadata")
    if meta is not None:
        if not isinstance(meta, dict):
            raise bad("metadata: Input should be a valid dictionary")
        uid = meta.get("user_id")
        if uid is not None and not (isinstance(uid, str) and len(uid) <= 256):
            raise bad("metadata.user_id: String should have at most 256 characters")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise bad("stream: Input should be a valid boolean")
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or thinking.get("type") not in (
            "enabled",
            "disabled",
            "adaptive",
        ):
            raise bad("thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'")
        if thinking["type"] == "enabled":
            budget = thinking.get("budget_tokens")
            if not (_is_int(budget) and budget >= 1024):
                raise bad("thinking.enabled.budget_tokens: Input should be >= 1024")
            if max_tokens is not None and budget >= max_tokens:
                raise bad("`max_tokens` must be greater than `thinking.budget_tokens`.")


def validate(body: Any, *, count_tokens: bool = False) -> MessagesRequest:
    """Parse and check a request body; raises :class:`AnthropicApiError` (400) on the first
    problem, the way the API answers one problem at a time."""
    if not isinstance(body, dict):
        raise bad("Request body must be a JSON object")
    allowed = COUNT_TOKENS_FIELDS if count_tokens else MESSAGE_FIELDS
    extra = sorted(set(body) - allowed)
    if extra:
        raise bad(f"{extra[0][:64]}: Extra inputs are not permitted")
    model = body.get("model")
    if model is None:
        raise bad("model: Field required")
    if not isinstance(model, str) or not model:
        raise bad("model: Input should be a valid string")
    max_tokens = None
    if not count_tokens:
        max_tokens = body.get("max_tokens")
        if max_tokens is None:
            raise bad("max_tokens: Field required")
        if not _is_int(max_tokens):
            raise bad("max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            raise bad("max_tokens: Input should be greater than or equal to 1")
    messages, bp_messages = _messages(body.get("messages"))
    system, bp_system = _system(body.get("system"))
    tools, bp_tools = _tools(body.get("tools"))
    tool_choice = _tool_choice(body.get("tool_choice"), tools)
    top = body.get("cache_control")
    bp_top = _cache_control(top, "cache_control") if top is not None else 0
    breakpoints = bp_messages + bp_system + bp_tools + bp_top
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        raise bad(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {breakpoints}."
        )
    _shallow(body, max_tokens)
    if (
        isinstance(body.get("thinking"), dict)
        and body["thinking"].get("type") == "enabled"
        and tool_choice is not None
        and tool_choice["type"] in ("any", "tool")
    ):
        raise bad("Thinking may not be enabled when tool_choice forces tool use.")
    return MessagesRequest(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        system=system,
        tools=tools,
        tool_choice=tool_choice,
        stream=bool(body.get("stream", False)),
        output_schema=_output_schema(body),
        cache_control=top,
        breakpoints=breakpoints,
    )
