"""The Marketing Cloud mailer against the sandbox, as production runs it: the token from the auth
host (cached; a new one on 401), the activity's key as the TM message key (a retried send after a
committed-then-timed-out call is one message), 429s waited out or handed back, the status polled
until sent or not sent, preflight."""

from __future__ import annotations

import typing

import pytest
from pydantic import SecretStr
from temporalio.testing import ActivityEnvironment

from connectors.base import ConnectorError, ErrorKind
from connectors.email import Email
from connectors.marketing_cloud import MarketingCloudMailer
from connectors.registry import build_mailer
from domain.preflight import CheckStatus
from domain.settings import MarketingCloudSettings, Settings, SettingsError
from sandbox.framework import Fault
from sandbox.marketing_cloud import MarketingCloudEmulator
from tests.marketing_cloud.conftest import ACCOUNT, CLIENT_ID, CLIENT_SECRET

SEND = r"/messaging/v1/email/messages/.+"


def _email(
    key: str = "rb-0123456789abcdef0123456789abcdef01234567", to: str = "ap@acme.test"
) -> Email:
    return Email(key=key, to=to, subject="Invoice INV-7 is overdue", body="Please pay INV-7.")


def _posts(mc: MarketingCloudEmulator) -> list[dict]:
    return [r for r in mc.ledger if r["method"] == "POST" and "/messages/" in r["path"]]


def test_a_send_is_one_message_with_the_idempotency_key_as_message_key(
    mc: MarketingCloudEmulator, mailer: MarketingCloudMailer
) -> None:
    email = _email()
    assert mailer.send(email) == email.key
    [msg] = mc.inbox()
    assert msg["message_key"] == email.key
    assert (msg["subject"], msg["body"], msg["to"]) == (email.subject, email.body, email.to)
    assert msg["status"] == "TransactionalSendEvents.EmailSent"
    # two more sends reuse the cached token: one token request in all
    mailer.send(_email("rb-k2"))
    mailer.send(_email("rb-k3"))
    assert mc.token_requests == 1
    # the REST base came from the token answer; nothing secret is in the ledger
    assert all(r["headers"].get("authorization") in (None, "<redacted>") for r in mc.ledger)
    assert all(CLIENT_SECRET not in r["body"] for r in mc.ledger)


def test_a_retried_send_after_a_committed_then_timed_out_call_is_one_message(
    mc: MarketingCloudEmulator, mailer: MarketingCloudMailer
) -> None:
    mc.faults.append(Fault(kind="commit_then_timeout", method="POST", path=SEND, delay_s=3.0))
    email = _email()
    with pytest.raises(ConnectorError) as exc:
        mailer.send(email)
    assert exc.value.kind is ErrorKind.RETRYABLE and "timeout" in str(exc.value)
    assert len(mc.inbox()) == 1  # Marketing Cloud had it
    assert mailer.send(email) == email.key  # the retry: 109110, confirmed by the status
    assert len(mc.inbox()) == 1
    posts = _posts(mc)
    assert len(posts) == 2 and posts[0]["path"] == posts[1]["path"]


def test_a_retried_activity_after_a_committed_then_timed_out_call_is_one_message(
    mc: MarketingCloudEmulator, mailer: MarketingCloudMailer
) -> None:
    """Through the send_email activity, as the worker runs it (vendor_errors, the contact from
    this process's memory), two attempts: the first timed out after Marketing Cloud accepted."""
    from activities.billing import CONTACTS
    from activities.messaging import MessagingActivities

    acts = MessagingActivities(billing=None, mailer=mailer)  # type: ignore[arg-type]
    input_type = typing.get_type_hints(MessagingActivities.send_email)["input"]
    CONTACTS.remember("INV-MC-1", "ap@acme.test")
    send = input_type(key="rb-activity-key-0001", invoice_id="INV-MC-1", subject="S", body="B")
    mc.faults.append(Fault(kind="commit_then_timeout", method="POST", path=SEND, delay_s=3.0))
    env = ActivityEnvironment()
    with pytest.raises(Exception, match="timeout"):
        env.run(acts.send_email, send)
    result = env.run(acts.send_email, send)
    assert result.sent and result.message_id == "rb-activity-key-0001"
    assert [m["message_key"] for m in mc.inbox()] == ["rb-activity-key-0001"]


def test_an_expired_token_is_refreshed_once_on_401(
    mc: MarketingCloudEmulator, mailer: MarketingCloudMailer
) -> None:
    mailer.send(_email("rb-before"))
    with mc.lock:
        mc.tokens.clear()  # revoked (or expired early): the next call answers 401
    assert mailer.send(_email("rb-after")) == "rb-after"
    assert mc.token_requests == 2
    assert [r["status"] for r in mc.ledger if r["path"].endswith("rb-after")][0] == 401


def test_a_429_with_a_short_retry_after_is_waited_out_and_a_long_one_handed_back(
    mc: MarketingCloudEmulator, mc_settings: MarketingCloudSettings
) -> None:
    waits: list[float] = []
    m = MarketingCloudMailer(mc_settings, timeout_s=1.0, sleep=waits.append)
    mc.faults.append(Fault(kind="status", status=429, method="POST", path=SEND, retry_after=2))
    assert m.send(_email("rb-429")) == "rb-429"
    assert 2.0 in waits and len(mc.inbox()) == 1
    mc.faults.append(Fault(kind="status", status=429, method="POST", path=SEND, retry_after=30))
    with pytest.raises(ConnectorError) as exc:
        m.send(_email("rb-429-long"))
    assert exc.value.kind is ErrorKind.RATE_LIMITED and exc.value.retry_after == 30
    assert exc.value.code == "50100"
    mc.blocked = True
    with pytest.raises(ConnectorError) as blocked:
        m.send(_email("rb-blocked"))
    assert blocked.value.kind is ErrorKind.RATE_LIMITED and blocked.value.code == "50200"
    assert len(mc.inbox()) == 1
    m.close()


def test_a_not_sent_status_is_a_permanent_error_naming_the_reason(
    mc: MarketingCloudEmulator, mailer: MarketingCloudMailer
) -> None:
    mc.seed({"contacts": {"held@acme.test": "Held"}})
    with pytest.raises(ConnectorError) as exc:
        mailer.send(_email("rb-held", to="held@acme.test"))
    assert exc.value.kind is ErrorKind.PERMANENT and exc.value.code == "not_sent_2"
    assert "Held" in str(exc.value) and "held@acme.test" not in str(exc.value)


def test_a_message_still_queued_is_retryable_and_its_retry_sends_nothing_new(
    mc: MarketingCloudEmulator, mc_settings: MarketingCloudSettings
) -> None:
    m = MarketingCloudMailer(mc_settings.model_copy(update={"status_wait_s": 0.3}), timeout_s=1.0)
    mc.definitions["revbridge-dunning"]["status"] = "Inactive"
    with pytest.raises(ConnectorError) as exc:
        m.send(_email("rb-queued"))
    assert exc.value.kind is ErrorKind.RETRYABLE and exc.value.code == "queued"
    mc.definitions["revbridge-dunning"]["status"] = "Active"
    assert m.send(_email("rb-queued")) == "rb-queued"
    assert len(mc.inbox()) == 1
    m.close()


def test_refusals_are_permanent_one_line_errors(
    mc: MarketingCloudEmulator, mc_settings: MarketingCloudSettings, mailer: MarketingCloudMailer
) -> None:
    with pytest.raises(ConnectorError) as bad_to:
        mailer.send(_email("rb-bad-to", to="nobody"))
    assert bad_to.value.kind is ErrorKind.PERMANENT and bad_to.value.code == "109121"
    assert "\n" not in str(bad_to.value)
    wrong = MarketingCloudMailer(
        mc_settings.model_copy(update={"client_secret": SecretStr("nope")})
    )
    with pytest.raises(ConnectorError) as creds:
        wrong.send(_email("rb-creds"))
    assert creds.value.kind is ErrorKind.PERMANENT and creds.value.code == "invalid_client"
    assert "nope" not in str(creds.value)
    wrong.close()
    mc.faults.append(Fault(kind="status", status=500, method="POST", path=SEND))
    with pytest.raises(ConnectorError) as server:
        mailer.send(_email("rb-500"))
    assert server.value.kind is ErrorKind.RETRYABLE
    assert mc.inbox() == []


def test_a_long_key_is_hashed_to_a_stable_one_that_fits() -> None:
    long = "k" * 150
    assert MarketingCloudMailer.message_key(long) == MarketingCloudMailer.message_key(long)
    assert len(MarketingCloudMailer.message_key(long)) <= 100
    assert MarketingCloudMailer.message_key("rb-short") == "rb-short"


def test_a_scheme_less_rest_instance_url_is_normalised(mc_url: str) -> None:
    em = MarketingCloudEmulator(CLIENT_ID, CLIENT_SECRET, instance_url_without_scheme=True)
    from sandbox.framework import ServerThread

    with ServerThread({em: 0}) as srv:
        m = MarketingCloudMailer(
            MarketingCloudSettings(
                auth_url=srv.urls["marketing_cloud"],
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
            )
        )
        m._rest = None
        with pytest.raises(ConnectorError):  # https:// added: the plain-HTTP sandbox refuses it
            m.send(_email("rb-scheme"))
        assert m._rest is not None and m._rest.startswith("https://") and m._rest.endswith("/")
        m.close()


def test_preflight_checks_token_scopes_and_definition(
    mc: MarketingCloudEmulator, mailer: MarketingCloudMailer, mc_settings: MarketingCloudSettings
) -> None:
    assert [(c.name, c.status) for c in mailer.preflight()] == [
        ("token", CheckStatus.OK),
        ("scopes", CheckStatus.OK),
        ("definition", CheckStatus.OK),
    ]
    mc.definitions["revbridge-dunning"]["status"] = "Inactive"
    assert mailer.preflight()[2].status is CheckStatus.FAIL
    missing = MarketingCloudMailer(mc_settings.model_copy(update={"definition_key": "nope"}))
    found = missing.preflight()[2]
    assert found.status is CheckStatus.FAIL and "MARKETING_CLOUD_DEFINITION_KEY" in found.fix
    missing.close()
    wrong = MarketingCloudMailer(mc_settings.model_copy(update={"client_secret": SecretStr("x")}))
    assert [c.status for c in wrong.preflight()] == [
        CheckStatus.FAIL,
        CheckStatus.SKIP,
        CheckStatus.SKIP,
    ]
    wrong.close()
    assert not mc.inbox()  # preflight sends nothing


def test_the_channel_is_chosen_per_deployment(mc_url: str) -> None:
    env = {
        "REVBRIDGE_EMAIL_CHANNEL": "marketing-cloud",
        "MARKETING_CLOUD_AUTH_URL": mc_url,
        "MARKETING_CLOUD_CLIENT_ID": CLIENT_ID,
        "MARKETING_CLOUD_CLIENT_SECRET": CLIENT_SECRET,
        "MARKETING_CLOUD_ACCOUNT_ID": ACCOUNT,
        "SMTP_HOST": "127.0.0.1",
    }
    mailer = build_mailer(Settings.from_env(env))
    assert isinstance(mailer, MarketingCloudMailer) and mailer.account_id == ACCOUNT
    mailer.close()
    smtp = build_mailer(Settings.from_env({**env, "REVBRIDGE_EMAIL_CHANNEL": "smtp"}))
    assert smtp is not None and smtp.name == "smtp"
    assert build_mailer(Settings.from_env({"SMTP_HOST": "127.0.0.1"})).name == "smtp"  # default
    with pytest.raises(SettingsError, match="MARKETING_CLOUD_AUTH_URL"):
        build_mailer(Settings.from_env({"REVBRIDGE_EMAIL_CHANNEL": "marketing-cloud"}))
    with pytest.raises(SettingsError, match="unsupported email channel"):
        build_mailer(Settings.from_env({"REVBRIDGE_EMAIL_CHANNEL": "pigeon"}))


def test_doctor_checks_marketing_cloud_when_it_is_the_channel(
    mc: MarketingCloudEmulator, mc_url: str
) -> None:
    from cli.doctor import email_checks

    env = {
        "REVBRIDGE_EMAIL_CHANNEL": "marketing-cloud",
        "MARKETING_CLOUD_AUTH_URL": mc_url,
        "MARKETING_CLOUD_CLIENT_ID": CLIENT_ID,
        "MARKETING_CLOUD_CLIENT_SECRET": CLIENT_SECRET,
    }
    found = email_checks(Settings.from_env(env))
    assert [(c.system, c.name, c.status) for c in found] == [
        ("marketing-cloud", "token", CheckStatus.OK),
        ("marketing-cloud", "scopes", CheckStatus.OK),
        ("marketing-cloud", "definition", CheckStatus.OK),
    ]
    missing = email_checks(Settings.from_env({"REVBRIDGE_EMAIL_CHANNEL": "marketing-cloud"}))
    assert [(c.name, c.status) for c in missing] == [("configuration", CheckStatus.FAIL)]
    assert "MARKETING_CLOUD_AUTH_URL" in missing[0].detail


def test_a_duplicate_answered_400_is_also_taken_as_already_accepted(
    mc: MarketingCloudEmulator, mailer: MarketingCloudMailer
) -> None:
    """The HTTP status of a singleton duplicate is unverified upstream (400 or 202 + 109001):
    either way the retry confirms the first send and sends nothing."""
    mc.duplicate_status = 400
    mc.faults.append(Fault(kind="commit_then_timeout", method="POST", path=SEND, delay_s=3.0))
    with pytest.raises(ConnectorError):
        mailer.send(_email("rb-dup-400"))
    assert mailer.send(_email("rb-dup-400")) == "rb-dup-400"
    assert [r["status"] for r in _posts(mc)][-1] == 400
    assert len(mc.inbox()) == 1
