"""Harm 5, the terminal: ``revbridge approve`` sends the ``decide`` update with an ID derived
from the action and the decision, so the same command run twice (a retry after a timeout, a
second Enter) is one decision — one accepted update in history, the credit applied once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from tests.pairs import Pair, pair_settings, pending_of, status_when
from tests.workflows.test_approvals import CREDIT, GLOBEX, revbridge, start

TASK_QUEUE = "revbridge-decide-once"


@pytest.fixture(scope="module")
async def gov(client: Client, sandbox_urls: dict[str, str]) -> AsyncIterator[Pair]:
    from workers.main import build_worker

    settings = pair_settings(sandbox_urls, "stripe", "salesforce", TASK_QUEUE)
    pair = Pair.build(settings, sandbox_urls, webhook_url="http://unused")
    httpx.delete(sandbox_urls["stripe"] + "/_sandbox/webhooks")  # direct starts only
    async with build_worker(client, pair.billing, pair.crm, task_queue=TASK_QUEUE):
        yield pair


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, client: Client, gov: Pair) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", client.service_client.config.target_host)
    monkeypatch.setenv("REVBRIDGE_TASK_QUEUE", TASK_QUEUE)


async def test_the_same_approve_command_twice_is_one_decision(
    client: Client,
    gov: Pair,
    uid: str,
    cli_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    handle, ids = await start(client, gov, GLOBEX, uid)
    try:
        pending = await pending_of(handle)
        command = ("approve", handle.id, "--action", pending.action_id, "--as", "alice@example.com")
        first = await asyncio.to_thread(revbridge, *command)
        second = await asyncio.to_thread(revbridge, *command)
        out = capsys.readouterr()
        assert (first, second) == (0, 0), out.err
        assert out.out.count("approve recorded") == 2  # the second is answered from the first
        await status_when(handle, lambda s: s.stage == "waiting for payment")
        accepted = [
            e
            async for e in handle.fetch_history_events()
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
        ]
        assert len(accepted) == 1
        assert accepted[0].workflow_execution_update_accepted_event_attributes.protocol_instance_id
        assert gov.credits(ids["customer"]) == CREDIT
        # a different decision on the same action is another update: refused, already decided
        code = await asyncio.to_thread(
            revbridge,
            "reject",
            handle.id,
            "--action",
            pending.action_id,
            "--as",
            "alice@example.com",
        )
        assert code == 2 and "already decided" in capsys.readouterr().err
    finally:
        await handle.terminate("test done")
