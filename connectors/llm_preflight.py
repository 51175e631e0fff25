"""``revbridge doctor``'s LLM checks: the key works, the configured model exists (and is not on
its way out), and the configured ``max_tokens`` is within the model's output limit.

One read of the Models API (``GET /v1/models/{id}``: ``max_tokens`` is the model's largest
allowed ``max_tokens``, ``lifecycle`` active | deprecated | retired) through the official SDK, as
connectors/anthropic_llm.py calls the Messages API (no retries: one line per finding, never a
trace). Kept apart from that module so the reasoner's hot path does not carry it.
"""

from __future__ import annotations

import anthropic

from connectors.timeouts import call_timeout
from domain.preflight import Check, CheckStatus
from domain.settings import AnthropicSettings

SYSTEM = "llm"
#: how many model IDs a "no such model" line suggests
_SUGGEST = 4


def preflight(llm: AnthropicSettings) -> list[Check]:
    client = anthropic.Anthropic(
        api_key=llm.api_key.get_secret_value(),
        base_url=llm.base_url,
        max_retries=0,
        timeout=call_timeout(llm.timeout_s),
    )
    try:
        return _checks(client, llm)
    finally:
        client.close()


def _checks(client: anthropic.Anthropic, llm: AnthropicSettings) -> list[Check]:
    model = llm.model
    try:
        info = client.models.retrieve(model)
    except anthropic.AuthenticationError:
        return [
            _check(
                "credentials",
                CheckStatus.FAIL,
                "Anthropic refused the key",
                "set ANTHROPIC_API_KEY to a valid API key",
            ),
            _check("model", CheckStatus.SKIP, "not checked: the key does not work"),
        ]
    except anthropic.NotFoundError:
        return [
            _check("credentials", CheckStatus.OK, "valid"),
            _check(
                "model",
                CheckStatus.FAIL,
                f"{model} does not exist (or is retired)",
                f"set ANTHROPIC_MODEL to a served model, e.g. {_suggest(client)}",
            ),
        ]
    except anthropic.APIStatusError as exc:
        return [
            _check(
                "model",
                CheckStatus.FAIL,
                f"the Models API answered {exc.status_code} for {model}",
                "check ANTHROPIC_API_KEY's permissions and Anthropic's status page",
            ),
        ]
    except anthropic.APIError as exc:  # connection refused, timed out
        return [
            _check(
                "reachable",
                CheckStatus.FAIL,
                f"{type(exc).__name__} reaching the API",
                "check the network path to api.anthropic.com (or ANTHROPIC_BASE_URL)",
            ),
        ]
    checks = [_check("credentials", CheckStatus.OK, "valid")]
    lifecycle = getattr(info, "lifecycle", "active")
    if lifecycle == "deprecated":
        retires = getattr(info, "retires_at", None)
        when = f" (retires {retires:%Y-%m-%d})" if retires else ""
        checks.append(
            _check(
                "model",
                CheckStatus.WARN,
                f"{model} is deprecated{when}",
                f"move ANTHROPIC_MODEL to a current model, e.g. {_suggest(client)}",
            )
        )
    else:
        checks.append(_check("model", CheckStatus.OK, f"{model} ({info.display_name})"))
    limit = getattr(info, "max_tokens", None)
    if limit is not None and llm.max_tokens > limit:
        checks.append(
            _check(
                "max-tokens",
                CheckStatus.FAIL,
                f"{llm.max_tokens} > {limit}, the most {model} may write",
                f"set ANTHROPIC_MAX_TOKENS to at most {limit}",
            )
        )
    else:
        detail = f"{llm.max_tokens}" + (f" ≤ {limit}" if limit is not None else "")
        checks.append(_check("max-tokens", CheckStatus.OK, detail))
    return checks


def _suggest(client: anthropic.Anthropic) -> str:
    try:
        ids = [m.id for m in client.models.list(limit=20).data if m.lifecycle == "active"]
    except anthropic.APIError:
        return "one listed by GET /v1/models"
    return ", ".join(ids[:_SUGGEST]) or "one listed by GET /v1/models"


def _check(name: str, status: CheckStatus, detail: str, fix: str = "") -> Check:
    return Check(system=SYSTEM, name=name, status=status, detail=detail, fix=fix)
