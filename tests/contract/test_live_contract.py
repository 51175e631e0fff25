"""The part of the connector contract that is safe on a real test account: everything goes through
the connector's own public methods (no sandbox seeding, no fault injection), every object it
creates is named ``rb-contract-<suffix>`` and deleted at the end, and reads that real accounts
serve from a lagging search index are waited for (``AccountTarget.eventually``: 90 s live).

Runs on each vendor's sandbox in ``make test``; ``make contract`` (``REVBRIDGE_CONTRACT=live``) runs
it against every vendor whose credentials are in the environment (tests/contract/live.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from activities.errors import to_application_error
from connectors.base import ErrorKind, NotFound
from domain.audit import AuditEntry
from domain.models import BillingCustomer, CaseDraft, CasePriority, CustomerTier, NoteTarget
from domain.records import CustomerDraft
from tests.contract.conftest import AccountTarget

CREDIT = 1_500
CRM = "salesforce"  # the CRM a billing customer is linked to (any value the connector stores)


# --- billing -----------------------------------------------------------------------------------


@dataclass
class Made:
    draft: CustomerDraft
    customer: BillingCustomer
    other: BillingCustomer


def _draft(t: AccountTarget, n: int) -> CustomerDraft:
    tag = f"rb-contract-{t.suffix}-{n}"
    return CustomerDraft(
        key=f"{tag}-customer",
        company=f"RevBridge contract {t.suffix} {n}",
        email=f"{tag}@example.com",
        crm=CRM,
        crm_account_id=f"{tag}-account",
        currency="USD",
    )


@pytest.fixture(scope="module")
def made(account_billing: AccountTarget) -> Made:
    """Two customers made the way quote-to-cash makes them; deleted when the module ends."""
    t = account_billing
    customers = []
    for n in (1, 2):
        draft = _draft(t, n)
        customer = t.connector.create_customer(draft)
        t.created(
            f"customer {customer.id}",
            lambda c=customer, d=draft: t.connector.delete_customer(c.id, f"{d.key}-delete"),
        )
        customers.append(customer)
    return Made(_draft(t, 1), customers[0], customers[1])


def test_a_customer_created_twice_with_one_key_is_one_customer(
    account_billing: AccountTarget, made: Made
) -> None:
    t = account_billing
    again = t.connector.create_customer(made.draft)
    assert again.id == made.customer.id
    found = t.eventually(
        lambda: t.connector.find_customers(made.draft.email, None),
        lambda got: made.customer.id in {c.id for c in got},
        "the new customer found by its email",
    )
    assert [c.id for c in found] == [made.customer.id]


def test_the_customer_is_found_by_its_crm_link(account_billing: AccountTarget, made: Made) -> None:
    t = account_billing
    found = t.eventually(
        lambda: t.connector.find_customer_by_crm(CRM, made.draft.crm_account_id),
        lambda got: got is not None,
        "the customer found by its CRM link",
    )
    assert found.id == made.customer.id
    assert t.connector.find_customer_by_crm(CRM, f"rb-contract-{t.suffix}-nobody") is None


def test_the_new_customer_reads_back_with_nothing_billed_yet(
    account_billing: AccountTarget, made: Made
) -> None:
    snap = account_billing.connector.customer_snapshot(made.customer.id)
    assert snap.customer.id == made.customer.id
    assert snap.subscriptions == [] and snap.invoices == []


def test_a_customer_note_written_twice_with_one_key_is_one_note(
    account_billing: AccountTarget, made: Made
) -> None:
    t, cid = account_billing, made.customer.id
    text = f"contract note {t.suffix}"
    key = f"rb-contract-{t.suffix}-note"
    first = t.connector.add_note(NoteTarget.CUSTOMER, cid, text, idempotency_key=key)
    again = t.connector.add_note(NoteTarget.CUSTOMER, cid, text, idempotency_key=key)
    assert first == again
    assert t.connector.list_notes(NoteTarget.CUSTOMER, cid).count(text) == 1


def test_a_credit_applied_twice_with_one_key_is_one_credit(
    account_billing: AccountTarget, made: Made
) -> None:
    t, cid = account_billing, made.other.id
    before = t.spec.credits(t.connector, cid)
    key = f"rb-contract-{t.suffix}-credit"
    args = (cid, CREDIT, "USD", "contract: courtesy credit")
    first = t.connector.apply_credit(*args, idempotency_key=key)
    again = t.connector.apply_credit(*args, idempotency_key=key)
    assert first == again
    assert t.spec.credits(t.connector, cid) == before + CREDIT


def test_a_missing_invoice_is_a_permanent_not_found(account_billing: AccountTarget) -> None:
    with pytest.raises(NotFound) as err:
        account_billing.connector.get_invoice_context(f"INV-nope-{account_billing.suffix}")
    assert err.value.kind is ErrorKind.PERMANENT
    assert to_application_error(err.value).non_retryable


def test_a_page_of_customers_honours_its_limit_and_its_cursor(
    account_billing: AccountTarget, made: Made
) -> None:
    """On a real account the book holds others' customers too: only the page contract is
    checked (at most ``limit``, a cursor that moves on), not the whole book."""
    c = account_billing.connector
    first = c.list_customers(limit=1)
    assert len(first.customers) <= 1
    assert first.next_cursor is not None  # two customers at least: ours
    second = c.list_customers(cursor=first.next_cursor, limit=1)
    assert len(second.customers) <= 1
    assert not {x.id for x in first.customers} & {x.id for x in second.customers}


# --- CRM ---------------------------------------------------------------------------------------

_CRM_OBJECTS = {
    "salesforce": {"account": "Account", "case": "Case", "audit": "AI_Agent_Log__c"},
    "hubspot": {"account": "companies", "case": "tickets", "audit": "notes"},
}


def _delete(t: AccountTarget, kind: str, record_id: str) -> None:
    """Through the vendor's official client, as an admin would."""
    name = _CRM_OBJECTS[t.name][kind]
    if t.name == "salesforce":
        getattr(t.connector.client, name).delete(record_id)
    else:
        t.driver.client.crm.objects.basic_api.archive(name, record_id)


def _account(t: AccountTarget, label: str, customer: str) -> str:
    account_id = t.driver.create_account(
        f"RevBridge contract {t.suffix} {label}",
        tier=CustomerTier.ENTERPRISE.value,
        billing_customer_id=customer,
        billing="chargebee",
    )
    t.created(f"account {account_id}", lambda: _delete(t, "account", account_id))
    return account_id


@pytest.fixture(scope="module")
def account(account_crm: AccountTarget) -> tuple[str, str]:
    """A CRM account linked to a billing customer: (account ID, billing customer ID)."""
    customer = f"rb-contract-{account_crm.suffix}-customer"
    return _account(account_crm, "linked", customer), customer


def _case(t: AccountTarget, key: str, account_id: str, n: int = 0) -> CaseDraft:
    return CaseDraft(
        key=key,
        account_id=account_id,
        subject=f"Payment failed: contract {t.suffix} {n}",
        description="Invoice declined: insufficient funds.",
        priority=CasePriority.HIGH,
        invoice_id=f"INV-contract-{t.suffix}",
    )


def test_the_account_linked_to_a_billing_customer_is_found_and_read(
    account_crm: AccountTarget, account: tuple[str, str]
) -> None:
    t, (account_id, customer) = account_crm, account
    found = t.eventually(
        lambda: t.connector.find_account("chargebee", customer),
        lambda got: got is not None,
        "the account found by its billing link",
    )
    assert (found.id, found.billing_customer_id, found.tier) == (
        account_id,
        customer,
        CustomerTier.ENTERPRISE,
    )
    assert t.connector.get_account(account_id).billing_customer_id == customer
    assert t.connector.find_account("chargebee", f"rb-contract-{t.suffix}-nobody") is None


def test_a_deleted_account_is_a_permanent_not_found(account_crm: AccountTarget) -> None:
    t = account_crm
    gone = t.driver.create_account(f"RevBridge contract {t.suffix} gone")
    _delete(t, "account", gone)
    with pytest.raises(NotFound) as err:
        t.connector.get_account(gone)
    assert err.value.kind is ErrorKind.PERMANENT


def test_a_case_upserted_twice_with_one_key_is_one_case(
    account_crm: AccountTarget, account: tuple[str, str]
) -> None:
    t, key = account_crm, f"rb-contract-{account_crm.suffix}-case"
    first = t.connector.upsert_case(_case(t, key, account[0]))
    t.created(f"case {first.id}", lambda: _delete(t, "case", first.id))
    again = t.connector.upsert_case(_case(t, key, account[0]))
    assert (first.created, again.created, again.id) == (True, False, first.id)
    assert [c["id"] for c in t.driver.cases(key)] == [first.id]


def test_an_audit_entry_written_twice_with_one_key_is_one_entry(
    account_crm: AccountTarget, account: tuple[str, str]
) -> None:
    t = account_crm
    wf = f"dunning:chargebee:INV-contract-{t.suffix}"
    entry = AuditEntry(
        key=f"rb-contract-{t.suffix}-audit",
        use_case="dunning",
        action="create_case",
        parameters_hash="0" * 64,
        decision="allow",
        outcome="executed",
        summary="contract: one audit entry",
        workflow_id=wf,
        run_id="run-1",
        account_id=account[0],
        at=datetime.now(UTC),
    )
    first = t.connector.write_audit(entry)
    t.created(f"audit entry {first}", lambda: _delete(t, "audit", first))
    assert t.connector.write_audit(entry) == first
    logged = t.eventually(
        lambda: t.connector.audit_log(wf), bool, "the audit entry in the workflow's log"
    )
    assert [row["id"] for row in logged] == [first]


def test_open_cases_honour_their_limit(account_crm: AccountTarget) -> None:
    t = account_crm
    owner = _account(t, "cases", f"rb-contract-{t.suffix}-cases")
    opened = []
    for n in range(3):
        ref = t.connector.upsert_case(_case(t, f"rb-contract-{t.suffix}-open-{n}", owner, n))
        t.created(f"case {ref.id}", lambda i=ref.id: _delete(t, "case", i))
        opened.append(ref.id)
    every = t.eventually(
        lambda: t.connector.open_cases(owner, limit=5),
        lambda got: {c.id for c in got} == set(opened),
        "the three open cases listed",
    )
    assert len(every) == 3
    two = t.connector.open_cases(owner, limit=2)
    assert len(two) == 2 and {c.id for c in two} <= set(opened)
