"""Notes and tasks (HubSpot's activities) written exactly once, and the audit trail as notes.

Activities cannot have a unique property on real HubSpot, so each body ends with a
deterministic marker (:func:`~connectors.hubspot.values.engagement_ref`), looked up among the
activities associated with the record the new one hangs on before creating (the package's
docstring, connectors/hubspot/__init__.py, tells the whole of it)."""

from __future__ import annotations

import html
import time
from collections.abc import Iterable
from typing import Any

from hubspot.crm.objects.notes import (
    BatchInputSimplePublicObjectBatchInputForCreate as NoteBatchCreate,
)
from hubspot.crm.objects.notes import BatchReadInputSimplePublicObjectId as NoteBatchRead
from hubspot.crm.objects.notes import PublicObjectSearchRequest as NoteSearchRequest
from hubspot.crm.objects.notes import SimplePublicObjectInputForCreate as NoteCreate
from hubspot.crm.objects.tasks import BatchReadInputSimplePublicObjectId as TaskBatchRead
from hubspot.crm.objects.tasks import PublicObjectSearchRequest as TaskSearchRequest
from hubspot.crm.objects.tasks import SimplePublicObjectInputForCreate as TaskCreate

from connectors import limits
from connectors.base import ConnectorError, ErrorKind
from connectors.hubspot.client import HubSpotClient
from connectors.hubspot.values import (
    _HEADLINE,
    _NOTE_PROPERTIES,
    _REF,
    _SEARCH_PAGE,
    _WORKFLOW_LINE,
    ENGAGEMENT_BODY,
    INDEX_LAG_S,
    NOTE_TO_COMPANY,
    NOTE_TO_TICKET,
    VENDOR,
    _assoc,
    _epoch_ms,
    engagement_ref,
    fit_body,
    note_html,
    note_text,
)
from domain.audit import AuditEntry


class Engagements(HubSpotClient):
    """Notes and tasks, each once per key without a unique property (the marker, looked up
    through the anchor's associations), and the audit trail written as notes."""

    def _engagement_apis(self, kind: str) -> tuple[Any, type, Any, type, Any, type]:
        if kind == "notes":
            return (
                self._notes,
                NoteCreate,
                self._note_batches,
                NoteBatchRead,
                self._notes_search,
                NoteSearchRequest,
            )
        return (
            self._tasks,
            TaskCreate,
            self._task_batches,
            TaskBatchRead,
            self._tasks_search,
            TaskSearchRequest,
        )

    def _with_ref(self, kind: str, ids: list[str], ref: str) -> str | None:
        """Which of these activities carries ``ref`` (batch reads by ID, 100 a call)."""
        _, _, batches, model, _, _ = self._engagement_apis(kind)
        body = ENGAGEMENT_BODY[kind]
        for row in self._batch_read(batches, model, ids, [body], f"{kind} read"):
            if (row.properties or {}).get(body, "").endswith(_REF + ref):
                return str(row.id)
        return None

    def _search_ref(self, kind: str, ref: str) -> str | None:
        _, _, _, _, search, model = self._engagement_apis(kind)
        request = model(
            filter_groups=[
                {
                    "filters": [
                        {
                            "propertyName": ENGAGEMENT_BODY[kind],
                            "operator": "CONTAINS_TOKEN",
                            "value": ref,
                        }
                    ]
                }
            ],
            properties=[ENGAGEMENT_BODY[kind]],
            limit=10,
        )
        page = self._call(search.do_search, request, what=f"{kind} search")
        for row in page.results or []:
            if (row.properties or {}).get(ENGAGEMENT_BODY[kind], "").endswith(_REF + ref):
                return str(row.id)
        return None

    def _engagement_once(
        self,
        kind: str,
        key: str,
        properties: dict[str, str],
        associations: list[dict[str, Any]],
        anchor: tuple[str, str] | None,
        *,
        known_ids: list[str] | None = None,
        anchor_is_new: bool = False,
    ) -> tuple[str, bool]:
        """``(id, created)`` of the one note/task for ``key``.

        The body ends with ``RevBridge ref: <engagement_ref(key)>``. Before creating, the
        activities associated with ``anchor`` (``(type, id)``: the ticket, else the company) are
        read by association and by ID — not through search, whose index lags writes — and one
        carrying the marker is the earlier attempt's. ``known_ids`` are those associations when
        the caller read them already; ``anchor_is_new`` says the anchor was created by this very
        call, so nothing can hang on it yet. Without an anchor, search is the only look-up: a
        retried attempt waits out :data:`INDEX_LAG_S` before it believes "not found".
        """
        ref = engagement_ref(key)
        body = ENGAGEMENT_BODY[kind]
        properties = {**properties, body: fit_body(properties.get(body, ""), "<br>" + _REF + ref)}
        if anchor is not None and not anchor_is_new:
            ids = known_ids if known_ids is not None else self._associated_ids(*anchor, kind)
            found = self._with_ref(kind, ids, ref) if ids else None
            if found:
                return found, False
        elif anchor is None:
            found = self._search_ref(kind, ref)
            if found is None and limits.retry_attempt():
                time.sleep(INDEX_LAG_S)  # an earlier attempt's write is indexed by now
                found = self._search_ref(kind, ref)
            if found:
                return found, False
        api, model, *_ = self._engagement_apis(kind)
        created = self._call(
            api.create, model(properties=properties, associations=associations), what=kind[:-1]
        )
        return str(created.id), True

    def search_notes(self, token: str) -> list[Any]:
        """Every note whose body contains ``token`` (``CONTAINS_TOKEN``), all pages."""
        out: list[Any] = []
        after: str | None = None
        while True:
            request = NoteSearchRequest(
                filter_groups=[
                    {
                        "filters": [
                            {
                                "propertyName": "hs_note_body",
                                "operator": "CONTAINS_TOKEN",
                                "value": token,
                            }
                        ]
                    }
                ],
                properties=_NOTE_PROPERTIES,
                limit=_SEARCH_PAGE,
                after=after,
            )
            page = self._call(self._notes_search.do_search, request, what="note search")
            out += page.results or []
            nxt = page.paging.next.after if page.paging and page.paging.next else None
            if not nxt:
                return out
            after = nxt

    def audit_log(self, workflow_id: str) -> list[dict[str, Any]]:
        """The audit notes one workflow wrote, oldest first, in the vendor-neutral keys
        ``{"id", "action", "outcome", "case_id", "account_id", "text"}`` (ids from the note's
        associations to its ticket and company).

        Search finds the workflow's notes the index holds: a ``CONTAINS_TOKEN`` search for the
        workflow ID on ``hs_note_body`` (each note's text has a ``workflow: <id> (run <run>)``
        line, the ID standing alone between spaces), filtered exactly on that line, since how
        HubSpot tokenizes ``:`` in a token is not documented. The index lags writes by seconds,
        so the notes found only point the way: every note on their companies and tickets is then
        read through the associations and by ID (the CRM store, current), which brings in the
        workflow's newest notes too. When search finds nothing yet, it is asked once more after
        :data:`INDEX_LAG_S`. A read helper for the demo and tests, not a hot path.
        """
        hits = self._workflow_notes(self.search_notes(html.escape(workflow_id)), workflow_id)
        if not hits:
            time.sleep(INDEX_LAG_S)
            hits = self._workflow_notes(self.search_notes(html.escape(workflow_id)), workflow_id)
        if not hits:
            return []
        ids = list(hits)
        companies = self.associated("notes", ids, "companies")
        tickets = self.associated("notes", ids, "tickets")
        anchors = {("companies", c) for found in companies.values() for c in found}
        anchors |= {("tickets", t) for found in tickets.values() for t in found}
        on_anchors = {
            n for anchor in sorted(anchors) for n in self._associated_ids(*anchor, "notes")
        }
        fresh = [n for n in on_anchors if n not in hits]
        if fresh:
            rows = self._batch_read(
                self._note_batches, NoteBatchRead, fresh, _NOTE_PROPERTIES, "notes read"
            )
            hits.update(self._workflow_notes(rows, workflow_id))
            ids = list(hits)
            companies = self.associated("notes", ids, "companies")
            tickets = self.associated("notes", ids, "tickets")
        out = sorted(hits.values(), key=lambda r: (r.pop("_at"), r.pop("_n")))
        for row in out:
            row["account_id"] = next(iter(companies.get(row["id"], [])), None)
            row["case_id"] = next(iter(tickets.get(row["id"], [])), None)
        return out

    @staticmethod
    def _workflow_notes(notes: Iterable[Any], workflow_id: str) -> dict[str, dict[str, Any]]:
        """Of these notes, those whose text names ``workflow_id`` on its workflow line."""
        out: dict[str, dict[str, Any]] = {}
        for note in notes:
            props = note.properties or {}
            text = note_text(props.get("hs_note_body"))
            lines = text.split("\n")
            if not any(
                (m := _WORKFLOW_LINE.match(line)) and m["id"] == workflow_id for line in lines
            ):
                continue
            head = _HEADLINE.match(lines[0]) if lines else None
            out[str(note.id)] = {
                "id": str(note.id),
                "action": head["action"] if head else None,
                "outcome": head["outcome"] if head else None,
                "case_id": None,
                "account_id": None,
                "text": text,
                "_at": props.get("hs_timestamp") or "",
                "_n": int(note.id) if str(note.id).isdigit() else 0,
            }
        return out

    def write_audit(self, entry: AuditEntry) -> str:
        return self._write_audit(entry)

    def write_audits(self, entries: list[AuditEntry]) -> list[str]:
        """Several audit notes, each once per its ``key``, in ONE request on an activity's first
        attempt: ``POST /crm/v3/objects/notes/batch/create`` with each note's associations
        (a batch fails whole: no half of it is written). The keys are the calling activity's
        alone, so its first attempt creates without looking; a retry (an earlier attempt may
        have committed and timed out) first finds the notes carrying each key's marker on their
        anchors (by association, then by ID; search where there is no anchor) and creates only
        the missing ones. Returns the notes' IDs in ``entries``' order."""
        notes = [(e.key, *self._audit_note(e)) for e in entries]
        found: dict[str, str] = {}
        if not limits.first_attempt():
            anchors = sorted({n[3] for n in notes if n[3] is not None})
            ids = [i for anchor in anchors for i in self._associated_ids(*anchor, "notes")]
            rows = (
                self._batch_read(
                    self._note_batches,
                    NoteBatchRead,
                    sorted(set(ids)),
                    ["hs_note_body"],
                    "notes read",
                )
                if ids
                else []
            )
            bodies = [(str(r.id), (r.properties or {}).get("hs_note_body") or "") for r in rows]
            for key, _, _, anchor in notes:
                ref = _REF + engagement_ref(key)
                hit = next((i for i, body in bodies if body.endswith(ref)), None)
                if hit is None and anchor is None:
                    hit = self._search_ref("notes", engagement_ref(key))
                    if hit is None and limits.retry_attempt():
                        time.sleep(INDEX_LAG_S)  # an earlier attempt's write is indexed by now
                        hit = self._search_ref("notes", engagement_ref(key))
                if hit is not None:
                    found[key] = hit
        todo = [n for n in notes if n[0] not in found]
        if todo:
            body = NoteBatchCreate(
                inputs=[{"properties": p, "associations": a} for _, p, a, _ in todo]
            )
            page = self._call(self._note_batches.create, body, what="notes batch create")
            created = {
                (r.properties or {}).get("hs_note_body", "").rsplit(_REF, 1)[-1]: str(r.id)
                for r in page.results or []
            }
            for key, *_ in todo:
                note_id = created.get(engagement_ref(key))
                if note_id is None:
                    raise ConnectorError(
                        VENDOR, ErrorKind.RETRYABLE, "notes batch create: a note is missing"
                    )
                found[key] = note_id
        return [found[e.key] for e in entries]

    def _audit_note(
        self, entry: AuditEntry
    ) -> tuple[dict[str, str], list[dict[str, Any]], tuple[str, str] | None]:
        """An audit note's properties (its body ending in the key's marker), associations and
        the anchor it is looked up by: the ticket when there is one (a ticket has few notes; a
        company may have many), else the company."""
        properties = {
            "hs_note_body": fit_body(
                note_html(entry.as_text()), "<br>" + _REF + engagement_ref(entry.key)
            ),
            "hs_timestamp": _epoch_ms(entry.at),
        }
        associations = []
        if entry.account_id:
            associations.append(_assoc(entry.account_id, NOTE_TO_COMPANY))
        if entry.case_id:
            associations.append(_assoc(entry.case_id, NOTE_TO_TICKET))
        anchor = (
            ("tickets", entry.case_id)
            if entry.case_id
            else ("companies", entry.account_id)
            if entry.account_id
            else None
        )
        return properties, associations, anchor

    def _write_audit(
        self, entry: AuditEntry, known_ids: list[str] | None = None, anchor_is_new: bool = False
    ) -> str:
        """The audit note on the ticket and/or company, once per ``entry.key``; the ticket is
        the anchor it is looked up by when there is one (a ticket has few notes; a company may
        have many)."""
        properties = {
            "hs_note_body": note_html(entry.as_text()),
            "hs_timestamp": _epoch_ms(entry.at),
        }
        _, associations, anchor = self._audit_note(entry)
        if known_ids is None and limits.first_attempt():
            # an audit entry's key is written by the one activity that records the entry, and
            # this is that activity's first attempt: no earlier attempt can have written it, so
            # the look-up on the anchor (its notes by association, then by ID: two requests)
            # is skipped (issue 15), as Chargebee's notes skip theirs. A retry, or a call
            # outside an activity, looks first.
            anchor_is_new = True
        note_id, _ = self._engagement_once(
            "notes",
            entry.key,
            properties,
            associations,
            anchor,
            known_ids=known_ids,
            anchor_is_new=anchor_is_new,
        )
        return note_id
