"""The outside world of a chaos run: customers whose payments fail, and a vendor that keeps
redelivering webhooks the way the real ones do.

The billing sandbox emits each webhook once, to :class:`Inbox` (a receiver in this process), and
:class:`Redeliverer` hands it to RevBridge ``copies`` times (1–5), concurrently and out of order,
retrying every copy that was not answered 2xx — as Stripe or Chargebee do for days (compressed
here to ``give_up_s``). Every answer is counted: a 500 from RevBridge is a defect (it must answer
503 + Retry-After when it cannot hand an event over), a 2xx is an accepted hand-over.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.registry import build_billing, build_crm
from domain.settings import Settings
from harness.drivers import drivers
from sandbox.framework import App
from sandbox.scenarios import DunningCustomer

#: tiers and decline codes the chaos book cycles through (SMB and Mid-Market get day-0 email)
_TIERS = (
    ("SMB", "team-monthly", 4_900, 5),
    ("Mid-Market", "business-monthly", 9_900, 12),
    ("Enterprise", "enterprise-monthly", 46_000, 40),
)
_DECLINES = ("expired_card", "insufficient_funds", "processing_error")


def book(n: int, tag: str) -> list[DunningCustomer]:
    out = []
    for i in range(n):
        tier, plan, price, qty = _TIERS[i % len(_TIERS)]
        out.append(
            DunningCustomer(
                f"{tag}{i:03d}", f"Chaos {tag} {i} Ltd", tier, plan, price, qty, 400 + i,
                _DECLINES[i % len(_DECLINES)],
            )
        )  # fmt: skip
    return out


class World:
    """Seeds the pair's sandboxes and fails payments, through the vendors' official clients
    (harness/drivers.py), against the stack's sandbox process."""

    def __init__(self, service_env: dict[str, str]) -> None:
        self.settings = Settings.from_env(service_env)
        self.billing, self.crm = build_billing(self.settings), build_crm(self.settings)
        self.billing_driver, self.crm_driver = drivers(self.settings, self.billing, self.crm)

    def seed(self, customers: list[DunningCustomer], suffix: str) -> list[dict[str, str]]:
        self.billing_driver.seed(tuple(customers), suffix)
        self.crm_driver.seed(tuple(customers), suffix, self.settings.billing)
        return [c.ids(suffix) for c in customers]

    async def decline(self, invoice_id: str) -> None:
        await asyncio.to_thread(self.billing_driver.decline, invoice_id)


@dataclass
class Captured:
    body: bytes
    headers: dict[str, str]
    at: float


class Inbox:
    """Where the billing sandbox sends its webhooks during a chaos run (nothing is forwarded
    here: :class:`Redeliverer` does that)."""

    def __init__(self) -> None:
        self.events: list[Captured] = []

        async def receive(request: Request) -> Response:
            if request.path_params["vendor"] == "zuora" and "authorization" not in request.headers:
                # Zuora's Basic auth is challenge/response: it resends with credentials
                return Response(status_code=401, headers={"WWW-Authenticate": 'Basic realm="x"'})
            drop = {"host", "content-length", "connection", "accept-encoding", "user-agent"}
            headers = {k: v for k, v in request.headers.items() if k not in drop}
            self.events.append(Captured(await request.body(), headers, time.time()))
            return JSONResponse({"ok": True})

        self.app = App("inbox", Starlette(routes=[Route("/{vendor}", receive, methods=["POST"])]))


@dataclass
class Redeliverer:
    """Delivers each captured event ``1..max_copies`` times, concurrently and shuffled, each copy
    retried (back-off 0.2 s doubling to 2 s) until a 2xx or ``give_up_s``."""

    url: str
    stripe_secret: str | None = None  # re-sign each attempt, as Stripe does
    max_copies: int = 5
    give_up_s: float = 120.0
    rng: random.Random = field(default_factory=lambda: random.Random(14))
    answers: Counter[int | str] = field(default_factory=Counter)
    delivered: int = 0
    copies: int = 0
    gave_up: int = 0

    async def deliver_all(self, events: list[Captured]) -> None:
        jobs = []
        for ev in events:
            n = self.rng.randint(1, self.max_copies)
            self.copies += n
            jobs += [ev] * n
        self.rng.shuffle(jobs)
        async with httpx.AsyncClient(timeout=10.0) as http:
            await asyncio.gather(*(self._one(http, ev, self.rng.random() * 0.5) for ev in jobs))

    async def _one(self, http: httpx.AsyncClient, ev: Captured, delay: float) -> None:
        await asyncio.sleep(delay)  # out of order
        began, pause = time.monotonic(), 0.2
        while True:
            headers = dict(ev.headers)
            if self.stripe_secret and "stripe-signature" in headers:
                from sandbox.stripe.signing import signature_header

                headers["stripe-signature"] = signature_header(ev.body, [self.stripe_secret])
            try:
                resp = await http.post(self.url, content=ev.body, headers=headers)
                self.answers[resp.status_code] += 1
                if resp.is_success:
                    self.delivered += 1
                    return
            except httpx.HTTPError as exc:
                self.answers[type(exc).__name__] += 1
            if time.monotonic() - began > self.give_up_s:
                self.gave_up += 1
                return
            await asyncio.sleep(pause)
            pause = min(2.0, pause * 2)

    def summary(self) -> dict[str, Any]:
        return {
            "copies": self.copies,
            "delivered": self.delivered,
            "gave_up": self.gave_up,
            "answers": {str(k): v for k, v in sorted(self.answers.items(), key=str)},
        }
