"""The container image's recipe: hadolint-clean, multi-stage, pinned base, non-root, and a
HEALTHCHECK whose probe really answers from the worker's or the webhook service's /healthz.

(There is no container engine in CI; docs/deploy.md says how the image was built and smoke-tested
with podman, and how to repeat it.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest

from sandbox.framework import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    run = subprocess.run(  # noqa: S603
        [str(hadolint), "--no-color", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_multi_stage_pinned_non_root_with_the_cli_as_entrypoint() -> None:
    ins = instructions()
    froms = [args for word, args in ins if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    [base] = [args for word, args in ins if word == "ARG" and args.startswith("PYTHON_IMAGE=")]
    # an exact release, never a floating tag
    assert re.fullmatch(
        r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base
    )
    final = ins[max(i for i, (word, _) in enumerate(ins) if word == "FROM") :]
    words = [word for word, _ in final]
    # the final stage only copies the built virtualenv: no compiler, no pip install, no sources
    assert [args for word, args in final if word == "COPY"] == [
        "--from=build /opt/revbridge /opt/revbridge"
    ]
    assert not any("pip" in args or "apt-get" in args for word, args in final if word == "RUN")
    [user] = [args for word, args in final if word == "USER"]
    assert user.split(":")[0] not in {"0", "root"}
    assert words.index("USER") < words.index("ENTRYPOINT")
    assert dict(final)["ENTRYPOINT"] == '["revbridge"]'
    assert dict(final)["CMD"] == '["worker"]'
    assert dict(final)["STOPSIGNAL"] == "SIGTERM"


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()


def healthcheck_command() -> list[str]:
    [args] = [args for word, args in instructions() if word == "HEALTHCHECK"]
    return json.loads(args[args.index("CMD") + 3 :])


def test_healthcheck_probe_answers_from_the_health_port(
    health_server: ThreadingHTTPServer,
) -> None:
    cmd = healthcheck_command()
    assert cmd[:2] == ["python3", "-c"]
    port = health_server.server_address[1]
    # the webhook service's port, 8700 in the image: here one where nothing listens
    assert "'8700'" in cmd[2]
    code = cmd[2].replace("'8700'", f"'{free_port()}'")

    def probe(env_port: int) -> int:
        return subprocess.run(  # noqa: S603
            [sys.executable, "-c", code],
            env={"REVBRIDGE_HEALTH_PORT": str(env_port)},
            timeout=30,
        ).returncode

    assert probe(port) == 0
    _Health.status = 503
    try:
        assert probe(port) == 1  # alive but failing: unhealthy
    finally:
        _Health.status = 200
    health_server.shutdown()
    assert probe(port) == 1  # nothing answers
