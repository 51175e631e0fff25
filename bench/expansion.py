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
from connectors.registry import build_billing
from domain.expansion import MeteredPlan, Series, UsageDay, merge_days
from domain.forecast import ExpansionPolicy, decide, forecast
from domain.settings import ChargebeeSettings, SalesforceSettings, Settings, StripeSettings
from sandbox.chargebee import ChargebeeEmulator
from sandbox.chargebee.handlers import Call
from sandbox.framework import ServerThread

BOOK_SIZE = 10_000
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


def main(n: int = BOOK_SIZE, write_results: bool = True) -> int:
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
    }
    print(render(summary), flush=True)
    if write_results:
        _write(summary)
    ok = customers == n and metered == n and days == n * LOOKBACK
    return 0 if ok else 1


def _path(path: str) -> str:
    return path.removeprefix("/api/v2")


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
            "- Not measured here: the 10,000 per-customer workflows on a Temporal server (each "
            "batch is one signal-with-start; the first batch also one backfill read). "
            "tests/expansion proves that path end to end on one customer.",
        ]
    )


def _write(summary: dict[str, Any]) -> None:
    section = render(summary)
    text = RESULTS.read_text() if RESULTS.exists() else ""
    start = text.find(HEADING)
    if start >= 0:
        end = text.find("\n## ", start + len(HEADING))
        text = text[:start].rstrip() + "\n\n" + section + (text[end:] if end >= 0 else "\n")
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    sys.exit(main(int(args[0]) if args else BOOK_SIZE, "--no-results" not in sys.argv))
