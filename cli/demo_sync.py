"""``revbridge demo --scenario sync``: the golden customer record on the running stack (issue 19).

Seeds three customers in the billing sandbox and their accounts in the CRM, starts each
customer's account sync the way a webhook does (signal-with-start of ``sync_change`` on
``account:{billing}:{customer}``), then shows, on Chargebee × Salesforce or Chargebee × HubSpot:

1. a **plan change** (a downgrade to one seat) written to the CRM account at once;
2. **minor changes** (one more seat for two customers) coalesced and written by the flusher in
   one bulk call (its window shortened to a few seconds for the demo; 300 s by default);
3. a **conflict** on the billing contact, changed on both sides, waiting in the review queue
   with the exact ``revbridge sync resolve`` command;
4. a **backfill** dry run over the whole book in the sandboxes: what would be linked, how, and
   what goes to a person.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.client import Client, WorkflowHandle

from cli.config import CliError, StackConfig
from connectors.registry import build_billing, build_crm
from connectors.sync import sync_crm
from domain import golden
from domain.golden import (
    AccountSyncInput,
    BackfillInput,
    BackfillReport,
    Conflict,
    FlushStatus,
    Side,
    SyncSignal,
    SyncStatus,
)
from domain.settings import Settings
from domain.starts import start_options
from infra.codec import data_converter
from sandbox.scenarios import DunningCustomer, chargebee_seed, hubspot_seed, salesforce_seed

WAIT_S = 60.0
BATCH_S = 4


async def _until(probe: Callable[[], Any], ok: Callable[[Any], bool], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await probe()
            if ok(last):
                return last
        except Exception as exc:  # a query before the run's first task: not yet
            last = exc
        await asyncio.sleep(0.2)
    raise CliError(f"timed out waiting for {what}")


def _seed(url: str, data: dict[str, Any]) -> None:
    resp = httpx.post(url + "/_sandbox/seed", json=data, timeout=60)
    if resp.status_code != 200:
        raise CliError(f"seeding {url} failed: HTTP {resp.status_code}: {resp.text[:200]}")


def check_pair(billing: str, crm: str) -> None:
    """The pairs this demo runs on (cli/demo.py asks before it starts a stack)."""
    if billing != "chargebee" or crm not in ("salesforce", "hubspot"):
        raise CliError(
            "the sync demo runs on Chargebee × Salesforce or Chargebee × HubSpot: "
            "revbridge demo --scenario sync --billing chargebee --crm salesforce (or hubspot)"
        )


async def scenario(cfg: StackConfig, say: Callable[[str], None]) -> dict[str, Any]:
    settings = Settings.from_env(cfg.service_env())
    check_pair(settings.billing, settings.crm)
    client = await Client.connect(
        cfg.temporal.address, namespace=cfg.temporal.namespace, data_converter=data_converter()
    )
    return await run_scenario(
        settings, client, say, ui_url=cfg.ui_url(), suffix=f"{datetime.now(UTC):%m%d%H%M%S}"
    )


def _crm_url(settings: Settings) -> str:
    if settings.crm == "hubspot":
        assert settings.hubspot and settings.hubspot.api_url
        return settings.hubspot.api_url
    assert settings.salesforce
    return settings.salesforce.token_url.split("/services/")[0]


async def run_scenario(
    settings: Settings,
    client: Client,
    say: Callable[[str], None],
    *,
    ui_url: str,
    suffix: str,
    flusher: str | None = None,
) -> dict[str, Any]:
    """The scenario against ``settings``' sandboxes and a worker on its task queue (``flusher``:
    another flusher workflow ID than the deployment's, for a test beside other deployments)."""
    check_pair(settings.billing, settings.crm)
    assert settings.chargebee and settings.chargebee.api_url
    billing, crm = build_billing(settings), build_crm(settings)
    cb, view = billing.client, sync_crm(crm)

    def crm_mrr(account_id: str) -> float | None:
        """The account's MRR as the CRM shows it (currency units)."""
        cents = view.sync_view(account_id).get("mrr")
        return None if cents is None else cents / 100

    people = (
        DunningCustomer("acme", "Acme Robotics", "Mid-Market", "team-monthly", 9_900, 5, 400, None),
        DunningCustomer("globex", "Globex Freight", "SMB", "team-monthly", 4_900, 10, 300, None),
        DunningCustomer("initech", "Initech Labs", "SMB", "team-monthly", 4_900, 8, 200, None),
    )
    crm_seed = hubspot_seed if settings.crm == "hubspot" else salesforce_seed
    await asyncio.to_thread(_seed, _crm_url(settings), crm_seed(people, suffix, "chargebee"))
    await asyncio.to_thread(_seed, settings.chargebee.api_url, chargebee_seed(people, suffix))
    ids = {p.key: p.ids(suffix) for p in people}
    account = {k: await asyncio.to_thread(_account_id, crm, i["customer"]) for k, i in ids.items()}
    say(f"Seeded {len(people)} customers in chargebee and their accounts in {settings.crm}.")

    flusher = flusher or golden.flush_workflow_id(settings.billing, settings.crm)
    handles: dict[str, WorkflowHandle] = {}
    n = 0

    async def signal(key: str, side: Side) -> None:
        nonlocal n
        n += 1
        cid = ids[key]["customer"]
        change = SyncSignal(
            billing="chargebee",
            customer_id=cid,
            side=side,
            event_id=f"demo-{suffix}-{n}",
            occurred_at=datetime.now(UTC),
            crm_account_id=account[key] if side is Side.CRM else None,
        )
        handles[key] = await client.start_workflow(
            golden.WORKFLOW_TYPE,
            AccountSyncInput(
                billing="chargebee", customer_id=cid, flusher_id=flusher, batch_every_s=BATCH_S
            ),
            id=golden.account_workflow_id("chargebee", cid),
            task_queue=settings.task_queue,
            start_signal=golden.SIGNAL_CHANGE,
            start_signal_args=[change],
            **start_options(golden.WORKFLOW_TYPE),
        )

    async def idle(key: str, signals: int) -> SyncStatus:
        return await _until(
            lambda: handles[key].query("status", result_type=SyncStatus),
            lambda s: s.signals >= signals and s.stage == "waiting for a change",
            f"the sync of {ids[key]['customer']}",
        )

    for key in ids:
        await signal(key, Side.BILLING)
    for key in ids:
        await idle(key, 1)
    say(
        "  ✓ first sync of each customer: plan, MRR, status, renewal, payment health on the account"
    )

    # 1. a plan change: down to one seat (a downgrade: written at once)
    sub = ids["acme"]["subscription"]
    before = await asyncio.to_thread(crm_mrr, account["acme"])
    item = await asyncio.to_thread(_plan_item, cb, sub)
    t0 = time.monotonic()
    await asyncio.to_thread(
        cb.Subscription.update_for_items,
        sub,
        {"subscription_items": [{"item_price_id": item, "quantity": 1}]},
    )
    await signal("acme", Side.BILLING)
    after = await _until(
        lambda: asyncio.to_thread(crm_mrr, account["acme"]),
        lambda mrr: mrr != before,
        "the plan change on the account",
    )
    plan_change = {
        "customer_id": ids["acme"]["customer"],
        "mrr_before": before,
        "mrr_after": after,
        "seconds": round(time.monotonic() - t0, 2),
    }
    say(
        f"  ✓ plan change: {ids['acme']['customer']} down to 1 seat → CRM MRR {before} → "
        f"{after} in {plan_change['seconds']} s (significant: written at once)"
    )

    # 2. minor changes: one more seat for two customers → the flusher, one bulk write
    for key in ("globex", "initech"):
        s = ids[key]["subscription"]
        qty = next(p.quantity for p in people if p.key == key) + 1
        await asyncio.to_thread(
            cb.Subscription.update_for_items,
            s,
            {"subscription_items": [{"item_price_id": await asyncio.to_thread(_plan_item, cb, s), "quantity": qty}]},
        )  # fmt: skip
        await signal(key, Side.BILLING)
    flush = client.get_workflow_handle(flusher)
    flushed = await _until(
        lambda: flush.query("status", result_type=FlushStatus),
        lambda f: f.records_written >= 2 and f.pending == 0,
        "the bulk flush",
    )
    say(
        f"  ✓ batched flush: the minor changes (+1 seat for two customers, and the ARR "
        f"of the plan change) waited {BATCH_S} s and went out in bulk (the "
        f"deployment's flusher so far: {flushed.bulk_calls} bulk write(s), "
        f"{flushed.records_written} account(s))"
    )

    # 3. a conflict: the billing contact changed on both sides
    cid = ids["initech"]["customer"]
    await asyncio.to_thread(cb.Customer.update, cid, {"email": f"finance+{suffix}@initech.example"})
    await asyncio.to_thread(
        view.sync_write, account["initech"], {"billing_contact": f"ap+{suffix}@initech.example"}
    )
    await signal("initech", Side.CRM)
    status = await _until(
        lambda: handles["initech"].query("status", result_type=SyncStatus),
        lambda s: bool(s.conflicts_open),
        "the conflict in the queue",
    )
    conflict: Conflict = status.conflicts_open[0]
    wf_id = handles["initech"].id
    say(
        f"  ⏸ conflict on {conflict.field} for {cid}: billing {conflict.billing_value!r} vs CRM "
        f"{conflict.crm_value!r} — waiting in the review queue:\n"
        f"      revbridge sync conflicts\n"
        f"      revbridge sync resolve {cid} --field {conflict.field} --take crm --as bob@example.com"
    )

    # 4. the backfill, as a dry run over the whole book in the sandboxes
    report = await client.execute_workflow(
        golden.BACKFILL_WORKFLOW_TYPE,
        BackfillInput(billing=settings.billing, crm=settings.crm, dry_run=True),
        id=f"{golden.backfill_workflow_id(settings.billing, settings.crm)}:demo-{suffix}",
        task_queue=settings.task_queue,
        result_type=BackfillReport,
    )
    say(
        "  ✓ backfill (dry run): "
        + ", ".join(f"{k} {v}" for k, v in report.counts.items())
        + f"; linked already {report.linked_already}, would write {report.to_write}"
    )
    return {
        "scenario": "sync",
        "pair": {"billing": settings.billing, "crm": settings.crm},
        "plan_change": plan_change,
        "batched_flush": flushed.model_dump(),
        "conflict": {"workflow_id": wf_id, **conflict.model_dump(mode="json")},
        "backfill": report.model_dump(mode="json"),
        "web_ui": ui_url,
    }


def _account_id(crm: Any, customer_id: str) -> str:
    account = crm.find_account("chargebee", customer_id)
    if account is None:
        raise CliError(f"no CRM account linked to {customer_id}")
    return account.id


def _plan_item(cb: Any, subscription_id: str) -> str:
    sub = cb.Subscription.retrieve(subscription_id).subscription
    return next(i.item_price_id for i in sub.subscription_items if i.item_type == "plan")
