"""``python -m bench.expansion [N]``: usage-based expansion's daily intake and forecasting over
an N-customer book (default 10,000) on Chargebee — the real intake read path
(``ExpansionActivities.read_page``: customers, their metered plans with the plan limits, and the
last days' usage, in bulk per page of 100) against the Chargebee sandbox (a live Enterprise site,
3,500 requests a minute), and the per-customer work of the expansion workflow on each batch (merge
the days into the compact series, forecast, decide) for every customer.

Measured: vendor calls per 1,000 customers from the sandbox's request ledger (by path), the read
time, and the forecasting time per 1,000 customers. Every customer has a metered item, so the
read is the worst case. Writes the "Expansion intake (issue 21)" section of bench/RESULTS.md
(``make bench`` runs it after the others; ``--no-results`` prints only).
"""

from __future__ import annotations

import collections
import random
import sys
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from activities.expansion import ExpansionActivities
from bench.report import RESULTS
from connectors import limits
from connectors.registry import build_billing
from domain.expansion import MeteredPlan, Series, UsageDay, merge_days
from domain.forecast import ExpansionPolicy, decide, forecast
from domain.settings import (
    ChargebeeSettings,
    RecurlySettings,
    SalesforceSettings,
    Settings,
    StripeSettings,
    ZuoraSettings,
)
from harness import expansion_book
from sandbox.chargebee import ChargebeeEmulator
from sandbox.chargebee.handlers import Call
from sandbox.framework import ServerThread

BOOK_SIZE = 10_000
#: Zuora's and Recurly's books: their sandboxes render a whole table per page (Zuora's Object
#: Query) or per subscription's usage list (Recurly), so 2,000 customers; calls scale per customer
PLATFORM_BOOK_SIZE = 2_000
ZUORA_ID, ZUORA_SECRET = "bench-zuora-id", "bench-zuora-secret"
RECURLY_KEY = "bench-recurly-key"
LOOKBACK = 3
HEADING = "## Expansion intake (issue 21)"
CB_KEY = "bench_cb_key"
STARTER, GROWTH, CALLS = "starter-USD-monthly", "growth-USD-monthly", "calls-USD-monthly"


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


def seed(url: str, em: ChargebeeEmulator, n: int) -> float:
    began = time.monotonic()
    common = {"currency_code": "USD", "period": 1, "period_unit": "month"}
    body: dict[str, list] = {
        "item_prices": [
            {
                **common,
                "id": STARTER,
                "price": 10_000,
                "item_type": "plan",
                "metadata": {"included_units": {CALLS: 10_000}, "upgrade_to": GROWTH},
            },
            {
                **common,
                "id": GROWTH,
                "price": 30_000,
                "item_type": "plan",
                "metadata": {"included_units": {CALLS: 50_000}},
            },
            {**common, "id": CALLS, "price": 2, "item_type": "addon", "metered": True},
        ],  # fmt: skip
        "customers": [{"id": f"exp-{i:06d}", "company": f"Company {i}"} for i in range(n)],
        "subscriptions": [
            {
                "id": f"sub-{i:06d}",
                "customer_id": f"exp-{i:06d}",
                "items": [{"item_price_id": STARTER}, {"item_price_id": CALLS}],
            }
            for i in range(n)
        ],
    }
    httpx.post(url + "/_sandbox/seed", json=body, timeout=900).raise_for_status()
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    with em.lock:  # the last days' usage records, as the customers' products reported them
        for i in range(n):
            for d in range(1, LOOKBACK + 1):
                em.api.create_usage(
                    Call(
                        path={"id": f"sub-{i:06d}"},
                        params={
                            "item_price_id": CALLS,
                            "quantity": str(200 + i % 100 + d),
                            "usage_date": str(int((noon - timedelta(days=d)).timestamp())),
                        },
                    )
                )
    httpx.delete(url + "/_sandbox/requests").raise_for_status()
    return time.monotonic() - began


def read_all(acts: ExpansionActivities, since: date) -> tuple[int, int, int, float]:
    """Every page as the intake reads it: customers, metered plans, usage days."""
    began = time.monotonic()
    cursor: str | None = None
    customers = metered = days = 0
    while True:
        ids, plans, got, cursor = acts.read_page(cursor, 100, since)
        customers += len(ids)
        metered += sum(len(p) for p in plans.values())
        days += len(got)
        if cursor is None:
            return customers, metered, days, time.monotonic() - began


def forecast_all(n: int) -> float:
    """The workflow's work on one batch, for every customer: merge 3 days into a 90-day series,
    forecast, decide. Seeded noise: deterministic."""
    rng = random.Random(21)
    today = date.today() - timedelta(days=1)
    plan = MeteredPlan(
        subscription_id="s", item=CALLS, plan_price_id=STARTER, plan_unit_amount=10_000,
        included_per_period=10_000, upgrade_price_id=GROWTH, upgrade_unit_amount=30_000,
    )  # fmt: skip
    policy = ExpansionPolicy(min_deal_mrr=5_000)
    series = [
        Series(
            first_day=today - timedelta(days=89),
            values=[max(0.0, 150 + (i % 7) * 2 * k + rng.gauss(0, 15)) for k in range(90)],
        )
        for i in range(n)
    ]
    began = time.monotonic()
    opened = 0
    for s in series:
        days = [
            UsageDay(subscription_id="s", item=CALLS, day=today - timedelta(days=d), quantity=300)
            for d in range(LOOKBACK)
        ]
        merged = merge_days(s, days)
        f = forecast(merged.values, merged.last_day, plan.limit)
        opened += decide(f, policy, upgrade_mrr=plan.upgrade_mrr, is_open=False).action == "open"
    return time.monotonic() - began


def platform_intake(platform: str, n: int = PLATFORM_BOOK_SIZE) -> dict[str, Any]:
    """The daily intake's read on Zuora or Recurly: ``n`` metered customers on Starter (seeded
    by harness/expansion_book.py in one bulk request), every page read as the intake reads it
    (``ExpansionActivities.read_page``), vendor calls counted from the sandbox's ledger. Rate
    limits off: this counts calls, the limits only pace them."""
    from sandbox.recurly import RecurlyEmulator
    from sandbox.zuora import ZuoraEmulator

    em: Any = (
        ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET)
        if platform == "zuora"
        else RecurlyEmulator(api_key=RECURLY_KEY, rate_limit_per_minute=None)
    )
    print(f"expansion bench: {n:,} {platform} customers with metered usage …", flush=True)
    with ServerThread({em: 0}) as thread, limits.unpaced(platform):
        url = dict(thread.urls)[platform]
        began = time.monotonic()
        expansion_book.seed_book(platform, url, n, LOOKBACK)
        seed_s = time.monotonic() - began
        httpx.delete(url + "/_sandbox/requests", timeout=60).raise_for_status()
        settings = Settings(
            billing=platform,
            crm="salesforce",
            http_timeout_s=120.0,
            zuora=ZuoraSettings(
                client_id=ZUORA_ID, client_secret=_secret(ZUORA_SECRET), api_url=url
            )
            if platform == "zuora"
            else None,
            recurly=RecurlySettings(api_key=_secret(RECURLY_KEY), api_url=url)
            if platform == "recurly"
            else None,
            salesforce=SalesforceSettings(
                token_url="http://127.0.0.1:9/services/oauth2/token",  # noqa: S106 - unused
                client_id="unused",
                client_secret=_secret("unused"),
            ),
        )
        acts = ExpansionActivities(build_billing(settings), crm=None)  # type: ignore[arg-type]
        customers, metered, days, read_s = read_all(acts, date.today() - timedelta(days=LOOKBACK))
        calls = httpx.get(url + "/_sandbox/requests", timeout=60).json()["requests"]
    by_path = collections.Counter(_path(c["path"]) for c in calls)
    return {
        "platform": platform,
        "n": n,
        "customers": customers,
        "metered": metered,
        "usage_days": days,
        "seed_s": seed_s,
        "read_s": read_s,
        "calls": len(calls),
        "per_1000": len(calls) * 1000 / max(customers, 1),
        "by_path": by_path.most_common(6),
    }


def render_platform(p: dict[str, Any]) -> str:
    paths = ", ".join(f"`{path}` {c}" for path, c in p["by_path"])
    return (
        f"- {p['platform'].title()}: {p['n']:,} customers on a metered plan "
        f"({p['metered']:,} metered plans, {p['usage_days']:,} customer-days of usage read): "
        f"**{p['calls']:,} vendor calls, {p['per_1000']:.0f} per 1,000 customers** ({paths}); "
        f"read {p['read_s']:.1f} s ({p['read_s'] * 1000 / p['n']:.1f} s per 1,000) against the "
        "sandbox, rate limits off (the calls are what carries to a real tenant)"
        + (
            f"; at production's 1,000 GETs a minute a 10,000-customer site's intake takes about "
            f"{p['per_1000'] * 10 / 1000:.0f} minutes of that allowance (one usage list per "
            "metered subscription: Recurly has no site-wide usage list)."
            if p["platform"] == "recurly"
            else "."
        )
    )


def main(n: int = BOOK_SIZE, write_results: bool = True, platforms: bool = True) -> int:
    em = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=3_500)
    print(f"expansion bench: {n:,} customers with metered usage …", flush=True)
    with ServerThread({em: 0}) as thread:
        url = dict(thread.urls)["chargebee"]
        seed_s = seed(url, em, n)
        settings = Settings(
            billing="chargebee",
            crm="salesforce",
            http_timeout_s=60.0,
            chargebee=ChargebeeSettings(site="bench", api_key=_secret(CB_KEY), api_url=url),
            stripe=StripeSettings(api_key=_secret("sk_test_unused"), api_url="http://127.0.0.1:9"),
            salesforce=SalesforceSettings(
                token_url="http://127.0.0.1:9/services/oauth2/token",  # noqa: S106 - unused
                client_id="unused",
                client_secret=_secret("unused"),
            ),
        )
        billing = build_billing(settings)
        acts = ExpansionActivities(billing, crm=None)  # type: ignore[arg-type]
        since = date.today() - timedelta(days=LOOKBACK)
        customers, metered, days, read_s = read_all(acts, since)
        calls = httpx.get(url + "/_sandbox/requests", timeout=60).json()["requests"]
    fc_s = forecast_all(n)
    others = [platform_intake(p) for p in expansion_book.PLATFORMS] if platforms else []
    by_path = collections.Counter(_path(c["path"]) for c in calls)
    summary = {
        "n": n,
        "customers": customers,
        "metered": metered,
        "usage_days": days,
        "seed_s": seed_s,
        "read_s": read_s,
        "calls": len(calls),
        "per_1000": len(calls) * 1000 / max(customers, 1),
        "by_path": by_path.most_common(),
        "forecast_s": fc_s,
        "platforms": others,
    }
    print(render(summary), flush=True)
    if write_results:
        _write(summary)
    ok = customers == n and metered == n and days == n * LOOKBACK
    ok = ok and all(
        p["customers"] == p["n"] == p["metered"] and p["usage_days"] == p["n"] * LOOKBACK
        for p in others
    )
    return 0 if ok else 1


def _path(path: str) -> str:
    """The ledger's path with the IDs in it as ``{id}`` (Zuora's product rate plans, Recurly's
    plans, add-ons and per-subscription usage lists), so the counts group by endpoint."""
    path = path.removeprefix("/api/v2")
    parts = path.split("/")
    for i in range(1, len(parts)):
        if parts[i - 1] in ("product-rate-plans", "plans", "subscriptions", "add_ons"):
            parts[i] = "{id}"
    return "/".join(parts)


def render(s: dict[str, Any]) -> str:
    paths = ", ".join(f"`{p}` {c}" for p, c in s["by_path"])
    return "\n".join(
        [
            HEADING,
            "",
            f"- Book: {s['n']:,} Chargebee customers, each with a metered item on its plan "
            f"({s['metered']:,} metered plans read, {s['usage_days']:,} customer-days of usage; "
            f"the intake re-reads the last {LOOKBACK} days).",
            f"- Vendor calls for the whole intake: **{s['calls']:,}**, "
            f"**{s['per_1000']:.0f} per 1,000 customers** ({paths}); CRM calls: none "
            "(the CRM is read once per customer, on its first batch, and written only when a "
            "forecast opens, updates or closes an expansion).",
            f"- Read time: {s['read_s']:.1f} s for {s['n']:,} customers "
            f"({s['read_s'] * 1000 / s['n']:.1f} s per 1,000) against the sandbox on 2 shared "
            "cores; seeding took {:.0f} s.".format(s["seed_s"]),
            f"- Forecasting (merge 3 days into a 90-day series, forecast, decide) for every "
            f"customer: {s['forecast_s']:.1f} s ({s['forecast_s'] * 1000 / s['n']:.2f} s per "
            "1,000), in the expansion workflows' tasks.",
            "- The per-customer workflows are not run at this size here (each batch is one "
            "signal-with-start; the first batch also one backfill read): `python -m "
            "bench.expansion 1000 --workflows` runs 1,000 of them on a dev server.",
            *render_platforms(s.get("platforms") or []),
        ]
    )


def render_platforms(platforms: list[dict[str, Any]]) -> list[str]:
    if not platforms:
        return []
    return [
        "- The same intake read on the other platforms (harness/expansion_book.py seeds them; "
        "`python -m bench.expansion --billing zuora|recurly [N]`):",
        *[render_platform(p) for p in platforms],
    ]


#: lines of the section that ``--workflows`` measured: a rerun of the read keeps them
KEPT_LINES = ("- The workflows,", "- Under that run")


def _write(summary: dict[str, Any]) -> None:
    platforms = render_platforms(summary.get("platforms") or [])
    section = render({**summary, "platforms": []})
    text = RESULTS.read_text() if RESULTS.exists() else ""
    start = text.find(HEADING)
    if start >= 0:
        end = text.find("\n## ", start + len(HEADING))
        old = text[start : end if end >= 0 else len(text)]
        kept = [line for line in old.splitlines() if line.startswith(KEPT_LINES)]
        # the Chargebee lines, the --workflows run's (kept), then the other platforms'
        section = "\n".join([section, *kept, *platforms])
        text = text[:start].rstrip() + "\n\n" + section + ("\n" + text[end:] if end >= 0 else "\n")
    else:
        text = text.rstrip() + "\n\n" + "\n".join([section, *platforms]) + "\n"
    RESULTS.write_text(text)


def render_workflows(w: dict[str, Any]) -> str:
    def day(n: int) -> str:
        d = w[f"day{n}"]
        per = 1000 / w["m"]
        paths = ", ".join(f"`{p}` {c}" for p, c in d["by_path"])
        return (
            f"day {n}: {d['seconds']:.0f} s to settle every workflow; vendor calls "
            f"{d['chargebee'] * per:.0f} Chargebee + {d['salesforce'] * per:.0f} Salesforce per "
            f"1,000 customers; {d['opened']} open expansion(s) ({paths})"
        )

    return "\n".join(
        [
            f"- The workflows, {w['m']:,} customers on a dev server of their own with a real "
            "worker (Chargebee × Salesforce sandboxes, expansion in auto; one customer in ten "
            "grows towards its limit): "
            + day(1)
            + ". Then "
            + day(2)
            + ". Day one carries each workflow's one backfill and CRM account read; day two is "
            "the steady state (the intake's bulk reads and, per open expansion, its "
            "opportunity's stage).",
        ]
    )


# --- the workflows: ``python -m bench.expansion --workflows M`` -------------------------------------


SF_ID, SF_SECRET = "bench-sf-id", "bench-sf-secret"


async def run_workflows(m: int) -> dict[str, Any]:
    """The real intake and M customers' ExpansionWorkflows on a dev server of their own, with a
    real worker on Chargebee × Salesforce sandboxes: day one (every workflow starts, backfills
    its history once, reads its CRM account; one customer in ten grows and gets an opportunity
    and draft quote) and day two (the same totals again: nothing new to write). Vendor calls per
    1,000 customers from both sandboxes' ledgers, per day."""
    import asyncio
    import shutil
    import tempfile
    from pathlib import Path

    from temporalio.client import Client
    from temporalio.testing import WorkflowEnvironment

    from activities.policy import DEFAULT_POLICY_DIR
    from cli.stack import temporal_binary
    from connectors.registry import build_crm
    from domain import expansion as ex
    from domain.expansion import ExpansionStatus, IntakeInput, IntakeResult, expansion_workflow_id
    from domain.temporal import ALL_SEARCH_ATTRIBUTE_KEYS
    from infra.codec import data_converter
    from sandbox.salesforce import SalesforceEmulator
    from workers.main import build_worker

    cb_em = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=3_500)
    sf_em = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    tmp = Path(tempfile.mkdtemp(prefix="revbridge-expansion-bench-"))
    policies = tmp / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    modes = policies / "modes.yaml"
    modes.write_text(modes.read_text().replace("expansion: assist", "expansion: auto"))
    products = policies / "products.yaml"
    products.write_text(products.read_text() + f"  RB-GROWTH:\n    chargebee: {GROWTH}\n")
    out: dict[str, Any] = {"m": m}
    with ServerThread({cb_em: 0, sf_em: 0}) as thread:
        urls = dict(thread.urls)
        seed(urls["chargebee"], cb_em, m)
        _grow(cb_em, m)
        _seed_crm(urls["salesforce"], m)
        _clear(urls)
        settings = Settings(
            billing="chargebee",
            crm="salesforce",
            task_queue="bench-expansion",
            http_timeout_s=60.0,
            chargebee=ChargebeeSettings(
                site="bench", api_key=_secret(CB_KEY), api_url=urls["chargebee"]
            ),
            stripe=StripeSettings(api_key=_secret("sk_test_unused"), api_url="http://127.0.0.1:9"),
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
        client: Client = env.client
        try:
            billing, crm = build_billing(settings), build_crm(settings)
            async with build_worker(
                client, billing, crm, task_queue=settings.task_queue, policy_dir=policies
            ):
                handles = [
                    client.get_workflow_handle(expansion_workflow_id("chargebee", f"exp-{i:06d}"))
                    for i in range(m)
                ]
                for day in (1, 2):
                    began = time.monotonic()
                    await client.execute_workflow(
                        ex.INTAKE_WORKFLOW_TYPE,
                        IntakeInput(billing="chargebee", crm="salesforce", intake_id=f"day{day}"),
                        id=f"expansion-intake-bench-{day}",
                        task_queue=settings.task_queue,
                        result_type=IntakeResult,
                    )
                    opened = await _settled(handles, day, ExpansionStatus, ex.QUERY_STATUS)
                    took = time.monotonic() - began
                    calls = await asyncio.to_thread(_ledgers, urls)
                    out[f"day{day}"] = {
                        "seconds": took,
                        "opened": opened,
                        "chargebee": len(calls["chargebee"]),
                        "salesforce": len(calls["salesforce"]),
                        "by_path": collections.Counter(
                            f"{v} {_path(c['path'])}" for v, cs in calls.items() for c in cs
                        ).most_common(8),
                    }
                    await asyncio.to_thread(_clear, urls)
                for h in handles:
                    await h.terminate("bench over")
        finally:
            await env.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _ledgers(urls: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    return {
        v: httpx.get(u + "/_sandbox/requests", timeout=60).json()["requests"]
        for v, u in urls.items()
    }


def _clear(urls: dict[str, str]) -> None:
    for url in urls.values():
        httpx.delete(url + "/_sandbox/requests", timeout=60).raise_for_status()


def _grow(em: ChargebeeEmulator, m: int) -> None:
    """40 more days of history: one customer in ten grows 3 calls a day towards the limit, the
    others stay flat (the seed's 3 recent days stay as they are)."""
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    with em.lock:
        for i in range(m):
            for d in range(LOOKBACK + 1, 44):
                qty = 150 + 3 * (44 - d) if i % 10 == 0 else 200 + i % 50
                em.api.create_usage(
                    Call(
                        path={"id": f"sub-{i:06d}"},
                        params={
                            "item_price_id": CALLS,
                            "quantity": str(qty),
                            "usage_date": str(int((noon - timedelta(days=d)).timestamp())),
                        },
                    )
                )
        # the growing ones' recent days continue the line
        for usage in em.store.usages.values():
            i = int(usage["subscription_id"].split("-")[1])
            age = round((noon.timestamp() - usage["usage_date"]) / 86_400)
            if i % 10 == 0 and age <= LOOKBACK:
                usage["quantity"] = str(150 + 3 * (44 - age))


def _seed_crm(url: str, m: int) -> None:
    with httpx.Client(timeout=600) as http:
        http.post(
            url + "/_sandbox/seed",
            json={"records": {"Product2": [{"Ref": "growth", "Name": "Growth",
                                            "ProductCode": "RB-GROWTH", "IsActive": True}]}},
        ).raise_for_status()  # fmt: skip
        token = http.post(
            url + "/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": SF_ID,
                  "client_secret": SF_SECRET},
        ).json()  # fmt: skip
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        q = http.get(
            url + "/services/data/v61.0/query",
            params={"q": "SELECT Id FROM Pricebook2 WHERE IsStandard = true"},
            headers=headers,
        ).json()["records"][0]["Id"]
        prod = http.get(
            url + "/services/data/v61.0/query",
            params={"q": "SELECT Id FROM Product2 WHERE ProductCode = 'RB-GROWTH'"},
            headers=headers,
        ).json()["records"][0]["Id"]
        accounts = [
            {"Name": f"Company {i}", "Billing_Customer_Id__c": f"exp-{i:06d}",
             "Billing_Platform__c": "chargebee"}
            for i in range(m)
        ]  # fmt: skip
        entry = {"Pricebook2Id": q, "Product2Id": prod, "UnitPrice": 300.0, "IsActive": True}
        http.post(
            url + "/_sandbox/seed",
            json={"records": {"PricebookEntry": [entry], "Account": accounts}},
        ).raise_for_status()


async def _settled(handles: list[Any], day: int, status_type: Any, query: str) -> int:
    """Wait until every workflow has taken this day's batch; returns how many hold an open
    expansion."""
    import asyncio

    deadline = time.monotonic() + 900
    pending = list(handles)
    opened = 0
    while pending and time.monotonic() < deadline:
        still = []
        for h in pending:
            try:
                s = await h.query(query, result_type=status_type)
            except Exception:
                still.append(h)
                continue
            if s.stage == "waiting for usage" and s.batches >= day:
                opened += 1 if s.open else 0
                continue
            still.append(h)
        pending = still
        if pending:
            await asyncio.sleep(1)
    if pending:
        raise RuntimeError(f"{len(pending)} workflow(s) never settled")
    return opened


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--billing" in sys.argv:
        on = sys.argv[sys.argv.index("--billing") + 1]
        print(render_platform(platform_intake(on, int(args[1]) if len(args) > 1 else 2_000)))
        sys.exit(0)
    if "--workflows" in sys.argv:
        import asyncio

        w = asyncio.run(run_workflows(int(args[0]) if args else 1_000))
        print(render_workflows(w), flush=True)
        sys.exit(0)
    sys.exit(main(int(args[0]) if args else BOOK_SIZE, "--no-results" not in sys.argv))
