"""Issue 15: the churn score's billing snapshot on Chargebee takes the customer from the
subscription list (each entry carries it) instead of reading it again: one request fewer per
score. A customer without subscriptions is read on its own; an unknown one is still not found."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connectors.base import NotFound
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.pairs import Pair, on_pairs

NORTHWIND = DEMO_CUSTOMERS[0]


def _rows_since(pair: Pair, seq: int) -> list[dict[str, Any]]:
    rows = httpx.get(pair.billing_url + "/_sandbox/requests", timeout=30).json()["requests"]
    return [r for r in rows if r["seq"] > seq]


def _last_seq(pair: Pair) -> int:
    rows = httpx.get(pair.billing_url + "/_sandbox/requests", timeout=30).json()["requests"]
    return max((r["seq"] for r in rows), default=0)


@on_pairs("chargebee×salesforce")
async def test_the_snapshot_takes_the_customer_from_its_subscriptions(pair: Pair, uid: str) -> None:
    ids = pair.seed(NORTHWIND, uid)
    mark = _last_seq(pair)
    snap = pair.billing.customer_snapshot(ids["customer"])
    paths = [r["path"] for r in _rows_since(pair, mark) if r["method"] == "GET"]
    assert not [p for p in paths if p.startswith("/api/v2/customers")], paths
    assert snap.customer.id == ids["customer"]
    assert snap.customer.company == NORTHWIND.company
    assert [s.id for s in snap.subscriptions] == [ids["subscription"]]

    bare = pair.billing_driver.create_customer(f"Bare {uid}", f"bare-{uid}@example.com")
    mark = _last_seq(pair)
    alone = pair.billing.customer_snapshot(bare)
    paths = [r["path"] for r in _rows_since(pair, mark) if r["method"] == "GET"]
    assert f"/api/v2/customers/{bare}" in paths  # no subscription to carry it
    assert alone.customer.company == f"Bare {uid}" and alone.subscriptions == []

    with pytest.raises(NotFound):
        pair.billing.customer_snapshot(f"nobody-{uid}")
