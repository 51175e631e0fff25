"""The CrmSystem contract: every implementation, against its emulator, through the official SDK
it uses. Reads, idempotent writes (a repeat and a committed-then-timed-out retry are one record),
errors classified the way Temporal retries them, and listings that honour their limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from activities.errors import to_application_error
from connectors.base import ConnectorError, ErrorKind, NotFound
from domain.audit import AuditEntry
from domain.models import CaseDraft, CasePriority, CustomerTier
from tests.contract.conftest import CUSTOMER, OTHERS, TRANSIENT, TRANSIENT_IDS, CrmTarget


def draft(crm: CrmTarget, key: str, account_id: str | None) -> CaseDraft:
    return CaseDraft(
        key=key,
        account_id=account_id,
        subject=f"Payment failed: contract {crm.suffix}",
        description="Invoice declined: insufficient funds.",
        priority=CasePriority.HIGH,
        invoice_id=crm.ids()["invoice"],
    )


def account_id(crm: CrmTarget, customer=CUSTOMER) -> str:  # noqa: ANN001
    found = crm.connector.find_account(crm.billing, crm.ids(customer)["customer"])
    assert found is not None
    return found.id


def test_the_account_linked_to_a_billing_customer_is_found_and_read(crm: CrmTarget) -> None:
    customer = crm.ids()["customer"]
    found = crm.connector.find_account(crm.billing, customer)
    assert found is not None
    assert (found.billing_customer_id, found.tier) == (customer, CustomerTier.ENTERPRISE)
    assert found.name == CUSTOMER.company
    read = crm.connector.get_account(found.id)
    assert (read.id, read.billing_customer_id) == (found.id, customer)
    assert crm.connector.find_account(crm.billing, f"nobody-{crm.suffix}") is None


def test_a_missing_account_is_a_permanent_not_found(crm: CrmTarget) -> None:
    with pytest.raises(NotFound) as err:
        crm.connector.get_account(account_id(crm)[:-4] + "zzzz")
    assert err.value.kind is ErrorKind.PERMANENT
    failure = to_application_error(err.value)
    assert failure.non_retryable and (failure.type or "").endswith(".not_found")


def test_a_case_upserted_twice_with_one_key_is_one_case(crm: CrmTarget) -> None:
    key = f"rb-contract-case-{crm.suffix}"
    first = crm.connector.upsert_case(draft(crm, key, account_id(crm)))
    again = crm.connector.upsert_case(draft(crm, key, account_id(crm)))
    assert (first.created, again.created, again.id) == (True, False, first.id)
    assert len(crm.driver.cases(key)) == 1


def test_a_case_committed_then_timed_out_is_one_case_after_the_retry(crm: CrmTarget) -> None:
    key = f"rb-contract-timeout-{crm.suffix}"
    owner = account_id(crm, OTHERS[0])  # also warms up any token, so the fault hits the write
    crm.fault(crm.spec.case_write, kind="commit_then_timeout", delay_s=3, times=1)
    with pytest.raises(ConnectorError) as err:
        crm.connector.upsert_case(draft(crm, key, owner))
    assert err.value.kind is ErrorKind.RETRYABLE
    again = crm.connector.upsert_case(draft(crm, key, owner))  # Temporal's retry, same key
    assert again.created is False  # the first attempt had committed it
    assert [c["id"] for c in crm.driver.cases(key)] == [again.id]


def test_an_audit_entry_written_twice_with_one_key_is_one_entry(crm: CrmTarget) -> None:
    wf = f"dunning:chargebee:INV-contract-{crm.suffix}"
    entry = AuditEntry(
        key=f"rb-contract-audit-{crm.suffix}",
        use_case="dunning",
        action="create_case",
        parameters_hash="0" * 64,
        decision="allow",
        outcome="executed",
        summary="contract: one audit entry",
        workflow_id=wf,
        run_id="run-1",
        account_id=account_id(crm),
        at=datetime.now(UTC),
    )
    first = crm.connector.write_audit(entry)
    again = crm.connector.write_audit(entry)
    assert first == again
    assert len(crm.connector.audit_log(wf)) == 1


def test_open_cases_honour_their_limit(crm: CrmTarget) -> None:
    owner = account_id(crm, OTHERS[1])
    opened = [crm.driver.open_case(owner, f"Outage {n} {crm.suffix}") for n in range(3)]
    assert len(set(opened)) == 3
    two = crm.connector.open_cases(owner, limit=2)
    assert len(two) == 2 and {c.id for c in two} <= set(opened)
    assert {c.id for c in crm.connector.open_cases(owner, limit=5)} == set(opened)


@pytest.mark.parametrize(("fault", "kind"), TRANSIENT, ids=TRANSIENT_IDS)
def test_errors_are_classified_the_way_temporal_retries_them(
    crm: CrmTarget, fault: dict | None, kind: ErrorKind
) -> None:
    customer = crm.ids()["customer"]
    crm.connector.find_account(crm.billing, customer)  # a token first, so the fault hits the API
    crm.fault(crm.spec.read, **(fault or crm.spec.rate_limit), times=1)
    with pytest.raises(ConnectorError) as err:
        crm.connector.find_account(crm.billing, customer)
    assert err.value.kind is kind
    assert not to_application_error(err.value).non_retryable
    if kind is ErrorKind.RATE_LIMITED:
        assert err.value.retry_after is not None
        assert err.value.retry_after >= crm.spec.rate_limit_retry_after
    assert crm.connector.find_account(crm.billing, customer) is not None  # the fault was spent
