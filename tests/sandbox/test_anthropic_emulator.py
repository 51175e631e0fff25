"""The Anthropic Messages API emulator, driven through the official ``anthropic`` SDK (2.x).

The 2.x SDK authenticates with ``Authorization: Bearer`` and a new ``anthropic-version``; the
public API and 0.x SDK with ``x-api-key`` (reference §0.3): the emulator takes both. Every SDK
client here has ``max_retries=0``, so one call is one request in the ledger.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from domain.containment import ReasonerOutput
from sandbox.anthropic import (
    AnthropicEmulator,
    error_reply,
    example_for,
    malformed_reply,
    text_reply,
    tool_reply,
)
from sandbox.framework import Fault, ServerThread
from tests.pairs import ANTHROPIC_KEY as KEY

MODEL = "claude-sonnet-5-5"
TOOL = "assess_payment_failure"
SCHEMA = ReasonerOutput.model_json_schema()
SYSTEM = "You assess failed subscription payments. " * 20
VALID = {
    "failure_class": "insufficient_funds",
    "priority": "High",
    "retry_recommended": True,
    "reasons": ["decline code insufficient_funds"],
    "proposed_actions": [],
}


@pytest.fixture
def client(anthropic_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=KEY, base_url=anthropic_url, max_retries=0, timeout=5.0) as c:
        yield c


def request(**over: Any) -> dict[str, Any]:
    """The shape of request the reasoner sends: cached system block, one forced tool."""
    base: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 1024,
        "system": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "Assess invoice INV-1 for customer cus_1."}],
        "tools": [{"name": TOOL, "description": "Record the assessment", "input_schema": SCHEMA}],
        "tool_choice": {"type": "tool", "name": TOOL},
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def ledger_bodies(anthropic_em: AnthropicEmulator) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in anthropic_em.ledger if r["path"] == "/v1/messages"]


# --- answers -------------------------------------------------------------------------------------


def test_tool_use_round_trip(client: anthropic.Anthropic, anthropic_em: AnthropicEmulator) -> None:
    anthropic_em.script([tool_reply(VALID)])
    msg = client.messages.create(**request())
    assert msg.id.startswith("msg_01")
    assert (msg.type, msg.role, msg.model) == ("message", "assistant", MODEL)
    assert msg.stop_reason == "tool_use"
    [block] = msg.content
    assert isinstance(block, anthropic.types.ToolUseBlock)
    assert block.id.startswith("toolu_01")
    assert (block.name, block.input) == (TOOL, VALID)
    assert anthropic_em.pending() == []
    # the SDK can send the answer back as the next assistant turn, with a tool_result after it
    follow = client.messages.create(
        **request(
            tool_choice=None,
            messages=[
                {"role": "user", "content": "Assess invoice INV-1."},
                msg.to_param(),
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "ok"}],
                },
            ],
        )
    )
    assert follow.stop_reason == "tool_use"  # unscripted: the default answer uses the tool


def test_text_reply_and_scripted_stop_reason(
    client: anthropic.Anthropic, anthropic_em: AnthropicEmulator
) -> None:
    anthropic_em.script([text_reply("I cannot help with that."), text_reply("x" * 100)])
    msg = client.messages.create(**request())
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == "I cannot help with that."
    assert msg.stop_reason == "end_turn"
    cut = client.messages.create(**request(max_tokens=5))
    assert (cut.stop_reason, cut.content[0].text, cut.usage.output_tokens) == (
        "max_tokens",
        "x" * 20,
        5,
    )
    anthropic_em.script([tool_reply(VALID, text="Thinking aloud.", stop_reason="refusal")])
    mixed = client.messages.create(**request())
    assert [b.type for b in mixed.content] == ["text", "tool_use"]
    assert mixed.stop_reason == "refusal"


def test_default_reply_is_a_valid_instance_of_the_tool_schema(
    client: anthropic.Anthropic, anthropic_em: AnthropicEmulator
) -> None:
    msg = client.messages.create(**request())
    [block] = msg.content
    assert block.input == example_for(SCHEMA)
    out = ReasonerOutput.model_validate(block.input)
    assert out.failure_class.value == "unknown"
    # no tools: plain text; output_config.format: the schema's example as JSON text
    plain = client.messages.create(**request(tools=None, tool_choice=None))
    assert plain.content[0].type == "text" and plain.stop_reason == "end_turn"
    structured = client.messages.create(
        **request(
            tools=None,
            tool_choice=None,
            output_config={"format": {"type": "json_schema", "schema": SCHEMA}},
        )
    )
    ReasonerOutput.model_validate_json(structured.content[0].text)


def test_malformed_tool_input_goes_out_verbatim(
    client: anthropic.Anthropic, anthropic_em: AnthropicEmulator
) -> None:
    anthropic_em.script(
        [
            malformed_reply({**VALID, "priority": "URGENT", "wire_money": True}),
            malformed_reply('{"failure_class": "unkn'),
        ]
    )
    first = client.messages.create(**request())
    assert first.content[0].input == {**VALID, "priority": "URGENT", "wire_money": True}
    second = client.messages.create(**request())
    assert second.content[0].input == '{"failure_class": "unkn'  # the SDK does not validate it


# --- usage and prompt caching --------------------------------------------------------------------


def test_usage_cache_creation_then_read(
    client: anthropic.Anthropic, anthropic_em: AnthropicEmulator
) -> None:
    first = client.messages.create(**request())
    second = client.messages.create(**request())
    u1, u2 = first.usage, second.usage
    assert u1.cache_creation_input_tokens > 0 and u1.cache_read_input_tokens == 0
    assert u1.cache_creation.ephemeral_5m_input_tokens == u1.cache_creation_input_tokens
    assert u2.cache_creation_input_tokens == 0
    assert u2.cache_read_input_tokens == u1.cache_creation_input_tokens
    assert u1.input_tokens == u2.input_tokens > 0  # the uncached remainder: the user message
    assert u1.output_tokens > 0
    # the three add up to the whole prompt, which count_tokens reports
    count = client.messages.count_tokens(
        model=MODEL,
        system=request()["system"],
        messages=request()["messages"],
        tools=request()["tools"],
        tool_choice=request()["tool_choice"],
    )
    assert count.input_tokens == (
        u2.input_tokens + u2.cache_read_input_tokens + u2.cache_creation_input_tokens
    )
    # a different user message still reads the cached tools + system prefix
    other = client.messages.create(**request(messages=[{"role": "user", "content": "INV-2?"}]))
    assert other.usage.cache_read_input_tokens == u1.cache_creation_input_tokens
    # a changed system prompt is a miss: written again
    changed = request()
    changed["system"] = [{**changed["system"][0], "text": SYSTEM + "v2"}]
    miss = client.messages.create(**changed)
    assert miss.usage.cache_read_input_tokens == 0 and miss.usage.cache_creation_input_tokens > 0
    # another model has its own cache; no cache_control, no caching
    assert client.messages.create(
        **request(model="claude-haiku-4-5")
    ).usage.cache_creation_input_tokens == (u1.cache_creation_input_tokens)
    plain = request()
    plain["system"] = SYSTEM
    bare = client.messages.create(**plain).usage
    assert (bare.cache_creation_input_tokens, bare.cache_read_input_tokens) == (0, 0)


def test_cache_expires_after_its_ttl_and_honours_the_minimum(anthropic_url: str) -> None:
    now = [1000.0]
    anthropic_em = AnthropicEmulator(api_key=KEY, clock=lambda: now[0], min_cache_tokens=10_000)
    with (
        ServerThread({anthropic_em: 0}) as thread,
        anthropic.Anthropic(api_key=KEY, base_url=thread.urls["anthropic"], max_retries=0) as c,
    ):
        short = c.messages.create(**request()).usage
        assert (short.cache_creation_input_tokens, short.cache_read_input_tokens) == (0, 0)
        anthropic_em.cache.min_tokens = 0
        assert c.messages.create(**request()).usage.cache_creation_input_tokens > 0
        now[0] += 299
        assert c.messages.create(**request()).usage.cache_read_input_tokens > 0  # refreshed
        now[0] += 299
        assert c.messages.create(**request()).usage.cache_read_input_tokens > 0
        now[0] += 301
        late = c.messages.create(**request()).usage
        assert late.cache_read_input_tokens == 0 and late.cache_creation_input_tokens > 0
        long = request()
        long["system"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
        hour = c.messages.create(**long).usage
        assert hour.cache_creation.ephemeral_1h_input_tokens == hour.cache_creation_input_tokens


def test_scripted_usage_override(
    client: anthropic.Anthropic, anthropic_em: AnthropicEmulator
) -> None:
    anthropic_em.script([tool_reply(VALID, usage={"output_tokens": 4321, "input_tokens": 7})])
    usage = client.messages.create(**request()).usage
    assert (usage.input_tokens, usage.output_tokens) == (7, 4321)


# --- auth ----------------------------------------------------------------------------------------


def test_bearer_auth_from_the_sdk(
    client: anthropic.Anthropic, anthropic_em: AnthropicEmulator
) -> None:
    client.messages.create(**request())
    headers = anthropic_em.ledger[-1]["headers"]
    assert headers["authorization"] == "<redacted>"  # the 2.x SDK's style
    assert "x-api-key" not in headers
    assert headers["anthropic-version"]  # sent, whatever its value


def test_x_api_key_auth(anthropic_url: str, anthropic_em: AnthropicEmulator) -> None:
    with anthropic.Anthropic(
        api_key=KEY,
        base_url=anthropic_url,
        max_retries=0,
        default_headers={
            "X-Api-Key": KEY,
            "Authorization": anthropic.Omit(),  # type: ignore[dict-item]
            "anthropic-version": "2023-06-01",
        },
    ) as c:
        msg = c.messages.create(**request())
    assert msg.stop_reason == "tool_use"
    headers = anthropic_em.ledger[-1]["headers"]
    assert headers["x-api-key"] == "<redacted>" and "authorization" not in headers
    assert headers["anthropic-version"] == "2023-06-01"
    # a raw call in the public API's documented style
    resp = httpx.post(
        f"{anthropic_url}/v1/messages",
        json=request(),
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
    )
    assert resp.status_code == 200 and resp.headers["request-id"].startswith("req_")


def test_wrong_or_missing_key_is_401(anthropic_url: str, anthropic_em: AnthropicEmulator) -> None:
    anthropic_em.script([tool_reply(VALID)])
    with (
        anthropic.Anthropic(api_key="sk-ant-wrong", base_url=anthropic_url, max_retries=0) as c,
        pytest.raises(anthropic.AuthenticationError) as exc,
    ):
        c.messages.create(**request())
    assert exc.value.status_code == 401
    assert exc.value.type == "authentication_error"
    assert exc.value.request_id and exc.value.request_id.startswith("req_")
    assert exc.value.body["type"] == "error"  # type: ignore[index]
    assert len(anthropic_em.pending()) == 1  # a refused request does not consume the script
    resp = httpx.post(f"{anthropic_url}/v1/messages", json=request())
    assert resp.status_code == 401
    assert resp.json()["error"] == {
        "type": "authentication_error",
        "message": "x-api-key header is required",
    }
    wrong_x = httpx.post(
        f"{anthropic_url}/v1/messages", json=request(), headers={"x-api-key": "nope"}
    )
    assert wrong_x.status_code == 401


# --- invalid requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("over", "fragment"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "first message"),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                ]
            },
            "roles must alternate",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "non-empty"),
        (
            {"system": [{"type": "text", "text": "s", "cache_control": {"type": "lru"}}]},
            "ephemeral",
        ),
        ({"tools": [{"name": TOOL}]}, "input_schema: Field required"),
        ({"tools": [{"name": TOOL, "input_schema": {"type": "array"}}]}, "input_schema.type"),
        ({"tool_choice": {"type": "tool", "name": "other_tool"}}, "not found"),
        ({"tools": None}, "tool_choice may only be specified"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"model": ""}, "model"),
        (
            {
                "system": [
                    {"type": "text", "text": f"s{i}", "cache_control": {"type": "ephemeral"}}
                    for i in range(5)
                ]
            },
            "maximum of 4 blocks",
        ),
        ({"stream": True}, "stream"),
    ],
)
def test_invalid_body_is_a_bad_request(
    client: anthropic.Anthropic,
    anthropic_em: AnthropicEmulator,
    over: dict[str, Any],
    fragment: str,
) -> None:
    anthropic_em.script([tool_reply(VALID)])
    with pytest.raises(anthropic.BadRequestError) as exc:
        client.messages.create(**request(**over))
    assert exc.value.status_code == 400
    assert exc.value.type == "invalid_request_error"
    assert fragment in (exc.value.api_message or "")
    assert len(anthropic_em.pending()) == 1


def test_invalid_body_raw(anthropic_url: str) -> None:
    headers = {"x-api-key": KEY}
    http = httpx.Client(base_url=anthropic_url)
    for body, fragment in [
        (b"{not json", "error parsing the body"),
        (json.dumps({k: v for k, v in request().items() if k != "max_tokens"}), "max_tokens"),
        (json.dumps(request(frobnicate=1)), "frobnicate: Extra inputs"),
        (json.dumps([1, 2]), "JSON object"),
    ]:
        resp = http.post("/v1/messages", content=body, headers=headers)
        assert resp.status_code == 400, body
        err = resp.json()
        assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
        assert fragment in err["error"]["message"]
        assert resp.headers["request-id"] == err["request_id"]
    http.close()


def test_tool_use_needs_a_tool_result(client: anthropic.Anthropic) -> None:
    turn = {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_01x", "name": TOOL, "input": {}}],
    }
    with pytest.raises(anthropic.BadRequestError, match="without `tool_result`"):
        client.messages.create(
            **request(
                messages=[{"role": "user", "content": "a"}, turn, {"role": "user", "content": "b"}]
            )
        )


def test_unknown_model_and_route(anthropic_url: str) -> None:
    anthropic_em = AnthropicEmulator(api_key=KEY, models=[MODEL])
    with (
        ServerThread({anthropic_em: 0}) as thread,
        anthropic.Anthropic(api_key=KEY, base_url=thread.urls["anthropic"], max_retries=0) as c,
    ):
        with pytest.raises(anthropic.NotFoundError) as exc:
            c.messages.create(**request(model="claude-nonexistent"))
        assert exc.value.type == "not_found_error"
    resp = httpx.get(f"{anthropic_url}/v1/nothing-here")
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"


# --- scripted errors -----------------------------------------------------------------------------


def test_scripted_429_carries_a_small_retry_after(
    client: anthropic.Anthropic, anthropic_em: AnthropicEmulator
) -> None:
    anthropic_em.script([error_reply(429), tool_reply(VALID)])
    with pytest.raises(anthropic.RateLimitError) as exc:
        client.messages.create(**request())
    err = exc.value
    assert (err.status_code, err.type) == (429, "rate_limit_error")
    assert err.response.headers["retry-after"] == "1"
    assert err.request_id and err.request_id.startswith("req_")
    assert len(anthropic_em.ledger) == 1  # SDK retries off: one request
    assert client.messages.create(**request()).content[0].input == VALID


def test_scripted_529_is_overloaded(
    client: anthropic.Anthropic, anthropic_em: AnthropicEmulator
) -> None:
    anthropic_em.script([error_reply(529)])
    with pytest.raises(anthropic.APIStatusError) as exc:
        client.messages.create(**request())
    assert isinstance(exc.value, anthropic.OverloadedError)
    assert (exc.value.status_code, exc.value.type) == (529, "overloaded_error")
    assert exc.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": exc.value.request_id,
    }
    assert "retry-after" not in exc.value.response.headers


@pytest.mark.parametrize(
    ("status", "cls", "etype"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (500, anthropic.InternalServerError, "api_error"),
    ],
)
def test_scripted_errors(
    client: anthropic.Anthropic,
    anthropic_em: AnthropicEmulator,
    status: int,
    cls: type[anthropic.APIStatusError],
    etype: str,
) -> None:
    anthropic_em.script([error_reply(status, "scripted")])
    with pytest.raises(cls) as exc:
        client.messages.create(**request())
    assert (exc.value.status_code, exc.value.type, exc.value.api_message) == (
        status,
        etype,
        "scripted",
    )


def test_retry_after_is_capped_and_error_codes_pass_through(
    client: anthropic.Anthropic, anthropic_em: AnthropicEmulator
) -> None:
    anthropic_em.script(
        [error_reply(429, retry_after=3600, error_code="enforced_spend_limit_reached")]
    )
    with pytest.raises(anthropic.RateLimitError) as exc:
        client.messages.create(**request())
    assert exc.value.response.headers["retry-after"] == "60"
    assert exc.value.error_code == "enforced_spend_limit_reached"


def test_injected_fault_uses_the_error_envelope(
    client: anthropic.Anthropic, anthropic_em: AnthropicEmulator
) -> None:
    anthropic_em.faults.append(Fault(status=529, path="/v1/messages", retry_after=2.0))
    with pytest.raises(anthropic.OverloadedError) as exc:
        client.messages.create(**request())
    assert exc.value.type == "overloaded_error"
    assert exc.value.response.headers["retry-after"] == "2"
    assert exc.value.request_id


# --- control plane and ledger ----------------------------------------------------------------------


def test_script_over_http(
    anthropic_url: str, client: anthropic.Anthropic, anthropic_em: AnthropicEmulator
) -> None:
    resp = httpx.post(
        f"{anthropic_url}/_sandbox/anthropic/script",
        json=[{"tool_input": VALID}, {"error": {"status": 529}}, {"text": "hello"}],
    )
    assert resp.status_code == 200 and len(resp.json()["pending"]) == 3
    assert client.messages.create(**request()).content[0].input == VALID
    with pytest.raises(anthropic.OverloadedError):
        client.messages.create(**request())
    assert client.messages.create(**request()).content[0].text == "hello"
    bad = httpx.post(
        f"{anthropic_url}/_sandbox/anthropic/script", json=[{"tool_input": VALID}, {"oops": 1}]
    )
    assert bad.status_code == 400 and anthropic_em.pending() == []  # all or nothing
    httpx.post(f"{anthropic_url}/_sandbox/seed", json={"script": [{"error": 500}]})
    assert (
        httpx.get(f"{anthropic_url}/_sandbox/anthropic/script").json()["pending"][0]["error"][
            "status"
        ]
        == 500
    )
    assert httpx.delete(f"{anthropic_url}/_sandbox/anthropic/script").json() == {"pending": []}
    assert all(
        r["path"] == "/v1/messages" for r in anthropic_em.ledger
    )  # control plane not ledgered


def test_bad_script_entries_are_refused(anthropic_em: AnthropicEmulator) -> None:
    for entry in [
        {"tool_input": [1]},
        {"tool_input": {}, "error": 429},
        {"error": 302},
        {"text": ""},
        {"tool_input": {}, "usage": {"input_tokens": -1}},
        "text",
    ]:
        with pytest.raises(ValueError):
            anthropic_em.script([entry])
    assert anthropic_em.pending() == []


def test_ledger_shows_the_request_and_its_cache_control(
    client: anthropic.Anthropic, anthropic_em: AnthropicEmulator
) -> None:
    client.messages.create(**request())
    [row] = anthropic_em.ledger
    assert (row["method"], row["path"], row["status"]) == ("POST", "/v1/messages", 200)
    [body] = ledger_bodies(anthropic_em)
    assert body["system"] == [
        {"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}
    ]
    assert body["tool_choice"] == {"type": "tool", "name": TOOL}
    assert body["tools"][0]["input_schema"] == SCHEMA
    assert KEY not in json.dumps(row)  # the key never reaches the ledger
    assert anthropic_em.answers[-1]["usage"]["cache_creation_input_tokens"] > 0
