"""The email channel: plain SMTP through the standard library (any relay: Postfix, SES, SendGrid's
SMTP endpoint; the sandbox's mailbox locally).

SMTP has no idempotency keys, so the key becomes the message's identity: ``Message-ID`` is derived
from it (``<rb-…@sender-domain>``) and it is repeated in ``X-RevBridge-Idempotency-Key``. A relay
keeps every delivery (the sandbox's mailbox too), so a send retried after the relay accepted it
but its answer was lost *would be* a second email (some mailbox providers fold it by Message-ID,
not all). SMTP commits a message only once the client sent all of it (the final ``.``): a failure
before that is safe to retry (RETRYABLE), while a connection lost *after* it, waiting for the
relay's answer, is taken as sent — the relay held the whole message (RFC 1047), and a retry
would email the customer twice. The exactly-once property is one delivery per step, which the
tests assert from the mailbox. No Temporal imports; errors are classified like every other connector's.

Production path: ``STARTTLS`` with the relay's certificate **verified** (the system's CAs, or
``ca_file``; smtplib's default would accept any certificate), then ``AUTH`` with the configured
login. ``preflight()`` checks the relay answers, offers STARTTLS and accepts the login.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from connectors.base import ConnectorError, ErrorKind
from connectors.timeouts import call_timeout
from domain.models import Frozen
from domain.preflight import Check, CheckStatus


class Email(Frozen):
    key: str  # the idempotency key: the message's identity
    to: str  # PII: used for the envelope only, never logged
    subject: str
    body: str


class _SentAll(Exception):
    """The connection failed after the whole message went out, awaiting the relay's answer."""


class _Session(smtplib.SMTP):
    """smtplib's session, telling a failure *after* the end of the message apart."""

    _sent_all = False

    def send(self, s: bytes | str) -> None:  # type: ignore[override]
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self._sent_all = True  # the message and its final dot are with the relay

    def data(self, msg: bytes | str) -> tuple[int, bytes]:  # type: ignore[override]
        self._sent_all = False
        try:
            return super().data(msg)
        except (smtplib.SMTPServerDisconnected, OSError):
            if self._sent_all:
                raise _SentAll from None
            raise
        finally:
            self._sent_all = False


class SmtpMailer:
    name = "smtp"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        *,
        timeout_s: float = 20.0,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        # below the activity's start-to-close (connectors/timeouts.py)
        self.timeout_s = self.call_timeout_s = call_timeout(timeout_s)
        self.starttls = starttls
        self.ca_file = ca_file
        self._login = (username, password) if username and password else None

    def _tls(self) -> ssl.SSLContext:
        """Certificate and host name verified (``ca_file``: a private CA, e.g. the sandbox's)."""
        return ssl.create_default_context(cafile=self.ca_file)

    def _open(self) -> smtplib.SMTP:
        """A session as production runs it: connect, STARTTLS (verified), login."""
        smtp = _Session(self.host, self.port, timeout=self.timeout_s)
        try:
            if self.starttls:
                smtp.starttls(context=self._tls())
            if self._login:
                smtp.login(*self._login)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def message_id(self, key: str) -> str:
        domain = self.sender.rsplit("@", 1)[-1] or "revbridge.local"
        return f"<{key}@{domain}>"

    def send(self, email: Email) -> str:
        """Send one message; returns its Message-ID. Idempotent by ``email.key`` (see module)."""
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = email.to
        msg["Subject"] = email.subject
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = self.message_id(email.key)
        msg["X-RevBridge-Idempotency-Key"] = email.key
        msg.set_content(email.body)
        try:
            with self._open() as smtp:
                refused = smtp.send_message(msg)
        except _SentAll:
            return msg["Message-ID"]  # the relay has it; a retry would send it twice (module)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise _classify(codes[0], "recipient refused") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise _classify(exc.smtp_code, "the relay refused the login") from None
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, "the relay refused the message") from None
        except ssl.SSLCertVerificationError:
            raise ConnectorError(
                "smtp", ErrorKind.PERMANENT, "the relay's certificate did not verify"
            ) from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            # connection refused, reset, timed out: the relay may or may not have the message;
            # a retry with the same Message-ID is safe
            raise ConnectorError(
                "smtp", ErrorKind.RETRYABLE, f"{type(exc).__name__} talking to the relay"
            ) from None
        if refused:
            raise ConnectorError("smtp", ErrorKind.PERMANENT, "recipient refused", code="550")
        return msg["Message-ID"]

    # --- preflight (revbridge doctor) ------------------------------------------------------------

    def preflight(self) -> list[Check]:
        """The relay answers, offers STARTTLS (and its certificate verifies), accepts the
        login. One session, no message sent."""
        where = f"{self.host}:{self.port}"
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        except (OSError, smtplib.SMTPException) as exc:
            return [
                _check(
                    "reachable",
                    CheckStatus.FAIL,
                    f"{where}: {type(exc).__name__}",
                    "check SMTP_HOST / SMTP_PORT and the network path to the relay",
                ),
                _check("starttls", CheckStatus.SKIP, "not checked: the relay is unreachable"),
                _check("auth", CheckStatus.SKIP, "not checked: the relay is unreachable"),
            ]
        checks = [_check("reachable", CheckStatus.OK, where)]
        with smtp:
            try:
                smtp.ehlo()
                offered = smtp.has_extn("starttls")
                checks.append(self._check_starttls(smtp, offered))
                checks.append(self._check_auth(smtp, tls=offered and self.starttls))
            except (OSError, smtplib.SMTPException) as exc:
                checks.append(
                    _check(
                        "session",
                        CheckStatus.FAIL,
                        f"{type(exc).__name__} talking to {where}",
                        "check the relay's logs",
                    )
                )
        return checks

    def _check_starttls(self, smtp: smtplib.SMTP, offered: bool) -> Check:
        if not offered:
            status = CheckStatus.FAIL if self.starttls else CheckStatus.WARN
            return _check(
                "starttls",
                status,
                "the relay does not offer STARTTLS",
                "use a relay that offers STARTTLS (port 587), or unset SMTP_STARTTLS",
            )
        if not self.starttls:
            return _check(
                "starttls",
                CheckStatus.WARN,
                "offered, but not used: mail and password would go in clear",
                "set SMTP_STARTTLS=true",
            )
        try:
            smtp.starttls(context=self._tls())
        except ssl.SSLError as exc:
            return _check(
                "starttls",
                CheckStatus.FAIL,
                f"the relay's certificate did not verify ({exc.reason or 'TLS'})",
                "give the relay a valid certificate, or SMTP_CA_FILE its CA",
            )
        return _check("starttls", CheckStatus.OK, "offered and used; certificate verified")

    def _check_auth(self, smtp: smtplib.SMTP, *, tls: bool) -> Check:
        if self._login is None:
            return _check("auth", CheckStatus.OK, "no login configured (relay accepts by address)")
        if tls:
            smtp.ehlo()
        if not smtp.has_extn("auth"):
            return _check(
                "auth",
                CheckStatus.FAIL,
                "the relay offers no AUTH here",
                "enable SMTP AUTH on the relay (after STARTTLS), or unset SMTP_USERNAME",
            )
        try:
            smtp.login(*self._login)
        except smtplib.SMTPAuthenticationError as exc:
            return _check(
                "auth",
                CheckStatus.FAIL,
                f"login refused ({exc.smtp_code})",
                "check SMTP_USERNAME / SMTP_PASSWORD",
            )
        return _check("auth", CheckStatus.OK, "login accepted")


def _check(name: str, status: CheckStatus, detail: str, fix: str = "") -> Check:
    return Check(system="smtp", name=name, status=status, detail=detail, fix=fix)


def _classify(code: int, what: str) -> ConnectorError:
    # 4xx: try again later (greylisting, rate limits); 5xx: the same message will never pass
    kind = ErrorKind.RETRYABLE if 400 <= code < 500 else ErrorKind.PERMANENT
    return ConnectorError("smtp", kind, f"{what} ({code})", status=code, code=str(code))
