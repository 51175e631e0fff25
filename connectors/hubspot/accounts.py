"""Companies and tickets: accounts found by their billing customer, cases opened once per key,
owner tasks, case notes, and the churn scores written onto companies (one by one, or a page in
a batch update)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hubspot.crm.companies import BatchInputSimplePublicObjectBatchInput as CompanyBatchUpdate
from hubspot.crm.companies import BatchReadInputSimplePublicObjectId as CompanyBatchRead
from hubspot.crm.companies import SimplePublicObjectBatchInput as CompanyBatchInput
from hubspot.crm.companies import SimplePublicObjectInput as CompanyUpdate
from hubspot.crm.tickets import BatchReadInputSimplePublicObjectId as TicketBatchRead
from hubspot.crm.tickets import SimplePublicObjectInputForCreate as TicketCreate

from connectors.hubspot.engagements import Engagements
from connectors.hubspot.values import (
    _BATCH,
    _COMPANY_PROPERTIES,
    _PRIORITY,
    _TICKET_PROPERTIES,
    KEY_PROPERTY,
    NOTE_TO_COMPANY,
    NOTE_TO_TICKET,
    TASK_TO_COMPANY,
    TICKET_STAGES,
    TICKET_TO_COMPANY,
    _account,
    _assoc,
    _assoc_ids,
    _churn_properties,
    _datetime,
    _epoch_ms,
    _scored_account,
    fit_text,
    note_html,
)
from domain.audit import AuditEntry
from domain.models import (
    CaseDraft,
    CaseRef,
    CaseSummary,
    CrmAccount,
    TaskDraft,
)
from domain.records import (
    CaseDetail,
    ChurnScoreRecord,
)


class Accounts(Engagements):
    """Companies as accounts, tickets as cases (with their audit notes), owner tasks, and the
    churn score fields: dunning, churn and support context."""

    def _company_by_customer(
        self, billing: str, customer_id: str, associations: list[str] | None = None
    ) -> Any | None:
        """The company whose unique ``billing_customer_id`` is ``customer_id`` — a read by unique
        value (one GET, consistent at once), not a search (its index lags, and it is limited to
        a few requests per second) — if it is linked to ``billing``."""
        company = self._by_unique(
            self._companies,
            "billing_customer_id",
            customer_id,
            _COMPANY_PROPERTIES,
            "company",
            associations,
        )
        if company is None or (company.properties or {}).get("billing_platform") != billing:
            return None
        return company

    def find_account(self, billing: str, customer_id: str) -> CrmAccount | None:
        company = self._company_by_customer(billing, customer_id)
        return _account(company) if company is not None else None

    def _cases(self, ticket_ids: list[str], limit: int) -> list[CaseSummary]:
        """Open tickets among ``ticket_ids``, newest first: one batch read per 100."""
        rows = self._batch_read(
            self._ticket_batches, TicketBatchRead, ticket_ids, _TICKET_PROPERTIES, "tickets"
        )
        out = []
        for ticket in rows:
            props = ticket.properties or {}
            if props.get("hs_pipeline_stage") == "4":  # the default pipeline's "Closed"
                continue
            out.append(
                CaseSummary(
                    id=str(ticket.id),
                    subject=props.get("subject") or "",
                    description=props.get("content") or "",
                    opened_at=_datetime(props.get("createdate")) or ticket.created_at,
                )
            )
        out.sort(key=lambda c: (c.opened_at, len(c.id), c.id), reverse=True)
        return out[:limit]

    def open_cases(self, account_id: str, limit: int = 5) -> list[CaseSummary]:
        """Two requests: the company's tickets (v4 associations), then one batch read of them."""
        ticket_ids = self._associated_ids("companies", str(account_id), "tickets")
        return self._cases(ticket_ids, limit) if ticket_ids else []

    def find_account_with_cases(
        self, billing: str, customer_id: str, limit: int = 5
    ) -> tuple[CrmAccount | None, list[CaseSummary]]:
        """One request when the account has no tickets, two when it has: the company read by its
        unique ``billing_customer_id`` with its ticket associations (a v3 read carries them), then
        one batch read of those tickets. HubSpot has no join of a record with its associated
        records' properties, so two is the floor with tickets."""
        company = self._company_by_customer(billing, customer_id, associations=["tickets"])
        if company is None:
            return None, []
        ticket_ids = _assoc_ids(company.associations, ["tickets"])
        return _account(company), (self._cases(ticket_ids, limit) if ticket_ids else [])

    def upsert_case(self, draft: CaseDraft, audit: AuditEntry | None = None) -> CaseRef:
        """The ticket (unique ``revbridge_key``), then — with ``audit`` — its audit note: two
        requests, since HubSpot has no composite API that creates two object types at once.
        A new ticket has no notes, so its audit note is created without a look-up; a ticket
        found by its key comes back from that read with its note associations, so a retry
        finds the note an earlier attempt wrote (one batch read) before writing one."""
        properties = {
            "subject": draft.subject,
            "content": fit_text(draft.description),
            "hs_ticket_priority": _PRIORITY[draft.priority],
            "hs_pipeline": "0",  # the default support pipeline
            "hs_pipeline_stage": "1",  # New
        }
        associations = [_assoc(draft.account_id, TICKET_TO_COMPANY)] if draft.account_id else []
        ticket, created = self._create_once(
            self._tickets,
            TicketCreate,
            draft.key,
            properties,
            associations,
            ["subject", KEY_PROPERTY],
            what="ticket",
            read_associations=["notes"] if audit is not None else None,
        )
        if audit is not None:
            entry = audit if audit.case_id else audit.model_copy(update={"case_id": str(ticket.id)})
            self._write_audit(
                entry,
                known_ids=None if created else _assoc_ids(ticket.associations, ["notes"]),
                anchor_is_new=created,
            )
        return CaseRef(id=ticket.id, number=ticket.id, created=created)

    def upsert_task(self, draft: TaskDraft, audit: AuditEntry | None = None) -> str:
        """The task once per ``draft.key`` (looked up through its company), then — with
        ``audit`` — its audit note. HubSpot has no request that creates two object types, so
        this is two creates; but a task this call created cannot have an audit note from an
        earlier attempt (that attempt never got past the task), so the note's look-up is
        skipped then."""
        properties = {
            "hs_task_subject": draft.subject,
            "hs_task_body": note_html(draft.description),
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH" if draft.high_priority else "MEDIUM",
            "hs_timestamp": _epoch_ms(draft.due or datetime.now(UTC)),
        }
        if draft.owner_id:
            properties["hubspot_owner_id"] = draft.owner_id  # the company owner
        associations = [_assoc(draft.account_id, TASK_TO_COMPANY)] if draft.account_id else []
        anchor = ("companies", draft.account_id) if draft.account_id else None
        task_id, created = self._engagement_once(
            "tasks", draft.key, properties, associations, anchor
        )
        if audit is not None:
            self._write_audit(audit, anchor_is_new=created)
        return task_id

    def get_account(self, account_id: str) -> CrmAccount:
        company = self._call(
            self._companies.get_by_id, account_id, properties=_COMPANY_PROPERTIES, what="company"
        )
        return _account(company)

    def write_churn_score(self, record: ChurnScoreRecord) -> None:
        self._call(
            self._companies.update,
            record.account_id,
            CompanyUpdate(properties=_churn_properties(record)),
            what="company",
        )

    def write_churn_scores(self, records: list[ChurnScoreRecord]) -> dict[str, str]:
        """A page of scores in one batch update per 100 companies (the sweep's one write per
        page). Each input carries its company ID as ``objectWriteTraceId``, so a company HubSpot
        refuses (gone, or a bad value) is reported on its own in a 207 and the others are
        written. Field sets: a retry is idempotent. Returns the companies that failed, with
        HubSpot's error category."""
        failed: dict[str, str] = {}
        for start in range(0, len(records), _BATCH):
            chunk = records[start : start + _BATCH]
            body = CompanyBatchUpdate(
                inputs=[
                    CompanyBatchInput(
                        id=r.account_id,
                        object_write_trace_id=r.account_id,
                        properties=_churn_properties(r),
                    )
                    for r in chunk
                ]
            )
            result = self._call(self._company_batches.update, body, what="churn scores")
            for error in getattr(result, "errors", None) or []:
                context = error.context or {}
                category = str(error.category or "UNKNOWN")
                for account in [*context.get("objectWriteTraceId", []), *context.get("ids", [])]:
                    failed[str(account)] = category
        return failed

    def find_accounts_with_cases(
        self, billing: str, customer_ids: list[str], limit: int = 5
    ) -> dict[str, tuple[CrmAccount, list[CaseSummary]]]:
        """A page of customers at once (the churn sweep), keyed by billing customer ID; customers
        with no company are absent. Per 100 customers: one batch read of companies by their
        unique ``billing_customer_id``, one v4 batch read of their tickets, and one batch read
        per 100 of those tickets — three requests where one customer at a time took two."""
        out: dict[str, tuple[CrmAccount, list[CaseSummary]]] = {}
        ids = list(dict.fromkeys(customer_ids))
        for start in range(0, len(ids), _BATCH):
            body = CompanyBatchRead(
                inputs=[{"id": c} for c in ids[start : start + _BATCH]],
                properties=[*_COMPANY_PROPERTIES, "churn_risk", "churn_level"],
                id_property="billing_customer_id",
            )
            page = self._call(self._company_batches.read, body, what="companies")
            companies = [
                c
                for c in page.results or []
                if (c.properties or {}).get("billing_platform") == billing
                and (c.properties or {}).get("billing_customer_id")
            ]
            if not companies:
                continue
            tickets_of = self.associated("companies", [str(c.id) for c in companies], "tickets")
            every = [t for found in tickets_of.values() for t in found]
            cases: dict[str, CaseSummary] = {
                c.id: c for c in (self._cases(every, len(every)) if every else [])
            }
            for company in companies:
                mine = [cases[t] for t in tickets_of.get(str(company.id), []) if t in cases]
                mine.sort(key=lambda c: (c.opened_at, len(c.id), c.id), reverse=True)
                account = _scored_account(company)
                out[account.billing_customer_id or ""] = (account, mine[:limit])
        return out

    def _ticket(self, case_id: str) -> Any:
        return self._call(
            self._tickets.get_by_id,
            case_id,
            properties=["subject", "hs_pipeline", "hs_pipeline_stage", "createdate"],
            associations=["companies"],
            what="ticket",
        )

    def get_case(self, case_id: str) -> CaseDetail:
        ticket = self._ticket(case_id)
        props = ticket.properties or {}
        stage = props.get("hs_pipeline_stage") or ""
        in_default = (props.get("hs_pipeline") or "0") == "0"
        companies = _assoc_ids(ticket.associations, ["companies"], primary="ticket_to_company")
        return CaseDetail(
            id=str(ticket.id),
            number=str(ticket.id),
            account_id=companies[0] if companies else None,
            subject=props.get("subject") or "",
            status=TICKET_STAGES.get(stage, stage) if in_default else stage,
            opened_at=_datetime(props.get("createdate")) or ticket.created_at,
        )

    def annotate_case(self, case_id: str, text: str, idempotency_key: str) -> str:
        """A note on the ticket (and its company, so the account timeline shows it too), created
        once per key. The ticket is read first: a missing one is NotFound, not a 400 about an
        invalid association."""
        ticket = self._ticket(case_id)
        companies = _assoc_ids(ticket.associations, ["companies"], primary="ticket_to_company")
        associations = [_assoc(str(ticket.id), NOTE_TO_TICKET)]
        if companies:
            associations.append(_assoc(companies[0], NOTE_TO_COMPANY))
        properties = {
            "hs_note_body": note_html(text),
            "hs_timestamp": _epoch_ms(datetime.now(UTC)),
        }
        note_id, _ = self._engagement_once(
            "notes", idempotency_key, properties, associations, ("tickets", str(ticket.id))
        )
        return note_id
