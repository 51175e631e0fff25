"""``python -m bench.sync``: the account sync (issue 19) on Chargebee × Salesforce — the real
workflows on a dev server of their own, a real worker, the webhook service with the account
sync on, and the vendor sandboxes (Chargebee as a live Enterprise site, 3,500 requests a minute).

Measured, from the sandboxes' request ledgers:

1. **CRM calls per 1,000 minor changes**: 100 synced customers, then 1,000 seat changes of one
   seat (+2 % MRR each: minor) made through Chargebee's API; each change's webhook reaches the
   customer's sync, which re-reads billing and hands the new MRR to the flusher; the flusher
   writes them in bulk (one sObject Collections PATCH per 200 accounts) at its batch window
   (5 s here, 300 s by default in policies/sync.yaml). Every Salesforce request is counted.
2. **Immediate-sync latency**: 20 cancellations in Chargebee; the time from the API call's
   answer to ``Billing_Status__c = cancelled`` on the Salesforce account (read in-process from
   the emulator, no API call). p50 and p95.
3. **Backfill throughput**: a 10,000-customer book on each side (every kind ``domain/linking``
   decides), linked by the backfill workflow; seconds, calls, links written.

4. **Every other pair** (``pairs_main``; ``--pairs`` runs only this, ``--no-pairs`` skips it):
   measures 1 and 2 on Stripe, Zuora and Recurly × Salesforce and every billing platform ×
   HubSpot, one pair after the other on one dev server and the six sandboxes, the changes made
   through each billing platform's own API shape.

Writes the "Account sync (issue 19)" section of bench/RESULTS.md (``--no-results``: print only).
"""

# ruff: noqa: ASYNC210 (a bench driving sandboxes: blocking control calls between phases)
from __future__ import annotations

import asyncio
import collections
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import yaml
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.policy import DEFAULT_POLICY_DIR
from bench.report import RESULTS
from cli.stack import temporal_binary
from connectors.registry import build_billing, build_crm
from domain import golden
from domain.golden import BackfillInput, BackfillReport, FlushStatus, SyncSignal, SyncStatus
from domain.settings import (
    ChargebeeSettings,
    SalesforceSettings,
    Settings,
    StripeSettings,
    WebhookSettings,
)
from domain.temporal import ALL_SEARCH_ATTRIBUTE_KEYS
from infra.codec import data_converter
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import App, ServerThread
from sandbox.salesforce import SalesforceEmulator
from sandbox.scenarios import DunningCustomer, chargebee_seed, salesforce_seed

HEADING = "## Account sync (issue 19)"
CB_KEY, SF_ID, SF_SECRET = "bench_cb_key", "bench-sf-id", "bench-sf-secret"
HOOK_USER, HOOK_PASSWORD, SF_HOOK = "bench-hooks", "bench-hook-password", "bench-flow-secret"
QUEUE = "bench-sync"
BATCH_S = 5


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def ledger(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/_sandbox/requests", timeout=60).json()["requests"]


def clear(url: str) -> None:
    httpx.delete(url + "/_sandbox/requests").raise_for_status()


def _path(r: dict[str, Any]) -> str:
    """Method and path with record IDs and keys folded, so the counts add up by kind."""
    path = r["path"]
    if "/composite/sobjects" in path:
        return f"{r['method']} …/composite/sobjects"
    if "/query" in path:
        return f"{r['method']} …/query"
    if "/sobjects/" in path:
        obj = path.split("/sobjects/", 1)[1].split("/")[0]
        return f"{r['method']} …/sobjects/{obj}/…"
    parts = path.split("/")
    return f"{r['method']} " + "/".join(parts[:5]) + ("/…" if len(parts) > 5 else "")


def _excerpt(rows: list[dict[str, Any]], n: int = 6) -> list[tuple[str, int]]:
    return collections.Counter(_path(r) for r in rows).most_common(n)


async def _until(probe: Any, ok: Any, what: str, within_s: float = 120.0) -> Any:
    deadline = time.monotonic() + within_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = await probe()
            if ok(last):
                return last
        except Exception as exc:  # a query before the first task: not yet
            last = exc
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{what}: never happened (last {last!r})"[:300])


def _policies(tmp: Path) -> Path:
    """The shipped policies with the flusher's window at BATCH_S seconds."""
    shutil.copytree(DEFAULT_POLICY_DIR, tmp, dirs_exist_ok=True)
    rules = yaml.safe_load((tmp / "sync.yaml").read_text())
    rules["significance"]["batch_every_s"] = BATCH_S
    (tmp / "sync.yaml").write_text(yaml.safe_dump(rules))
    return tmp


async def main(
    customers: int = 100, minor: int = 1_000, immediate: int = 20, book: int = 10_000,
    write_results: bool = True, pairs: bool = True,
) -> int:  # fmt: skip
    """Chargebee × Salesforce (the three measures), then every other pair (``pairs_main``)."""
    from webhooks.app import TemporalConnection, create_app
    from workers.main import build_worker

    cb_em = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=3_500)
    sf_em = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    policy_dir = _policies(Path(tempfile.mkdtemp(prefix="revbridge-sync-policies-")))
    print(f"account sync bench: {customers} customers, {minor:,} minor changes …", flush=True)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        search_attributes=ALL_SEARCH_ATTRIBUTE_KEYS,
        data_converter=data_converter(),
    )
    os.environ["TEMPORAL_ADDRESS"] = env.client.service_client.config.target_host
    try:
        with ServerThread({cb_em: 0, sf_em: 0}) as vendors:
            urls = dict(vendors.urls)
            settings = Settings(
                billing="chargebee",
                crm="salesforce",
                task_queue=QUEUE,
                http_timeout_s=60.0,
                policy_dir=str(policy_dir),
                chargebee=ChargebeeSettings(
                    site="bench", api_key=_secret(CB_KEY), api_url=urls["chargebee"]
                ),
                stripe=StripeSettings(api_key=_secret("sk_unused"), api_url="http://127.0.0.1:9"),
                salesforce=SalesforceSettings(
                    token_url=urls["salesforce"] + "/services/oauth2/token",
                    client_id=SF_ID,
                    client_secret=_secret(SF_SECRET),
                ),
                webhooks=WebhookSettings(
                    chargebee_username=HOOK_USER,
                    chargebee_password=_secret(HOOK_PASSWORD),
                    salesforce_secrets=[_secret(SF_HOOK)],
                    account_sync=True,
                ),
            )
            # as in production: callouts for records our integration user last changed are
            # echoes, dropped at the door (SALESFORCE_INTEGRATION_USER_ID)
            hooks_cfg = settings.webhooks.model_copy(
                update={"salesforce_integration_user_id": sf_em.integration_user_id}
            )
            settings = settings.model_copy(update={"webhooks": hooks_cfg})
            app = App("webhooks", create_app(settings, client=TemporalConnection()))
            with ServerThread({app: 0}) as hooks:
                billing, crm = build_billing(settings), build_crm(settings)
                async with build_worker(
                    env.client, billing, crm, task_queue=QUEUE, policy_dir=policy_dir
                ):
                    summary = await _measure(
                        env.client, settings, urls, hooks.urls["webhooks"], sf_em, billing,
                        customers, minor, immediate, book,
                    )  # fmt: skip
    finally:
        await env.shutdown()
    print(render(summary), flush=True)
    if write_results:
        _write(summary)
    ok = (
        summary["crm_calls_per_1000"] <= 10
        and summary["p50_ms"] < 1000
        and summary["minor_correct"]
        and summary["backfill"]["written"] == summary["backfill"]["expected"]
    )
    others = await pairs_main(write_results=write_results) if pairs else 0
    return 0 if ok and not others else 1


async def _measure(
    client: Client,
    settings: Settings,
    urls: dict[str, str],
    hook_url: str,
    sf_em: SalesforceEmulator,
    billing: Any,
    n: int,
    minor: int,
    immediate: int,
    book_size: int,
) -> dict[str, Any]:
    suffix = f"b{int(time.time()) % 100000}"
    people = tuple(
        DunningCustomer(f"s{i:03d}", f"Sync Bench {i:03d}", "SMB", "team-monthly", 1_000, 50, 400, None)
        for i in range(n)
    )  # fmt: skip
    httpx.post(
        urls["salesforce"] + "/_sandbox/seed", json=salesforce_seed(people, suffix), timeout=120
    ).raise_for_status()
    httpx.post(urls["chargebee"] + "/_sandbox/seed", json=chargebee_seed(people, suffix), timeout=120).raise_for_status()  # fmt: skip
    ids = [p.ids(suffix) for p in people]
    cb = billing.client
    accounts = {
        r["Billing_Customer_Id__c"]: r["Id"]
        for r in httpx.get(urls["salesforce"] + "/_sandbox/salesforce/records/Account").json()["records"]
    }  # fmt: skip
    flusher = golden.flush_workflow_id("chargebee", "salesforce")
    # the first sync of each customer (what a first webhook would start)
    for i in ids:
        await client.start_workflow(
            golden.WORKFLOW_TYPE,
            golden.AccountSyncInput(
                billing="chargebee", customer_id=i["customer"], flusher_id=flusher
            ),
            id=golden.account_workflow_id("chargebee", i["customer"]),
            task_queue=QUEUE,
            start_signal=golden.SIGNAL_CHANGE,
            start_signal_args=[
                SyncSignal(
                    billing="chargebee",
                    customer_id=i["customer"],
                    side=golden.Side.BILLING,
                    event_id=f"first-{i['customer']}",
                    occurred_at=__import__("datetime").datetime.now(__import__("datetime").UTC),
                )
            ],
        )
    handles = [client.get_workflow_handle(golden.account_workflow_id("chargebee", i["customer"])) for i in ids]  # fmt: skip

    async def all_idle(min_signals: int = 1) -> bool:
        states = await asyncio.gather(*(h.query("status", result_type=SyncStatus) for h in handles))
        return all(s.stage == "waiting for a change" and s.signals >= min_signals for s in states)

    await _until(all_idle, bool, "every first sync")
    # webhooks on: Chargebee to the service (Basic auth), the Salesforce account Flow too
    httpx.post(urls["chargebee"] + "/_sandbox/webhooks", json={"url": hook_url + "/webhooks/chargebee", "basic_auth": [HOOK_USER, HOOK_PASSWORD]}).raise_for_status()  # fmt: skip
    httpx.post(urls["salesforce"] + "/_sandbox/webhooks", json={"url": hook_url + "/webhooks/salesforce", "headers": {"X-RevBridge-Webhook-Secret": SF_HOOK}}).raise_for_status()  # fmt: skip
    httpx.post(urls["salesforce"] + "/_sandbox/salesforce/flows", json={"account_changed": True}).raise_for_status()  # fmt: skip
    for url in urls.values():
        clear(url)

    # 1. minor changes: one more seat at a time, round robin
    plan_items = {
        i["subscription"]: next(
            it.item_price_id
            for it in cb.Subscription.retrieve(i["subscription"]).subscription.subscription_items
            if it.item_type == "plan"
        )
        for i in ids
    }
    clear(urls["chargebee"])
    seats = {i["subscription"]: 50 for i in ids}
    order = [ids[k % n]["subscription"] for k in range(minor)]

    def bump(sub: str, qty: int) -> None:
        cb.Subscription.update_for_items(
            sub, {"subscription_items": [{"item_price_id": plan_items[sub], "quantity": qty}]}
        )

    began = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        for rnd in range(0, minor, n):
            batch = order[rnd : rnd + n]
            for sub in batch:
                seats[sub] += 1
            list(pool.map(lambda s: bump(s, seats[s]), batch))
    changes_s = time.monotonic() - began
    flush = client.get_workflow_handle(flusher)

    async def flushed() -> bool:
        fs = await flush.query("status", result_type=FlushStatus)
        return fs.pending == 0 and await all_idle(2)

    await asyncio.sleep(BATCH_S + 1)
    await _until(flushed, bool, "the minor changes flushed", within_s=300)
    await asyncio.sleep(BATCH_S + 2)  # a last window for stragglers
    await _until(flushed, bool, "the last flush", within_s=120)
    crm_minor = ledger(urls["salesforce"])
    billing_minor = ledger(urls["chargebee"])
    fstatus = await flush.query("status", result_type=FlushStatus)
    correct = 0
    for i in ids:
        mrr = cb.Subscription.retrieve(i["subscription"]).subscription.mrr
        rec = sf_em.get_record(accounts[i["customer"]]) or {}
        correct += rec.get("MRR__c") == mrr / 100
    for url in urls.values():
        clear(url)

    # 2. immediate: cancellations, from Chargebee's answer to the field on the account
    latencies = []
    for i in ids[:immediate]:
        account = accounts[i["customer"]]
        t0 = time.monotonic()
        cb.Subscription.cancel_for_items(i["subscription"], {"end_of_term": False})
        while (sf_em.get_record(account) or {}).get("Billing_Status__c") != "cancelled":
            if time.monotonic() - t0 > 30:
                raise RuntimeError("an immediate change never reached the CRM")
            await asyncio.sleep(0.005)
        latencies.append((time.monotonic() - t0) * 1000)
    await asyncio.sleep(BATCH_S + 2)  # the cancellations' minor fields (ARR) flush too
    crm_immediate = ledger(urls["salesforce"])

    # 3. backfill: a fresh book on each side
    for url in urls.values():
        httpx.delete(url + "/_sandbox/webhooks")
        httpx.post(url + "/_sandbox/reset").raise_for_status()
    from tests.sync.book import make_book

    bk = make_book(book_size, "bench")
    httpx.post(urls["chargebee"] + "/_sandbox/seed", json=bk.chargebee_seed(), timeout=600).raise_for_status()  # fmt: skip
    httpx.post(urls["salesforce"] + "/_sandbox/seed", json=bk.salesforce_seed(), timeout=600).raise_for_status()  # fmt: skip
    for url in urls.values():
        clear(url)
    t0 = time.monotonic()
    report = await client.execute_workflow(
        golden.BACKFILL_WORKFLOW_TYPE,
        BackfillInput(billing="chargebee", crm="salesforce"),
        id=f"{golden.backfill_workflow_id('chargebee', 'salesforce')}:bench",
        task_queue=QUEUE,
        result_type=BackfillReport,
    )
    backfill_s = time.monotonic() - t0
    b_calls = {v: ledger(u) for v, u in urls.items()}
    expected = sum(1 for k in bk.kinds.values() if k in ("email", "domain", "name"))
    return {
        "customers": n,
        "minor": minor,
        "changes_s": changes_s,
        "crm_calls_minor": len(crm_minor),
        "crm_calls_per_1000": len(crm_minor) * 1000 / minor,
        "billing_calls_minor": len(billing_minor),
        "minor_excerpt": _excerpt(crm_minor),
        "flushes": fstatus.flushes,
        "bulk_calls": fstatus.bulk_calls,
        "records_written": fstatus.records_written,
        "minor_correct": correct == n,
        "correct": correct,
        "immediate": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p95_ms": sorted(latencies)[max(0, int(len(latencies) * 0.95) - 1)],
        "immediate_excerpt": _excerpt(crm_immediate),
        "backfill": {
            "book": book_size,
            "seconds": backfill_s,
            "expected": expected,
            "written": report.written,
            "counts": report.counts,
            "calls": {v: len(c) for v, c in b_calls.items()},
            "excerpt": {v: _excerpt(c, 4) for v, c in b_calls.items()},
        },
    }


def render(s: dict[str, Any]) -> str:
    b = s["backfill"]
    return "\n".join(
        [
            f"minor changes: {s['minor']:,} over {s['customers']} customers → "
            f"{s['crm_calls_minor']} Salesforce calls ({s['crm_calls_per_1000']:.1f} per 1,000; "
            f"target ≤ 10); {s['bulk_calls']} bulk write(s) in {s['flushes']} flush(es); "
            f"{s['correct']}/{s['customers']} accounts show billing's final MRR",
            "  salesforce: " + "; ".join(f"{p} ×{c}" for p, c in s["minor_excerpt"]),
            f"immediate: {s['immediate']} cancellations, p50 {s['p50_ms']:.0f} ms, "
            f"p95 {s['p95_ms']:.0f} ms (target p50 < 1 s)",
            f"backfill: {b['book']:,} customers each side in {b['seconds']:.1f} s, "
            f"{b['written']}/{b['expected']} links written; calls "
            + ", ".join(f"{v} {c}" for v, c in b["calls"].items())
            + f"; {b['counts']}",
        ]
    )


def _write(s: dict[str, Any]) -> None:
    b = s["backfill"]
    section = "\n".join(
        [
            HEADING,
            "",
            "`python -m bench.sync` (run by `make bench`): the account sync's workflows on their "
            "own dev server and worker, the webhook service with REVBRIDGE_ACCOUNT_SYNC on, "
            "Chargebee (Enterprise site, 3,500 requests/min) × Salesforce sandboxes. Every "
            "Salesforce request in the phase is counted from the sandbox's ledger (token, reads, "
            "writes, audit entries). The flusher's window is "
            f"{BATCH_S} s here (300 s by default). Each flush costs two calls per 200 accounts "
            "(the bulk write and its audit entry), so the count grows with how many windows the "
            "changes span: under load here they spanned several; at 300 s, 1,000 changes within "
            "five minutes are one flush.",
            "",
            "| measure | value | target |",
            "|---|---|---|",
            f"| Salesforce calls for {s['minor']:,} minor changes ({s['customers']} customers) | "
            f"{s['crm_calls_minor']} ({s['crm_calls_per_1000']:.1f} per 1,000) | ≤ 10 per 1,000 |",
            f"| bulk writes / flushes | {s['bulk_calls']} / {s['flushes']} | one per ≤ 200 |",
            f"| accounts showing billing's final MRR | {s['correct']} / {s['customers']} | all |",
            f"| Chargebee calls in the same phase (the changes + re-reads) | "
            f"{s['billing_calls_minor']} | |",
            f"| immediate sync (cancellation → CRM field), p50 / p95 | {s['p50_ms']:.0f} ms / "
            f"{s['p95_ms']:.0f} ms | p50 < 1 s |",
            f"| backfill of {b['book']:,} customers each side | {b['seconds']:.1f} s | < 5 min |",
            f"| links written / expected | {b['written']} / {b['expected']} | equal |",
            *(f"| backfill {v} calls | {c} | |" for v, c in b["calls"].items()),
            "",
            "Ledger excerpts (method and path, count):",
            "",
            "- minor changes, salesforce: "
            + "; ".join(f"`{p}` ×{c}" for p, c in s["minor_excerpt"]),
            "- immediate changes, salesforce: "
            + "; ".join(f"`{p}` ×{c}" for p, c in s["immediate_excerpt"]),
            *(
                f"- backfill, {v}: " + "; ".join(f"`{p}` ×{c}" for p, c in rows)
                for v, rows in b["excerpt"].items()
            ),
            f"- backfill plan: {b['counts']}",
            "",
        ]
    )
    text = RESULTS.read_text() if RESULTS.exists() else ""
    start = text.find(HEADING)
    kept = ""  # the every-pair subsection stays until a --pairs run replaces it
    if start >= 0:
        end = text.find("\n## ", start + len(HEADING))
        old = text[start:] if end < 0 else text[start : end + 1]
        if (at := old.find(PAIR_HEADING)) >= 0:
            nxt = old.find("\n### ", at + len(PAIR_HEADING))
            kept = "\n" + (old[at:] if nxt < 0 else old[at : nxt + 1]).rstrip() + "\n"
        text = text[:start].rstrip() + ("\n\n" + text[end + 1 :] if end >= 0 else "")
    RESULTS.write_text(text.rstrip() + "\n\n" + section + kept)


# --- every billing platform × CRM (the pairs beyond Chargebee × Salesforce) ---------------------

PAIR_HEADING = "### Every billing platform × CRM"
#: a bulk write: Salesforce sObject Collections, HubSpot companies batch update
BULK_PATHS = ("/composite/sobjects", "/companies/batch/update")
#: Recurly's minor changes (made one at a time): fewer, so the run ends in minutes
RECURLY_MINOR = 300
#: the pairs measured beside Chargebee × Salesforce (above): each billing platform × both CRMs
PAIRS = [
    ("stripe", "salesforce"),
    ("zuora", "salesforce"),
    ("recurly", "salesforce"),
    ("chargebee", "hubspot"),
    ("stripe", "hubspot"),
    ("zuora", "hubspot"),
    ("recurly", "hubspot"),
]


def _bump(pair: Any, ids: dict[str, str], seats: int, now: int) -> None:
    """``seats`` more seats on the customer's subscription, the vendor's way (Chargebee: the
    item's new quantity; the others: tests/sync/test_every_pair.py ``add_seats``)."""
    from tests.sync.test_every_pair import add_seats

    if pair.settings.billing != "chargebee":
        add_seats(pair, ids, seats)
        return
    cb = pair.billing.client
    sub = cb.Subscription.retrieve(ids["subscription"]).subscription
    item = next(i for i in sub.subscription_items if i.item_type == "plan")
    cb.Subscription.update_for_items(
        ids["subscription"],
        {"subscription_items": [{"item_price_id": item.item_price_id, "quantity": now + seats}]},
    )


def _again(fn: Any, *args: Any) -> Any:
    """``fn(*args)``, once more after a network error: Recurly's client keeps one connection,
    which the sandbox closes when idle (the connector reopens it on the next call)."""
    for attempt in range(3):
        try:
            return fn(*args)
        except Exception as exc:  # a network error, a 429 from a vendor's rate limiter
            if attempt == 2 or not any(
                w in f"{type(exc).__name__} {exc}".lower() for w in ("network", "rate")
            ):
                raise
            time.sleep(0.5 * (attempt + 1))
    return None


def _crm_mrr(ems: dict[str, Any], crm: str, account: str) -> Any:
    """The MRR the CRM account shows, read in-process from the emulator (no API call)."""
    if crm == "salesforce":
        return (ems["salesforce"].get_record(account) or {}).get("MRR__c")
    obj = ems["hubspot"].store.objects["companies"].get(account)
    return obj.props.get("mrr") if obj is not None else None


async def _pair(
    client: Client,
    urls: dict[str, str],
    ems: dict[str, Any],
    billing: str,
    crm: str,
    n: int,
    minor: int,
    immediate: int,
    policy_dir: Path,
) -> dict[str, Any]:
    from connectors.sync import sync_billing, sync_crm
    from tests.pairs import Pair
    from tests.sync.test_every_pair import route_billing, sync_settings
    from webhooks.app import TemporalConnection, create_app
    from workers.main import build_worker

    settings = sync_settings(urls, billing, crm).model_copy(
        update={"http_timeout_s": 60.0, "policy_dir": str(policy_dir)}
    )
    if crm == "salesforce":  # our own writes' callouts are dropped at the door, as in production
        hooks_cfg = settings.webhooks.model_copy(
            update={"salesforce_integration_user_id": ems["salesforce"].integration_user_id}
        )
        settings = settings.model_copy(update={"webhooks": hooks_cfg})
    app = App("webhooks", create_app(settings, client=TemporalConnection()))
    with ServerThread({app: 0}) as hooks:
        pair = Pair.build(settings, urls, hooks.urls["webhooks"])
        # the bench's own calls (seeding, changes, checks) through connectors of their own: the
        # worker's are its (Recurly's client holds one connection)
        own = Pair.build(settings, urls, hooks.urls["webhooks"])
        queue = settings.task_queue
        async with build_worker(
            client, pair.billing, pair.crm, task_queue=queue, policy_dir=policy_dir
        ):
            suffix = f"{billing[:2]}{crm[:2]}{int(time.time()) % 100000}"
            people = [
                DunningCustomer(f"p{i:03d}", f"Pair Bench {i:03d}", "SMB", "team-monthly", 1_000, 50, 400, None)
                for i in range(n)
            ]  # fmt: skip
            # blocking vendor calls run off the loop: the worker shares it
            ids = [await asyncio.to_thread(_again, own.seed, p, suffix) for p in people]
            for i in ids:
                i["account"] = await asyncio.to_thread(_again, own.account_id, i["customer"]) or ""
            flusher = golden.flush_workflow_id(billing, crm)
            handles = []
            for i in ids:
                handles.append(
                    await client.start_workflow(
                        golden.WORKFLOW_TYPE,
                        golden.AccountSyncInput(
                            billing=billing, customer_id=i["customer"], flusher_id=flusher
                        ),
                        id=golden.account_workflow_id(billing, i["customer"]),
                        task_queue=queue,
                        start_signal=golden.SIGNAL_CHANGE,
                        start_signal_args=[
                            SyncSignal(
                                billing=billing,
                                customer_id=i["customer"],
                                side=golden.Side.BILLING,
                                event_id=f"first-{i['customer']}",
                                occurred_at=__import__("datetime").datetime.now(__import__("datetime").UTC),
                            )
                        ],
                    )
                )  # fmt: skip

            async def all_idle(min_signals: int = 1) -> bool:
                states = await asyncio.gather(
                    *(h.query("status", result_type=SyncStatus) for h in handles)
                )
                return all(
                    s.stage == "waiting for a change" and s.signals >= min_signals for s in states
                )

            await _until(all_idle, bool, f"{billing}×{crm}: every first sync", within_s=300)
            if billing == "chargebee":
                pair.route_billing_webhooks_here()
            else:
                route_billing(pair)
            pair.route_crm_webhooks_here()
            if crm == "salesforce":
                httpx.post(urls["salesforce"] + "/_sandbox/salesforce/flows", json={"account_changed": True}).raise_for_status()  # fmt: skip
            await asyncio.sleep(1)
            clear(urls[crm])
            clear(urls[billing])

            # 1. minor changes: one more seat at a time, round robin (+2 % MRR or less)
            seats = {i["customer"]: 50 for i in ids}
            order = [ids[k % n] for k in range(minor)]
            began = time.monotonic()
            # Recurly: the client's one connection; Stripe: its 100 requests/s, shared with the
            # worker's re-reads
            workers = {"recurly": 1, "stripe": 4}.get(billing, 8)

            def changes() -> None:
                with ThreadPoolExecutor(workers) as pool:
                    for rnd in range(0, minor, n):
                        batch = order[rnd : rnd + n]
                        list(
                            pool.map(
                                lambda i: _again(_bump, own, i, 1, seats[i["customer"]]), batch
                            )
                        )
                        for i in batch:
                            seats[i["customer"]] += 1

            await asyncio.to_thread(changes)
            changes_s = time.monotonic() - began
            flush = client.get_workflow_handle(flusher)

            async def flushed() -> bool:
                fs = await flush.query("status", result_type=FlushStatus)
                return fs.pending == 0 and await all_idle(2)

            await asyncio.sleep(BATCH_S + 1)
            await _until(flushed, bool, f"{billing}×{crm}: the minor changes flushed", within_s=600)
            await asyncio.sleep(BATCH_S + 2)
            await _until(flushed, bool, f"{billing}×{crm}: the last flush", within_s=300)
            crm_minor = ledger(urls[crm])
            fstatus = await flush.query("status", result_type=FlushStatus)
            b, c = sync_billing(own.billing), sync_crm(own.crm)
            correct = 0
            for i in ids:
                bv = await asyncio.to_thread(_again, b.sync_view, i["customer"])
                cv = await asyncio.to_thread(_again, c.sync_view, i["account"])
                correct += bv.get("mrr") == cv.get("mrr")
            clear(urls[crm])

            # 2. immediate: the seats doubled (+100 % MRR), from the billing API call to the new
            # MRR on the CRM account (read in-process from the emulator)
            latencies = []
            for i in ids[:immediate]:
                old = _crm_mrr(ems, crm, i["account"])
                t0 = time.monotonic()
                await asyncio.to_thread(
                    _again, _bump, own, i, seats[i["customer"]], seats[i["customer"]]
                )
                seats[i["customer"]] *= 2
                while _crm_mrr(ems, crm, i["account"]) == old:
                    if time.monotonic() - t0 > 60:
                        raise RuntimeError(f"{billing}×{crm}: an immediate change never arrived")
                    await asyncio.sleep(0.005)
                latencies.append((time.monotonic() - t0) * 1000)
            await asyncio.sleep(BATCH_S + 2)
            crm_immediate = ledger(urls[crm])
            for url in (urls[billing], urls[crm]):
                httpx.delete(url + "/_sandbox/webhooks")
            if crm == "salesforce":
                httpx.post(urls["salesforce"] + "/_sandbox/salesforce/flows", json={"account_changed": False})  # fmt: skip
            await flush.terminate("bench over")
            for h in handles:
                await h.terminate("bench over")
    return {
        "pair": f"{billing} × {crm}",
        "customers": n,
        "minor": minor,
        "changes_s": changes_s,
        "crm_calls_minor": len(crm_minor),
        "crm_calls_per_1000": len(crm_minor) * 1000 / minor,
        "minor_excerpt": _excerpt(crm_minor, 4),
        "flushes": fstatus.flushes,
        # from the ledger (the flusher's own counters restart when it continues as new)
        "bulk_calls": sum(1 for r in crm_minor if r["path"].endswith(BULK_PATHS)),
        "correct": correct,
        "immediate": len(latencies),
        "p50_ms": statistics.median(latencies),
        "p95_ms": sorted(latencies)[max(0, int(len(latencies) * 0.95) - 1)],
        "immediate_excerpt": _excerpt([r for r in crm_immediate if r["method"] != "GET"], 4),
    }


async def pairs_main(
    pairs: list[tuple[str, str]] | None = None,
    customers: int = 50,
    minor: int = 1_000,
    immediate: int = 10,
    write_results: bool = True,
) -> int:
    """Every pair in ``pairs`` on one dev server and the six vendor sandboxes."""
    from sandbox.hubspot import HubSpotEmulator
    from sandbox.recurly import RecurlyEmulator
    from sandbox.stripe import StripeEmulator
    from sandbox.zuora import ZuoraEmulator
    from tests import pairs as tp

    ems: dict[str, Any] = {
        "chargebee": ChargebeeEmulator(api_key=tp.CB_KEY, rate_limit_per_minute=3_500),
        "salesforce": SalesforceEmulator(client_id=tp.SF_ID, client_secret=tp.SF_SECRET),
        # Stripe in live mode (100 requests/s; test mode's 25/s would pace the changes)
        "stripe": StripeEmulator(
            api_key=tp.STRIPE_KEY, webhook_secret=tp.STRIPE_SECRET, rate_limit_per_s=100
        ),
        "hubspot": HubSpotEmulator(access_token=tp.HS_TOKEN, client_secret=tp.HS_SECRET),
        "zuora": ZuoraEmulator(client_id=tp.ZUORA_ID, client_secret=tp.ZUORA_SECRET),
        "recurly": RecurlyEmulator(
            api_key=tp.RECURLY_KEY, webhook_secrets=[tp.RECURLY_SECRET], rate_limit_per_minute=None
        ),
    }
    policy_dir = _policies(Path(tempfile.mkdtemp(prefix="revbridge-sync-pairs-")))
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        search_attributes=ALL_SEARCH_ATTRIBUTE_KEYS,
        data_converter=data_converter(),
    )
    os.environ["TEMPORAL_ADDRESS"] = env.client.service_client.config.target_host
    rows: list[dict[str, Any]] = []
    try:
        with ServerThread(dict.fromkeys(ems.values(), 0)) as vendors:
            for billing, crm in pairs or PAIRS:
                print(f"account sync bench: {billing} × {crm} …", flush=True)
                try:
                    # Recurly's changes go one at a time (its client's one connection)
                    m = min(minor, RECURLY_MINOR) if billing == "recurly" else minor
                    row = await _pair(
                        env.client, dict(vendors.urls), ems, billing, crm,
                        customers, m, immediate, policy_dir,
                    )  # fmt: skip
                except Exception as exc:  # one pair's failure is reported, the others still run
                    import traceback

                    traceback.print_exc()
                    row = {
                        "pair": f"{billing} × {crm}",
                        "error": " ".join(f"{type(exc).__name__}: {exc}".split())[:300],
                    }
                print(render_pair(row), flush=True)
                if write_results:  # each pair as it ends: a later failure keeps the earlier
                    _write_pairs([row])
                rows.append(row)
    finally:
        await env.shutdown()
    ok = all(
        "error" not in r
        and r["crm_calls_per_1000"] <= 10
        and r["p50_ms"] < 1000
        and r["correct"] == r["customers"]
        for r in rows
    )
    return 0 if ok else 1


def render_pair(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['pair']}: not measured ({r['error']})"
    return (
        f"{r['pair']}: {r['minor']:,} minor changes over {r['customers']} customers in "
        f"{r['changes_s']:.0f} s → {r['crm_calls_minor']} CRM calls "
        f"({r['crm_calls_per_1000']:.1f} per 1,000), {r['bulk_calls']} bulk write(s) in "
        f"{r['flushes']} flush(es), {r['correct']}/{r['customers']} accounts right; immediate "
        f"p50 {r['p50_ms']:.0f} ms, p95 {r['p95_ms']:.0f} ms\n"
        "  minor: " + "; ".join(f"{p} ×{c}" for p, c in r["minor_excerpt"]) + "\n"
        "  immediate (writes): " + "; ".join(f"{p} ×{c}" for p, c in r["immediate_excerpt"])
    )


def _pairs_section(rows: list[dict[str, Any]], old: str = "") -> str:
    """The subsection; pairs measured before and not in ``rows`` keep their lines from ``old``
    (a run of some pairs, ``--pair=zuoraxhubspot``, updates only theirs)."""
    measured = {r["pair"] for r in rows}
    carried: dict[str, list[str]] = {}
    for line in old.splitlines():
        for billing, crm in PAIRS:
            name = f"{billing} × {crm}"
            if name not in measured and line.startswith((f"| {name} |", f"- {name}, ")):
                carried.setdefault(name, []).append(line)
    table = [ln for ls in carried.values() for ln in ls if ln.startswith("|")]
    excerpts = [ln for ls in carried.values() for ln in ls if ln.startswith("-")]
    lines = [
        PAIR_HEADING,
        "",
        "`python -m bench.sync --pairs` (also run by `make bench`): the same two measures on "
        "every other pair, one after the other on one dev server, the six vendor sandboxes and "
        "each pair's own webhook service and worker (flusher window "
        f"{BATCH_S} s). Minor changes are one more seat at a time through the billing platform's "
        "own API shape (Chargebee item quantity, Stripe subscription item, a Zuora AddProduct "
        "order, a Recurly subscription change), round robin; every CRM request of the phase is "
        "counted from the CRM sandbox's ledger. Immediate: the seats doubled (+100 % MRR), from "
        "the billing API call to the new MRR on the CRM account (read in-process). Each flush "
        "costs two Salesforce calls (the bulk write and its audit entry) or three HubSpot ones "
        "(the batch update, the audit note and its association), so the count grows with the "
        f"{BATCH_S} s windows the changes spanned — it grows with how long the billing platform "
        "took to take 1,000 changes (Recurly's, one at a time, are fewer); at the default 300 s "
        "window, changes made within five minutes are one flush: 2 calls.",
        "",
        "| pair | minor changes (customers) | CRM calls (per 1,000) | bulk writes / flushes "
        "| accounts right | immediate p50 / p95 |",
        "|---|---|---|---|---|---|",
        *table,
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['pair']} | not measured: {r['error'][:120]} | | | | |")
            continue
        lines.append(
            f"| {r['pair']} | {r['minor']:,} ({r['customers']}) | {r['crm_calls_minor']} "
            f"({r['crm_calls_per_1000']:.1f}) | {r['bulk_calls']} / {r['flushes']} | "
            f"{r['correct']} / {r['customers']} | {r['p50_ms']:.0f} ms / {r['p95_ms']:.0f} ms |"
        )
    lines += ["", "Ledger excerpts (method and path, count):", "", *excerpts]
    for r in rows:
        if "error" in r:
            continue
        lines.append(
            f"- {r['pair']}, minor: "
            + "; ".join(f"`{p}` ×{c}" for p, c in r["minor_excerpt"])
            + "; immediate (writes): "
            + "; ".join(f"`{p}` ×{c}" for p, c in r["immediate_excerpt"])
        )
    return "\n".join(lines) + "\n"


def _write_pairs(rows: list[dict[str, Any]]) -> None:
    """The pairs' subsection at the end of the account-sync section (replacing an older one)."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    start = text.find(HEADING)
    if start < 0:
        text = text.rstrip() + "\n\n" + HEADING + "\n"
        start = text.find(HEADING)
    end = text.find("\n## ", start + len(HEADING))
    section = text[start:] if end < 0 else text[start : end + 1]
    at, before = section.find(PAIR_HEADING), ""
    if at >= 0:
        nxt = section.find("\n### ", at + len(PAIR_HEADING))
        before = section[at:] if nxt < 0 else section[at : nxt + 1]
        section = section[:at] + (section[nxt + 1 :] if nxt >= 0 else "")
    section = section.rstrip() + "\n\n" + _pairs_section(rows, before)
    rest = "" if end < 0 else "\n" + text[end + 1 :]
    RESULTS.write_text(text[:start] + section + rest)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    args = [int(a) for a in sys.argv[1:] if not a.startswith("--")]
    if "--pairs" in sys.argv[1:]:  # every other pair: [customers] [minor changes]
        chosen = [
            tuple(a.split("=", 1)[1].split("x", 1)) for a in sys.argv[1:] if a.startswith("--pair=")
        ]
        sys.exit(
            asyncio.run(
                pairs_main(
                    chosen or None,  # type: ignore[arg-type]
                    *(args[:1] or [50]),
                    *(args[1:2] or [1_000]),
                    write_results="--no-results" not in sys.argv[1:],
                )
            )
        )
    sys.exit(
        asyncio.run(
            main(
                *(args[:1] or [100]),
                *(args[1:2] or [1_000]),
                immediate=20,
                book=args[2] if len(args) > 2 else 10_000,
                write_results="--no-results" not in sys.argv[1:],
                pairs="--no-pairs" not in sys.argv[1:],
            )
        )
    )
