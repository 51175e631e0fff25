"""The reconciliation on Chargebee × HubSpot (connectors/reconcile/hubspot.py) against the
sandboxes through the official clients: the seeded book with one planted discrepancy of every
kind is found exactly (deals with their line items and products, companies with their billing
properties: list pages and batch reads); the exceptions become tickets upserted by their stable
ID (a second write of the same set adds none), associated with their company, read back with
their first-seen day; the drifted MRR is restored on the company."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from activities.reconcile import ReconcileActivities, UpsertExceptionsInput
from connectors.reconcile import crm_reader
from connectors.registry import build_billing, build_crm
from domain import reconcile as rx
from harness.drivers import ChargebeeDriver, HubSpotDriver
from harness.reconcile_book import PLANTED, Planted, seed
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from tests.pairs import CB_KEY, HS_SECRET, HS_TOKEN, pair_settings
from tests.reconcile.scan import scan_finds_the_planted

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 12, 1)


@pytest.fixture(scope="module")
def hs_book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, Planted, str]]:
    cb_em = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=None)
    hs_em = HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET, limits=False)
    with ServerThread({cb_em: 0, hs_em: 0}) as thread:
        urls = dict(thread.urls)
        for missing in ("stripe", "salesforce"):
            urls.setdefault(missing, "http://127.0.0.1:9")
        settings = pair_settings(urls, "chargebee", "hubspot", "unused")
        billing, crm = build_billing(settings), build_crm(settings)
        hs = HubSpotDriver(urls["hubspot"], HS_TOKEN)
        planted = seed(ChargebeeDriver(urls["chargebee"], billing), hs, cb_em, "hx")
        reports = tmp_path_factory.mktemp("reports")
        acts = ReconcileActivities(billing, crm, ROOT / "policies" / "products.yaml", reports)
        yield acts, crm, planted, urls["hubspot"]


def test_the_hubspot_book(hs_book: tuple[Any, Any, Planted, str]) -> None:
    acts, crm, planted, url = hs_book
    scan, reads = scan_finds_the_planted(acts, url, PLANTED, planted.who, DAY)
    assert len(reads) <= 12, [r["path"] for r in reads]  # list pages and batch reads only

    tracked = rx.track_seen({}, [f.discrepancy for f in scan.findings], DAY)
    by_id = {f.discrepancy.id: f for f in scan.findings}
    records = [rx.record_of(by_id[o.discrepancy.id], DAY, DAY, rx.ExceptionStatus.WAITING)
               for o in tracked.open]  # fmt: skip
    for _ in range(2):  # the same set twice: upserts by stable ID
        done = acts.reconcile_upsert_exceptions(UpsertExceptionsInput(records=records))
        assert done.failed == {}
    book = crm_reader(crm)
    stored = book.stored_exceptions(DAY - timedelta(days=30))
    assert sorted(s.id for s in stored) == sorted(r.id for r in records)
    assert all(s.first_seen == DAY and s.status is rx.ExceptionStatus.WAITING for s in stored)
    assert len(book.open_exceptions()) == len(records)
    # a ticket sits on its company
    ghost = next(r for r in records if r.kind is rx.Kind.ACCOUNT_WITHOUT_CUSTOMER)
    tickets = crm._client.crm.associations.v4.basic_api.get_page(
        "companies", ghost.account_id, "tickets"
    )
    assert len(tickets.results) == 1

    # the drifted MRR, restored from billing
    drift = next(r for r in records if r.kind is rx.Kind.CRM_FIELD_DRIFT)
    fix = rx.FieldRestore(
        account_id=drift.account_id or "", field="mrr", value=drift.evidence["billing"]
    )
    assert book.restore_fields([fix]) == {}
    company = crm._companies.get_by_id(drift.account_id, properties=["mrr"])
    assert float(company.properties["mrr"]) == 700.0


async def test_the_daily_run_on_hubspot(
    hs_book: tuple[Any, Any, Planted, str], client: Any, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The workflow itself on Chargebee × HubSpot, the day after the tickets above were filed:
    the drift restored meanwhile is closed, the rest is one day older, nothing new."""
    from workers.main import build_worker

    acts, crm, _, _ = hs_book
    monkeypatch.setenv("REVBRIDGE_REPORT_DIR", str(tmp_path))
    tq = "reconcile-hubspot"
    async with build_worker(client, acts.billing, crm, task_queue=tq):
        result = await client.execute_workflow(
            rx.WORKFLOW_TYPE,
            rx.ReconcileInput(today=DAY + timedelta(days=1)),
            id="reconcile-test-hubspot",
            task_queue=tq,
            result_type=rx.ReconcileResult,
        )
    assert result.found == len(PLANTED) - 1 and result.resolved == 1 and result.new == 0
    assert result.sent_for_approval == 0 and result.written == len(PLANTED)
    book = crm_reader(crm)
    open_now = book.open_exceptions()
    assert len(open_now) == len(PLANTED) - 1
    assert {r["First_Seen__c"] for r in open_now} == {DAY.isoformat()}
    assert result.report_html and Path(result.report_html).exists()
