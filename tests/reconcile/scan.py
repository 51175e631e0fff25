"""The check every planted-book test makes of one reconciliation scan, on any billing platform."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import httpx

from activities.reconcile import ReconcileActivities, ScanInput, ScanResult
from domain.reconcile import Kind


def scan_finds_the_planted(
    acts: ReconcileActivities,
    url: str,
    planted: Mapping[str, Kind],
    who: Mapping[str, tuple[Any, Any]],
    today: date,
) -> tuple[ScanResult, list[dict[str, Any]]]:
    """One scan, the sandbox at ``url``'s request ledger cleared first: it finds exactly the
    planted kinds, each on its planted CRM account or billing customer (``who`` by tag). Returns
    the scan and the requests it made of that sandbox."""
    httpx.delete(url + "/_sandbox/requests").raise_for_status()
    scan = acts.reconcile_scan(ScanInput(today=today))
    calls = httpx.get(url + "/_sandbox/requests").json()["requests"]
    kinds = sorted(f.discrepancy.kind.value for f in scan.findings)
    assert kinds == sorted(k.value for k in planted.values()), [
        (f.discrepancy.kind.value, f.discrepancy.evidence) for f in scan.findings
    ]
    for f in scan.findings:
        tag = next(t for t, k in planted.items() if k is f.discrepancy.kind)
        account, customer = who[tag]
        assert f.account_id == account or f.customer_id == customer, tag
    return scan, calls
