"""Waiting for the echoes of our own writes without sleeping: poll until nothing is left in
flight that could still write.

Every sandbox emits its webhooks (a Salesforce Flow callout, a Stripe event, a Zuora callout, a
Recurly notification) while the write that caused them is being answered, so once a run has no
activity pending, every webhook its writes cause is in the sandboxes' delivery lists. The
webhook service answers a delivery only after Temporal took its signal. So: every delivery
answered, then the run with no workflow task and no activity pending and waiting for a change,
and still no new delivery since — from then on, an echo that was going to cause a write has
caused it (or it is a pending activity, which the check refuses). A test asserting "nothing
more was written" after this holds without a fixed sleep that a slow machine could outlast."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from temporalio.client import WorkflowHandle

from domain.golden import SyncStatus
from tests.pairs import Pair

#: a delivery a vendor will not retry: answered 2xx, or a 4xx other than 408/429
_FINAL_4XX = range(400, 500)


def _answered(d: dict[str, Any]) -> bool:
    status = d.get("status")
    return bool(d.get("delivered")) or (status in _FINAL_4XX and status not in (408, 429))


def mark(pair: Pair) -> dict[str, int]:
    """Where both sides' delivery lists stand now: ``settled`` looks only at what comes after."""
    return {side: max((seq for seq, _ in _rows(pair, side)), default=0) for side in _sides(pair)}


def _sides(pair: Pair) -> tuple[str, str]:
    return pair.settings.billing, pair.settings.crm


def _rows(pair: Pair, side: str) -> list[tuple[int, bool]]:
    """The side's deliveries to this deployment: (sequence, answered). HubSpot's pending batch
    (it sends events in windows) is flushed first."""
    url = pair.urls[side]
    if side == "hubspot":
        httpx.post(url + "/_sandbox/hubspot/webhooks/flush", timeout=30).raise_for_status()
    rows = httpx.get(url + "/_sandbox/webhooks/deliveries").json()["deliveries"]
    return [(d["seq"], _answered(d)) for d in rows if d["url"].startswith(pair.webhook_url)]


def _deliveries(pair: Pair, since: dict[str, int] | None) -> list[tuple[str, int, bool]]:
    return [
        (side, seq, done)
        for side in _sides(pair)
        for seq, done in _rows(pair, side)
        if seq > (since or {}).get(side, 0)
    ]


async def _idle(handle: WorkflowHandle[Any, Any]) -> SyncStatus | None:
    raw = (await handle.describe()).raw_description
    if raw.HasField("pending_workflow_task") or raw.pending_activities:
        return None
    s = await handle.query("status", result_type=SyncStatus)
    return s if s.stage == "waiting for a change" else None


async def settled(
    pair: Pair,
    handle: WorkflowHandle[Any, Any],
    since: dict[str, int] | None = None,
    within_s: float = 60.0,
) -> SyncStatus:
    """The run's status once every webhook both sandboxes sent this deployment (after
    ``since``, a ``mark``; without it, ever: a deployment's webhook service is its own) was
    answered and the run has taken them all and is idle (above)."""
    deadline = time.monotonic() + within_s
    last: object = None
    while time.monotonic() < deadline:
        before = await asyncio.to_thread(_deliveries, pair, since)
        if all(done for _, _, done in before):
            s = await _idle(handle)
            if s is not None and await asyncio.to_thread(_deliveries, pair, since) == before:
                return s
            last = s
        else:
            last = [(side, seq) for side, seq, done in before if not done]
        await asyncio.sleep(0.1)
    raise AssertionError(f"the echoes never settled; last seen: {last!r}"[:500])
