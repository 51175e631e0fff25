"""``revbridge demo --scenario churn``: a book of customers swept for churn risk, end to end.

Seeds a small book (healthy customers and risky ones: failed payments, a subscription set to end,
open cases) in the running stack's billing and CRM sandboxes, starts the churn sweep the nightly
Temporal Schedule would start, follows every customer's ChurnInterventionWorkflow until it is
scored (and, for the risky ones, waits for RevOps with a retention offer), approves the riskiest
customer's offer as the RevOps approver, and waits for that account's (shortened) follow-up to
record its outcome. The lead's ``cli/demo.py`` calls :func:`scenario` with the stack config.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from cli.churn import score_of
from cli.codec_dev import approver_client
from cli.config import CliError, StackConfig
from connectors.registry import build_billing
from domain.approvals import QUERY, UPDATE, ApprovalSignal, Decision, PendingApproval
from domain.churn import (
    SWEEP_WORKFLOW_TYPE,
    ChurnResult,
    ChurnStatus,
    SweepInput,
    SweepResult,
)
from domain.ids import churn_workflow_id
from domain.settings import Settings
from infra.codec import data_converter
from sandbox import books

BOOK_SIZE = 16
FOLLOW_UP = timedelta(seconds=15)
WAIT_S = 90.0
REVOPS = "bob@example.com"  # policies/approvers.yaml: revops


def _seed(url: str, data: dict[str, Any]) -> None:
    resp = httpx.post(url + "/_sandbox/seed", json=data, timeout=60)
    if resp.status_code != 200:
        raise CliError(f"seeding {url} failed: HTTP {resp.status_code}: {resp.text[:200]}")


def _seed_book(settings: Settings, billing: Any, book: books.Book) -> None:
    if settings.billing == "chargebee":
        assert settings.chargebee and settings.chargebee.api_url
        _seed(settings.chargebee.api_url, books.chargebee_seed(book))
        for sub_id, item_price, quantity in books.chargebee_downgrades(book):
            billing.client.Subscription.update_for_items(
                sub_id,
                {"subscription_items": [{"item_price_id": item_price, "quantity": quantity}]},
            )
    elif settings.billing == "recurly":
        from sandbox.recurly.seeding import book_seed  # downgrades as immediate changes

        assert settings.recurly and settings.recurly.api_url
        _seed(settings.recurly.api_url, book_seed(book))
    elif settings.billing == "zuora":
        from harness.drivers import ZuoraDriver
        from sandbox.zuora.scenarios import book_downgrades, book_seed

        assert settings.zuora
        _seed(settings.zuora.api_url, book_seed(book))
        driver = ZuoraDriver(settings.zuora.api_url, billing)
        for number, quantity in book_downgrades(book):  # orders: their MRR metrics record it
            driver.downgrade(number, quantity)
    else:
        import stripe

        assert settings.stripe and settings.stripe.api_url
        _seed(settings.stripe.api_url, books.stripe_seed(book))
        for invoice_id, attempts in books.stripe_failed_attempts(book):
            for _ in range(attempts):
                with contextlib.suppress(stripe.CardError):  # a declined payment on record
                    billing.client.v1.invoices.pay(invoice_id)
    if settings.crm == "salesforce":
        url = settings.salesforce.token_url.split("/services/")[0] if settings.salesforce else ""
        _seed(url, books.salesforce_seed(book, settings.billing))
    else:
        assert settings.hubspot and settings.hubspot.api_url
        _seed(settings.hubspot.api_url, books.hubspot_seed(book, settings.billing))


async def scenario(cfg: StackConfig, say: Callable[[str], None]) -> dict[str, Any]:
    settings = Settings.from_env(cfg.service_env())
    billing = build_billing(settings)
    client = await Client.connect(
        cfg.temporal.address,
        namespace=cfg.temporal.namespace,
        data_converter=data_converter(),
    )
    prefix = f"churn{datetime.now(UTC):%m%d%H%M%S}"
    book = books.book(BOOK_SIZE, prefix=prefix, seed=16)  # a seed with at-risk customers
    await asyncio.to_thread(_seed_book, settings, billing, book)
    say(
        f"Seeded {BOOK_SIZE} customers in {settings.billing} and {settings.crm}; "
        f"{len(book.risky)} carry risk (failed payments, a subscription set to end, cases)."
    )

    sweep: WorkflowHandle = await client.start_workflow(
        SWEEP_WORKFLOW_TYPE,
        SweepInput(billing=settings.billing, follow_up=FOLLOW_UP),
        id=f"churn-sweep-demo-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
        result_type=SweepResult,
    )
    say(f"Started the churn sweep {sweep.id} (the nightly schedule starts the same workflow).")
    swept = await asyncio.wait_for(sweep.result(), timeout=WAIT_S)
    say(f"  ✓ swept {swept.customers} customers in {swept.pages} page(s)")

    # at-risk customers got an intervention; the sweep wrote the others' scores itself
    handles: dict[str, WorkflowHandle] = {}
    low: dict[str, ChurnStatus] = {}
    for c in book.customers:
        handle = client.get_workflow_handle(
            churn_workflow_id(settings.billing, c.id), result_type=ChurnResult
        )
        try:
            await handle.describe()
            handles[c.id] = handle
        except RPCError:
            scored = await asyncio.to_thread(score_of, settings, c.id)
            low[c.id] = ChurnStatus(
                stage="scored by the sweep",
                customer_id=c.id,
                score=scored.result.score,
                level=scored.result.level.value,
                reasons=scored.result.reasons,
                outcome="low_risk",
            )
    say(f"  {len(low)} low-risk scores written by the sweep; {len(handles)} interventions:")
    states = await _settle(handles, say)
    states.update({cid: (status, []) for cid, status in low.items()})

    waiting = {cid: p for cid, (_, p) in states.items() if p}
    approved: dict[str, Any] | None = None
    if waiting:
        cid = max(waiting, key=lambda k: states[k][0].score or 0)
        pending = waiting[cid][0]
        # as the signed-in RevOps approver where approvals are verified (the stack's codec server)
        approver = await approver_client(cfg, client, REVOPS)
        await approver.get_workflow_handle(handles[cid].id).execute_update(
            UPDATE,
            ApprovalSignal(
                action_id=pending.action_id,
                decision=Decision.APPROVE,
                approver=REVOPS,
                note="demo: retention offer approved",
            ),
        )
        say(f"  ✓ {REVOPS} approved {pending.action.describe()}")
        say(f"  … following {cid} for {FOLLOW_UP.seconds} s (45 days in production)")
        result = await asyncio.wait_for(handles[cid].result(), timeout=WAIT_S)
        say(f"  ✓ {cid}: outcome {result.outcome} (first score {result.first_score})")
        approved = {
            "customer_id": cid,
            "action": pending.action.describe(),
            "approver": REVOPS,
            "offer": result.offer,
            "outcome": result.outcome,
        }

    rows = []
    for c in book.customers:
        status, pending = states[c.id]
        rows.append(
            {
                "customer_id": c.id,
                "tier": c.tier,
                "score": status.score,
                "level": status.level,
                "reasons": status.reasons,
                "state": status.outcome
                or ("waiting for RevOps approval" if pending else status.stage),
                "csm_task": status.task_id,
                "workflow_id": handles[c.id].id if c.id in handles else None,
                "cli": f"revbridge churn score {c.id}",
            }
        )
    rows.sort(key=lambda r: -(r["score"] or 0))
    return {
        "scenario": "churn",
        "pair": {"billing": settings.billing, "crm": settings.crm},
        "sweep": swept.model_dump(),
        "customers": rows,
        "approved_offer": approved,
        "web_ui": cfg.ui_url(),
    }


async def _settle(
    handles: dict[str, WorkflowHandle], say: Callable[[str], None]
) -> dict[str, tuple[ChurnStatus, list[PendingApproval]]]:
    """Until each run is closed, following the account, or waiting for a person."""
    done: dict[str, tuple[ChurnStatus, list[PendingApproval]]] = {}
    deadline = time.monotonic() + WAIT_S
    while len(done) < len(handles):
        for cid, handle in handles.items():
            if cid in done:
                continue
            try:
                status = await handle.query("status", result_type=ChurnStatus)
                pending = await handle.query(QUERY, result_type=list[PendingApproval])
            except Exception:  # noqa: S112 - the sweep has not reached it yet
                continue
            if status.stage in ("closed", "following the account") or pending:
                done[cid] = (status, pending)
                say(
                    f"  {cid}: {status.score}/100 ({status.level})"
                    + (f" — {status.reasons[0]}" if status.reasons else "")
                    + (" ⏸ offer waits for RevOps" if pending else "")
                )
        if time.monotonic() > deadline:
            missing = [handles[k].id for k in handles if k not in done]
            raise CliError(f"timed out waiting for {', '.join(missing[:5])}")
        await asyncio.sleep(0.3)
    return done
