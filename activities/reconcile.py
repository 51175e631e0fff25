"""The daily reconciliation's activities (issue 20).

``reconcile_scan`` reads both systems in bulk (``connectors/reconcile``), runs the checks
(``domain/reconcile.py``) and hands back only the findings, the exceptions the CRM keeps and a
few counts — a 10,000-customer book never crosses Temporal, its discrepancies do. The writes
(``@writes``, reached only through the gate) are field sets keyed by stable IDs: exceptions
upserted by their ``Exception_Id__c``, billing-owned fields restored to billing's value, so a
retry after a committed-then-timed-out request leaves one record. ``reconcile_write_report``
writes the run's self-contained HTML page (inline SVG chart, no script, no CDN) and its CSV to
the configured directory (``REVBRIDGE_REPORT_DIR``).
"""

from __future__ import annotations

import csv
import html
import io
import os
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity

from activities.errors import vendor_errors
from activities.writes import writes
from connectors.base import BillingPlatform, CrmSystem
from connectors.reconcile import billing_reader, crm_reader
from domain import reconcile as rx
from domain.models import Frozen
from domain.quote import ProductMapping

#: where reports go unless REVBRIDGE_REPORT_DIR says otherwise (relative to the worker's cwd:
#: beside the local stack's state, never in a checkout)
DEFAULT_REPORT_DIR = ".revbridge/reports/reconciliation"
#: how far back the report's chart looks
HISTORY_DAYS = 30
#: findings one run files (most severe first): keeps every payload well under Temporal's 2 MB
MAX_FINDINGS = 1_000


def report_dir_from_env(env: Any = os.environ) -> Path:
    return Path(env.get("REVBRIDGE_REPORT_DIR") or DEFAULT_REPORT_DIR)


# --- inputs and outputs ----------------------------------------------------------------------------


class ScanInput(Frozen):
    today: date
    #: only deals closed, invoices and payments dated on or after it (None: the whole book)
    since: date | None = None


class ScanResult(Frozen):
    findings: list[rx.Finding] = []
    #: what the CRM keeps: open exceptions and those closed in the last HISTORY_DAYS days
    stored: list[rx.StoredException] = []
    counts: dict[str, int] = {}
    #: record type → URL template with ``{id}`` (the report's links)
    urls: dict[str, str] = {}
    billing: str = ""
    crm: str = ""
    seconds: float = 0
    #: findings beyond MAX_FINDINGS (left for the next runs), and those of them already filed
    not_shown: int = 0
    still_open: list[str] = []


class UpsertExceptionsInput(Frozen):
    records: list[rx.ExceptionRecord]


class RestoreFieldsInput(Frozen):
    fixes: list[rx.FieldRestore]


class WriteSummary(Frozen):
    written: int = 0
    #: record or account ID → the vendor's error code
    failed: dict[str, str] = {}


class ReportInput(Frozen):
    run_id: str
    today: date
    billing: str
    crm: str
    open: list[rx.ExceptionRecord] = []
    resolved: list[rx.ExceptionRecord] = []
    auto_fixed: list[str] = []
    stored: list[rx.StoredException] = []
    counts: dict[str, int] = {}
    urls: dict[str, str] = {}
    dry_run: bool = False


class ReportPaths(Frozen):
    html: str
    csv: str


# --- the activities --------------------------------------------------------------------------------


class ReconcileActivities:
    def __init__(
        self,
        billing: BillingPlatform,
        crm: CrmSystem,
        mapping_path: Path,
        report_dir: Path | None = None,
    ) -> None:
        self.billing = billing
        self.crm = crm
        self.mapping_path = Path(mapping_path)
        self.report_dir = report_dir or report_dir_from_env()

    def methods(self) -> list[Any]:
        return [
            self.reconcile_scan,
            self.reconcile_upsert_exceptions,
            self.reconcile_restore_fields,
            self.reconcile_write_report,
        ]

    def _product_of(self) -> dict[str, str]:
        """Billing price → CRM product code, from policies/products.yaml."""
        mapping = ProductMapping.parse(self.mapping_path.read_text(encoding="utf-8"))
        out: dict[str, str] = {}
        for code, refs in mapping.products.items():
            ref = refs.get(self.billing.name)
            if ref:
                out[ref] = code
        return out

    @activity.defn(name="reconcile_scan")
    @vendor_errors
    def reconcile_scan(self, input: ScanInput) -> ScanResult:
        started = time.monotonic()
        books, crm = billing_reader(self.billing), crm_reader(self.crm)
        _beat("billing")
        billing = books.read_billing(input.since, self._product_of())
        _beat("crm")
        side = crm.read_crm(self.billing.name, input.since)
        stored = crm.stored_exceptions(input.today - timedelta(days=HISTORY_DAYS))
        book = rx.Book(
            deals=side.deals,
            accounts=side.accounts,
            subscriptions=billing.subscriptions,
            invoices=billing.invoices,
            payments=billing.payments,
            customers=billing.customers,
        )
        _beat("check")
        found = rx.check(book)  # most severe first
        # what crosses Temporal stays bounded however far apart the books are: the rest waits
        # for the next runs (and the exceptions already filed among it stay open meanwhile)
        shown, rest = found[:MAX_FINDINGS], found[MAX_FINDINGS:]
        open_before = {s.id for s in stored if s.status is not rx.ExceptionStatus.CLOSED}
        return ScanResult(
            findings=rx.attribute(book, shown),
            stored=stored,
            not_shown=len(rest),
            still_open=[d.id for d in rest if d.id in open_before],
            counts={
                "customers": len(book.customers),
                "subscriptions": len(book.subscriptions),
                "invoices": len(book.invoices),
                "payments": len(book.payments),
                "deals": len(book.deals),
                "accounts": len(book.accounts),
            },
            urls={**books.urls(), **crm.urls()},
            billing=self.billing.name,
            crm=crm.name,
            seconds=round(time.monotonic() - started, 3),
        )

    @writes
    @activity.defn(name="reconcile_upsert_exceptions")
    @vendor_errors
    def reconcile_upsert_exceptions(self, input: UpsertExceptionsInput) -> WriteSummary:
        failed = crm_reader(self.crm).upsert_exceptions(input.records)
        return WriteSummary(written=len(input.records) - len(failed), failed=failed)

    @writes
    @activity.defn(name="reconcile_restore_fields")
    @vendor_errors
    def reconcile_restore_fields(self, input: RestoreFieldsInput) -> WriteSummary:
        failed = crm_reader(self.crm).restore_fields(input.fixes)
        accounts = {f.account_id for f in input.fixes}
        return WriteSummary(written=len(accounts) - len(failed), failed=failed)

    @activity.defn(name="reconcile_write_report")
    def reconcile_write_report(self, input: ReportInput) -> ReportPaths:
        """The run's HTML page and CSV (a local file, not a vendor write: dry runs write it too).
        Named by the run, so a retry rewrites the same two files."""
        folder = self.report_dir
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"reconciliation-{input.today.isoformat()}-{_safe(input.run_id)}"
        page, table = folder / f"{stem}.html", folder / f"{stem}.csv"
        _atomic(table, render_csv(input.open))
        _atomic(page, render_html(input, csv_name=table.name))
        _atomic(folder / "latest.html", render_html(input, csv_name=table.name))
        return ReportPaths(html=str(page.resolve()), csv=str(table.resolve()))


def _beat(detail: str) -> None:
    if activity.in_activity():
        activity.heartbeat(detail)


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)[-60:]


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# --- the report: pure rendering ---------------------------------------------------------------------

CSV_FIELDS = [
    "exception_id", "kind", "severity", "status", "age_days", "first_seen", "account_id",
    "customer_id", "records", "evidence", "proposed_fix", "approver_role",
]  # fmt: skip
AGE_BUCKETS = (("0 days", 0, 0), ("1-7 days", 1, 7), ("8-30 days", 8, 30), ("over 30", 31, None))


def render_csv(records: list[rx.ExceptionRecord]) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CSV_FIELDS)
    for r in records:
        w.writerow(
            [
                r.id,
                r.kind.value,
                r.severity.value,
                r.status.value,
                (r.last_seen - r.first_seen).days,
                r.first_seen.isoformat(),
                r.account_id or "",
                r.customer_id or "",
                " ".join(r.records),
                "; ".join(f"{k}={v}" for k, v in r.evidence.items()),
                r.fix,
                r.approver_role or "",
            ]  # fmt: skip
        )
    return out.getvalue()


def aging(records: list[rx.ExceptionRecord]) -> dict[str, int]:
    out = {}
    for name, lo, hi in AGE_BUCKETS:
        out[name] = sum(
            1
            for r in records
            if (r.last_seen - r.first_seen).days >= lo
            and (hi is None or (r.last_seen - r.first_seen).days <= hi)
        )
    return out


def history(input: ReportInput) -> list[tuple[date, int]]:
    """Open exceptions at the end of each of the last HISTORY_DAYS days, today's from this run."""
    days = [input.today - timedelta(days=n) for n in range(HISTORY_DAYS - 1, -1, -1)]
    today = {r.id for r in input.open}
    stored = [s for s in input.stored if s.id not in today] + [
        rx.StoredException(id=r.id, status=r.status, first_seen=r.first_seen) for r in input.open
    ]
    counts = rx.open_over_time(stored, days)
    return list(zip(days, counts, strict=True))


def chart_svg(points: list[tuple[date, int]], width: int = 720, height: int = 220) -> str:
    """Open exceptions per day as an inline SVG bar chart (no script, no external file)."""
    pad_l, pad_b, pad_t = 40, 30, 20
    top = max([n for _, n in points] + [1])
    slot = (width - pad_l - 10) / max(len(points), 1)
    h = height - pad_b - pad_t
    parts = [
        f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Open exceptions per day">',
        f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{width - 5}" y2="{pad_t + h}" stroke="#555"/>',
        f'<text x="5" y="{pad_t + 5}" font-size="11">{top}</text>',
        f'<text x="5" y="{pad_t + h}" font-size="11">0</text>',
    ]
    for i, (day, n) in enumerate(points):
        bh = 0 if top == 0 else h * n / top
        x = pad_l + i * slot + 1
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{pad_t + h - bh:.1f}" width="{max(slot - 2, 1):.1f}"'
            f' height="{bh:.1f}" fill="#c0392b"><title>{day.isoformat()}: {n} open</title></rect>'
        )
        if (len(points) - 1 - i) % 7 == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 10}" font-size="10">{day:%m-%d}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _link(record: str, urls: dict[str, str]) -> str:
    """``crm:opportunity:006…`` → a link to the record in its system (text when no template)."""
    _, kind, rid = (record.split(":", 2) + ["", ""])[:3]
    template = urls.get(kind)
    label = html.escape(record)
    if not template:
        return label
    return f'<a href="{html.escape(template.replace("{id}", rid))}">{label}</a>'


def render_html(input: ReportInput, csv_name: str = "") -> str:
    e = html.escape
    by = {}
    for r in input.open:
        by[(r.kind.value, r.severity.value)] = by.get((r.kind.value, r.severity.value), 0) + 1
    kinds = sorted({k for k, _ in by})
    sevs = [s.value for s in (rx.Severity.HIGH, rx.Severity.MEDIUM, rx.Severity.LOW)]
    summary_rows = "".join(
        f"<tr><td>{e(k)}</td>"
        + "".join(f"<td>{by.get((k, s), 0)}</td>" for s in sevs)
        + f"<td>{sum(by.get((k, s), 0) for s in sevs)}</td></tr>"
        for k in kinds
    )
    ages = aging(input.open)
    rows = "".join(
        "<tr>"
        f"<td><code>{e(r.id)}</code></td><td>{e(r.kind.value)}</td>"
        f'<td class="sev-{e(r.severity.value)}">{e(r.severity.value)}</td>'
        f"<td>{e(r.status.value)}</td><td>{(r.last_seen - r.first_seen).days}</td>"
        f"<td>{'<br>'.join(_link(x, input.urls) for x in r.records)}"
        + (
            f"<br>{_link('crm:account:' + r.account_id, input.urls)}"
            if r.account_id and f"crm:account:{r.account_id}" not in r.records
            else ""
        )
        + (
            f"<br>{_link('billing:customer:' + r.customer_id, input.urls)}"
            if r.customer_id and f"billing:customer:{r.customer_id}" not in r.records
            else ""
        )
        + "</td>"
        f"<td>{'<br>'.join(e(f'{k}: {v}') for k, v in r.evidence.items())}</td>"
        f"<td>{e(r.fix)}</td><td>{e(r.approver_role or 'auto (policy)')}</td>"
        "</tr>"
        for r in sorted(input.open, key=lambda r: (r.first_seen, r.id))
    )
    counts = ", ".join(f"{v} {k}" for k, v in input.counts.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Reconciliation {input.today.isoformat()} ({e(input.billing)} / {e(input.crm)})</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top;
  font-size: 13px; }}
th {{ background: #f3f3f3; }}
.sev-high {{ color: #b00; font-weight: bold; }} .sev-medium {{ color: #b60; }}
.numbers span {{ display: inline-block; margin-right: 2em; font-size: 15px; }}
</style></head><body>
<h1>Billing &harr; CRM reconciliation, {input.today.isoformat()}</h1>
<p>{e(input.billing)} &times; {e(input.crm)}; run <code>{e(input.run_id)}</code>
{"(dry run: nothing written)" if input.dry_run else ""}. Read: {e(counts)}.</p>
<p class="numbers"><span id="open-count"><b>{len(input.open)}</b> open</span>
<span><b>{sum(1 for r in input.open if r.first_seen == input.today)}</b> new today</span>
<span><b>{len(input.resolved)}</b> resolved today</span>
<span><b>{len(input.auto_fixed)}</b> fixed automatically</span></p>
<h2>Open exceptions by kind and severity</h2>
<table id="summary"><tr><th>kind</th>{"".join(f"<th>{s}</th>" for s in sevs)}<th>total</th></tr>
{summary_rows}</table>
<h2>Aging</h2>
<table id="aging"><tr>{"".join(f"<th>{e(k)}</th>" for k in ages)}</tr>
<tr>{"".join(f"<td>{v}</td>" for v in ages.values())}</tr></table>
<h2>Open exceptions over the last {HISTORY_DAYS} days</h2>
{chart_svg(history(input))}
<h2>Open exceptions</h2>
{f'<p><a href="{e(csv_name)}">CSV</a></p>' if csv_name else ""}
<table id="exceptions"><tr><th>ID</th><th>kind</th><th>severity</th><th>status</th>
<th>age (days)</th><th>records</th><th>evidence</th><th>proposed fix</th><th>approver</th></tr>
{rows}</table>
</body></html>
"""
