"""The local stack's sign-in (cli/codec_dev.py): the demo's approvals go through the same door as
a person's — signed in at the codec server's page with the local password, encoded there, so the
worker's codec verifies the stamp. A wrong password signs nobody in."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.testing import WorkflowEnvironment

from cli.codec_dev import approver_client, dev_password
from cli.config import CliError
from domain.approvals import IDENTITY_CHECK, VERIFIED_APPROVER
from infra.codec import ENV_IDENTITY_KEYS, ENV_KEYS, EncryptionCodec, new_key_entry, parse_keys
from infra.codec_server import OidcVerifier, build_app
from sandbox.framework import App, ServerThread, free_port
from sandbox.identity import IdentityProvider

APPROVAL = b'{"action_id":"act-1","decision":"approve","approver":"typed@example.com","note":""}'


async def test_the_demo_signs_in_and_its_approvals_verify(
    temporal_env: WorkflowEnvironment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = new_key_entry("dev")
    monkeypatch.setenv(ENV_IDENTITY_KEYS, identity)
    port = free_port()
    cfg = SimpleNamespace(root=tmp_path, temporal=SimpleNamespace(ip="127.0.0.1", ui_port=port))
    password = dev_password(cfg).read_text().strip()  # type: ignore[arg-type]
    assert oct(dev_password(cfg).stat().st_mode & 0o777) == "0o600"  # type: ignore[arg-type]
    provider = IdentityProvider(["bob@example.com"], password)
    with ServerThread({App("identity", provider.app): 0}) as idp:
        keys = parse_keys(os.environ[ENV_KEYS])
        gateway = build_app(
            EncryptionCodec(keys),
            parse_keys(identity),
            OidcVerifier(idp.urls["identity"], "revbridge-dev"),
        )
        with ServerThread({App("gateway", gateway): port}):
            client = await approver_client(cfg, temporal_env.client, "bob@example.com")  # type: ignore[arg-type]
            codec = client.data_converter.payload_codec
            assert codec is not None
            [sealed] = await codec.encode(
                [Payload(metadata={"encoding": b"json/plain"}, data=APPROVAL)]
            )
            worker_codec = EncryptionCodec(keys, parse_keys(identity))
            [seen] = await worker_codec.decode([sealed])
            assert seen.metadata[IDENTITY_CHECK] == b"verified"
            assert seen.metadata[VERIFIED_APPROVER] == b"bob@example.com"
            assert b'"approver":"bob@example.com"' in seen.data

            (tmp_path / ".revbridge" / "dev-password").write_text("wrong\n")
            with pytest.raises(CliError, match="the local sign-in refused bob@example.com"):
                await approver_client(cfg, temporal_env.client, "bob@example.com")  # type: ignore[arg-type]
