"""A local Anthropic Messages API, driven through the official ``anthropic`` SDK.

See :class:`AnthropicEmulator`; facts it follows are in ``shared/docs/reference/crm-llm-apis.md``
§0.3 and §3. Point the SDK at it with ``anthropic.Anthropic(api_key=..., base_url=url)`` (no
``/v1`` in the base URL).
"""

from .emulator import DEFAULT_API_KEY, AnthropicEmulator
from .errors import ERROR_TYPES, MAX_RETRY_AFTER_S
from .script import error_reply, example_for, malformed_reply, text_reply, tool_reply

__all__ = [
    "DEFAULT_API_KEY",
    "ERROR_TYPES",
    "MAX_RETRY_AFTER_S",
    "AnthropicEmulator",
    "error_reply",
    "example_for",
    "malformed_reply",
    "text_reply",
    "tool_reply",
]
