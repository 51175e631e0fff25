"""The daily billing ↔ CRM reconciliation's checks (issue 20): what disagrees, how badly, the
evidence, and the proposed fix — over normalized views both systems are read into in bulk.

Pure and deterministic. Each exception has a **stable ID** (its kind and the records it is
about, hashed), so the same discrepancy found on two days is one exception with an age
(:func:`track`), and a fixed one is closed. Fixes follow field ownership (policies/sync.yaml,
``domain/golden.py``): restoring a billing-owned CRM field is housekeeping policy may allow
automatically; anything touching money or contracts waits for finance or RevOps.
"""

from __future__ import annotations

import hashlib
from datetime import date
from enum import StrEnum

from domain.models import Frozen


class Severity(StrEnum):
    LOW = "low"  # a stale field: people read a wrong number
    MEDIUM = "medium"  # a missing link: work falls between systems
    HIGH = "high"  # money or a contract is wrong


class Kind(StrEnum):
    DEAL_WITHOUT_SUBSCRIPTION = "deal_without_subscription"
    SUBSCRIPTION_MISMATCH = "subscription_mismatch"
    INVOICE_LINE_UNMATCHED = "invoice_line_unmatched"
    PAID_WITHOUT_PAYMENT = "paid_without_payment"
    UNAPPLIED_PAYMENT = "unapplied_payment"
    OVERPAYMENT = "overpayment"
    UNDERPAYMENT = "underpayment"
    CRM_FIELD_DRIFT = "crm_field_drift"
    CUSTOMER_WITHOUT_ACCOUNT = "customer_without_account"
    ACCOUNT_WITHOUT_CUSTOMER = "account_without_customer"


class Fix(Frozen):
    summary: str
    #: the system the fix writes to
    system: str  # "billing" | "crm"
    #: None: policy may run it automatically; else the role that must approve
    approver_role: str | None = None


class Discrepancy(Frozen):
    id: str
    kind: Kind
    severity: Severity
    #: the records it is about, as "system:type:id"
    records: list[str]
    #: what each side says (field → value), for the report and the approver
    evidence: dict[str, str]
    fix: Fix


def _id(kind: Kind, records: list[str], detail: str = "") -> str:
    key = "|".join([kind.value, *sorted(records), detail])
    return f"rx-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _d(
    kind: Kind,
    severity: Severity,
    records: list[str],
    evidence: dict[str, object],
    fix: Fix,
    detail: str = "",
) -> Discrepancy:
    return Discrepancy(
        id=_id(kind, records, detail),
        kind=kind,
        severity=severity,
        records=records,
        evidence={k: str(v) for k, v in evidence.items()},
        fix=fix,
    )


# --- the normalized views ------------------------------------------------------------------------


class Line(Frozen):
    product: str
    quantity: int = 1
    unit_price: int = 0  # minor units
    discount_percent: float = 0


class Deal(Frozen):
    opportunity_id: str
    account_id: str
    lines: list[Line] = []
    subscription_id: str | None = None  # the billing link written by quote-to-cash


class Sub(Frozen):
    id: str
    customer_id: str
    status: str
    lines: list[Line] = []
    mrr: int = 0
    plan: str | None = None
    renewal: date | None = None


class Invoice(Frozen):
    id: str
    customer_id: str
    subscription_id: str | None = None
    status: str  # paid | open | void
    total: int
    lines: list[Line] = []


class Payment(Frozen):
    id: str
    customer_id: str
    amount: int
    #: invoice ID → amount applied to it
    applied: dict[str, int] = {}


class Account(Frozen):
    """A CRM account with what it says about billing."""

    id: str
    is_customer: bool = False
    billing_customer_id: str | None = None
    mrr: int | None = None
    status: str | None = None
    plan: str | None = None
    renewal: date | None = None
    #: the billing-owned fields this CRM holds (a CRM without a plan field never drifts on it)
    holds: list[str] = ["mrr", "status", "plan", "renewal"]


class Customer(Frozen):
    id: str
    crm_account_id: str | None = None
    active: bool = True


class Book(Frozen):
    deals: list[Deal] = []
    subscriptions: list[Sub] = []
    invoices: list[Invoice] = []
    payments: list[Payment] = []
    accounts: list[Account] = []
    customers: list[Customer] = []


# --- the checks ----------------------------------------------------------------------------------

REVOPS = "revops"
FINANCE = "finance"
LIVE = {"active", "in_trial", "future", "non_renewing", "past_due"}


def _lines_key(lines: list[Line]) -> dict[str, tuple[int, int, float]]:
    out: dict[str, tuple[int, int, float]] = {}
    for ln in lines:
        qty, price, disc = out.get(ln.product, (0, ln.unit_price, ln.discount_percent))
        out[ln.product] = (qty + ln.quantity, price, disc)
    return out


def check(book: Book) -> list[Discrepancy]:
    """Every discrepancy in the book, ordered by severity then ID (a stable report)."""
    subs = {s.id: s for s in book.subscriptions}
    found: list[Discrepancy] = []
    found += _deals(book, subs)
    found += _invoices(book, subs)
    found += _payments(book)
    found += _crm_fields(book)
    found += _links(book)
    order = {Severity.HIGH: 0, Severity.MEDIUM: 1, Severity.LOW: 2}
    return sorted(found, key=lambda d: (order[d.severity], d.kind.value, d.id))


def _deals(book: Book, subs: dict[str, Sub]) -> list[Discrepancy]:
    found = []
    for deal in book.deals:
        opp = f"crm:opportunity:{deal.opportunity_id}"
        sub = subs.get(deal.subscription_id or "")
        if sub is None or sub.status not in LIVE:
            found.append(
                _d(
                    Kind.DEAL_WITHOUT_SUBSCRIPTION,
                    Severity.HIGH,
                    [opp],
                    {"subscription": deal.subscription_id or "none", "status": sub and sub.status},
                    Fix(
                        summary="run quote-to-cash for the deal",
                        system="billing",
                        approver_role=REVOPS,
                    ),
                )
            )
            continue
        want, have = _lines_key(deal.lines), _lines_key(sub.lines)
        for product in sorted(set(want) | set(have)):
            if want.get(product) == have.get(product):
                continue
            found.append(
                _d(
                    Kind.SUBSCRIPTION_MISMATCH,
                    Severity.HIGH,
                    [opp, f"billing:subscription:{sub.id}"],
                    {
                        "product": product,
                        "deal (qty, price, discount)": want.get(product, "absent"),
                        "subscription (qty, price, discount)": have.get(product, "absent"),
                    },
                    Fix(
                        summary=f"align {product} on the subscription with the deal",
                        system="billing",
                        approver_role=REVOPS,
                    ),
                    detail=product,
                )
            )
    return found


def _invoices(book: Book, subs: dict[str, Sub]) -> list[Discrepancy]:
    found = []
    for inv in book.invoices:
        sub = subs.get(inv.subscription_id or "")
        if sub is None:
            continue
        products = {ln.product for ln in sub.lines}
        for ln in inv.lines:
            if ln.product in products:
                continue
            found.append(
                _d(
                    Kind.INVOICE_LINE_UNMATCHED,
                    Severity.HIGH,
                    [f"billing:invoice:{inv.id}", f"billing:subscription:{sub.id}"],
                    {"product": ln.product, "amount": ln.unit_price * ln.quantity},
                    Fix(
                        summary="credit or justify the line",
                        system="billing",
                        approver_role=FINANCE,
                    ),
                    detail=ln.product,
                )
            )
    return found


def _payments(book: Book) -> list[Discrepancy]:
    found = []
    applied_to: dict[str, int] = {}
    for pay in book.payments:
        for invoice_id, amount in pay.applied.items():
            applied_to[invoice_id] = applied_to.get(invoice_id, 0) + amount
        left = pay.amount - sum(pay.applied.values())
        if left > 0:
            found.append(
                _d(
                    Kind.UNAPPLIED_PAYMENT,
                    Severity.HIGH,
                    [f"billing:payment:{pay.id}"],
                    {"amount": pay.amount, "unapplied": left},
                    Fix(
                        summary="apply it to an open invoice or refund it",
                        system="billing",
                        approver_role=FINANCE,
                    ),
                )
            )
    for inv in book.invoices:
        if inv.status == "void":
            continue
        paid = applied_to.get(inv.id, 0)
        rec = [f"billing:invoice:{inv.id}"]
        ev = {"total": inv.total, "applied": paid, "status": inv.status}
        if inv.status == "paid" and paid == 0 and inv.total > 0:
            found.append(
                _d(
                    Kind.PAID_WITHOUT_PAYMENT,
                    Severity.HIGH,
                    rec,
                    ev,
                    Fix(
                        summary="find the payment or reopen the invoice",
                        system="billing",
                        approver_role=FINANCE,
                    ),
                )
            )
        elif paid > inv.total:
            found.append(
                _d(
                    Kind.OVERPAYMENT,
                    Severity.HIGH,
                    rec,
                    ev,
                    Fix(
                        summary="refund or credit the excess",
                        system="billing",
                        approver_role=FINANCE,
                    ),
                )
            )
        elif inv.status == "paid" and 0 < paid < inv.total:
            found.append(
                _d(
                    Kind.UNDERPAYMENT,
                    Severity.HIGH,
                    rec,
                    ev,
                    Fix(
                        summary="collect the rest or write it off",
                        system="billing",
                        approver_role=FINANCE,
                    ),
                )
            )
    return found


def _crm_fields(book: Book) -> list[Discrepancy]:
    """What the golden record would write: a billing-owned CRM field that drifted is restored
    (housekeeping: policy may allow it without a person)."""
    found = []
    live = {}
    for sub in book.subscriptions:
        if sub.status in LIVE:
            live.setdefault(sub.customer_id, []).append(sub)
    for acc in book.accounts:
        subs = live.get(acc.billing_customer_id or "")
        if not subs:
            continue
        main = _main(subs)
        truth = {
            "mrr": sum(s.mrr for s in subs),
            "status": subs[0].status if len(subs) == 1 else "active",
            "plan": main.plan if main else None,
            "renewal": main.renewal if main else None,
        }
        held = {"mrr": acc.mrr, "status": acc.status, "plan": acc.plan, "renewal": acc.renewal}
        for name in ("mrr", "status", "plan", "renewal"):
            if name not in acc.holds or truth[name] is None or held[name] == truth[name]:
                continue
            if name in WRITTEN_BY_SYNC and held[name] is None:
                continue  # not written yet: the account sync fills it, nothing contradicts billing
            found.append(
                _d(
                    Kind.CRM_FIELD_DRIFT,
                    Severity.LOW,
                    [f"crm:account:{acc.id}"],
                    {"field": name, "crm": held[name], "billing": truth[name]},
                    Fix(summary=f"restore {name} from billing", system="crm"),
                    detail=name,
                )
            )
    return found


#: account fields the account sync writes (issue 19): compared where the CRM holds a value (an
#: empty one is an account the sync has not written yet — it says nothing billing disagrees with)
WRITTEN_BY_SYNC = ("plan", "renewal")


def _main(subs: list[Sub]) -> Sub | None:
    """The subscription whose plan and renewal date the golden record writes on the account:
    the live one with the highest MRR (the account sync's choice, ``connectors/sync/*``). Two
    live subscriptions tied on the highest MRR that disagree on plan or renewal leave both
    fields unchecked (either could be the one written; no false drift)."""
    top = max(s.mrr for s in subs)
    tied = [s for s in subs if s.mrr == top]
    if len({(s.plan, s.renewal) for s in tied}) > 1:
        return None
    return tied[0]


def _links(book: Book) -> list[Discrepancy]:
    found = []
    linked = {a.billing_customer_id for a in book.accounts if a.billing_customer_id}
    for c in book.customers:
        if c.active and not c.crm_account_id and c.id not in linked:
            found.append(
                _d(
                    Kind.CUSTOMER_WITHOUT_ACCOUNT,
                    Severity.MEDIUM,
                    [f"billing:customer:{c.id}"],
                    {"crm_account": "none"},
                    Fix(
                        summary="link it (revbridge link) or create the account",
                        system="crm",
                        approver_role=REVOPS,
                    ),
                )
            )
    customers = {c.id for c in book.customers}
    for acc in book.accounts:
        if acc.is_customer and (acc.billing_customer_id or "") not in customers:
            found.append(
                _d(
                    Kind.ACCOUNT_WITHOUT_CUSTOMER,
                    Severity.MEDIUM,
                    [f"crm:account:{acc.id}"],
                    {"billing_customer": acc.billing_customer_id or "none"},
                    Fix(
                        summary="link the billing customer or clear the customer flag",
                        system="crm",
                        approver_role=REVOPS,
                    ),
                )
            )
    return found


# --- exceptions across runs: one per discrepancy, with its age -------------------------------


class OpenException(Frozen):
    discrepancy: Discrepancy
    first_seen: date
    last_seen: date

    def age_days(self, today: date) -> int:
        return (today - self.first_seen).days


class Tracked(Frozen):
    open: list[OpenException]
    new: list[str]
    resolved: list[str]


def track(previous: list[OpenException], found: list[Discrepancy], today: date) -> Tracked:
    """Today's findings against the open exceptions: one exception per stable ID (keeping its
    first-seen day), new ones marked, those no longer found resolved (closed automatically)."""
    return track_seen({e.discrepancy.id: e.first_seen for e in previous}, found, today)


def track_seen(previous: dict[str, date], found: list[Discrepancy], today: date) -> Tracked:
    """:func:`track` from what the CRM keeps of the open exceptions: their stable IDs and the
    day each was first seen (the daily run reads them back instead of carrying them)."""
    seen: dict[str, OpenException] = {}
    for d in found:
        if d.id in seen:
            continue
        seen[d.id] = OpenException(
            discrepancy=d, first_seen=previous.get(d.id, today), last_seen=today
        )
    return Tracked(
        open=list(seen.values()),
        new=[i for i in seen if i not in previous],
        resolved=sorted(i for i in previous if i not in seen),
    )


# --- who a discrepancy is about, and the action an approver is asked for ----------------------


class Finding(Frozen):
    """A discrepancy with the CRM account and billing customer it belongs to (where the book
    knows them): the CRM record is filed on the account, the audit note on the customer."""

    discrepancy: Discrepancy
    account_id: str | None = None
    customer_id: str | None = None


def attribute(book: Book, found: list[Discrepancy]) -> list[Finding]:
    """Each discrepancy's account and customer, from the records it names and the book's links
    (an account's billing customer ID, a customer's CRM account ID)."""
    acc_of_customer = {a.billing_customer_id: a.id for a in book.accounts if a.billing_customer_id}
    for c in book.customers:
        if c.crm_account_id:
            acc_of_customer.setdefault(c.id, c.crm_account_id)
    cust_of_account = {v: k for k, v in acc_of_customer.items()}
    owner: dict[str, str] = {}  # billing record → customer
    for s in book.subscriptions:
        owner[f"billing:subscription:{s.id}"] = s.customer_id
    for i in book.invoices:
        owner[f"billing:invoice:{i.id}"] = i.customer_id
    for p in book.payments:
        owner[f"billing:payment:{p.id}"] = p.customer_id
    for c in book.customers:
        owner[f"billing:customer:{c.id}"] = c.id
    acc_of_deal = {f"crm:opportunity:{d.opportunity_id}": d.account_id for d in book.deals}
    out = []
    for d in found:
        account = customer = None
        for rec in d.records:
            if rec.startswith("crm:account:"):
                account = account or rec.removeprefix("crm:account:")
            elif rec in acc_of_deal:
                account = account or acc_of_deal[rec]
            elif rec in owner:
                customer = customer or owner[rec]
        account = account or acc_of_customer.get(customer or "")
        customer = customer or cust_of_account.get(account or "")
        out.append(Finding(discrepancy=d, account_id=account, customer_id=customer))
    return out


#: the policy action (domain/policy.ActionKind value) each kind of fix is asked as: its approvers
#: come from policies/approvers.yaml (refund, apply_credit → finance; the rest → RevOps)
FIX_ACTION: dict[Kind, str] = {
    Kind.DEAL_WITHOUT_SUBSCRIPTION: "create_subscription",
    Kind.SUBSCRIPTION_MISMATCH: "change_plan",
    Kind.INVOICE_LINE_UNMATCHED: "apply_credit",
    Kind.PAID_WITHOUT_PAYMENT: "refund",
    Kind.UNAPPLIED_PAYMENT: "refund",
    Kind.OVERPAYMENT: "refund",
    Kind.UNDERPAYMENT: "apply_credit",
    Kind.CRM_FIELD_DRIFT: "update_crm_field",
    Kind.CUSTOMER_WITHOUT_ACCOUNT: "create_customer",
    Kind.ACCOUNT_WITHOUT_CUSTOMER: "create_customer",
}


def money(d: Discrepancy) -> int:
    """The amount at stake in minor units (0 when the evidence names none)."""
    for key in ("unapplied", "amount"):
        if d.evidence.get(key, "").lstrip("-").isdigit():
            return abs(int(d.evidence[key]))
    total, applied = d.evidence.get("total", ""), d.evidence.get("applied", "")
    if total.isdigit() and applied.isdigit():
        return abs(int(total) - int(applied)) or int(total)
    return 0


# --- what the CRM keeps of an exception ------------------------------------------------------


class ExceptionStatus(StrEnum):
    OPEN = "Open"
    WAITING = "Waiting for approval"
    APPROVED = "Approved"
    REJECTED = "Rejected"
    CLOSED = "Closed"


class ExceptionRecord(Frozen):
    """One exception as the CRM holds it (Salesforce ``Billing_Exception__c``), upserted by its
    stable ID: writing the same record twice leaves one."""

    id: str
    kind: Kind
    severity: Severity
    status: ExceptionStatus
    account_id: str | None = None
    customer_id: str | None = None
    records: list[str] = []
    evidence: dict[str, str] = {}
    fix: str = ""
    approver_role: str | None = None
    first_seen: date
    last_seen: date
    resolved_on: date | None = None
    resolution: str = ""

    @property
    def evidence_text(self) -> str:
        return "\n".join(f"{k}: {v}" for k, v in self.evidence.items())


class FieldRestore(Frozen):
    """A billing-owned CRM field put back to what billing says (``value`` as billing holds it:
    MRR in minor units, status text)."""

    account_id: str
    field: str  # mrr | status | plan | renewal
    value: str


class StoredException(Frozen):
    """What a run reads back: enough to age the open ones and chart the last weeks."""

    id: str
    status: ExceptionStatus
    first_seen: date
    resolved_on: date | None = None
    kind: str = ""
    severity: str = ""


def record_of(
    finding: Finding, first_seen: date, today: date, status: ExceptionStatus
) -> ExceptionRecord:
    d = finding.discrepancy
    return ExceptionRecord(
        id=d.id,
        kind=d.kind,
        severity=d.severity,
        status=status,
        account_id=finding.account_id,
        customer_id=finding.customer_id,
        records=d.records,
        evidence=d.evidence,
        fix=d.fix.summary,
        approver_role=d.fix.approver_role,
        first_seen=first_seen,
        last_seen=today,
    )


def open_over_time(stored: list[StoredException], days: list[date]) -> list[int]:
    """How many exceptions were open at the end of each day (for the report's chart)."""
    return [
        sum(1 for e in stored if e.first_seen <= d and (e.resolved_on is None or e.resolved_on > d))
        for d in days
    ]


# --- the workflows' inputs and results ---------------------------------------------------------

WORKFLOW_TYPE = "ReconciliationWorkflow"
FIX_WORKFLOW_TYPE = "ReconciliationFixWorkflow"
SCHEDULE_ID = "reconciliation-daily"
#: the schedule appends the scheduled time: one workflow ID per day's run
WORKFLOW_ID = "reconcile"


def fix_workflow_id(crm: str, exception_id: str) -> str:
    """One approval per exception, ever: its stable ID names the fix workflow (no PII)."""
    return f"recon-fix:{crm}:{exception_id}"


class ReconcileInput(Frozen):
    #: the run's day (default: the workflow clock's UTC date); tests and back-fills set it
    today: date | None = None
    since: date | None = None
    #: read, check and report; write nothing to either system
    dry_run: bool = False
    #: how long an approver has for a money or contract fix (reminder, expiry)
    remind_after_h: int = 24
    expire_after_h: int = 24 * 14


class ReconcileResult(Frozen):
    today: date | None = None
    dry_run: bool = False
    found: int = 0
    #: found beyond one run's bound (activities/reconcile.MAX_FINDINGS): filed on later runs
    not_filed: int = 0
    open: int = 0
    new: int = 0
    resolved: int = 0
    auto_fixed: int = 0
    sent_for_approval: int = 0
    by_kind: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    written: int = 0
    write_failures: dict[str, str] = {}
    report_html: str | None = None
    report_csv: str | None = None
    scan_seconds: float = 0
    counts: dict[str, int] = {}
    #: what policy said about the run's writes (observe mode: blocked)
    writes: str = ""


class FixInput(Frozen):
    record: ExceptionRecord
    remind_after_h: int = 24
    expire_after_h: int = 24 * 14


class FixResult(Frozen):
    exception_id: str
    status: str  # executed | rejected | expired | blocked | superseded
    approver: str | None = None
