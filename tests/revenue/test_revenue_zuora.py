"""Zuora's revenue reads against the sandbox through the connector's REST client: Object Query
pages of posted invoices with their items (``expand[]=invoiceitems``) and credit memos with
theirs, each item's service period taken with Zuora's inclusive end date, reduced by the real
activity to what April recognizes — checked against the amounts worked out by hand."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import httpx
import pytest
from pydantic import SecretStr

from activities.revenue import RevenueActivities
from connectors.revenue import revenue_source
from connectors.zuora import ZuoraBilling
from domain.revenue import RevenuePageInput
from domain.settings import ZuoraSettings
from sandbox.framework import ServerThread
from sandbox.scenarios import DEMO_CUSTOMERS
from sandbox.zuora import ZuoraEmulator
from sandbox.zuora.scenarios import zuora_seed
from tests.revenue.conftest import POLICY_DIR

ID, SECRET = "zr", "zs"
#: the invoices are dated April 10 (an hour before noon): their items run Apr 10 - May 9
NOON = int(datetime(2026, 4, 10, 12, tzinfo=UTC).timestamp())
#: the sandbox's clock (the memo is issued on April 21)
CLOCK = [float(NOON)]


@pytest.fixture(scope="module")
def billing() -> Iterator[ZuoraBilling]:
    em = ZuoraEmulator(client_id=ID, client_secret=SECRET, clock=lambda: CLOCK[0])
    with ServerThread({em: 0}) as thread:
        url = thread.urls["zuora"]
        httpx.post(
            url + "/_sandbox/seed", json=zuora_seed(DEMO_CUSTOMERS, "rev", now=NOON)
        ).raise_for_status()
        zb = ZuoraBilling(
            ZuoraSettings(client_id=ID, client_secret=SecretStr(SECRET), api_url=url), timeout_s=5
        )
        yield zb
        zb.close()


def test_zuora_invoices_and_a_cancellation_memo_recognized_by_day(billing: ZuoraBilling) -> None:
    invoices = [c.ids("rev")["invoice"] for c in DEMO_CUSTOMERS]
    items = {
        i: billing._request("GET", f"/v1/invoices/{i}/items", what="items")["invoiceItems"]
        for i in invoices
    }
    # cancelled on April 21: 19.00 credited for Apr 21 - May 9 (19 days, inclusive)
    first = items[invoices[0]][0]
    CLOCK[0] = datetime(2026, 4, 21, 12, tzinfo=UTC).timestamp()
    billing._request(
        "POST",
        f"/v1/credit-memos/invoice/{invoices[0]}",
        what="memo",
        json={
            "items": [
                {
                    "invoiceItemId": first["id"],
                    "skuName": first.get("sku") or "sku",
                    "amount": 19.00,
                    "serviceStartDate": "2026-04-21",
                    "serviceEndDate": "2026-05-09",
                }
            ]
        },  # fmt: skip
    )
    acts = RevenueActivities(revenue_source(billing), None, POLICY_DIR / "revenue.yaml")
    total, cursor, pages = 0, None, 0
    while True:
        page = acts.revenue_read_page(
            RevenuePageInput(
                month="2026-04",
                issued_from=date(2026, 1, 1),
                issued_to=date(2026, 5, 1),
                cursor=cursor,
                limit=2,
            )  # fmt: skip
        )
        total += sum(t.amount for t in page.totals)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    # each item: 30 days (Apr 10 - May 9), April has 21 of them; the memo: 10 of its 19 days
    charged = sum(
        round(float(it["chargeAmount"]) * 100) * 21 // 30 for its in items.values() for it in its
    )
    assert total == charged - 1_900 * 10 // 19
    assert pages == (len(invoices) + 1) // 2 + 1  # two invoices a page, then the memo's page
