"""The chaos scenarios (issue 14, and the combined one of issue 25) and the run that judges them.

A run: a fresh :class:`~chaos.stack.LocalStack` for the pair; a book of customers seeded in both
sandboxes; every payment declined through the billing vendor's official client; the webhooks the
vendor emitted delivered 1–5 times each, concurrently and out of order, while the scenario's
disruption runs (kills, server restarts) and, when ``faults`` is on, 20 % of RevBridge's vendor
calls fail (5xx, 429 with Retry-After, commit-then-timeout, commit-then-error). Then
:func:`chaos.checks.judge` counts lost, doubled and stuck runs. Nobody restarts a piece by hand:
the supervisor's part (``revbridge dev``, systemd, Kubernetes) is played by :meth:`Ctx.supervise`,
which only restarts what exited.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from chaos.checks import Verdict, judge
from chaos.proxy import RoundRobin
from chaos.stack import HOST, LocalStack, Piece
from chaos.vendor import Inbox, Redeliverer, World, book
from sandbox.framework import ServerThread

#: the pairs `make chaos` runs: every billing platform × every CRM (a new platform is one line)
PAIRS: list[tuple[str, str]] = [
    ("chargebee", "salesforce"),
    ("chargebee", "hubspot"),
    ("stripe", "salesforce"),
    ("stripe", "hubspot"),
    ("zuora", "salesforce"),
    ("zuora", "hubspot"),
    ("recurly", "salesforce"),
    ("recurly", "hubspot"),
]
FAULT_SHARE = 0.2


@dataclass
class Ctx:
    """What a disruption can touch while the events are being delivered."""

    stack: LocalStack
    rng: random.Random
    log: Callable[[str], None]
    #: how many times a repeated disruption strikes (``make chaos`` more than the short tests)
    rounds: int = 3
    kills: int = 0
    restarts: int = 0
    #: pieces this scenario killed and has not (yet) started again
    down: set[str] = field(default_factory=set)

    def kill(self, piece: Piece) -> None:
        if piece.alive:
            piece.kill()
            self.kills += 1
            self.down.add(piece.name)
            self.log(f"    SIGKILL {piece.name}")

    def supervise(self, piece: Piece) -> None:
        """What a supervisor does: start again a piece that is not running."""
        if not piece.alive:
            piece.start()
            self.restarts += 1
            self.down.discard(piece.name)
            self.log(f"    restarted {piece.name}")


Disruption = Callable[[Ctx], Awaitable[None]]


async def _nothing(ctx: Ctx) -> None:
    return None


async def _worker_kills(ctx: Ctx) -> None:
    """SIGKILL the worker ``ctx.rounds`` times, 2–5 s apart, mid-flow; the supervisor starts it
    again 0.5 s later (an activity in flight on a killed worker is retried when its
    start-to-close timeout expires)."""
    worker = ctx.stack.workers[0]
    for _ in range(ctx.rounds):
        await asyncio.sleep(ctx.rng.uniform(2, 5))
        ctx.kill(worker)
        await asyncio.sleep(0.5)
        ctx.supervise(worker)


async def _server_restart(ctx: Ctx) -> None:
    """SIGKILL the Temporal dev server mid-flow; start it again 3 s later on the same file."""
    await asyncio.sleep(1.5)
    ctx.kill(ctx.stack.temporal)
    await asyncio.sleep(3)
    ctx.supervise(ctx.stack.temporal)


async def _webhook_kills(ctx: Ctx) -> None:
    """SIGKILL the webhook service while deliveries are in flight, ``ctx.rounds`` times; the
    supervisor starts it again 1 s later."""
    for _ in range(ctx.rounds):
        await asyncio.sleep(ctx.rng.uniform(0.2, 1.0))
        ctx.kill(ctx.stack.webhooks[0])
        await asyncio.sleep(1)
        ctx.supervise(ctx.stack.webhooks[0])


async def _combined(ctx: Ctx) -> None:
    """Issue 25: the worker is killed and restarted; while the new worker is starting, the
    server is killed too (back 5 s later). The new worker must wait for it by itself."""
    await asyncio.sleep(1.0)
    worker = ctx.stack.workers[0]
    ctx.kill(worker)
    ctx.supervise(worker)
    await asyncio.sleep(0.3)  # the new worker is importing / connecting
    ctx.kill(ctx.stack.temporal)
    await asyncio.sleep(5)
    ctx.supervise(ctx.stack.temporal)


async def _scale_out_kills(ctx: Ctx) -> None:
    """Two workers, two webhook services behind the proxy: kill one of each mid-flow, for good."""
    await asyncio.sleep(0.3)
    ctx.kill(ctx.stack.webhooks[0])
    await asyncio.sleep(1.5)
    ctx.kill(ctx.stack.workers[0])


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    disrupt: Disruption
    workers: int = 1
    webhooks: int = 1
    faults: bool = True


SCENARIOS = [
    Scenario("redelivery", "every webhook 1–5 times, concurrent, out of order", _nothing),
    Scenario("worker-kills", "SIGKILL the worker every 2–5 s mid-flow", _worker_kills),
    Scenario(
        "server-restart", "SIGKILL Temporal mid-flow, restart on the same db", _server_restart
    ),
    Scenario("webhook-kills", "SIGKILL the webhook service mid-request", _webhook_kills),
    Scenario("combined", "worker killed, then the server while the new worker starts", _combined),
    Scenario(
        "scale-out",
        "2 workers + 2 webhook services behind round-robin; one of each killed",
        _scale_out_kills,
        workers=2,
        webhooks=2,
    ),
]
BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass
class Result:
    scenario: str
    pair: str
    events: int
    deliveries: dict[str, Any]
    kills: int
    restarts: int
    faults: int
    verdict: Verdict
    seconds: float
    errors_5xx: int
    #: pieces that exited without being killed (a worker that gave up waiting for Temporal, …)
    exited: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.scenario:<15} {self.pair:<22} events={self.events} "
            f"copies={self.deliveries['copies']} kills={self.kills} faults={self.faults} "
            f"500s={self.errors_5xx} exited={len(self.exited)} {self.verdict.line()} "
            f"({self.seconds:.0f} s)"
        )


def fault_plan(rng: random.Random, calls: int, share: float, timeout_s: float) -> list[dict]:
    """Faults for the next ``calls`` vendor calls: each call faulted with probability ``share``.
    Pass-through entries (kind ``pass``, which the sandbox's middleware serves normally) count
    the calls in between, as the sandbox applies the first fault that still matches."""
    kinds = [
        {"kind": "status", "status": 500},
        {"kind": "status", "status": 503},
        {"kind": "status", "status": 429, "retry_after": 1},
        {"kind": "commit_then_timeout", "delay_s": timeout_s + 1},
        {"kind": "commit_then_error", "status": 500},
    ]
    plan: list[dict] = []
    skip = 0
    for _ in range(calls):
        if rng.random() < share:
            if skip:
                plan.append({"kind": "pass", "times": skip})
                skip = 0
            plan.append({**rng.choice(kinds), "times": 1})
        else:
            skip += 1
    return plan


def _arm(url: str, plan: list[dict]) -> None:
    with httpx.Client(timeout=10) as http:
        for fault in plan:
            http.post(url + "/_sandbox/faults", json=fault).raise_for_status()


def _clear(url: str) -> None:
    httpx.delete(url + "/_sandbox/faults", timeout=10)


class Arena:
    """A running stack for scenarios: the pieces, the vendor's inbox, and (with several webhook
    services) the round-robin proxy on the stack file's webhook port, where vendors deliver."""

    def __init__(
        self, folder: Path, billing: str, crm: str, *, workers: int = 1, webhooks: int = 1,
        http_timeout_s: float = 3.0,
    ) -> None:  # fmt: skip
        self.billing, self.crm, self.http_timeout_s = billing, crm, http_timeout_s
        self.folder, self.workers, self.webhooks = folder, workers, webhooks
        self._build(folder)

    def _build(self, folder: Path) -> None:
        self.stack = LocalStack(
            folder, self.billing, self.crm, workers=self.workers, webhooks=self.webhooks,
            http_timeout_s=self.http_timeout_s,
        )  # fmt: skip
        self.inbox = Inbox()
        self.proxy = RoundRobin([w.health_url or "" for w in self.stack.webhooks])
        apps: dict[Any, int] = {self.inbox.app: 0}
        if self.webhooks > 1:
            apps[self.proxy.app] = self.stack.cfg.webhooks.port  # one URL, as behind an ingress
        self.servers = ServerThread(apps)

    @property
    def billing_url(self) -> str:
        return self.stack.cfg.sandbox.url(self.billing)

    @property
    def crm_url(self) -> str:
        return self.stack.cfg.sandbox.url(self.crm)

    async def __aenter__(self) -> Arena:
        for attempt in range(3):
            try:
                return await self._start()
            except (AssertionError, RuntimeError):
                # free_port() picks a port that another process may take before our piece binds
                # it: start again on fresh ports (any other failure is raised as it is)
                clash = any("address already in use" in p.text() for p in self.stack.pieces)
                if not clash or attempt == 2:
                    raise
                self._build(self.folder / f"retry{attempt + 1}")
        raise AssertionError("unreachable")

    async def _start(self) -> Arena:
        self.servers.start()
        try:
            await self.stack.start()
            self.world = World(self.stack.service_env())
            target: dict[str, Any] = {"url": f"{self.servers.urls['inbox']}/{self.billing}"}
            creds = getattr(self.stack.cfg.webhooks, self.billing, None)  # Basic auth vendors
            if creds is not None:
                target["basic_auth"] = [creds.username, creds.password]
            await asyncio.to_thread(_webhooks_to, self.billing_url, target)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.stack.stop()
        self.servers.stop()


async def run(
    scenario: Scenario,
    billing: str,
    crm: str,
    folder: Path,
    *,
    events: int = 12,
    seed: int = 14,
    http_timeout_s: float = 3.0,
    say: Callable[[str], None] = print,
    rounds: int = 3,
) -> Result:
    """One scenario on a fresh stack of its own."""
    began = time.monotonic()
    arena = Arena(
        folder, billing, crm, workers=scenario.workers, webhooks=scenario.webhooks,
        http_timeout_s=http_timeout_s,
    )  # fmt: skip
    async with arena:
        result = await play(scenario, arena, events=events, seed=seed, say=say, rounds=rounds)
    result.seconds = time.monotonic() - began
    return result


async def play(
    scenario: Scenario,
    arena: Arena,
    *,
    events: int = 12,
    seed: int = 14,
    say: Callable[[str], None] = print,
    settle_s: float = 180.0,
    rounds: int = 3,
    fault_tail_s: float = 10.0,
) -> Result:
    """One scenario on a running arena (every piece up): seed, decline, deliver under the
    disruption and the vendor faults; the faults last ``fault_tail_s`` longer (the runs go on
    meanwhile), then the vendors recover and every run must reach its durable wait within
    ``settle_s`` (a run in its retry back-off needs the vendor back to get through)."""
    rng = random.Random(seed)
    began = time.monotonic()
    stack, world, inbox = arena.stack, arena.world, arena.inbox
    billing_url, crm_url = arena.billing_url, arena.crm_url
    await asyncio.to_thread(_reset_ledgers, billing_url, crm_url)
    inbox.events.clear()
    suffix = f"{int(time.time())}{rng.randrange(1000)}"
    ids = await asyncio.to_thread(world.seed, book(events, scenario.name[:2]), suffix)
    for entry in ids:  # the load: every payment declined at the vendor
        await world.decline(entry["invoice"])
    await stack.wait_until("every webhook emitted", lambda: len(inbox.events) >= events, 30)
    if scenario.faults:
        for url in (billing_url, crm_url):
            plan = fault_plan(rng, 40 * events, FAULT_SHARE, arena.http_timeout_s)
            await asyncio.to_thread(_arm, url, plan)
    secret = stack.cfg.sandbox.stripe.webhook_secret if arena.billing == "stripe" else None
    deliverer = Redeliverer(
        f"{stack.webhook_url}/webhooks/{arena.billing}", stripe_secret=secret, rng=rng
    )
    ctx = Ctx(stack, rng, say, rounds=rounds)
    # the disruption and the deliveries run together; the runs go on during and after both
    await asyncio.gather(scenario.disrupt(ctx), deliverer.deliver_all(list(inbox.events)))
    await asyncio.sleep(fault_tail_s if scenario.faults else 0)
    await asyncio.to_thread(_clear_all, billing_url, crm_url)  # the vendors recover
    delivered_at = time.monotonic()
    client = await _client_when_up(stack)
    verdict = await judge(
        client, world, ids, billing_url=billing_url,
        mailbox_url=stack.cfg.sandbox.url("mailbox"), within_s=settle_s,
    )  # fmt: skip
    faults = 0
    for url in (billing_url, crm_url):
        faults += await asyncio.to_thread(_faults_hit_ledger, url)
    exited = [p.name for p in stack.pieces if not p.alive and p.name not in ctx.down]
    say(
        f"    delivered (faults on) in {delivered_at - began:.0f} s, settled in "
        f"{time.monotonic() - delivered_at:.0f} s"
    )
    return Result(
        scenario=scenario.name,
        pair=f"{arena.billing}×{arena.crm}",
        events=events,
        deliveries=deliverer.summary(),
        kills=ctx.kills,
        restarts=ctx.restarts,
        faults=faults,
        verdict=verdict,
        seconds=time.monotonic() - began,
        errors_5xx=deliverer.answers.get(500, 0),
        exited=exited,
    )


def _reset_ledgers(*urls: str) -> None:
    for url in urls:
        httpx.delete(url + "/_sandbox/requests", timeout=10)
        httpx.delete(url + "/_sandbox/faults", timeout=10)


def _webhooks_to(vendor_url: str, target: dict[str, Any]) -> None:
    """The vendor's webhook endpoint configuration: only ``target`` (the chaos inbox)."""
    httpx.delete(vendor_url + "/_sandbox/webhooks", timeout=10).raise_for_status()
    httpx.post(vendor_url + "/_sandbox/webhooks", json=target, timeout=10).raise_for_status()


def _clear_all(*urls: str) -> None:
    for url in urls:
        _clear(url)


def _faults_hit_ledger(url: str) -> int:
    rows = httpx.get(url + "/_sandbox/requests", timeout=10).json()["requests"]
    return sum(1 for r in rows if r.get("fault"))


async def _client_when_up(stack: LocalStack) -> Any:
    await stack.wait_until("temporal back", stack.temporal_up, 60)
    return await stack.client()


__all__ = ["HOST", "PAIRS", "SCENARIOS", "Result", "Scenario", "run"]
