"""A local mail relay and mailbox: a real SMTP server (aiosmtpd) that keeps what it is sent, for the
demo and the tests, plus an HTTP control plane to read it.

Like the mailbox providers that hold a message once per ``Message-ID``, a second delivery of a
Message-ID already held is accepted (250) and counted, not stored again. Faults: ``hang`` accepts
and stores the next N messages but answers only after the client gave up (the committed-then-
timed-out case), ``reject`` answers the next N with an SMTP error code.

HTTP (besides the framework's ``/_sandbox/*``):

- ``GET /_sandbox/mailbox/messages`` → ``{"messages": [{message_id, from, to, subject, body,
  headers, deliveries}]}`` (optionally ``?to=``); ``DELETE`` empties the mailbox.
- ``POST /_sandbox/mailbox/faults`` ``{"hang": n, "hang_s": 3.0}`` or ``{"reject": n,
  "code": 451}``.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.framework import Emulator, free_port


class MailboxEmulator(Emulator):
    name = "mailbox"

    def __init__(self) -> None:
        super().__init__()
        self._controller: Controller | None = None
        self.smtp_port: int | None = None

    def reset_state(self) -> None:
        self.messages: dict[str, dict[str, Any]] = {}
        self.hang = 0
        self.hang_s = 3.0
        self.reject = 0
        self.reject_code = 451

    # --- SMTP -----------------------------------------------------------------------------------

    def start_smtp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Start the SMTP server in its own thread; returns the port it listens on."""
        port = port or free_port(host)
        self._controller = Controller(_Handler(self), hostname=host, port=port, ready_timeout=10)
        self._controller.start()
        self.smtp_port = port
        return port

    def stop_smtp(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    async def receive(self, envelope: Envelope) -> str:
        msg = email.message_from_bytes(envelope.content or b"", policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        message_id = str(msg.get("Message-ID") or f"<no-id-{self.next_seq()}@sandbox>")
        with self.lock:
            if self.reject:
                self.reject -= 1
                return f"{self.reject_code} Requested action aborted: try again later"
            held = self.messages.get(message_id)
            if held is not None:
                held["deliveries"] += 1
            else:
                body = msg.get_body(preferencelist=("plain",))
                self.messages[message_id] = {
                    "message_id": message_id,
                    "from": envelope.mail_from,
                    "to": list(envelope.rcpt_tos),
                    "subject": str(msg.get("Subject", "")),
                    "body": body.get_content() if body is not None else "",
                    "headers": {k: str(v) for k, v in msg.items()},
                    "deliveries": 1,
                }
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
            rows = [dict(m) for m in self.messages.values()]
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
        return await self.mailbox.receive(envelope)
