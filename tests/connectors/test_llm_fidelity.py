"""The Anthropic emulator serves only real models within their output limits, with the API's
own error bodies (issue 16), and the LLM preflight reads the Models API to say whether the
configured model exists and ``max_tokens`` fits it.

Before: the emulator answered any model name with any ``max_tokens`` (a typo in ANTHROPIC_MODEL
would pass every test and fail every assessment in production), and there was no LLM preflight."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from pydantic import SecretStr

from connectors.anthropic_llm import DEFAULT_MODEL
from connectors.llm_preflight import preflight
from domain.preflight import CheckStatus
from domain.settings import AnthropicSettings
from sandbox.anthropic import AnthropicEmulator
from sandbox.anthropic.models import CATALOGUE
from sandbox.framework import ServerThread

KEY = "sk-ant-fidelity-key"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with ServerThread({AnthropicEmulator(api_key=KEY): 0}) as srv:
        yield srv.urls["anthropic"]


@pytest.fixture(scope="module")
def client(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=KEY, base_url=url, max_retries=0, timeout=30)


def ask(client: anthropic.Anthropic, model: str, max_tokens: int = 64) -> anthropic.types.Message:
    return client.messages.create(
        model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": "hi"}]
    )


def test_the_default_model_is_a_real_one(client: anthropic.Anthropic) -> None:
    assert DEFAULT_MODEL in CATALOGUE and CATALOGUE[DEFAULT_MODEL].served
    assert AnthropicSettings(api_key=SecretStr("k")).model == DEFAULT_MODEL
    assert ask(client, DEFAULT_MODEL).model == DEFAULT_MODEL


def test_an_unknown_model_is_404_not_found_error(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        ask(client, "claude-sonnet-5-6")  # a plausible typo
    body = info.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"] == {"type": "not_found_error", "message": "model: claude-sonnet-5-6"}
    assert body["request_id"].startswith("req_") and info.value.request_id == body["request_id"]


def test_a_retired_model_is_404(client: anthropic.Anthropic) -> None:
    assert CATALOGUE["claude-mythos-preview"].lifecycle == "retired"
    with pytest.raises(anthropic.NotFoundError):
        ask(client, "claude-mythos-preview")


def test_max_tokens_above_the_models_limit_is_400(client: anthropic.Anthropic) -> None:
    limit = CATALOGUE["claude-haiku-4-5"].max_tokens
    assert ask(client, "claude-haiku-4-5", max_tokens=limit).stop_reason == "end_turn"
    with pytest.raises(anthropic.BadRequestError) as info:
        ask(client, "claude-haiku-4-5", max_tokens=limit + 1)
    error = info.value.body["error"]  # type: ignore[index]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == (
        f"max_tokens: {limit + 1} > {limit}, which is the maximum allowed number of output "
        "tokens for claude-haiku-4-5"
    )


def test_the_models_api(client: anthropic.Anthropic) -> None:
    info = client.models.retrieve("claude-opus-4-6")
    assert (info.id, info.max_tokens, info.lifecycle) == ("claude-opus-4-6", 128_000, "active")
    assert info.display_name == "Claude Opus 4.6"
    listed = [m.id for m in client.models.list(limit=100).data]
    assert DEFAULT_MODEL in listed and "claude-mythos-preview" not in listed
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("gpt-4o")


def settings(url: str, **kw: object) -> AnthropicSettings:
    return AnthropicSettings(api_key=SecretStr(str(kw.pop("key", KEY))), base_url=url, **kw)  # type: ignore[arg-type]


def test_preflight_ok(url: str) -> None:
    checks = {c.name: c for c in preflight(settings(url))}
    assert [c.status for c in checks.values()] == [CheckStatus.OK] * 3, checks
    assert DEFAULT_MODEL in checks["model"].detail


def test_preflight_a_model_that_does_not_exist(url: str) -> None:
    checks = {c.name: c for c in preflight(settings(url, model="claude-sonnet-4-5-typo"))}
    model = checks["model"]
    assert model.failed and "ANTHROPIC_MODEL" in model.fix and DEFAULT_MODEL in model.fix
    assert "\n" not in model.line()


def test_preflight_max_tokens_over_the_limit(url: str) -> None:
    checks = {
        c.name: c for c in preflight(settings(url, model="claude-haiku-4-5", max_tokens=100_000))
    }
    assert checks["max-tokens"].failed and "at most 64000" in checks["max-tokens"].fix


def test_preflight_a_deprecated_model_warns(url: str) -> None:
    checks = {c.name: c for c in preflight(settings(url, model="claude-opus-4-5"))}
    assert checks["model"].status is CheckStatus.WARN


def test_preflight_a_refused_key(url: str) -> None:
    checks = {c.name: c for c in preflight(settings(url, key="sk-ant-wrong"))}
    assert checks["credentials"].failed and checks["model"].status is CheckStatus.SKIP
    assert all("sk-ant-wrong" not in c.line() for c in checks.values())
