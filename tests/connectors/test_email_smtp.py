"""The production SMTP path against the sandbox's relay (issue 16): STARTTLS with the relay's
certificate verified, AUTH with the configured login, every delivery kept (a repeated send is a
second message, never folded), and a preflight that reports a relay's configuration in one line
per check.

Before: the mailbox folded a repeated Message-ID into one message, offered neither STARTTLS nor
AUTH (so the path production uses never ran), and the mailer had no preflight; its STARTTLS did
not verify the relay's certificate."""

from __future__ import annotations

import smtplib
import ssl
import uuid
from collections.abc import Iterator

import httpx
import pytest

from connectors.base import ConnectorError, ErrorKind
from connectors.email import Email, SmtpMailer
from domain.ids import idempotency_key
from domain.preflight import CheckStatus
from sandbox.framework import ServerThread
from sandbox.mailbox import MailboxEmulator

USER, PASSWORD = "revbridge", "relay-password-for-tests"  # noqa: S105 - sandbox credentials
SENDER = "billing@revbridge.local"


@pytest.fixture(scope="module")
def relay() -> Iterator[tuple[MailboxEmulator, str]]:
    em = MailboxEmulator(username=USER, password=PASSWORD)
    with ServerThread({em: 0}) as thread:
        em.start_smtp()
        try:
            yield em, thread.urls["mailbox"]
        finally:
            em.stop_smtp()


@pytest.fixture
def em(relay: tuple[MailboxEmulator, str]) -> Iterator[MailboxEmulator]:
    em, url = relay
    httpx.delete(url + "/_sandbox/mailbox/messages")
    yield em
    httpx.post(url + "/_sandbox/mailbox/faults", json={})


def mailer(em: MailboxEmulator, **overrides: object) -> SmtpMailer:
    options: dict[str, object] = {
        "timeout_s": 2,
        "starttls": True,
        "username": USER,
        "password": PASSWORD,
        "ca_file": em.cert_file,
    }
    options.update(overrides)
    assert em.smtp_port
    return SmtpMailer("127.0.0.1", em.smtp_port, SENDER, **options)  # type: ignore[arg-type]


def email(key: str | None = None) -> Email:
    key = key or idempotency_key(f"dunning:stripe:in_{uuid.uuid4().hex[:8]}", "remind:1:email")
    return Email(key=key, to="ap@customer.example", subject="Your invoice", body="Please pay.")


def test_the_production_path_starttls_then_login(em: MailboxEmulator) -> None:
    message_id = mailer(em).send(email())
    [got] = em.inbox()
    assert got["message_id"] == message_id and got["delivery"] == 1
    assert got["tls"] is True and got["auth"] is True
    assert got["to"] == ["ap@customer.example"]


def test_a_repeated_send_is_a_second_message(em: MailboxEmulator) -> None:
    """No folding by Message-ID: a duplicate is visible, as it is in the customer's inbox."""
    m = mailer(em)
    same = email()
    m.send(same)
    m.send(same)
    rows = em.inbox()
    assert [r["delivery"] for r in rows] == [1, 2]
    assert rows[0]["message_id"] == rows[1]["message_id"]


def test_without_login_the_relay_refuses(em: MailboxEmulator) -> None:
    with pytest.raises(ConnectorError) as info:
        mailer(em, username=None, password=None).send(email())
    assert info.value.kind is ErrorKind.PERMANENT and info.value.status == 530
    assert em.inbox() == []


def test_a_wrong_password_is_a_permanent_535(em: MailboxEmulator) -> None:
    with pytest.raises(ConnectorError) as info:
        mailer(em, password="wrong").send(email())
    assert info.value.kind is ErrorKind.PERMANENT and info.value.status == 535
    assert "login" in str(info.value)


def test_an_unverifiable_certificate_is_refused(em: MailboxEmulator) -> None:
    with pytest.raises(ConnectorError) as info:
        mailer(em, ca_file=None).send(email())  # the system's CAs do not know the sandbox's
    assert info.value.kind is ErrorKind.PERMANENT and "certificate" in str(info.value)
    assert em.inbox() == []


def test_login_in_clear_is_refused_by_the_relay(em: MailboxEmulator) -> None:
    assert em.smtp_port
    with smtplib.SMTP("127.0.0.1", em.smtp_port, timeout=2) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("starttls")
        with pytest.raises(smtplib.SMTPException):
            smtp.login(USER, PASSWORD)  # AUTH is offered only after STARTTLS
        smtp.starttls(context=ssl.create_default_context(cafile=em.cert_file))
        smtp.ehlo()
        assert "PLAIN" in smtp.esmtp_features["auth"] and "LOGIN" in smtp.esmtp_features["auth"]
        smtp.login(USER, PASSWORD)


def test_a_lost_answer_after_the_whole_message_is_one_email(
    relay: tuple[MailboxEmulator, str], em: MailboxEmulator
) -> None:
    """The relay stores the message and answers after the client gave up: taken as sent, so
    the activity's retry does not email the customer a second time."""
    _, url = relay
    httpx.post(url + "/_sandbox/mailbox/faults", json={"hang": 1, "hang_s": 3.0})
    m = mailer(em, timeout_s=1)
    one = email()
    assert m.send(one) == m.message_id(one.key)
    assert len(em.inbox()) == 1


def test_a_refusal_before_the_message_is_retryable(
    relay: tuple[MailboxEmulator, str], em: MailboxEmulator
) -> None:
    _, url = relay
    httpx.post(url + "/_sandbox/mailbox/faults", json={"reject": 1, "code": 451})
    with pytest.raises(ConnectorError) as info:
        mailer(em).send(email())
    assert info.value.kind is ErrorKind.RETRYABLE and info.value.status == 451
    mailer(em).send(email())
    assert len(em.inbox()) == 1


def test_preflight_ok(em: MailboxEmulator) -> None:
    checks = {c.name: c for c in mailer(em).preflight()}
    assert [c.status for c in checks.values()] == [CheckStatus.OK] * 3, checks
    assert set(checks) == {"reachable", "starttls", "auth"}
    assert em.inbox() == []  # nothing sent


def test_preflight_reports_each_misconfiguration_in_one_line(em: MailboxEmulator) -> None:
    bad_password = {c.name: c for c in mailer(em, password="nope").preflight()}
    assert bad_password["auth"].failed and "SMTP_PASSWORD" in bad_password["auth"].fix
    no_tls = {c.name: c for c in mailer(em, starttls=False).preflight()}
    assert no_tls["starttls"].status is CheckStatus.WARN
    assert no_tls["auth"].failed  # AUTH is not offered in clear
    untrusted = {c.name: c for c in mailer(em, ca_file=None).preflight()}
    assert untrusted["starttls"].failed and "SMTP_CA_FILE" in untrusted["starttls"].fix
    for check in (*bad_password.values(), *no_tls.values(), *untrusted.values()):
        assert "\n" not in check.line() and PASSWORD not in check.line()


def test_preflight_on_an_unreachable_relay() -> None:
    from sandbox.framework import free_port

    checks = SmtpMailer("127.0.0.1", free_port(), SENDER, timeout_s=1).preflight()
    assert [(c.name, c.status) for c in checks] == [
        ("reachable", CheckStatus.FAIL),
        ("starttls", CheckStatus.SKIP),
        ("auth", CheckStatus.SKIP),
    ]


def test_a_relay_without_starttls_is_a_fail_when_starttls_is_configured() -> None:
    em = MailboxEmulator(starttls=False)
    em.start_smtp()
    try:
        assert em.smtp_port
        checks = {
            c.name: c
            for c in SmtpMailer("127.0.0.1", em.smtp_port, SENDER, starttls=True).preflight()
        }
        assert checks["starttls"].failed and "STARTTLS" in checks["starttls"].detail
    finally:
        em.stop_smtp()
