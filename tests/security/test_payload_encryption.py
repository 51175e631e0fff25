"""Harm 7: customer data in clear in Temporal history.

Every payload RevBridge puts in history is AES-GCM ciphertext under a named key (infra/codec.py):
read here from the raw history, as anyone with access to the Temporal cluster would see it. Keys
rotate (decrypt with any configured key, encrypt with the current one); tampering and unknown
keys fail with one line; histories recorded before encryption still decode.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, SearchAttributes, WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client

from infra.codec import (
    ENCODING,
    ENV_KEYS,
    EncryptionCodec,
    KeyError_,
    data_converter,
    load_payload_keys,
    new_key_entry,
    parse_keys,
)
from tests.pairs import Pair, pending_of
from tests.workflows.test_approvals import GLOBEX, gov, policy_dir, start  # noqa: F401

PLAIN = Payload(metadata={"encoding": b"json/plain"}, data=b'{"email":"ann@globex.example"}')


def _keys(*kids: str) -> dict[str, bytes]:
    return parse_keys(",".join(new_key_entry(k) for k in kids))


async def test_payloads_are_sealed_and_open_again() -> None:
    codec = EncryptionCodec(_keys("k1"))
    [sealed] = await codec.encode([PLAIN])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata["encryption-key-id"] == b"k1"
    assert b"ann@globex" not in sealed.SerializeToString()
    [opened] = await codec.decode([sealed])
    assert opened == PLAIN


async def test_keys_rotate_old_ciphertext_still_opens() -> None:
    old = _keys("k1")
    [sealed_old] = await EncryptionCodec(old).encode([PLAIN])
    rotated = {**_keys("k2"), **old}  # k2 current, k1 kept to decrypt
    codec = EncryptionCodec(rotated)
    [sealed_new] = await codec.encode([PLAIN])
    assert sealed_new.metadata["encryption-key-id"] == b"k2"
    assert await codec.decode([sealed_old, sealed_new]) == [PLAIN, PLAIN]


async def test_unknown_key_and_tampering_fail_in_one_line() -> None:
    [sealed] = await EncryptionCodec(_keys("k1")).encode([PLAIN])
    with pytest.raises(
        KeyError_, match=r"^payload encrypted with key 'k1', which is not configured$"
    ):
        await EncryptionCodec(_keys("k2")).decode([sealed])
    codec = EncryptionCodec(_keys("k1"))
    [sealed] = await codec.encode([PLAIN])
    forged = Payload()
    forged.CopyFrom(sealed)
    forged.data = sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    with pytest.raises(KeyError_, match="failed authentication"):
        await codec.decode([forged])
    # the key ID is bound too: relabelling the ciphertext with another configured key fails
    both = EncryptionCodec({**_keys("k1"), **_keys("k2")})
    [sealed] = await both.encode([PLAIN])
    sealed.metadata["encryption-key-id"] = (
        b"k2" if sealed.metadata["encryption-key-id"] == b"k1" else b"k1"
    )
    with pytest.raises(KeyError_):
        await both.decode([sealed])


async def test_plaintext_history_payloads_still_decode() -> None:
    assert await EncryptionCodec(_keys("k1")).decode([PLAIN]) == [PLAIN]


def test_key_configuration_is_checked_and_never_echoed() -> None:
    with pytest.raises(KeyError_) as err:
        parse_keys("k1=" + base64.urlsafe_b64encode(b"short").decode())
    assert "32 bytes" in str(err.value) and "c2hvcnQ" not in str(err.value)
    assert load_payload_keys({}) == {} or load_payload_keys({})  # the dev file may exist
    assert list(load_payload_keys({ENV_KEYS: new_key_entry("a") + "," + new_key_entry("b")})) == [
        "a",
        "b",
    ]
    assert data_converter({ENV_KEYS: new_key_entry("a")}).payload_codec is not None


def _payloads(msg: Message) -> Iterator[Payload]:
    """Every payload in a history, except search attributes (plain by design: visibility
    queries filter on them; they carry provider IDs only)."""
    if isinstance(msg, SearchAttributes):
        return
    if isinstance(msg, Payload):
        yield msg
        return
    for field, value in msg.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if field.message_type.GetOptions().map_entry:
            for item in value.values():
                if isinstance(item, Message):
                    yield from _payloads(item)
        elif field.is_repeated:
            for item in value:
                yield from _payloads(item)
        else:
            yield from _payloads(value)


async def test_history_holds_only_ciphertext(
    client: Client,
    gov: Pair,  # noqa: F811
    uid: str,
) -> None:
    assert client.data_converter.payload_codec is not None  # tests/conftest sets a session key
    handle, ids = await start(client, gov, GLOBEX, uid)
    pending = await pending_of(handle)  # inputs, activity results, details, a query: all sealed
    try:
        raw = await client.workflow_service.get_workflow_execution_history(
            GetWorkflowExecutionHistoryRequest(
                namespace=client.namespace,
                execution=WorkflowExecution(workflow_id=handle.id),
            )
        )
        payloads = [p for event in raw.history.events for p in _payloads(event)]
        # The SDK core's own marker bookkeeping stays readable to the server and replayers:
        # a patch's ID (``patch_data``) and a local activity's sequence number, type and attempt
        # (``data``); the local activity's result beside it is sealed like any payload.
        core_own = [
            p
            for e in raw.history.events
            if e.HasField("marker_recorded_event_attributes")
            for key, ps in e.marker_recorded_event_attributes.details.items()
            if key in ("patch_data", "patch-data", "data")
            for p in ps.payloads
        ]
        for p in core_own:
            assert p.metadata.get("encoding") == b"json/plain"
            assert GLOBEX.company.encode() not in p.data and ids["customer"].encode() not in p.data
        payloads = [p for p in payloads if all(p is not q and p != q for q in core_own)]
        where = sorted(
            {
                EventType.Name(e.event_type)
                + ":"
                + ",".join(e.marker_recorded_event_attributes.details)
                for e in raw.history.events
                for p in _payloads(e)
                if p.metadata.get("encoding") != ENCODING and p in payloads
            }
        )
        assert len(payloads) > 10
        clear = [
            p.metadata.get("encoding", b"?").decode()
            for p in payloads
            if p.metadata.get("encoding") != ENCODING
        ]
        assert clear == [], f"{len(clear)} payload(s) in clear: {sorted(set(clear))} in {where}"
        blob = raw.SerializeToString()
        for secret in (GLOBEX.company.encode(), pending.why.encode()[:40]):
            assert secret not in blob
        # ... and the client with the key reads them as ever
        assert (await pending_of(handle)).action_id == pending.action_id
    finally:
        await handle.terminate("test done")


async def test_failure_messages_are_sealed_too() -> None:
    from temporalio.api.failure.v1 import Failure
    from temporalio.exceptions import ApplicationError

    converter = data_converter({ENV_KEYS: new_key_entry("k1")})
    failure = Failure()
    await converter.encode_failure(ApplicationError("card of ann@globex.example declined"), failure)
    assert b"ann@globex" not in failure.SerializeToString()
    assert failure.encoded_attributes.metadata["encoding"] == ENCODING
    back = await converter.decode_failure(failure)
    assert "card of ann@globex.example declined" in str(back)


def test_a_bad_key_is_one_line_naming_the_variable_not_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    monkeypatch.setenv(ENV_KEYS, "k1=c2VjcmV0LW1hdGVyaWFs")  # 15 bytes, not 32
    assert main(["pending"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ENV_KEYS in err[0] and "32 bytes" in err[0]
    assert "c2VjcmV0" not in err[0]
