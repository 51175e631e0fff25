"""Claude as the reasoner's :class:`~connectors.reasoner.LlmClient`, through the official
``anthropic`` SDK (2.x).

Reference: ``crm-llm-apis.md`` §0.3 and §3. What matters here:

- **SDK retries off** (``max_retries=0``): Temporal owns retries. The SDK would otherwise retry a
  429/529 up to twice inside the activity, sleeping out any ``retry-after`` (2.x honours values of
  days), hidden from the workflow's history and timeouts. One ``complete()`` is one HTTP call.
- **Forced tool use** for structured output: one tool, ``assess_payment_failure``, whose
  ``input_schema`` is the caller's output schema, and ``tool_choice`` naming it. The tool_use
  block's ``input`` is returned *as is* in :attr:`LlmReply.raw` — not trusted, not validated here:
  that is ``domain.containment``'s job (``activities.reasoning``). A reply without our tool_use
  block (a refusal, plain text) comes back as its text, which containment refuses.
- **Prompt caching**: the system prompt goes as one text block with
  ``cache_control: {"type": "ephemeral"}``; tools come before the system prompt in the cached
  prefix, so the tool schema and the system prompt are cached together. Usage maps to
  :class:`LlmUsage` with the cache read / creation tokens kept apart (``input_tokens`` is only
  the uncached remainder). Caching only happens above the model's minimum prefix (1,024 tokens
  for Sonnet-class models per the docs); below it both cache counters stay 0, silently.
- **Errors** become :class:`ConnectorError` for the activity layer: 429 and 529 (overloaded) →
  ``RATE_LIMITED`` with ``retry-after`` (``retry-after-ms`` first) or 5 s; a 429 for a spend
  limit (``enforced_spend_limit_reached`` / ``contract_spend_limit_reached``) → ``PERMANENT``;
  408/409/5xx, connection errors and timeouts → ``RETRYABLE``; other 4xx (400, 401, 403, 404, 413,
  ...) → ``PERMANENT``. A timeout may still be billed; the call has no side effects, so retrying
  it is safe.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import anthropic

from connectors.base import ConnectorError, ErrorKind
from connectors.reasoner import LlmReply
from connectors.timeouts import MAX_CALL_S, call_timeout
from domain.containment import LlmUsage

VENDOR = "anthropic"
#: the latest Sonnet the installed SDK knows (claude-sonnet-4-5 reaches end-of-life 2026-11-30)
DEFAULT_MODEL = "claude-sonnet-5-5"
TOOL_NAME = "assess_payment_failure"
TOOL_DESCRIPTION = (
    "Record your assessment of this failed payment: failure class, priority, whether a retry is "
    "likely to help, short reasons, and at most three proposed actions for this customer only."
)
#: the wait when a 429/529 carries no usable retry-after
DEFAULT_RETRY_AFTER_S = 5.0
#: the longest wait we pass on to Temporal (2.x SDKs accept days; a workflow should not)
MAX_RETRY_AFTER_S = 3600.0
#: 429s that waiting does not fix: a person has to raise a spend limit
SPEND_LIMIT_CODES = frozenset({"enforced_spend_limit_reached", "contract_spend_limit_reached"})
_RETRYABLE_4XX = frozenset({408, 409})


class AnthropicLlm:
    """An :class:`~connectors.reasoner.LlmClient` backed by the Messages API."""

    vendor = VENDOR

    def __init__(
        self,
        api_key: str,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        max_tokens: int = 1024,
        timeout_s: float = MAX_CALL_S,
    ) -> None:
        if not api_key:
            # the SDK would fall back to ANTHROPIC_API_KEY, auth tokens or profiles: be explicit
            raise ValueError("api_key is required")
        if max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        self.model = model
        self.max_tokens = max_tokens
        # below the assessment activity's 30 s start-to-close (connectors/timeouts.py): the
        # call ends with its own classified timeout instead of being abandoned by Temporal
        self.call_timeout_s = call_timeout(timeout_s)
        self._client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=self.call_timeout_s
        )

    def close(self) -> None:
        self._client.close()

    def complete(
        self,
        system: str,
        prompt: str,
        output_schema: dict[str, Any],
        tool: tuple[str, str] | None = None,
    ) -> LlmReply:
        """One forced tool call; ``tool`` is (name, description), the assessment's by default
        (drafting names its own: ``write_draft``)."""
        name, description = tool or (TOOL_NAME, TOOL_DESCRIPTION)
        try:
            message = self._client.messages.create(
                model=self.model,
                max_tokens=self.max_tokens,
                system=[{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
                messages=[{"role": "user", "content": prompt}],
                tools=[{"name": name, "description": description, "input_schema": output_schema}],
                tool_choice={"type": "tool", "name": name},
            )
        except anthropic.APIStatusError as err:
            raise status_error(err) from None
        except anthropic.APIConnectionError as err:  # includes APITimeoutError
            what = "timed out" if isinstance(err, anthropic.APITimeoutError) else "connection error"
            raise ConnectorError(
                VENDOR, ErrorKind.RETRYABLE, f"messages.create {what}", code=type(err).__name__
            ) from None
        except anthropic.APIResponseValidationError as err:
            raise ConnectorError(
                VENDOR,
                ErrorKind.RETRYABLE,
                "unexpected response shape",
                status=err.status_code,
                code="response_validation",
            ) from None
        return LlmReply(
            raw=_tool_input(message, name),
            model=message.model or self.model,
            usage=_usage(message),
        )


def _tool_input(message: Any, name: str = TOOL_NAME) -> Any:
    """Our tool's input, untouched; else the reply's text (which containment will refuse)."""
    blocks = list(message.content or [])
    for block in blocks:
        if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == name:
            return block.input
    return "".join(getattr(b, "text", "") for b in blocks if getattr(b, "type", None) == "text")


def _usage(message: Any) -> LlmUsage:
    u = message.usage
    return LlmUsage(
        calls=1,
        input_tokens=u.input_tokens or 0,
        output_tokens=u.output_tokens or 0,
        cache_read_tokens=u.cache_read_input_tokens or 0,
        cache_creation_tokens=u.cache_creation_input_tokens or 0,
    )


def status_error(err: anthropic.APIStatusError) -> ConnectorError:
    """Classify an API error answer for Temporal (see the module docstring)."""
    status = err.status_code
    code = err.error_code or err.type or f"http_{status}"
    message = f"{status} {err.type or 'error'}: {err.api_message or ''}".strip()[:300]
    if status in (429, 529) and err.error_code not in SPEND_LIMIT_CODES:
        return ConnectorError(
            VENDOR,
            ErrorKind.RATE_LIMITED,
            message,
            status=status,
            code=code,
            retry_after=retry_after(err.response.headers),
        )
    kind = (
        ErrorKind.RETRYABLE
        if status >= 500 or status in _RETRYABLE_4XX
        else ErrorKind.PERMANENT  # 400, 401, 403, 404, 413, 422, a spend-limit 429, ...
    )
    return ConnectorError(VENDOR, kind, message, status=status, code=code)


def retry_after(headers: Any, default: float = DEFAULT_RETRY_AFTER_S) -> float:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date),
    capped at :data:`MAX_RETRY_AFTER_S`; ``default`` when absent or unusable."""
    value: float | None = None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000
        except ValueError:
            value = None
    raw = headers.get("retry-after")
    if value is None and raw is not None:
        try:
            value = float(raw)
        except ValueError:
            parsed = email.utils.parsedate_tz(raw)
            value = email.utils.mktime_tz(parsed) - time.time() if parsed else None
    if value is None or value != value or value <= 0:  # absent, unparsable, NaN or not positive
        return default
    return min(value, MAX_RETRY_AFTER_S)
