"""A local mail relay and mailbox: a real SMTP server (aiosmtpd) that keeps what it is sent, for the
demo and the tests, plus an HTTP control plane to read it.

Like a real relay it keeps **every** delivery: a second send of the same ``Message-ID`` is a
second message in the mailbox (each row says which delivery of its Message-ID it is), so a
duplicate email is visible to the tests as the failure it is. It speaks what production relays
speak: ``STARTTLS`` (a self-signed certificate made at start; ``cert_file`` is its PEM, for a
client to verify against) and ``AUTH PLAIN``/``LOGIN`` after it, with the configured
credentials (required when they are set; a wrong password is ``535``). Faults: ``hang``
accepts and stores the next N messages but answers only after the client gave up (the
committed-then-timed-out case), ``reject`` answers the next N with an SMTP error code.

HTTP (besides the framework's ``/_sandbox/*``):

- ``GET /_sandbox/mailbox/messages`` → ``{"messages": [{message_id, delivery, from, to,
  subject, body, headers, tls, auth}]}`` (optionally ``?to=``), oldest first; ``DELETE``
  empties the mailbox.
- ``POST /_sandbox/mailbox/faults`` ``{"hang": n, "hang_s": 3.0}`` or ``{"reject": n,
  "code": 451}``.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import hmac
import ipaddress
import shutil
import ssl
import tempfile
import warnings
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.framework import Emulator, free_port

# aiosmtpd 1.4 sets its own deprecated Session.login_data on every successful AUTH
warnings.filterwarnings("ignore", "Session.login_data is deprecated", DeprecationWarning)


class MailboxEmulator(Emulator):
    name = "mailbox"

    def __init__(
        self,
        username: str | None = None,
        password: str | None = None,
        *,
        starttls: bool = True,
    ) -> None:
        """``username``/``password``: the relay's credentials (AUTH required when set);
        ``starttls``: offer STARTTLS (on by default, as every relay on port 587 does)."""
        super().__init__()
        self._controller: Controller | None = None
        self.smtp_port: int | None = None
        self.credentials = (username, password) if username and password else None
        self.starttls = starttls
        self._cert_dir: str | None = None
        #: the PEM of the self-signed certificate STARTTLS presents (set by start_smtp)
        self.cert_file: str | None = None

    def reset_state(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.hang = 0
        self.hang_s = 3.0
        self.reject = 0
        self.reject_code = 451

    # --- SMTP -----------------------------------------------------------------------------------

    def start_smtp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start the SMTP server in its own thread; returns the port it listens on."""
        port = port or free_port(host)
        options: dict[str, Any] = {}
        if self.starttls:
            options["tls_context"] = self._tls_context(host)
        if self.credentials:
            options.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=self.starttls,  # as relays do: no password in clear
            )
        self._controller = Controller(
            _Handler(self), hostname=host, port=port, ready_timeout=10, **options
        )
        self._controller.start()
        self.smtp_port = port
        return port

    def stop_smtp(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._cert_dir is not None:
            shutil.rmtree(self._cert_dir, ignore_errors=True)
            self._cert_dir = self.cert_file = None

    def _tls_context(self, host: str) -> ssl.SSLContext:
        """A server context with a fresh self-signed certificate for ``host`` (and localhost)."""
        self._cert_dir = tempfile.mkdtemp(prefix="revbridge-mailbox-")
        cert_pem, key_pem = _self_signed(host)
        cert, key = Path(self._cert_dir, "cert.pem"), Path(self._cert_dir, "key.pem")
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        key.chmod(0o600)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self.cert_file = str(cert)
        return ctx

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if self.credentials is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = self.credentials
        ok = hmac.compare_digest(data.login, user.encode()) & hmac.compare_digest(
            data.password, password.encode()
        )
        return AuthResult(success=bool(ok), handled=False, auth_data=user if ok else None)

    async def receive(self, envelope: Envelope, session: Session | None = None) -> str:
        msg = email.message_from_bytes(envelope.content or b"", policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        message_id = str(msg.get("Message-ID") or f"<no-id-{self.next_seq()}@sandbox>")
        with self.lock:
            if self.reject:
                self.reject -= 1
                return f"{self.reject_code} Requested action aborted: try again later"
            body = msg.get_body(preferencelist=("plain",))
            # a real relay keeps every delivery: a repeated send is a second message
            self.messages.append(
                {
                    "message_id": message_id,
                    "delivery": 1 + sum(m["message_id"] == message_id for m in self.messages),
                    "from": envelope.mail_from,
                    "to": list(envelope.rcpt_tos),
                    "subject": str(msg.get("Subject", "")),
                    "body": body.get_content() if body is not None else "",
                    "headers": {k: str(v) for k, v in msg.items()},
                    "tls": bool(session is not None and session.ssl),
                    "auth": bool(session is not None and session.authenticated),
                }
            )
            hang = self.hang > 0
            if hang:
                self.hang -= 1
        if hang:
            # stored (committed), but the client stops waiting before it hears so
            await asyncio.sleep(self.hang_s)
        return "250 Message accepted for delivery"

    # --- HTTP control plane ---------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        return [
            Route("/_sandbox/mailbox/messages", self._messages, methods=["GET", "DELETE"]),
            Route("/_sandbox/mailbox/faults", self._faults, methods=["POST"]),
        ]

    def inbox(self, to: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            rows = [dict(m) for m in self.messages]
        return [m for m in rows if to is None or to in m["to"]]

    async def _messages(self, request: Request) -> Response:
        if request.method == "DELETE":
            with self.lock:
                self.messages.clear()
            return JSONResponse({"deleted": True})
        return JSONResponse({"messages": self.inbox(request.query_params.get("to"))})

    async def _faults(self, request: Request) -> Response:
        body = await request.json()
        with self.lock:
            self.hang = int(body.get("hang", 0))
            self.hang_s = float(body.get("hang_s", 3.0))
            self.reject = int(body.get("reject", 0))
            self.reject_code = int(body.get("code", 451))
        return JSONResponse({"ok": True})


class _Handler:
    def __init__(self, mailbox: MailboxEmulator) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        return await self.mailbox.receive(envelope, session)


def _self_signed(host: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM): a P-256 key and a one-day certificate for ``host``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "revbridge sandbox mailbox")])
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem
