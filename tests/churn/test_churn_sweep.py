"""The scheduled sweep over a seeded book of 1,000 customers (Stripe × Salesforce sandboxes of
its own, so the sweep walks exactly this book), and the sweep's Temporal Schedule.

Stripe × Salesforce is the pair the 1,000-customer run uses: the Chargebee SDK builds a new HTTP
client (and TLS context) per request, which makes a 1,000-customer sweep CPU-bound for minutes in
one test process; the per-customer workflow is the same on every pair (tests/churn/test_churn_pairs.py).

Churn intervention runs with a policy folder whose mode for it is ``observe`` here, so offers are
blocked at once and every per-customer run finishes after a short follow-up: the test can wait
for every intervention to close.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import stripe
import yaml
from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from activities.policy import DEFAULT_POLICY_DIR
from connectors.registry import build_billing, build_crm
from domain.churn import (
    SWEEP_WORKFLOW_TYPE,
    WORKFLOW_TYPE,
    ChurnResult,
    SweepInput,
    SweepResult,
)
from domain.ids import churn_workflow_id
from sandbox import books
from sandbox.framework import ServerThread
from sandbox.salesforce import SalesforceEmulator
from sandbox.stripe import StripeEmulator
from tests.pairs import SF_ID, SF_SECRET, STRIPE_KEY, STRIPE_SECRET, pair_settings
from workers.churn_schedule import SweepSchedule, ensure_churn_schedule
from workers.main import build_worker

HISTORIES = Path(__file__).parent.parent / "histories"
#: the book's size: 1,000 (the issue's book; about 14 minutes on 2 cores, because every sandbox
#: request scans the whole book in one single-threaded process, so the per-customer cost grows
#: with the book); CHURN_BOOK_SIZE=250 for a one-minute run while working on the sweep
N = int(os.environ.get("CHURN_BOOK_SIZE", "1000"))
PAGES_PER_RUN = 2
BUDGET_S = 120 + N * 1.5


@pytest.fixture(scope="module")
def own_sandboxes() -> Iterator[dict[str, str]]:
    st = StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET)
    sf = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    with ServerThread({st: 0, sf: 0}) as thread:
        urls = dict(thread.urls)
        # pair_settings wants every vendor's URL; the other two are never called here
        urls.setdefault("chargebee", "http://127.0.0.1:9")
        urls.setdefault("hubspot", "http://127.0.0.1:9")
        yield urls


@pytest.fixture
def no_offer_policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, folder)
    modes = yaml.safe_load((folder / "modes.yaml").read_text())
    modes["use_cases"]["churn_intervention"] = "auto"
    (folder / "modes.yaml").write_text(yaml.safe_dump(modes))
    # no retention offers in this book: none waits for a person, every intervention runs through
    (folder / "no_offers.cedar").write_text(
        '@id("test_no_offers")\n'
        'forbid (principal, action == RevBridge::Action::"offer_discount", resource);\n'
    )
    return folder


def seed(url: str, data: dict) -> None:
    httpx.post(url + "/_sandbox/seed", json=data, timeout=120).raise_for_status()


@pytest.mark.timeout(int(BUDGET_S) + 120)
async def test_a_sweep_over_a_seeded_book_scores_everyone(
    temporal_env: WorkflowEnvironment, own_sandboxes: dict[str, str], no_offer_policies: Path
) -> None:
    client = temporal_env.client
    task_queue = f"churn-sweep-{uuid.uuid4().hex[:8]}"
    # one process drives the whole book against single-threaded emulators: give a busy
    # emulator time to answer rather than time out and retry
    settings = pair_settings(own_sandboxes, "stripe", "salesforce", task_queue).model_copy(
        update={"http_timeout_s": 15.0}
    )
    billing, crm = build_billing(settings), build_crm(settings)
    book = books.book(N, prefix=f"bk{uuid.uuid4().hex[:6]}")
    seed(own_sandboxes["stripe"], books.stripe_seed(book))
    seed(own_sandboxes["salesforce"], books.salesforce_seed(book, "stripe"))
    for invoice_id, attempts in books.stripe_failed_attempts(book):
        for _ in range(attempts):  # the card declines: Stripe records a failed payment
            with pytest.raises(stripe.CardError):
                billing.client.v1.invoices.pay(invoice_id)
    assert 0.15 < len(book.risky) / N < 0.4  # a realistic spread, not all-or-nothing

    started = time.monotonic()
    async with build_worker(
        client, billing, crm, task_queue=task_queue, policy_dir=no_offer_policies
    ):
        sweep: WorkflowHandle = await client.start_workflow(
            SWEEP_WORKFLOW_TYPE,
            SweepInput(
                billing="stripe",
                page_size=100,
                pages_per_run=PAGES_PER_RUN,
                follow_up=timedelta(seconds=3),
            ),
            id=f"churn-sweep-test-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            result_type=SweepResult,
        )
        result = await asyncio.wait_for(sweep.result(), timeout=BUDGET_S)
        assert (result.customers, result.pages, result.runs) == (
            N,
            -(-N // 100),
            -(-N // (100 * PAGES_PER_RUN)),
        )

        # every customer's score is on its Salesforce account (low risk: written by the sweep)
        rows = crm.query(
            "SELECT Billing_Customer_Id__c, Churn_Risk__c, Churn_Level__c FROM Account "
            "WHERE Churn_Risk__c != null"
        )
        scores = {r["Billing_Customer_Id__c"]: int(r["Churn_Risk__c"]) for r in rows}
        assert set(scores) == {c.id for c in book.customers}
        # the at-risk ones each got an intervention, which runs to its outcome
        at_risk = [cid for cid, s in scores.items() if s >= 50]
        assert at_risk
        results: dict[str, ChurnResult] = {}
        for cid in at_risk:
            handle = client.get_workflow_handle(
                churn_workflow_id("stripe", cid), result_type=ChurnResult
            )
            results[cid] = await asyncio.wait_for(handle.result(), timeout=300)
        elapsed = time.monotonic() - started
    print(f"swept {N} customers, {len(at_risk)} interventions, in {elapsed:.0f} s")

    by_id = {c.id: c for c in book.customers}
    risky = [s for cid, s in scores.items() if by_id[cid].risky]
    calm = [s for cid, s in scores.items() if not by_id[cid].risky]
    assert sum(risky) / len(risky) > 2 * (sum(calm) / len(calm))
    assert all(r.outcome in ("retained", "downgraded", "churned") for r in results.values())
    # offers were proposed and blocked by the observe mode; nothing touched billing
    assert {r.offer for r in results.values()} <= {"blocked", None}
    # the sweep's own audit entries: one per low-risk score it wrote, under its workflow ID
    log = crm.audit_log(sweep.id)
    assert log and {r["action"] for r in log} == {"write_churn_score"}
    assert elapsed < BUDGET_S

    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
        first = client.get_workflow_handle(sweep.id, run_id=sweep.first_execution_run_id)
        (HISTORIES / f"{SWEEP_WORKFLOW_TYPE}__continued_as_new.json").write_text(
            (await first.fetch_history()).to_json()
        )
        (HISTORIES / f"{SWEEP_WORKFLOW_TYPE}__finished.json").write_text(
            (await sweep.fetch_history()).to_json()
        )


async def test_the_sweep_schedule_is_created_once_and_updated_in_place(client: Client) -> None:
    spec = SweepSchedule(
        billing="chargebee", task_queue="nowhere", schedule_id=f"churn-sweep-{uuid.uuid4().hex[:8]}"
    )
    try:
        assert await ensure_churn_schedule(client, spec) == "created"
        handle = client.get_schedule_handle(spec.schedule_id)
        await handle.pause(note="maintenance")
        moved = SweepSchedule(
            billing="chargebee", task_queue="nowhere", hour_utc=5, schedule_id=spec.schedule_id
        )
        assert await ensure_churn_schedule(client, moved) == "updated"
        desc = await handle.describe()
        assert desc.schedule.spec.calendars[0].hour[0].start == 5
        assert desc.schedule.state.paused  # the operator's pause survives a deploy
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == SWEEP_WORKFLOW_TYPE
        assert action.task_queue == "nowhere"
        assert desc.schedule.policy.overlap.name == "SKIP"
        assert WORKFLOW_TYPE  # the per-customer type the sweep fans out to
    finally:
        await client.get_schedule_handle(spec.schedule_id).delete()
