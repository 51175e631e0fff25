"""A Chargebee × Salesforce pair of its own (the reconciliation reads the whole book, so it must
not see other tests' customers), a worker for it on its own task queue on the session's dev
server, reports in a temporary directory, and the seeded book with its planted discrepancies."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from connectors.registry import build_billing, build_crm
from harness.drivers import ChargebeeDriver, SalesforceDriver
from harness.reconcile_book import Planted, seed
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.salesforce import SalesforceEmulator
from tests.conftest import own_time_skipping
from tests.pairs import CB_KEY, SF_ID, SF_SECRET, pair_settings

#: this package's own time-skipping server (why: tests/conftest.py own_time_skipping)
time_env = pytest.fixture(scope="package")(own_time_skipping)


@dataclass
class ReconcilePair:
    client: Client
    task_queue: str
    cb_url: str
    sf_url: str
    billing: Any
    crm: Any
    cb: ChargebeeDriver
    sf: SalesforceDriver
    cb_emulator: ChargebeeEmulator
    planted: Planted
    report_dir: Path
    settings: Any = None


@pytest.fixture(scope="module")
async def rpair(
    client: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ReconcilePair]:
    from workers.main import build_worker

    cb_em = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=None)
    # IDs of its own (fix workflows are named by exception ID, which names the CRM's records)
    sf_em = SalesforceEmulator(
        client_id=SF_ID, client_secret=SF_SECRET, id_base=uuid.uuid4().int % 10**9
    )
    report_dir = tmp_path_factory.mktemp("reports")
    old = os.environ.get("REVBRIDGE_REPORT_DIR")
    os.environ["REVBRIDGE_REPORT_DIR"] = str(report_dir)
    try:
        with ServerThread({cb_em: 0, sf_em: 0}) as thread:
            urls = dict(thread.urls)
            for missing in ("stripe", "hubspot"):
                urls.setdefault(missing, "http://127.0.0.1:9")
            tq = f"reconcile-{uuid.uuid4().hex[:8]}"
            settings = pair_settings(urls, "chargebee", "salesforce", tq)
            billing, crm = build_billing(settings), build_crm(settings)
            cb = ChargebeeDriver(urls["chargebee"], billing)
            sf = SalesforceDriver(urls["salesforce"], crm)
            planted = seed(cb, sf, cb_em, prefix=f"rx{uuid.uuid4().hex[:6]}")
            async with build_worker(client, billing, crm, task_queue=tq):
                yield ReconcilePair(
                    client, tq, urls["chargebee"], urls["salesforce"], billing, crm, cb, sf,
                    cb_em, planted, report_dir, settings,
                )  # fmt: skip
    finally:
        if old is None:
            os.environ.pop("REVBRIDGE_REPORT_DIR", None)
        else:
            os.environ["REVBRIDGE_REPORT_DIR"] = old
