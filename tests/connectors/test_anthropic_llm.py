"""The Anthropic LLM client against the Anthropic emulator: forced tool use with a cached system
prompt, the raw tool input handed back untouched, usage mapped, SDK retries off (one HTTP call per
``complete()``), errors classified for Temporal — and, through ``LlmReasoner`` and the reasoning
activity, containment refusing a malformed reply (the rules decide) and accepting a valid one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.testing import ActivityEnvironment

from activities.models import AssessFailureInput
from activities.reasoning import ReasoningActivities
from connectors.anthropic_llm import (
    DEFAULT_RETRY_AFTER_S,
    TOOL_NAME,
    AnthropicLlm,
    retry_after,
)
from connectors.base import ConnectorError, ErrorKind
from connectors.reasoner import SYSTEM_PROMPT, LlmReasoner, dunning_prompt
from domain.containment import LlmUsage, ReasonerOutput
from domain.decisions import classify_payment_failure
from domain.models import (
    BillingCustomer,
    CrmAccount,
    CustomerTier,
    Invoice,
    InvoiceContext,
    InvoiceStatus,
    Payment,
)
from sandbox.anthropic import (
    AnthropicEmulator,
    error_reply,
    malformed_reply,
    text_reply,
    tool_reply,
)
from sandbox.framework import Fault, free_port
from tests.pairs import ANTHROPIC_KEY as KEY

MODEL = "claude-sonnet-5-5"
SCHEMA = ReasonerOutput.model_json_schema()
CUSTOMER = "cus_42"
NOW = datetime(2025, 6, 1, tzinfo=UTC)

CTX = InvoiceContext(
    invoice=Invoice(
        id="in_1",
        customer_id=CUSTOMER,
        status=InvoiceStatus.OPEN,
        total=12_000,
        amount_due=12_000,
        currency="USD",
        issued_at=datetime(2025, 5, 1, tzinfo=UTC),
    ),
    customer=BillingCustomer(
        id=CUSTOMER,
        company="Acme <Corp>",
        created_at=datetime(2022, 1, 1, tzinfo=UTC),
        mrr=12_000,
    ),
    recent_payments=[
        Payment(
            id="py_1",
            invoice_id="in_1",
            succeeded=False,
            amount=12_000,
            currency="USD",
            decline_code="insufficient_funds",
        )
    ],
)
ACCOUNT = CrmAccount(id="001ACME", name="Acme", tier=CustomerTier.ENTERPRISE)

VALID = {
    "failure_class": "insufficient_funds",
    "priority": "High",
    "retry_recommended": True,
    "reasons": ["insufficient funds usually clear within days"],
    "proposed_actions": [
        {"kind": "retry_payment", "customer_id": CUSTOMER, "reason": "retry after payday"}
    ],
}


@pytest.fixture
def llm(anthropic_url: str) -> Iterator[AnthropicLlm]:
    client = AnthropicLlm(api_key=KEY, model=MODEL, base_url=anthropic_url, timeout_s=5.0)
    yield client
    client.close()


def complete(llm: AnthropicLlm) -> Any:
    return llm.complete(SYSTEM_PROMPT, dunning_prompt(CTX, ACCOUNT, []), SCHEMA)


def messages_requests(anthropic_em: AnthropicEmulator) -> list[dict[str, Any]]:
    return [r for r in anthropic_em.ledger if r["path"] == "/v1/messages"]


def connector_error(llm: AnthropicLlm) -> ConnectorError:
    with pytest.raises(ConnectorError) as exc:
        complete(llm)
    return exc.value


# --- the happy path ------------------------------------------------------------------------------


def test_complete_returns_the_tool_input_and_usage(
    llm: AnthropicLlm, anthropic_em: AnthropicEmulator
) -> None:
    anthropic_em.script([tool_reply(VALID), tool_reply(VALID)])
    first = complete(llm)
    assert first.raw == VALID
    assert first.model == MODEL
    assert first.usage.calls == 1
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0
    assert first.usage.cache_creation_tokens > 0 and first.usage.cache_read_tokens == 0
    second = complete(llm)
    assert second.usage.cache_read_tokens == first.usage.cache_creation_tokens
    assert second.usage.cache_creation_tokens == 0
    assert second.usage.input_tokens == first.usage.input_tokens
    # the usage is exactly what the API reported
    reported = anthropic_em.answers[-1]["usage"]
    assert second.usage == LlmUsage(
        calls=1,
        input_tokens=reported["input_tokens"],
        output_tokens=reported["output_tokens"],
        cache_read_tokens=reported["cache_read_input_tokens"],
        cache_creation_tokens=reported["cache_creation_input_tokens"],
    )


def test_request_shape(llm: AnthropicLlm, anthropic_em: AnthropicEmulator) -> None:
    complete(llm)
    [row] = messages_requests(anthropic_em)
    body = json.loads(row["body"])
    assert body["model"] == MODEL and body["max_tokens"] == 1024
    assert body["system"] == [
        {"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}
    ]
    assert body["messages"] == [{"role": "user", "content": dunning_prompt(CTX, ACCOUNT, [])}]
    [tool] = body["tools"]
    assert (tool["name"], tool["input_schema"]) == (TOOL_NAME, SCHEMA)
    assert body["tool_choice"] == {"type": "tool", "name": TOOL_NAME}
    assert "stream" not in body or body["stream"] is False
    assert row["headers"]["x-stainless-retry-count"] == "0"


def test_default_answer_is_valid_for_the_schema(llm: AnthropicLlm) -> None:
    ReasonerOutput.model_validate(complete(llm).raw)


def test_malformed_tool_input_comes_back_unchanged(
    llm: AnthropicLlm, anthropic_em: AnthropicEmulator
) -> None:
    bad = {**VALID, "priority": "URGENT", "transfer_to": "attacker"}
    anthropic_em.script(
        [malformed_reply(bad), malformed_reply("not an object"), text_reply("I refuse.")]
    )
    assert complete(llm).raw == bad
    assert complete(llm).raw == "not an object"
    assert complete(llm).raw == "I refuse."  # no tool_use: the text, which containment refuses


def test_constructor_guards() -> None:
    with pytest.raises(ValueError):
        AnthropicLlm(api_key="")
    with pytest.raises(ValueError):
        AnthropicLlm(api_key=KEY, max_tokens=0)
    assert AnthropicLlm(api_key=KEY).model  # a sensible default model


# --- errors: one HTTP call each, classified for Temporal -------------------------------------------


def test_529_is_rate_limited_after_exactly_one_call(
    llm: AnthropicLlm, anthropic_em: AnthropicEmulator
) -> None:
    anthropic_em.script([error_reply(529)])
    err = connector_error(llm)
    assert (err.vendor, err.kind, err.status, err.code) == (
        "anthropic",
        ErrorKind.RATE_LIMITED,
        529,
        "overloaded_error",
    )
    assert err.retry_after == DEFAULT_RETRY_AFTER_S  # no retry-after on the 529
    assert len(messages_requests(anthropic_em)) == 1  # SDK retries off


def test_429_is_rate_limited_with_the_servers_retry_after(
    llm: AnthropicLlm, anthropic_em: AnthropicEmulator
) -> None:
    anthropic_em.script([error_reply(429)])
    err = connector_error(llm)
    assert (err.kind, err.status, err.retry_after) == (ErrorKind.RATE_LIMITED, 429, 1.0)
    assert len(messages_requests(anthropic_em)) == 1
    anthropic_em.faults.append(Fault(status=529, path="/v1/messages", retry_after=2.5))
    err = connector_error(llm)
    assert (err.kind, err.retry_after) == (ErrorKind.RATE_LIMITED, 2.5)
    assert len(messages_requests(anthropic_em)) == 2


def test_spend_limit_429_is_permanent(llm: AnthropicLlm, anthropic_em: AnthropicEmulator) -> None:
    anthropic_em.script([error_reply(429, error_code="enforced_spend_limit_reached")])
    err = connector_error(llm)
    assert (err.kind, err.code) == (ErrorKind.PERMANENT, "enforced_spend_limit_reached")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ErrorKind.PERMANENT),
        (401, ErrorKind.PERMANENT),
        (403, ErrorKind.PERMANENT),
        (404, ErrorKind.PERMANENT),
        (500, ErrorKind.RETRYABLE),
        (503, ErrorKind.RETRYABLE),
    ],
)
def test_status_errors_are_classified(
    llm: AnthropicLlm, anthropic_em: AnthropicEmulator, status: int, kind: ErrorKind
) -> None:
    anthropic_em.script([error_reply(status)])
    err = connector_error(llm)
    assert (err.kind, err.status, err.retry_after) == (kind, status, None)
    assert len(messages_requests(anthropic_em)) == 1


def test_wrong_key_is_permanent(anthropic_url: str, anthropic_em: AnthropicEmulator) -> None:
    llm = AnthropicLlm(api_key="sk-ant-wrong", base_url=anthropic_url)
    err = connector_error(llm)
    llm.close()
    assert (err.kind, err.status, err.code) == (ErrorKind.PERMANENT, 401, "authentication_error")
    assert "sk-ant-wrong" not in str(err)


def test_bad_request_is_permanent(anthropic_url: str, anthropic_em: AnthropicEmulator) -> None:
    llm = AnthropicLlm(api_key=KEY, base_url=anthropic_url, max_tokens=1024)
    anthropic_em.script([tool_reply(VALID)])
    # an input_schema the API refuses (not an object schema): a 400 no retry will fix
    with pytest.raises(ConnectorError) as exc:
        llm.complete("system", "prompt", {"type": "array"})
    llm.close()
    assert (exc.value.kind, exc.value.status) == (ErrorKind.PERMANENT, 400)


def test_timeout_and_connection_errors_are_retryable(
    anthropic_url: str, anthropic_em: AnthropicEmulator
) -> None:
    anthropic_em.faults.append(Fault(kind="commit_then_timeout", path="/v1/messages", delay_s=1.0))
    slow = AnthropicLlm(api_key=KEY, base_url=anthropic_url, timeout_s=0.3)
    err = connector_error(slow)
    assert (err.kind, err.code) == (ErrorKind.RETRYABLE, "APITimeoutError")
    assert len(messages_requests(anthropic_em)) == 1
    down = AnthropicLlm(api_key=KEY, base_url=f"http://127.0.0.1:{free_port()}", timeout_s=2.0)
    err = connector_error(down)
    slow.close()
    down.close()
    assert (err.kind, err.code) == (ErrorKind.RETRYABLE, "APIConnectionError")


def test_retry_after_parsing() -> None:
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({}) == DEFAULT_RETRY_AFTER_S
    assert retry_after({"retry-after": "soon"}) == DEFAULT_RETRY_AFTER_S
    assert retry_after({"retry-after": "0"}) == DEFAULT_RETRY_AFTER_S
    assert retry_after({"retry-after": "99999999"}) == 3600.0
    assert retry_after({"retry-after": "Fri, 01 Jan 1999 00:00:00 GMT"}) == DEFAULT_RETRY_AFTER_S


# --- through the reasoner and the reasoning activity ----------------------------------------------


#: a decline code the rules do not know: they are not conclusive, so the LLM is asked (for a
#: known one such as CTX's insufficient_funds the rules decide alone: tests/security)
UNDECIDED = CTX.model_copy(
    update={
        "recent_payments": [
            CTX.recent_payments[0].model_copy(update={"decline_code": "generic_decline"})
        ]
    }
)


def assess(llm: AnthropicLlm) -> Any:
    acts = ReasoningActivities(LlmReasoner(llm))
    inp = AssessFailureInput(context=UNDECIDED, account=ACCOUNT, now=NOW)
    return asyncio.run(ActivityEnvironment().run(acts.assess_payment_failure, inp))


def test_malformed_reply_falls_back_to_the_rules(
    llm: AnthropicLlm, anthropic_em: AnthropicEmulator
) -> None:
    anthropic_em.script([malformed_reply({**VALID, "wire_money": True})])
    out = assess(llm)
    assert out.reasoner == "rules"
    assert len(out.rejected) == 1 and out.rejected[0].startswith("unknown_field")
    rules = classify_payment_failure(UNDECIDED, ACCOUNT, NOW)
    assert (
        out.model_copy(
            update={"rejected": [], "model": None, "input_tokens": 0, "output_tokens": 0}
        ).model_dump()
        == rules.model_dump()
    )  # the rules' own assessment (and their own proposals, origin "rules")
    assert all(a.origin == "rules" for a in out.proposed_actions)
    assert out.model == MODEL
    assert out.input_tokens == anthropic_em.answers[-1]["usage"]["input_tokens"] > 0


def test_foreign_customer_reply_is_refused(
    llm: AnthropicLlm, anthropic_em: AnthropicEmulator
) -> None:
    action = {**VALID["proposed_actions"][0], "customer_id": "cus_other"}
    anthropic_em.script([tool_reply({**VALID, "proposed_actions": [action]})])
    out = assess(llm)
    assert out.reasoner == "rules" and out.rejected[0].startswith("foreign_customer")


def test_valid_reply_is_the_llms_assessment(
    llm: AnthropicLlm, anthropic_em: AnthropicEmulator
) -> None:
    anthropic_em.script([tool_reply(VALID, usage={"output_tokens": 321})])
    out = assess(llm)
    assert out.reasoner == "llm"
    assert out.rejected == []
    assert out.model == MODEL
    assert (out.failure_class.value, out.priority.value, out.retry_recommended) == (
        "insufficient_funds",
        "High",
        True,
    )
    assert [
        (a.kind.value, a.customer_id, a.invoice_id, a.origin) for a in out.proposed_actions
    ] == [("retry_payment", CUSTOMER, "in_1", "llm")]
    usage = anthropic_em.answers[-1]["usage"]
    assert (out.input_tokens, out.output_tokens) == (usage["input_tokens"], 321)
    assert out.input_tokens > 0
