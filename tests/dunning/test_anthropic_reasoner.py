"""Dunning with the Anthropic reasoner, through the real ``anthropic`` SDK against the Messages API
emulator: an overloaded API (529) is retried by Temporal, not by the SDK; a malformed tool reply
is refused by code, the rules decide instead, and the refusal is in the audit trail."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from connectors.anthropic_llm import AnthropicLlm
from connectors.reasoner import LlmReasoner
from sandbox.anthropic import AnthropicEmulator, error_reply, malformed_reply
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.pairs import ANTHROPIC_KEY, Pair, stage
from workers.main import build_worker

#: a decline code the rules do not know, so the LLM is consulted (a known one — Initech's
#: processing_error — is decided by the rules alone: tests/security/test_prompt_injection.py)
INITECH = dataclasses.replace(DEMO_CUSTOMERS[2], decline_code="generic_decline")


@pytest.mark.parametrize("pair_deployment", [("chargebee", "salesforce")], indirect=True)
async def test_overload_is_retried_by_temporal_and_a_malformed_reply_falls_back_to_rules(
    client: Client, pair: Pair, anthropic_em: AnthropicEmulator, anthropic_url: str, uid: str
) -> None:
    httpx.delete(pair.billing_url + "/_sandbox/webhooks").raise_for_status()
    ids = pair.seed(INITECH, uid)
    await asyncio.to_thread(pair.billing_driver.decline, ids["invoice"])
    anthropic_em.script(
        [
            error_reply(529, "Overloaded", retry_after=1),
            malformed_reply({"failure_class": "technical", "wire_money": True}),
        ]
    )
    llm = AnthropicLlm(api_key=ANTHROPIC_KEY, base_url=anthropic_url, timeout_s=5.0)
    queue = f"dunning-llm-{uuid.uuid4().hex[:6]}"
    async with build_worker(
        client, pair.billing, pair.crm, reasoner=LlmReasoner(llm), task_queue=queue
    ):
        handle = await pair.start_directly(client, ids, f"ev_{uid}", task_queue=queue)
        status = await stage(handle, "waiting for payment", within_s=30)
        await handle.terminate("test over")
    llm.close()

    calls = [r for r in anthropic_em.ledger if r["path"] == "/v1/messages"]
    assert len(calls) == 2  # the overloaded one and the malformed one: the SDK never retried
    attempts = [
        attempt async for e in handle.fetch_history_events() if (attempt := _attempt(e)) > 1
    ]
    assert attempts == [2]  # the assessment, retried once by Temporal after the 529

    assert status.failure_class == "unknown"  # the rules' class for a code they do not know
    log = pair.audit(ids["invoice"])
    refused = [r for r in log if r["action"] == "llm_output_rejected"]
    assert len(refused) == 1 and refused[0]["outcome"] == "blocked"
    assert (
        "unknown_field" in refused[0]["text"] and "The rules decided instead" in refused[0]["text"]
    )
    assert "wire_money" not in str(status.actions)


def _attempt(event: HistoryEvent) -> int:
    """The attempt an activity completed on: a regular activity's started event, or a local
    activity's marker (the hot path runs the assessment as one; Temporal retries it all the
    same, and the marker records the attempt that answered)."""
    if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
        return event.activity_task_started_event_attributes.attempt
    if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
        marker = event.marker_recorded_event_attributes
        if marker.marker_name == "core_local_activity" and "data" in marker.details:
            data = json.loads(marker.details["data"].payloads[0].data)
            return int(data.get("attempt", 1))
    return 0
