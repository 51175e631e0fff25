"""Shuffled delivery for the per-pair full-stack tests: the billing sandbox's webhooks go to a
receiver that keeps them (the vendor's exact bytes and headers: signatures without the target
URL stay valid), then the test hands them to the deployment's webhook service in a seeded random
order — and one of them again, late — so the sync is shown to end at the same truth whatever
order its events arrive in, and a repeated late event to change nothing.

Costs next to nothing: the events are the ones the test's own changes cause anyway; only their
order changes. The seed is printed on a failure (``Burst.why``) and can be fixed with
``REVBRIDGE_SHUFFLE_SEED``."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.framework import App, ServerThread
from tests.pairs import WEBHOOK_PASSWORD, WEBHOOK_USER, Pair
from tests.sync.settle import settled

#: vendor headers worth replaying (signatures, delivery IDs); the rest is the HTTP client's
_KEEP = ("signature", "request-id", "authorization", "user-agent", "content-type", "webhook")


@dataclass
class Captured:
    body: bytes
    headers: dict[str, str]


@dataclass
class Capture:
    """A webhook receiver that answers 200 and keeps every delivery, in arrival order."""

    url: str = ""
    events: list[Captured] = field(default_factory=list)
    #: the ``Authorization`` the deployment expects (Zuora sends Basic auth only when challenged,
    #: and this receiver never challenges): added to a kept delivery that has none
    authorization: str | None = None

    async def _take(self, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if any(p in k.lower() for p in _KEEP)}
        if self.authorization and not any(k.lower() == "authorization" for k in headers):
            headers["authorization"] = self.authorization
        self.events.append(Captured(await request.body(), headers))
        return Response(status_code=200)

    def asgi(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._take, methods=["POST"])])


@contextmanager
def capture_server() -> Iterator[Capture]:
    cap = Capture()
    with ServerThread({App("capture", cap.asgi()): 0}) as thread:
        cap.url = thread.urls["capture"]
        yield cap


@contextmanager
def billing_captured(
    pair: Pair, cap: Capture, basic_auth: list[str] | None = None
) -> Iterator[None]:
    """While inside: the billing sandbox's webhooks go to ``cap`` only (with the Basic auth the
    deployment expects, so the kept header is valid there). On leaving, once every captured
    delivery was answered, they go nowhere (the caller routes them again)."""
    url = pair.billing_url
    cap.events.clear()
    httpx.delete(url + "/_sandbox/webhooks").raise_for_status()
    target: dict[str, Any] = {"url": f"{cap.url}/webhooks/{pair.settings.billing}"}
    if pair.settings.billing == "chargebee":
        basic_auth = [WEBHOOK_USER, WEBHOOK_PASSWORD]
    cap.authorization = None
    if basic_auth:
        target["basic_auth"] = basic_auth
        token = base64.b64encode(":".join(basic_auth).encode()).decode()
        cap.authorization = f"Basic {token}"
    httpx.post(url + "/_sandbox/webhooks", json=target).raise_for_status()
    try:
        yield
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = httpx.get(url + "/_sandbox/webhooks/deliveries").json()["deliveries"]
            mine = [d for d in rows if d["url"].startswith(cap.url)]
            if all(d.get("delivered") or d.get("status") for d in mine):
                break
            time.sleep(0.05)
    finally:
        httpx.delete(url + "/_sandbox/webhooks").raise_for_status()


@dataclass
class Burst:
    """A pair's captured events, their shuffled order and the seed that made it."""

    events: list[Captured]
    seed: int
    order: list[int]

    @property
    def why(self) -> str:
        return f"shuffled delivery, seed {self.seed} (REVBRIDGE_SHUFFLE_SEED), order {self.order}"


def shuffled(events: list[Captured]) -> Burst:
    seed = int(os.environ.get("REVBRIDGE_SHUFFLE_SEED") or random.randrange(1 << 30))
    order = list(range(len(events)))
    random.Random(seed).shuffle(order)
    print(f"account sync: {len(events)} events delivered in a shuffled order, seed {seed}")
    return Burst(events, seed, order)


async def deliver(pair: Pair, event: Captured, why: str = "") -> None:
    """One captured event to the deployment's webhook service, as the vendor would send it."""
    url = f"{pair.webhook_url}/webhooks/{pair.settings.billing}"

    def post() -> httpx.Response:
        return httpx.post(url, content=event.body, headers=event.headers, timeout=30)

    # as the vendors do: a 503 (Temporal busy) or 5xx is sent again, a little later
    for delay in (0.2, 0.5, 1.0, 2.0, 4.0, 0):
        resp = await asyncio.to_thread(post)
        if resp.status_code < 500 or not delay:
            break
        await asyncio.sleep(delay)
    assert resp.status_code < 300, f"{why}: the webhook service said {resp.status_code}"


async def deliver_shuffled(pair: Pair, burst: Burst) -> None:
    for i in burst.order:
        await deliver(pair, burst.events[i], burst.why)


_READS = ("/batch/read", "/search", "/query")


def crm_writes(pair: Pair, account: str) -> int:
    """Requests to the CRM that could change something about ``account`` (field sets, bulk
    updates, audit entries, tasks): everything but reads."""
    rows = httpx.get(pair.urls[pair.settings.crm] + "/_sandbox/requests").json()["requests"]
    return sum(
        1
        for r in rows
        if r["method"] != "GET"
        and not any(p in r["path"] for p in _READS)
        and account in r["path"] + str(r.get("body"))
    )


def billing_writes(pair: Pair, customer: str) -> int:
    """Requests to the billing platform that name the customer and are not reads."""
    rows = httpx.get(pair.billing_url + "/_sandbox/requests").json()["requests"]
    return sum(
        1
        for r in rows
        if r["method"] != "GET"
        and not any(p in r["path"] for p in _READS)
        and customer in r["path"] + str(r.get("body"))
    )


async def late_repeat_changes_nothing(
    pair: Pair, ids: dict[str, str], handle: Any, burst: Burst
) -> None:
    """Once the run took every echo: the burst's earliest event, delivered again (late and
    repeated), writes nothing on either side and is no new change for the run."""
    before = await settled(pair, handle)
    crm, billing = crm_writes(pair, ids["account"]), billing_writes(pair, ids["customer"])
    await deliver(pair, burst.events[0], burst.why)
    after = await settled(pair, handle)
    assert crm_writes(pair, ids["account"]) == crm, f"a late repeat wrote to the CRM ({burst.why})"
    assert billing_writes(pair, ids["customer"]) == billing, (
        f"a late repeat wrote to billing ({burst.why})"
    )
    assert after.signals == before.signals, f"a late repeat was a new change ({burst.why})"
