"""Observe mode reads and reports, and writes nothing — proven from the vendors' side.

Every use case runs on fresh sandboxes (so their request ledgers hold this test's traffic only)
with every use case in ``observe`` mode: a failed payment (dunning), a won deal (quote-to-cash), a
new case (support context), a churn intervention and the churn sweep. Afterwards the ledgers of
billing and the CRM show reads only — no case, task, note, audit entry, link, score or email —
while the runs' own reports (status, the ``observed`` query) say what they would have done.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from temporalio.client import Client

from domain.churn import SWEEP_WORKFLOW_TYPE, ChurnInput, ChurnResult, SweepInput, SweepResult
from domain.churn import WORKFLOW_TYPE as CHURN
from domain.ids import churn_workflow_id, support_workflow_id
from domain.support import WORKFLOW_TYPE as SUPPORT
from domain.support import SupportContextInput, SupportContextResult
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator
from sandbox.scenarios import DEMO_CUSTOMERS
from sandbox.stripe import StripeEmulator
from tests.pairs import (
    CB_KEY,
    HS_SECRET,
    HS_TOKEN,
    SF_ID,
    SF_SECRET,
    STRIPE_KEY,
    STRIPE_SECRET,
    Pair,
    pair_settings,
    status_when,
)
from tests.quote_to_cash.conftest import start as start_q2c
from tests.quote_to_cash.conftest import won_deal

ROOT = Path(__file__).resolve().parents[2]
PAIRS = [("chargebee", "salesforce"), ("stripe", "hubspot")]
GLOBEX = DEMO_CUSTOMERS[1]
#: POSTs that only read (searches, batch reads) and auth
READ_POSTS = ("/search", "/batch/read", "/oauth2/token", "/query")


@pytest.fixture(scope="module")
def observe_policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("observe-policies")
    shutil.copytree(ROOT / "policies", path, dirs_exist_ok=True)
    modes = yaml.safe_load((path / "modes.yaml").read_text())
    modes["default"] = "observe"
    modes["use_cases"] = {name: "observe" for name in modes["use_cases"]}
    (path / "modes.yaml").write_text(yaml.safe_dump(modes))
    return path


@pytest.fixture(scope="module")
def fresh_sandboxes() -> Iterator[dict[str, str]]:
    """Emulators of this module's own: their ledgers hold nothing but this module's calls."""
    ems = {
        ChargebeeEmulator(api_key=CB_KEY): 0,
        SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET): 0,
        StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET): 0,
        HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET, rate_limit_per_10s=2000): 0,
    }
    with ServerThread(ems) as thread:
        yield thread.urls


@pytest.fixture(scope="module", params=PAIRS, ids=["-".join(p) for p in PAIRS])
async def observed(
    request: pytest.FixtureRequest,
    client: Client,
    fresh_sandboxes: dict[str, str],
    observe_policies: Path,
) -> AsyncIterator[Pair]:
    from workers.main import build_worker

    billing, crm = request.param
    queue = f"observe-{billing}-{crm}"
    settings = pair_settings(fresh_sandboxes, billing, crm, queue)
    pair = Pair.build(settings, fresh_sandboxes, webhook_url="http://unused")
    async with build_worker(
        client, pair.billing, pair.crm, task_queue=queue, policy_dir=observe_policies
    ):
        yield pair


def _seq(url: str) -> int:
    rows = httpx.get(url + "/_sandbox/requests").raise_for_status().json()["requests"]
    return max((r["seq"] for r in rows), default=0)


def _writes_since(url: str, seq: int) -> list[str]:
    rows = httpx.get(url + "/_sandbox/requests").raise_for_status().json()["requests"]
    return [
        f"{r['method']} {r['path']}"
        for r in rows
        if r["seq"] > seq
        and r["method"] not in ("GET", "HEAD")
        and not any(r["path"].endswith(p) or p in r["path"] for p in READ_POSTS)
    ]


async def test_every_use_case_in_observe_mode_makes_only_reads(
    client: Client, observed: Pair
) -> None:
    pair, uid = observed, uuid.uuid4().hex[:10]
    billing_url, crm_url = pair.urls[pair.settings.billing], pair.urls[pair.settings.crm]
    queue = pair.settings.task_queue
    # the world as it is before RevBridge acts: a customer with a failed payment, a won deal,
    # a new support case (all written by the test, through the vendors' official clients)
    ids = pair.seed(GLOBEX, uid)
    pair.billing_driver.decline(ids["invoice"])
    pair.billing_driver.seed_catalog()
    pair.crm_driver.seed_catalog()
    deal = won_deal(pair, uid, [("RB-CORE", 1, 50_000, 0.0)], callout=False)
    account_id = pair.account_id(ids["customer"])
    case_id = pair.crm_driver.open_case(account_id, f"Login trouble {uid}")
    marks = {url: _seq(url) for url in (billing_url, crm_url)}

    dunning = await pair.start_directly(
        client, ids, f"ev_{uid}", amount_due=GLOBEX.invoice_total, task_queue=queue
    )
    q2c = await start_q2c(client, pair, deal)
    support = await client.start_workflow(
        SUPPORT,
        SupportContextInput(crm=pair.settings.crm, billing=pair.settings.billing, case_id=case_id),
        id=support_workflow_id(pair.settings.crm, case_id),
        task_queue=queue,
        result_type=SupportContextResult,
    )
    churn = await client.start_workflow(
        CHURN,
        ChurnInput(
            billing=pair.settings.billing,
            customer_id=ids["customer"],
            started_by="observe-test",
            follow_up=timedelta(seconds=2),
        ),
        id=churn_workflow_id(pair.settings.billing, ids["customer"]),
        task_queue=queue,
        result_type=ChurnResult,
    )
    sweep = await client.start_workflow(
        SWEEP_WORKFLOW_TYPE,
        SweepInput(billing=pair.settings.billing, page_size=10, pages_per_run=50, sweep_id=uid),
        id=f"observe-sweep-{uid}",
        task_queue=queue,
        result_type=SweepResult,
    )

    # the open case pauses the playbook: either way the run reached its first durable wait
    resting = ("waiting for payment", "paused by an open support case")
    status = await status_when(dunning, lambda s: s.stage in resting, 30)
    assert status.actions[0] == "create_case: deny → blocked" and status.case_id is None
    assert (await q2c.result()).outcome == "rolled_back"
    assert (await support.result()).note_id is None
    assert (await churn.result()).outcome in ("retained", "low_risk", "downgraded", "churned")
    assert (await sweep.result()).customers >= 1
    observed_lines: list[Any] = await dunning.query("observed")
    assert any(line.startswith("create_case") for line in observed_lines)
    await dunning.terminate("test done")

    for url, seq in marks.items():
        assert _writes_since(url, seq) == [], url
