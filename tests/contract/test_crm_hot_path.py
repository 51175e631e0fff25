"""The CrmSystem hot-path contract: the account with its open cases in one read, then the case
with its audit entry — the case exists after at most two CRM calls and its audit entry after at
most three (issue 15; Salesforce writes both in one /composite, proved in
tests/connectors/test_salesforce_fidelity.py), exactly once on a repeat and on a
committed-then-timed-out retry. Written against ``CrmSystem`` only; it runs for every CRM in
:data:`READY` (a CRM joins when its connector has the two methods)."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.base import ConnectorError, ErrorKind
from connectors.hubspot import HubSpotCrm
from connectors.salesforce import SalesforceCrm
from domain.audit import AuditEntry
from tests.contract.conftest import OTHERS, CrmTarget
from tests.contract.targets import CRM
from tests.contract.test_crm import account_id, draft

CONNECTORS: dict[str, type] = {"salesforce": SalesforceCrm, "hubspot": HubSpotCrm}


def _ready(connector: type | None) -> bool:
    """The connector has both one-request methods (a CRM new to this map must have them)."""
    if connector is None:
        return True
    upsert = getattr(connector, "upsert_case", None)
    return hasattr(connector, "find_account_with_cases") and (
        upsert is not None and "audit" in inspect.signature(upsert).parameters
    )


#: every CRM whose connector has find_account_with_cases and upsert_case(draft, audit): today
#: Salesforce; HubSpot joins by itself the moment its connector has them
READY = [spec for spec in CRM if _ready(CONNECTORS.get(spec.name))]
hot_path = pytest.mark.parametrize("crm", READY, ids=[s.name for s in READY], indirect=True)


def entry(crm: CrmTarget, key: str, workflow_id: str, account: str) -> AuditEntry:
    return AuditEntry(
        key=key,
        use_case="dunning",
        action="create_case",
        parameters_hash="0" * 64,
        decision="allow",
        outcome="executed",
        summary=f"contract: the case and its audit entry {crm.suffix}",
        workflow_id=workflow_id,
        run_id="run-1",
        account_id=account,
        at=datetime.now(UTC),
    )


def vendor_calls(crm: CrmTarget) -> list[dict[str, Any]]:
    """The ledger's requests, less the OAuth token ones (not API calls)."""
    rows = httpx.get(crm.url + "/_sandbox/requests").json()["requests"]
    return [r for r in rows if "oauth" not in r["path"] and "/token" not in r["path"]]


@hot_path
def test_the_account_and_its_open_cases_are_read_together(crm: CrmTarget) -> None:
    customer = OTHERS[0]
    owner = account_id(crm, customer)
    opened = [crm.driver.open_case(owner, f"Hot path {n} {crm.suffix}") for n in range(3)]
    found, cases = crm.connector.find_account_with_cases(
        crm.billing, crm.ids(customer)["customer"], limit=2
    )
    assert found is not None and found.id == owner
    assert found == crm.connector.find_account(crm.billing, crm.ids(customer)["customer"])
    assert len(cases) == 2 and {c.id for c in cases} <= set(opened)
    assert {c.id for c in crm.connector.open_cases(owner, limit=2)} == {c.id for c in cases}
    assert crm.connector.find_account_with_cases(crm.billing, f"nobody-{crm.suffix}") == (None, [])


@hot_path
def test_webhook_to_case_is_two_crm_calls_and_one_case_and_entry_on_a_repeat(
    crm: CrmTarget,
) -> None:
    customer = crm.ids()["customer"]
    crm.connector.find_account(crm.billing, customer)  # any token first: only API calls count
    httpx.delete(crm.url + "/_sandbox/requests").raise_for_status()
    found, _ = crm.connector.find_account_with_cases(crm.billing, customer)
    assert found is not None
    wf = f"dunning:chargebee:INV-hot-{crm.suffix}"
    key = f"rb-contract-hot-{crm.suffix}"
    case = crm.connector.upsert_case(
        draft(crm, key, found.id), audit=entry(crm, f"{key}-audit", wf, found.id)
    )
    assert case.created
    calls = vendor_calls(crm)
    method, path = crm.spec.case_write
    case_writes = [
        n for n, r in enumerate(calls) if r["method"] == method and re.fullmatch(path, r["path"])
    ]
    # the case exists after at most two CRM calls (issue 15's hot path), and with its audit
    # entry after at most three (its budget through the first durable wait)
    assert case_writes and case_writes[0] < 2, [(r["method"], r["path"]) for r in calls]
    assert len(calls) <= 3, [(r["method"], r["path"]) for r in calls]
    again = crm.connector.upsert_case(
        draft(crm, key, found.id), audit=entry(crm, f"{key}-audit", wf, found.id)
    )
    assert (again.id, again.created) == (case.id, False)
    assert [c["id"] for c in crm.driver.cases(key)] == [case.id]
    (logged,) = crm.connector.audit_log(wf)
    assert logged["case_id"] == case.id and logged["action"] == "create_case"


@hot_path
def test_a_case_and_entry_committed_then_timed_out_are_one_each_after_the_retry(
    crm: CrmTarget,
) -> None:
    owner = account_id(crm, OTHERS[1])
    wf = f"dunning:chargebee:INV-hot-timeout-{crm.suffix}"
    key = f"rb-contract-hot-timeout-{crm.suffix}"
    crm.fault(crm.spec.case_write, kind="commit_then_timeout", delay_s=3, times=1)
    with pytest.raises(ConnectorError) as err:
        crm.connector.upsert_case(draft(crm, key, owner), audit=entry(crm, f"{key}-a", wf, owner))
    assert err.value.kind is ErrorKind.RETRYABLE
    again = crm.connector.upsert_case(
        draft(crm, key, owner), audit=entry(crm, f"{key}-a", wf, owner)
    )
    assert again.created is False
    assert [c["id"] for c in crm.driver.cases(key)] == [again.id]
    assert [e["case_id"] for e in crm.connector.audit_log(wf)] == [again.id]
