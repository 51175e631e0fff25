"""Recurly's revenue reads against the sandbox with the official ``recurly`` client: the site's
invoiced line items in one list (``GET /line_items``, created_at order, a page per call, followed
by Recurly's own cursor), a plan's line over its subscription period and a one-off charge on its
day, reduced by the real activity to what each month recognizes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from activities.revenue import RevenueActivities
from connectors.recurly import RecurlyBilling
from connectors.revenue import revenue_source
from domain.revenue import RevenuePageInput, month_bounds, month_of
from domain.settings import RecurlySettings
from sandbox.framework import ServerThread
from sandbox.recurly import RecurlyEmulator
from tests.revenue.conftest import POLICY_DIR

KEY = "recurly-revenue-key"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    em = RecurlyEmulator(api_key=KEY, rate_limit_per_minute=None)
    with ServerThread({em: 0}) as thread:
        yield thread.urls["recurly"]


def read_month(acts: RevenueActivities, month: str, lo: date, limit: int) -> tuple[dict, int]:
    totals: dict[tuple[str, str], int] = {}
    cursor, pages = None, 0
    while True:
        page = acts.revenue_read_page(
            RevenuePageInput(
                month=month,
                issued_from=lo,
                issued_to=month_bounds(month)[1],
                cursor=cursor,
                limit=limit,
            )  # fmt: skip
        )
        pages += 1
        for t in page.totals:
            totals[(t.currency, t.product)] = totals.get((t.currency, t.product), 0) + t.amount
        cursor = page.next_cursor
        if cursor is None:
            return totals, pages


def test_recurly_lines_recognized_over_their_periods(url: str) -> None:
    seed = {
        "plans": [{"code": "rv-pro", "name": "Pro",
                   "currencies": [{"currency": "USD", "unit_amount": 31.0}]}],
        "accounts": [{"code": "rv-1", "email": "a@rv.test"}, {"code": "rv-2", "email": "b@rv.test"}],
        "invoices": [{"account_code": "rv-2", "total": 5.0, "state": "paid"}],
    }  # fmt: skip
    httpx.post(url + "/_sandbox/seed", json=seed).raise_for_status()
    billing = RecurlyBilling(RecurlySettings(api_key=SecretStr(KEY), api_url=url), timeout_s=5)
    # a new subscription invoices its first period at once (the plan's line covers it)
    billing.client.create_subscription(
        {"plan_code": "rv-pro", "currency": "USD", "account": {"code": "rv-1"}}
    )
    acts = RevenueActivities(revenue_source(billing), None, POLICY_DIR / "revenue.yaml")
    today = datetime.now(UTC).date()
    month = month_of(today)
    nxt = month_of(month_bounds(month)[1])
    lo = today - timedelta(days=40)
    this, pages = read_month(acts, month, lo, limit=1)
    later, _ = read_month(acts, nxt, lo, limit=200)
    # the plan: 31.00 over the period Recurly gave its line, split by days in this month
    (plan,) = [x for x in billing.client.list_line_items(params={"limit": 200}).items()
               if x.plan_code == "rv-pro"]  # fmt: skip
    start, end = (datetime.fromisoformat(str(d).replace("Z", "+00:00")).date()
                  for d in (plan.start_date, plan.end_date))  # fmt: skip
    in_month = (min(end, month_bounds(month)[1]) - start).days
    assert this[("USD", "rv-pro")] == 3_100 * in_month // (end - start).days
    assert this[("USD", "other")] == 500
    assert this[("USD", "rv-pro")] + later.get(("USD", "rv-pro"), 0) == 3_100
    assert pages >= 2  # one line a page, followed by Recurly's cursor
