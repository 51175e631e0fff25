"""The email channel: plain SMTP through the standard library (any relay: Postfix, SES, SendGrid's
SMTP endpoint; the sandbox's mailbox locally).

SMTP has no idempotency keys, so the key becomes the message's identity: ``Message-ID`` is derived
from it (``<rb-…@sender-domain>``) and it is repeated in ``X-RevBridge-Idempotency-Key``. A send
retried after the relay accepted it but the answer was lost carries the same Message-ID, and
mailbox providers drop a second delivery of a Message-ID they already hold (the sandbox's mailbox
does the same). No Temporal imports; errors are classified like every other connector's.
"""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from email.utils import formatdate

from connectors.base import ConnectorError, ErrorKind
from connectors.timeouts import call_timeout
from domain.models import Frozen


class Email(Frozen):
    key: str  # the idempotency key: the message's identity
    to: str  # PII: used for the envelope only, never logged
    subject: str
    body: str


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
    ) -> None:
        self.host, self.port, self.sender = host, port, sender
        # below the activity's start-to-close (connectors/timeouts.py)
        self.timeout_s = self.call_timeout_s = call_timeout(timeout_s)
        self.starttls = starttls
        self._login = (username, password) if username and password else None

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
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self._login:
                    smtp.login(*self._login)
                refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            raise _classify(codes[0], "recipient refused") from None
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc.smtp_code, "the relay refused the message") from None
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            # connection refused, reset, timed out: the relay may or may not have the message;
            # a retry with the same Message-ID is safe
            raise ConnectorError(
                "smtp", ErrorKind.RETRYABLE, f"{type(exc).__name__} talking to the relay"
            ) from None
        if refused:
            raise ConnectorError("smtp", ErrorKind.PERMANENT, "recipient refused", code="550")
        return msg["Message-ID"]


def _classify(code: int, what: str) -> ConnectorError:
    # 4xx: try again later (greylisting, rate limits); 5xx: the same message will never pass
    kind = ErrorKind.RETRYABLE if 400 <= code < 500 else ErrorKind.PERMANENT
    return ConnectorError("smtp", kind, f"{what} ({code})", status=code, code=str(code))
