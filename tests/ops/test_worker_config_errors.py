"""A worker configured for the new channels with a bad or missing setting says so in one line at
start, before it waits for Temporal: an unknown ``REVBRIDGE_EMAIL_CHANNEL`` or Marketing Cloud
without its credentials was found only after Temporal answered (with Temporal down, after the
whole wait, as a Temporal error), the support desk's already was."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

BASE = {
    "CHARGEBEE_SITE": "acme-test",
    "CHARGEBEE_API_KEY": "test_key",
    "SALESFORCE_TOKEN_URL": "https://login.example.com/services/oauth2/token",
    "SALESFORCE_CLIENT_ID": "client",
    "SALESFORCE_CLIENT_SECRET": "secret",
    "REVBRIDGE_TEMPORAL_WAIT_S": "120",  # a worker that waited for Temporal would time out here
}

CASES = [
    (
        {"REVBRIDGE_EMAIL_CHANNEL": "pigeon"},
        "unsupported email channel 'pigeon' (smtp or marketing-cloud)",
    ),  # fmt: skip
    (
        {"REVBRIDGE_EMAIL_CHANNEL": "marketing-cloud"},
        "REVBRIDGE_EMAIL_CHANNEL=marketing-cloud needs MARKETING_CLOUD_AUTH_URL",
    ),  # fmt: skip
    ({"REVBRIDGE_DESK": "freshdesk"}, "REVBRIDGE_DESK must be one of zendesk"),
    ({"REVBRIDGE_DESK": "zendesk"}, "REVBRIDGE_DESK=zendesk needs ZENDESK_SUBDOMAIN"),
]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("extra", "line"), CASES, ids=[next(iter(e.values())) for e, _ in CASES])
def test_a_bad_channel_is_one_line_before_waiting_for_temporal(
    extra: dict[str, str], line: str, tmp_path: Path
) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REVBRIDGE_", "TEMPORAL_", "MARKETING_CLOUD_", "ZENDESK_", "SMTP_"))
    }
    env.update(BASE, TEMPORAL_ADDRESS=f"127.0.0.1:{_closed_port()}", **extra)
    script = Path(sys.executable).with_name("revbridge")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 (our own console script)
        [*cmd, "worker"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - started < 40, "the worker waited for Temporal first"
    assert done.returncode == 2, done.stderr
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"revbridge worker: {line}"), done.stderr
