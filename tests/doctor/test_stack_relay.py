"""The local stack as a configured deployment: `revbridge sandbox` (what `revbridge dev` and the
demo start) serves its mail relay with STARTTLS and AUTH and leaves the relay's certificate where
the stack's environment points the mailer (SMTP_STARTTLS, SMTP_USERNAME/PASSWORD, SMTP_CA_FILE),
so `revbridge doctor` has no SMTP warning on the default stack and a reminder goes out encrypted
and logged in; the Zuora tenant starts with its catalog (the rate plans doctor checks) and the
custom fields Describe reports. The sandbox runs as its own process on free ports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from cli.config import StackConfig
from cli.doctor import connector_checks, email_checks
from cli.services import RELAY_CA_FILE, apply_stack_defaults
from connectors.email import Email, SmtpMailer
from connectors.registry import build_billing, build_mailer
from domain.preflight import CheckStatus
from domain.settings import Settings
from sandbox.framework import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackConfig]:
    folder = tmp_path_factory.mktemp("stack")
    cfg = yaml.safe_load((ROOT / "temporal-dev.yaml").read_text())
    cfg["sandbox"]["ports"] = {name: free_port() for name in cfg["sandbox"]["ports"]}
    cfg["sandbox"]["smtp_port"] = free_port()
    cfg["webhooks"]["port"] = free_port()
    path = folder / "temporal-dev.yaml"
    path.write_text(yaml.safe_dump(cfg))
    loaded = StackConfig.load(path)
    assert "zuora" in loaded.sandbox.ports
    log = (folder / "sandbox.log").open("w")
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "cli.main", "sandbox", "--config", str(path)],
        cwd=folder,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        urls = [loaded.sandbox.url(v) + "/_sandbox/health" for v in ("mailbox", "zuora")]
        while not all(_up(u) for u in urls) or not (folder / RELAY_CA_FILE).exists():
            assert proc.poll() is None, (folder / "sandbox.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.2)
        yield loaded
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def env(stack: StackConfig, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(os.environ):
        if key.startswith(("SMTP_", "ZUORA_", "REVBRIDGE_", "CHARGEBEE_", "SALESFORCE_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("REVBRIDGE_BILLING", "zuora")
    apply_stack_defaults(stack)  # what `revbridge doctor` and the worker do with the stack file
    return Settings.from_env(os.environ)


def test_doctor_has_no_smtp_warning_and_the_reminder_goes_out_encrypted_and_logged_in(
    stack: StackConfig, env: Settings
) -> None:
    assert env.smtp is not None and env.smtp.starttls and env.smtp.username
    checks = email_checks(env)
    assert [(c.name, c.status) for c in checks] == [
        ("reachable", CheckStatus.OK),
        ("starttls", CheckStatus.OK),
        ("auth", CheckStatus.OK),
    ], [c.line() for c in checks]

    mailbox = stack.sandbox.url("mailbox") + "/_sandbox/mailbox/messages"
    httpx.delete(mailbox).raise_for_status()
    mailer = build_mailer(env)
    assert isinstance(mailer, SmtpMailer)
    mailer.send(
        Email(key="relay-test-1", to="ap@globex.example", subject="Reminder", body="Please pay")
    )
    (message,) = httpx.get(mailbox).json()["messages"]
    assert (message["tls"], message["auth"]) == (True, True)


def test_another_relay_in_the_environment_gets_none_of_the_local_login(
    stack: StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("SMTP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SMTP_HOST", "smtp.example.com")
    apply_stack_defaults(stack)
    assert "SMTP_USERNAME" not in os.environ and "SMTP_CA_FILE" not in os.environ


def test_the_stack_zuora_tenant_has_its_catalog_and_custom_fields(
    stack: StackConfig, env: Settings
) -> None:
    checks = connector_checks("zuora", lambda: build_billing(env))
    assert [c.line() for c in checks if c.status is not CheckStatus.OK] == []
    names = {c.name for c in checks}
    assert {"rate-plan:ZUORA_CREDIT_PLAN", "custom-field:Order.RevBridgeKey__c"} <= names
