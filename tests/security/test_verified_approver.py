"""Harm 5: approvals anyone can claim.

With approver identities verified (identity keys configured: infra/codec.py), an approval counts
only when the codec server stamped it for the person who signed in at the identity provider
(sandbox/identity.py here, an OIDC provider in production). A signal that merely types finance's
address, a stamp moved onto other bytes, or a person signed in as someone else changes nothing,
and the Web UI's current details say why. Sent exactly as the Web UI sends them: the codec
server's /encode, then the raw SignalWorkflowExecution call.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest
from temporalio.api.common.v1 import Payload, Payloads, WorkflowExecution
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from domain.approvals import (
    APPROVER_SIGNATURE,
    CLAIMED_APPROVER,
    SIGNAL,
    UPDATE,
    ApprovalSignal,
    Decision,
)
from infra.codec import (
    ENV_IDENTITY_KEYS,
    ENV_KEYS,
    EncryptionCodec,
    data_converter,
    new_key_entry,
    parse_keys,
)
from infra.codec_server import CODEC_PATH, ENV_CODEC_URL, ENV_ID_TOKEN, OidcVerifier, build_app
from sandbox.framework import App, ServerThread
from sandbox.identity import IdentityProvider
from tests.pairs import Pair, pair_settings, pending_of, status_when
from tests.workflows.test_approvals import CREDIT, GLOBEX, start

PASSWORD = "sandbox-only-password"  # the local provider's, in this test only
AUDIENCE = "revbridge-test"
TASK_QUEUE = "revbridge-verified-approvers"


@dataclass
class Verified:
    client: Client
    pair: Pair
    issuer: str
    codec_app: object
    identity_keys: str


@pytest.fixture(scope="module")
def idp() -> Iterator[str]:
    provider = IdentityProvider(["alice@example.com", "bob@example.com"], PASSWORD)
    with ServerThread({App("identity", provider.app): 0}) as thread:
        yield thread.urls["identity"]


@pytest.fixture(scope="module")
async def verified(
    temporal_env: WorkflowEnvironment, sandbox_urls: dict[str, str], idp: str
) -> AsyncIterator[Verified]:
    from workers.main import build_worker

    env = {ENV_KEYS: os.environ[ENV_KEYS], ENV_IDENTITY_KEYS: new_key_entry("id1")}
    config = temporal_env.client.config()
    config["data_converter"] = data_converter(env)
    client = Client(**config)
    settings = pair_settings(sandbox_urls, "stripe", "salesforce", TASK_QUEUE)
    pair = Pair.build(settings, sandbox_urls, webhook_url="http://unused")
    httpx.delete(sandbox_urls["stripe"] + "/_sandbox/webhooks")  # direct starts only
    app = build_app(
        EncryptionCodec(parse_keys(env[ENV_KEYS])),
        parse_keys(env[ENV_IDENTITY_KEYS]),
        OidcVerifier(idp, AUDIENCE),
    )
    async with build_worker(client, pair.billing, pair.crm, task_queue=TASK_QUEUE):
        yield Verified(client, pair, idp, app, env[ENV_IDENTITY_KEYS])


async def sign_in(idp: str, who: str) -> str:
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            f"{idp}/token",
            data={
                "grant_type": "password",
                "username": who,
                "password": PASSWORD,
                "client_id": AUDIENCE,
            },
        )
    resp.raise_for_status()
    return resp.json()["id_token"]


async def encode_as_ui(v: Verified, body: dict, token: str | None) -> Payloads:
    """What the Web UI does with "Send a Signal" input: the codec server's /encode."""
    import base64
    import json

    plain = {
        "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
        "data": base64.b64encode(json.dumps(body).encode()).decode(),
    }
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=v.codec_app), base_url="http://codec"
    ) as http:
        resp = await http.post(f"{CODEC_PATH}/encode", json={"payloads": [plain]}, headers=headers)
    if resp.status_code != 200:
        raise PermissionError(resp.json()["message"])
    from google.protobuf import json_format

    return json_format.ParseDict(resp.json(), Payloads())


async def signal_raw(v: Verified, handle: WorkflowHandle, payloads: Payloads) -> None:
    await v.client.workflow_service.signal_workflow_execution(
        SignalWorkflowExecutionRequest(
            namespace=v.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id),
            signal_name=SIGNAL,
            input=payloads,
            identity="web-ui",
        )
    )


async def refusal_shown(handle: WorkflowHandle, needle: str) -> str:
    async def shown() -> str:
        return (await handle.query("__temporal_workflow_metadata")).current_details

    from tests.pairs import eventually

    return await eventually(
        shown, lambda d: d.startswith("**Refused:**") and needle in d, "refusal", 15
    )


def body(pending, approver: str) -> dict:  # noqa: ANN001
    return {"action_id": pending.action_id, "decision": "approve", "approver": approver, "note": ""}


async def test_a_typed_email_does_not_approve(verified: Verified, uid: str) -> None:
    handle, ids = await start(verified.client, verified.pair, GLOBEX, uid)
    try:
        pending = await pending_of(handle)
        # anyone who can signal the workflow claims finance's address: no sign-in, no stamp
        await handle.signal(
            SIGNAL,
            ApprovalSignal(
                action_id=pending.action_id, decision=Decision.APPROVE, approver="alice@example.com"
            ),
        )
        shown = await refusal_shown(handle, "not a verified identity")
        assert "alice@example.com" in shown
        # the same through the decide update: refused at once, nothing recorded
        with pytest.raises(WorkflowUpdateFailedError) as err:
            await handle.execute_update(
                UPDATE,
                ApprovalSignal(
                    action_id=pending.action_id,
                    decision=Decision.APPROVE,
                    approver="alice@example.com",
                ),
                result_type=str,
            )
        assert "not a verified identity" in str(err.value.cause)
        # alice's stamp moved onto other bytes (another action, a note added) proves nothing
        token = await sign_in(verified.issuer, "alice@example.com")
        sealed = await encode_as_ui(verified, body(pending, "alice@example.com"), token)
        inner = EncryptionCodec(parse_keys(os.environ[ENV_KEYS])).open(sealed.payloads[0])
        forged = Payload(
            metadata={
                "encoding": b"json/plain",
                CLAIMED_APPROVER: inner.metadata[CLAIMED_APPROVER],
                APPROVER_SIGNATURE: inner.metadata[APPROVER_SIGNATURE],
            },
            data=inner.data.replace(b'"note":""', b'"note":"x"'),
        )
        await signal_raw(verified, handle, Payloads(payloads=[forged]))
        await refusal_shown(handle, "not a verified identity")
        assert verified.pair.credits(ids["customer"]) == 0
        assert (await pending_of(handle)).action_id == pending.action_id  # still waiting
    finally:
        await handle.terminate("test done")


async def test_signed_in_as_someone_else_is_refused(verified: Verified, uid: str) -> None:
    handle, ids = await start(verified.client, verified.pair, GLOBEX, uid)
    try:
        pending = await pending_of(handle)
        token = await sign_in(verified.issuer, "bob@example.com")
        # bob types alice's address: the codec server puts the signed-in person in it
        await signal_raw(
            verified,
            handle,
            await encode_as_ui(verified, body(pending, "alice@example.com"), token),
        )
        await refusal_shown(
            handle, "bob@example.com may not approve apply_credit: it needs finance"
        )
        assert verified.pair.credits(ids["customer"]) == 0
        # no sign-in at all: the codec server refuses to encode (or decode) anything
        with pytest.raises(PermissionError, match="sign in first"):
            await encode_as_ui(verified, body(pending, "alice@example.com"), None)
    finally:
        await handle.terminate("test done")


async def test_the_signed_in_approver_approves(verified: Verified, uid: str) -> None:
    handle, ids = await start(verified.client, verified.pair, GLOBEX, uid)
    try:
        pending = await pending_of(handle)
        token = await sign_in(verified.issuer, "alice@example.com")
        await signal_raw(
            verified, handle, await encode_as_ui(verified, body(pending, "you@example.com"), token)
        )
        status = await status_when(handle, lambda s: s.stage == "waiting for payment")
        assert "apply_credit: needs_approval → executed (alice@example.com)" in status.actions
        assert verified.pair.credits(ids["customer"]) == CREDIT
    finally:
        await handle.terminate("test done")


async def test_the_cli_approves_as_the_signed_in_person_only(
    verified: Verified,
    uid: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.workflows.test_approvals import revbridge

    monkeypatch.setenv("TEMPORAL_ADDRESS", verified.client.service_client.config.target_host)
    monkeypatch.setenv(ENV_IDENTITY_KEYS, verified.identity_keys)
    handle, ids = await start(verified.client, verified.pair, GLOBEX, uid)
    try:
        pending = await pending_of(handle)
        command = ("approve", handle.id, "--action", pending.action_id, "--as", "alice@example.com")
        # typed, not signed in: refused at once, one line
        assert await asyncio.to_thread(revbridge, *command) == 2
        assert "not a verified identity" in capsys.readouterr().err
        # alice's ID token, through the codec server: her stamp, her decision
        with ServerThread({App("codec", verified.codec_app): 0}) as codec:
            monkeypatch.setenv(ENV_CODEC_URL, codec.urls["codec"])
            monkeypatch.setenv(ENV_ID_TOKEN, await sign_in(verified.issuer, "alice@example.com"))
            assert await asyncio.to_thread(revbridge, *command) == 0, capsys.readouterr().err
        status = await status_when(handle, lambda s: s.stage == "waiting for payment")
        assert "apply_credit: needs_approval → executed (alice@example.com)" in status.actions
        assert verified.pair.credits(ids["customer"]) == CREDIT
    finally:
        await handle.terminate("test done")
