"""Search endpoints have lower limits than the rest of a vendor's API (HubSpot's CRM search a
few per second per account, Stripe's 20/s): they are paced under their own name on top of the
vendor's rate. Against a HubSpot sandbox that enforces 4 searches per second, 20 concurrent
searches all succeed and never exceed it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from activities.budget import Limits, VendorLimit
from connectors import limits as vendor_limits
from connectors.registry import build_crm
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from tests.limits.conftest import peak_per_second
from tests.pairs import HS_SECRET, HS_TOKEN, pair_settings

SEARCH_LIMIT = 4


def test_hubspot_search_is_paced_under_its_own_limit() -> None:
    hs = HubSpotEmulator(
        access_token=HS_TOKEN,
        client_secret=HS_SECRET,
        rate_limit_per_10s=5000,
        search_rate_limit_per_s=SEARCH_LIMIT,
    )
    with ServerThread({hs: 0}) as thread:
        url = thread.urls["hubspot"]
        settings = pair_settings(
            {"chargebee": url, "stripe": url, "salesforce": url, "hubspot": url},
            "chargebee",
            "hubspot",
            "unused",
        )
        crm = build_crm(settings)
        limits = Limits(
            pace=0.8,
            vendors={
                "hubspot": VendorLimit(per_second=190 / 10),
                "hubspot.search": VendorLimit(per_second=SEARCH_LIMIT),
            },
        )
        vendor_limits.configure_pacing(limits.process_rates(["hubspot"]))
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: crm.search_notes("nothing-here"), range(20)))
        with hs.lock:
            searches = [r for r in hs.ledger if r["path"].endswith("/search")]
    assert results == [[]] * 20  # every search answered (a 429 would have raised)
    assert len(searches) == 20 and all(r["status"] in (None, 200) for r in searches)
    assert peak_per_second([r["at"] for r in searches]) <= SEARCH_LIMIT
