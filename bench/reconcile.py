"""``python -m bench.reconcile [N]``: the daily reconciliation over an N-customer book (default
10,000) on Chargebee × Salesforce — the real ``ReconciliationWorkflow`` on a dev server of its
own, a real worker, and the vendor sandboxes (Chargebee as a live Enterprise site, 3,500
requests a minute). One customer in 100 carries a planted discrepancy (the ten kinds in turn).

Measured: the run's duration (scan and whole run), the vendor calls from the sandboxes' request
ledgers (by path), and that the run found exactly the planted discrepancies. The fix workflows
it starts for approvals are terminated after. Writes the "Reconciliation (issue 20)" section of
bench/RESULTS.md (``make bench`` runs it after the others; ``--no-results`` prints only).

``python -m bench.reconcile [N] --billing zuora``: the same on Zuora × Salesforce (default 2,000
customers: the Zuora sandbox renders a whole table per Object Query page), the nine kinds a Zuora
tenant can hold (Zuora never over-applies a payment); its own section of bench/RESULTS.md.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sys
import tempfile
import time
from datetime import date
from typing import Any

import httpx
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from bench.report import RESULTS
from cli.stack import temporal_binary
from connectors.registry import build_billing, build_crm
from domain import reconcile as rx
from domain.settings import (
    ChargebeeSettings,
    SalesforceSettings,
    Settings,
    StripeSettings,
    ZuoraSettings,
)
from domain.temporal import ALL_SEARCH_ATTRIBUTE_KEYS
from infra.codec import data_converter
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.salesforce import SalesforceEmulator
from sandbox.scenarios import chargebee_seed
from sandbox.zuora import ZuoraEmulator
from sandbox.zuora.scenarios import catalog as zuora_catalog

BOOK_SIZE = 10_000
ZUORA_BOOK_SIZE = 2_000
HEADING = "## Reconciliation (issue 20)"
ZUORA_HEADING = "## Reconciliation on Zuora (issue 20)"
ZUORA_NOTE = (
    "Zuora's book is four Object Query walks, 99 rows a page (accounts; subscriptions with their "
    "rate plans, charges, tiers and catalogue plans expanded; invoices with their items; "
    "processed payments with their applications) plus one catalogue read for an invoice item "
    "whose plan no subscription holds: about 4 requests per 99 customers (each restored field "
    "adds the account read of its billing note). The sandbox renders "
    "the whole table for every page, so its time grows with the square of the book; a tenant "
    "answers Object Query with its own index."
)
ZUORA_ID, ZUORA_SECRET = "bench-zuora-id", "bench-zuora-secret"
NOTE = (
    "Where the time goes: 400 list pages, most of the scan's time spent in the Chargebee "
    "sandbox serving each page (it filters and sorts the whole table per request), on a "
    "2-core machine shared with other work; the checks themselves take well under a second."
    " The number that carries to a real site is the calls: 4 per 100 customers on Chargebee"
    " (at 3,500/min about 7 s of allowance), a handful of SOQL pages on Salesforce (2,000 "
    "rows each), one upsert per 200 exceptions, and one CRM audit entry and billing note "
    "per restored field."
)
CB_KEY, SF_ID, SF_SECRET = "bench_cb_key", "bench-sf-id", "bench-sf-secret"
CORE, SEAT, SUPPORT = "core-USD-monthly", "seat-USD-monthly", "support-premium-USD-monthly"
KINDS = [
    "nosub", "mismatch", "extraline", "nopay", "unapplied", "overpaid", "underpaid", "drift",
    "orphan", "ghost",
]  # fmt: skip
KIND_OF = {
    "nosub": rx.Kind.DEAL_WITHOUT_SUBSCRIPTION,
    "mismatch": rx.Kind.SUBSCRIPTION_MISMATCH,
    "extraline": rx.Kind.INVOICE_LINE_UNMATCHED,
    "nopay": rx.Kind.PAID_WITHOUT_PAYMENT,
    "unapplied": rx.Kind.UNAPPLIED_PAYMENT,
    "overpaid": rx.Kind.OVERPAYMENT,
    "underpaid": rx.Kind.UNDERPAYMENT,
    "drift": rx.Kind.CRM_FIELD_DRIFT,
    "orphan": rx.Kind.CUSTOMER_WITHOUT_ACCOUNT,
    "ghost": rx.Kind.ACCOUNT_WITHOUT_CUSTOMER,
}


def plan(n: int, kinds: list[str] = KINDS) -> list[tuple[str, str]]:
    """``(customer ID, planted kind or "")`` for each customer: one in 100 planted."""
    return [
        (f"rb-{i:06d}", kinds[(i // 100) % len(kinds)] if i % 100 == 99 else "") for i in range(n)
    ]


def seeds(
    book: list[tuple[str, str]], now: int, billing: str = "chargebee"
) -> tuple[dict, dict, list[str]]:
    """Chargebee's and Salesforce's seed bodies, and the transactions to leave unapplied."""
    cb: dict[str, list] = {
        "item_prices": chargebee_seed((), "catalog")["item_prices"],
        "customers": [],
        "subscriptions": [],
        "invoices": [],
        "transactions": [],
    }
    sf: dict[str, list] = {"Account": [], "Opportunity": [], "OpportunityLineItem": []}
    unapplied = []
    for cid, kind in book:
        if kind == "ghost":
            sf["Account"].append({"Name": f"Ghost {cid}", "Type": "Customer - Direct"})
            continue
        seats = 7 if kind == "mismatch" else 5
        lines = [
            {"entity_id": CORE, "entity_type": "plan_item_price", "quantity": 1,
             "unit_amount": 50_000, "amount": 50_000},
            {"entity_id": SEAT, "entity_type": "addon_item_price", "quantity": seats,
             "unit_amount": 4_000, "amount": 4_000 * seats},
        ]  # fmt: skip
        if kind == "extraline":
            lines.append(
                {"entity_id": SUPPORT, "entity_type": "addon_item_price", "quantity": 1,
                 "unit_amount": 10_000, "amount": 10_000}
            )  # fmt: skip
        total = sum(li["amount"] for li in lines)
        linked = kind != "orphan"
        cb["customers"].append(
            {
                "id": cid,
                "company": f"Company {cid}",
                "meta_data": {"crm": "salesforce", "crm_account_id": f"@{cid}"} if linked else {},
            }
        )
        sub = f"sub-{cid}"
        cb["subscriptions"].append(
            {
                "id": sub,
                "customer_id": cid,
                "items": [
                    {"item_price_id": CORE, "quantity": 1},
                    {"item_price_id": SEAT, "quantity": seats},
                ],
                "started_at": now - 40 * 86_400,
            }
        )
        inv = f"inv-{cid}"
        cb["invoices"].append(
            {"id": inv, "customer_id": cid, "subscription_id": sub, "total": total,
             "status": "paid", "date": now - 10 * 86_400, "line_items": lines}
        )  # fmt: skip
        pays = {"nopay": [], "overpaid": [total, total], "underpaid": [total - 10_000]}
        for k, amount in enumerate(pays.get(kind, [total])):
            cb["transactions"].append(
                {"id": f"txn-{cid}-{k}", "invoice_id": inv, "status": "success", "amount": amount}
            )
        if kind == "unapplied":
            unapplied.append(f"txn-{cid}-0")
        if not linked:
            continue
        mrr = 50_000 + 4_000 * seats
        sf["Account"].append(
            {
                "Ref": cid,
                "Name": f"Company {cid}",
                "Type": "Customer - Direct",
                "Billing_Customer_Id__c": cid,
                "Billing_Platform__c": billing,
                "MRR__c": (123_400 if kind == "drift" else mrr) / 100,
                "Billing_Status__c": "active",
            }
        )
        deals = [(f"{cid}-deal", sub, [("core", 1, 500.0), ("seat", 5, 40.0)])]
        if kind == "nosub":
            deals.append((f"{cid}-upsell", None, [("seat", 2, 40.0)]))
        for ref, sub_id, items in deals:
            sf["Opportunity"].append(
                {
                    "Ref": ref,
                    "AccountId": f"@{cid}",
                    "Name": f"Deal {ref}",
                    "StageName": "Closed Won",
                    "CloseDate": "2026-11-01",
                    "Pricebook2Id": "@pricebook",
                    "Billing_Subscription_Id__c": sub_id,
                }
            )
            for product, qty, price in items:
                sf["OpportunityLineItem"].append(
                    {
                        "OpportunityId": f"@{ref}",
                        "PricebookEntryId": f"@pbe-{product}",
                        "Quantity": qty,
                        "UnitPrice": price,
                    }
                )
    return cb, sf, unapplied


def ledger(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/_sandbox/requests", timeout=60).json()["requests"]


async def main(n: int = BOOK_SIZE, write_results: bool = True, billing: str = "chargebee") -> int:
    from workers.main import build_worker

    os.environ["REVBRIDGE_REPORT_DIR"] = tempfile.mkdtemp(prefix="revbridge-reconcile-")
    platform = billing  # (``billing`` names the connector below)
    zuora = platform == "zuora"
    bill_em: Any = (
        ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET)
        if zuora
        else ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=3_500)
    )
    sf_em = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    book = plan(n, [k for k in KINDS if k != "overpaid"] if zuora else KINDS)
    planted = collections.Counter(k for _, k in book if k)
    print(
        f"reconciliation bench ({billing}): {n:,} customers, {sum(planted.values())} planted …",
        flush=True,
    )
    with ServerThread({bill_em: 0, sf_em: 0}) as thread:
        urls = dict(thread.urls)
        now = int(time.time())
        seeded_s = (_prepare_zuora if zuora else _prepare)(urls, bill_em, book, now)
        settings = Settings(
            billing=billing,
            crm="salesforce",
            task_queue="bench-reconcile",
            http_timeout_s=60.0,
            chargebee=ChargebeeSettings(
                site="bench",
                api_key=_secret(CB_KEY),
                api_url=urls.get("chargebee", "http://127.0.0.1:9"),
            ),
            stripe=StripeSettings(api_key=_secret("sk_test_unused"), api_url="http://127.0.0.1:9"),
            zuora=ZuoraSettings(
                client_id=ZUORA_ID, client_secret=_secret(ZUORA_SECRET), api_url=urls["zuora"]
            )
            if zuora
            else None,
            salesforce=SalesforceSettings(
                token_url=urls["salesforce"] + "/services/oauth2/token",
                client_id=SF_ID,
                client_secret=_secret(SF_SECRET),
            ),
        )
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(temporal_binary()),
            search_attributes=ALL_SEARCH_ATTRIBUTE_KEYS,
            data_converter=data_converter(),
        )
        try:
            billing, crm = build_billing(settings), build_crm(settings)
            async with build_worker(env.client, billing, crm, task_queue=settings.task_queue):
                began = time.monotonic()
                result = await env.client.execute_workflow(
                    rx.WORKFLOW_TYPE,
                    rx.ReconcileInput(today=date.today()),
                    id="reconcile-bench",
                    task_queue=settings.task_queue,
                    result_type=rx.ReconcileResult,
                )
                run_s = time.monotonic() - began
                await _terminate_fixes(env.client)
        finally:
            await env.shutdown()
        calls = {vendor: ledger(url) for vendor, url in urls.items()}
    found_ok = result.found == sum(planted.values()) and all(
        result.by_kind.get(KIND_OF[k].value, 0) == v for k, v in planted.items() if k != "drift"
    )
    summary = {
        "n": n,
        "planted": sum(planted.values()),
        "found": result.found,
        "exact": found_ok,
        "auto_fixed": result.auto_fixed,
        "sent_for_approval": result.sent_for_approval,
        "written": result.written,
        "seed_s": seeded_s,
        "scan_s": result.scan_seconds,
        "run_s": run_s,
        "calls": {v: len(c) for v, c in calls.items()},
        "by_path": {
            v: collections.Counter(_path(r) for r in c).most_common(6) for v, c in calls.items()
        },
        "report": result.report_html,
        "billing": platform,
    }
    print(render(summary), flush=True)
    if write_results:
        _write(summary)
    return 0 if found_ok else 1


def _prepare(urls: dict[str, str], cb_em: ChargebeeEmulator, book: list, now: int) -> float:
    """Seed both sandboxes (Salesforce first: the Chargebee customers carry their account's
    ID), leave the planted payments unapplied, and clear the ledgers; returns seconds taken."""
    began = time.monotonic()
    cb_seed, sf_seed, unapplied = seeds(book, now)
    sf_out = _seed_salesforce(urls["salesforce"], sf_seed)
    for c in cb_seed["customers"]:
        ref = (c["meta_data"] or {}).get("crm_account_id", "")
        if ref.startswith("@"):
            c["meta_data"]["crm_account_id"] = sf_out["refs"][ref[1:]]
    httpx.post(urls["chargebee"] + "/_sandbox/seed", json=cb_seed, timeout=600).raise_for_status()
    with cb_em.lock:
        for txn_id in unapplied:
            txn = cb_em.store.transactions[txn_id]
            txn["amount"] += 5_000
            txn["amount_unused"] = 5_000
    for url in urls.values():
        httpx.delete(url + "/_sandbox/requests")
    return time.monotonic() - began


def _prepare_zuora(urls: dict[str, str], zu_em: Any, book: list, now: int) -> float:
    """Seed Salesforce, then the Zuora tenant (its accounts carry their Salesforce account in
    ``crmId``), plant what only the tenant's state holds (an invoice line for a plan the
    subscription lacks), and clear the ledgers; returns seconds taken."""
    began = time.monotonic()
    _, sf_seed, _ = seeds(book, now, billing="zuora")
    refs = _seed_salesforce(urls["salesforce"], sf_seed)["refs"]
    data: dict[str, list] = {"products": zuora_catalog(), "accounts": [], "subscriptions": []}
    data |= {"invoices": [], "payments": []}
    for cid, kind in book:
        if kind == "ghost":
            continue
        account: dict[str, Any] = {"id": cid, "name": f"Company {cid}"}
        if kind != "orphan":
            account |= {"crmId": refs[cid], "RevBridgeCrm__c": "salesforce"}
        data["accounts"].append(account)
        seats = 7 if kind == "mismatch" else 5
        sub, inv = f"sub-{cid}", f"inv-{cid}"
        data["subscriptions"].append(
            {"account": cid, "subscriptionNumber": sub, "start": now - 40 * 86_400,
             "plans": [{"plan": "PRP-CORE-USD-MONTHLY"},
                       {"plan": "PRP-SEAT-USD-MONTHLY", "quantity": seats}]}
        )  # fmt: skip
        total = 50_000 + 4_000 * seats
        data["invoices"].append(
            {"id": inv, "account": cid, "subscription": sub, "amount": total, "balance": 0}
        )
        paid = {"nopay": 0, "underpaid": total - 10_000}.get(kind, total)
        if paid:
            data["payments"].append({"account": cid, "invoice": inv, "amount": paid})
        if kind == "unapplied":
            data["payments"].append({"account": cid, "amount": 5_000})
    httpx.post(urls["zuora"] + "/_sandbox/seed", json=data, timeout=600).raise_for_status()
    support = zu_em.store.rate_plan("PRP-SUPPORT-PREMIUM-USD-MONTHLY")["id"]
    for cid, kind in book:
        if kind == "extraline":
            inv = zu_em.store.invoices[f"inv-{cid}"]
            inv["items"].append(
                {**inv["items"][0], "id": f"item-{cid}-support", "chargeId": None,
                 "chargeName": "Premium support", "productRatePlanId": support,
                 "quantity": 1, "unitPrice": 10_000, "amount": 10_000}
            )  # fmt: skip
    for url in urls.values():
        httpx.delete(url + "/_sandbox/requests")
    return time.monotonic() - began


def _seed_salesforce(url: str, records: dict[str, list]) -> dict[str, Any]:
    """The catalogue's two products and their standard prices, then the book (refs resolve in
    the order given: accounts, opportunities, line items)."""
    with httpx.Client(timeout=600) as http:
        products = [
            {"Name": "RevBridge Core", "ProductCode": "RB-CORE", "IsActive": True},
            {"Name": "Seat", "ProductCode": "RB-SEAT", "IsActive": True},
        ]
        http.post(url + "/_sandbox/seed", json={"records": {"Product2": products}})
        token = http.post(
            url + "/services/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": SF_ID,
                "client_secret": SF_SECRET,
            },
        ).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        base = url + "/services/data/v61.0/query"

        def query(soql: str) -> list[dict[str, Any]]:
            return http.get(base, params={"q": soql}, headers=headers).json()["records"]

        book_id = query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")[0]["Id"]
        by_code = {p["ProductCode"]: p["Id"] for p in query("SELECT Id, ProductCode FROM Product2")}
        entries = [
            {"Ref": "pbe-core", "Pricebook2Id": book_id, "Product2Id": by_code["RB-CORE"],
             "UnitPrice": 500.0, "IsActive": True},
            {"Ref": "pbe-seat", "Pricebook2Id": book_id, "Product2Id": by_code["RB-SEAT"],
             "UnitPrice": 40.0, "IsActive": True},
        ]  # fmt: skip
        for opp in records["Opportunity"]:
            opp["Pricebook2Id"] = book_id
        resp = http.post(
            url + "/_sandbox/seed", json={"records": {"PricebookEntry": entries, **records}}
        )
        resp.raise_for_status()
        return resp.json()


async def _terminate_fixes(client: Client) -> None:
    async for wf in client.list_workflows(f"WorkflowType = '{rx.FIX_WORKFLOW_TYPE}'"):
        if wf.status == WorkflowExecutionStatus.RUNNING:
            await client.get_workflow_handle(wf.id).terminate("bench over")


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def _path(r: dict[str, Any]) -> str:
    path = r["path"]
    for marker in ("/query", "/composite/sobjects"):
        if marker in path:
            return f"{r['method']} …{marker}{path.split(marker, 1)[1][:60]}"
    return f"{r['method']} {path}"


def render(s: dict[str, Any]) -> str:
    lines = [
        f"reconciliation of {s['n']:,} customers: {s['run_s']:.1f} s the run "
        f"(scan {s['scan_s']:.1f} s), {s['found']} found of {s['planted']} planted "
        f"({'exact' if s['exact'] else 'NOT exact'}), {s['auto_fixed']} fixed automatically, "
        f"{s['sent_for_approval']} sent for approval, {s['written']} exceptions written",
        "vendor calls: " + ", ".join(f"{v} {n}" for v, n in s["calls"].items()),
    ]
    for vendor, paths in s["by_path"].items():
        lines.append(f"  {vendor}: " + "; ".join(f"{p} ×{n}" for p, n in paths))
    return "\n".join(lines)


def _write(s: dict[str, Any]) -> None:
    zuora = s.get("billing") == "zuora"
    heading = ZUORA_HEADING if zuora else HEADING
    intro = (
        f"`python -m bench.reconcile {s['n']} --billing zuora` (run by `make bench`): the real "
        "`ReconciliationWorkflow` on its own dev server and worker, Zuora × Salesforce "
        "sandboxes; one customer in 100 planted with one discrepancy (the nine kinds a Zuora "
        "tenant can hold, in turn). Seeding is not timed."
        if zuora
        else f"`python -m bench.reconcile {s['n']}` (run by `make bench`): the real "
        "`ReconciliationWorkflow` on its own dev server and worker, Chargebee (Enterprise "
        "site, 3,500 requests/min) × Salesforce sandboxes; one customer in 100 planted with "
        "one discrepancy (the ten kinds in turn). Seeding is not timed."
    )
    section = "\n".join(
        [
            heading,
            "",
            intro,
            "",
            ZUORA_NOTE if zuora else NOTE,
            "",
            "| measure | value |",
            "|---|---|",
            f"| customers | {s['n']:,} |",
            f"| whole run (scan, restores, exceptions, approvals, report) | {s['run_s']:.1f} s |",
            f"| scan (both books read in bulk and checked) | {s['scan_s']:.1f} s |",
            f"| found / planted | {s['found']} / {s['planted']} "
            f"({'exact' if s['exact'] else 'NOT exact'}) |",
            f"| fixed automatically / sent for approval | {s['auto_fixed']} / "
            f"{s['sent_for_approval']} |",
            *(f"| {v} calls | {n} |" for v, n in s["calls"].items()),
            "",
            *(
                f"- {vendor}: " + "; ".join(f"`{p}` ×{n}" for p, n in paths)
                for vendor, paths in s["by_path"].items()
            ),
            "",
        ]
    )
    text = RESULTS.read_text() if RESULTS.exists() else ""
    start = text.find(heading + "\n")
    if start >= 0:
        end = text.find("\n## ", start + len(heading))
        text = text[:start].rstrip() + ("\n\n" + text[end + 1 :] if end >= 0 else "")
    RESULTS.write_text(text.rstrip() + "\n\n" + section)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    argv = sys.argv[1:]
    on = argv[argv.index("--billing") + 1] if "--billing" in argv[:-1] else "chargebee"
    args = [
        a
        for i, a in enumerate(argv)
        if not a.startswith("--") and (i == 0 or argv[i - 1] != "--billing")
    ]
    size = int(args[0]) if args else (ZUORA_BOOK_SIZE if on == "zuora" else BOOK_SIZE)
    sys.exit(asyncio.run(main(size, "--no-results" not in argv, billing=on)))
