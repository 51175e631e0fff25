"""The reconciliation's checks (domain/reconcile.py): a book with clean customers and one
planted discrepancy of every kind finds exactly those, with the right fixes; a second run keeps
each exception's identity and age, and closes what was fixed."""

from __future__ import annotations

from datetime import date, timedelta

from domain.reconcile import (
    Account,
    Book,
    Customer,
    Deal,
    Invoice,
    Kind,
    Line,
    Payment,
    Severity,
    Sub,
    check,
    track,
)

RENEW = date(2027, 6, 1)
PRO = Line(product="pro", quantity=5, unit_price=2_000)


def clean(n: int) -> Book:
    """``n`` customers where everything agrees: deal, subscription, invoice, payment, account."""
    book = Book()
    for i in range(n):
        cid, acc, sub, inv = f"cus-{i}", f"001-{i}", f"sub-{i}", f"in-{i}"
        book = book.model_copy(
            update={
                "deals": [
                    *book.deals,
                    Deal(
                        opportunity_id=f"006-{i}", account_id=acc, lines=[PRO], subscription_id=sub
                    ),
                ],  # fmt: skip
                "subscriptions": [
                    *book.subscriptions,
                    Sub(
                        id=sub,
                        customer_id=cid,
                        status="active",
                        lines=[PRO],
                        mrr=10_000,
                        plan="pro",
                        renewal=RENEW,
                    ),
                ],  # fmt: skip
                "invoices": [
                    *book.invoices,
                    Invoice(
                        id=inv,
                        customer_id=cid,
                        subscription_id=sub,
                        status="paid",
                        total=10_000,
                        lines=[PRO],
                    ),
                ],  # fmt: skip
                "payments": [
                    *book.payments,
                    Payment(id=f"pay-{i}", customer_id=cid, amount=10_000, applied={inv: 10_000}),
                ],  # fmt: skip
                "accounts": [
                    *book.accounts,
                    Account(
                        id=acc,
                        is_customer=True,
                        billing_customer_id=cid,
                        mrr=10_000,
                        status="active",
                        plan="pro",
                        renewal=RENEW,
                    ),
                ],  # fmt: skip
                "customers": [*book.customers, Customer(id=cid, crm_account_id=acc)],
            }
        )
    return book


def planted() -> Book:
    book = clean(20)
    subs = list(book.subscriptions)
    subs[1] = subs[1].model_copy(update={"lines": [PRO.model_copy(update={"quantity": 4})]})
    deals = list(book.deals)
    deals[2] = deals[2].model_copy(update={"subscription_id": None})
    invoices = list(book.invoices)
    invoices[3] = invoices[3].model_copy(
        update={"lines": [PRO, Line(product="support", unit_price=500)]}
    )
    payments = list(book.payments)
    payments[4] = payments[4].model_copy(update={"applied": {}})  # unapplied, invoice unpaid
    payments[5] = payments[5].model_copy(update={"amount": 12_000, "applied": {"in-5": 12_000}})
    payments[6] = payments[6].model_copy(update={"amount": 4_000, "applied": {"in-6": 4_000}})
    accounts = list(book.accounts)
    accounts[7] = accounts[7].model_copy(update={"mrr": 9_000})
    accounts.append(Account(id="001-orphan", is_customer=True))
    customers = [*book.customers, Customer(id="cus-unlinked")]
    return book.model_copy(
        update={
            "subscriptions": subs,
            "deals": deals,
            "invoices": invoices,
            "payments": payments,
            "accounts": accounts,
            "customers": customers,
        }
    )


def test_a_clean_book_has_no_exception() -> None:
    assert check(clean(50)) == []


def test_every_planted_discrepancy_is_found_and_nothing_else() -> None:
    found = check(planted())
    got = {(d.kind, tuple(d.records)) for d in found}
    assert got == {
        (Kind.SUBSCRIPTION_MISMATCH, ("crm:opportunity:006-1", "billing:subscription:sub-1")),
        (Kind.DEAL_WITHOUT_SUBSCRIPTION, ("crm:opportunity:006-2",)),
        (Kind.INVOICE_LINE_UNMATCHED, ("billing:invoice:in-3", "billing:subscription:sub-3")),
        (Kind.UNAPPLIED_PAYMENT, ("billing:payment:pay-4",)),
        (Kind.PAID_WITHOUT_PAYMENT, ("billing:invoice:in-4",)),
        (Kind.OVERPAYMENT, ("billing:invoice:in-5",)),
        (Kind.UNDERPAYMENT, ("billing:invoice:in-6",)),
        (Kind.CRM_FIELD_DRIFT, ("crm:account:001-7",)),
        (Kind.ACCOUNT_WITHOUT_CUSTOMER, ("crm:account:001-orphan",)),
        (Kind.CUSTOMER_WITHOUT_ACCOUNT, ("billing:customer:cus-unlinked",)),
    }
    by_kind = {d.kind: d for d in found}
    # only the drifted CRM field may be fixed without a person; money and contracts wait
    assert by_kind[Kind.CRM_FIELD_DRIFT].fix.approver_role is None
    assert by_kind[Kind.CRM_FIELD_DRIFT].evidence == {
        "field": "mrr",
        "crm": "9000",
        "billing": "10000",
    }
    assert all(d.fix.approver_role for d in found if d.kind is not Kind.CRM_FIELD_DRIFT)
    assert by_kind[Kind.OVERPAYMENT].fix.approver_role == "finance"
    assert by_kind[Kind.SUBSCRIPTION_MISMATCH].fix.approver_role == "revops"
    # ordered by severity
    severities = [d.severity for d in found]
    assert severities == sorted(
        severities, key=[Severity.HIGH, Severity.MEDIUM, Severity.LOW].index
    )


def test_a_second_run_keeps_identity_and_age_and_closes_what_was_fixed() -> None:
    day1 = date(2026, 12, 1)
    first = track([], check(planted()), day1)
    assert len(first.open) == 10 and len(first.new) == 10 and first.resolved == []
    # the next day: the CRM field was restored, everything else is still there
    book = planted()
    accounts = list(book.accounts)
    accounts[7] = accounts[7].model_copy(update={"mrr": 10_000})
    second = track(
        first.open, check(book.model_copy(update={"accounts": accounts})), day1 + timedelta(days=1)
    )
    assert second.new == [] and len(second.open) == 9
    drift = next(d for d in check(planted()) if d.kind is Kind.CRM_FIELD_DRIFT)
    assert second.resolved == [drift.id]
    assert all(e.age_days(day1 + timedelta(days=1)) == 1 for e in second.open)
    assert len({e.discrepancy.id for e in second.open}) == 9  # no duplicates


def test_ids_do_not_depend_on_order() -> None:
    book = planted()
    shuffled = book.model_copy(
        update={
            k: list(reversed(getattr(book, k)))
            for k in ("deals", "subscriptions", "invoices", "payments", "accounts", "customers")
        }  # fmt: skip
    )
    assert [d.id for d in check(book)] == [d.id for d in check(shuffled)]
