# ruff: noqa: F811 (the HubSpot connector tests' fixtures, imported)
"""Issue 15: on HubSpot the case's audit note rides with day 0's, and both go in ONE
``POST /crm/v3/objects/notes/batch/create`` with their associations (``HubSpotCrm.write_audits``),
through the official client against the HubSpot sandbox. Exactly once: an activity's first
attempt creates without looking (the keys are that activity's alone); a retry after a
committed-then-timed-out batch finds the committed notes on their ticket and writes none twice,
and a retry after a partial earlier write creates only the missing note. The activity sends the
riding entries through the batch on HubSpot and ignores them where the case carried its entry."""

from __future__ import annotations

import httpx
import hubspot
import pytest
from temporalio.testing import ActivityEnvironment

from activities.crm import CrmActivities
from activities.models import UpsertCaseInput, WriteAuditInput
from connectors import limits
from connectors.base import ConnectorError, ErrorKind
from connectors.hubspot import HubSpotCrm, engagement_ref, note_text
from sandbox.hubspot import HubSpotEmulator
from tests.connectors.test_hubspot_connector import (  # noqa: F401 (fixtures)
    associated,
    crm,
    draft,
    entry,
    fault,
    hs,
    raw,
    seed_company,
    servers,
    url,
)

BATCH = "/crm/v3/objects/notes/batch/create"


@pytest.fixture(autouse=True)
def fresh_ledger(url: str) -> None:
    """Each test counts its own requests (the sandbox serves the whole module)."""
    httpx.delete(f"{url}/_sandbox/requests").raise_for_status()


def note_posts(url: str) -> list[dict]:
    rows = httpx.get(f"{url}/_sandbox/requests", params={"method": "POST"}).json()["requests"]
    return [r for r in rows if r["path"] in ("/crm/v3/objects/notes", BATCH)]


def notes_with_ref(hs: HubSpotEmulator, key: str) -> list[str]:
    """Every live note carrying ``key``'s marker, from the sandbox's own store."""
    ref = "RevBridge ref: " + engagement_ref(key)
    with hs.lock:
        return [
            n.id for n in hs.store.live("notes") if n.props.get("hs_note_body", "").endswith(ref)
        ]


def test_two_entries_are_one_batch_request_with_their_associations(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str, raw: hubspot.HubSpot
) -> None:
    company = seed_company(hs)
    case = crm.upsert_case(draft("rb-case-batch", company))
    case_entry = entry("rb-case-note", company, case.id)
    day0 = entry("rb-day0-note", company, case.id, action="send_email", outcome="sent")
    with limits.attempt(1):
        ids = crm.write_audits([case_entry, day0])
    assert [r["path"] for r in note_posts(url)] == [BATCH]
    assert ids == [*notes_with_ref(hs, "rb-case-note"), *notes_with_ref(hs, "rb-day0-note")]
    for note_id, e in zip(ids, [case_entry, day0], strict=True):
        assert associated(raw, "notes", note_id, "companies") == {company: {190}}
        assert associated(raw, "notes", note_id, "tickets") == {case.id: {228}}
        body = raw.crm.objects.notes.basic_api.get_by_id(note_id, properties=["hs_note_body"])
        assert note_text(body.properties["hs_note_body"]) == e.as_text()
    assert [r["action"] for r in crm.audit_log("dunning:chargebee:INV-1")] == [
        "create_case",
        "send_email",
    ]


def test_a_retry_after_a_committed_then_timed_out_batch_writes_each_note_once(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str
) -> None:
    company = seed_company(hs)
    case = crm.upsert_case(draft("rb-case-retry", company))
    entries = [
        entry("rb-retry-case", company, case.id),
        entry("rb-retry-day0", company, case.id, action="send_email"),
    ]
    fault(url, kind="commit_then_timeout", method="POST", path=BATCH, delay_s=1.5)
    with limits.attempt(1), pytest.raises(ConnectorError) as exc:
        crm.write_audits(entries)
    assert exc.value.kind is ErrorKind.RETRYABLE
    committed = [*notes_with_ref(hs, "rb-retry-case"), *notes_with_ref(hs, "rb-retry-day0")]
    assert len(committed) == 2  # the batch went through; its answer never came
    with limits.attempt(2):
        assert crm.write_audits(entries) == committed
    with limits.attempt(3):
        assert crm.write_audits(entries) == committed
    batches = [r for r in note_posts(url) if r["path"] == BATCH]
    assert len(batches) == 1 and batches[0].get("fault") == "commit_then_timeout"
    assert notes_with_ref(hs, "rb-retry-case") == committed[:1]
    assert notes_with_ref(hs, "rb-retry-day0") == committed[1:]


def test_a_retry_after_a_partial_write_creates_only_the_missing_note(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str
) -> None:
    company = seed_company(hs)
    case = crm.upsert_case(draft("rb-case-half", company))
    first = crm.write_audit(entry("rb-half-1", company, case.id))
    with limits.attempt(2):
        ids = crm.write_audits(
            [entry("rb-half-1", company, case.id), entry("rb-half-2", company, case.id)]
        )
    assert ids[0] == first and ids[1] == notes_with_ref(hs, "rb-half-2")[0]
    assert len(notes_with_ref(hs, "rb-half-1")) == 1
    batches = [r for r in note_posts(url) if r["path"] == BATCH]
    assert len(batches) == 1
    assert engagement_ref("rb-half-1") not in batches[0]["body"]


def test_the_activity_batches_riding_entries_on_hubspot_only(
    crm: HubSpotCrm, hs: HubSpotEmulator, url: str
) -> None:
    company = seed_company(hs)
    acts, env = CrmActivities(crm), ActivityEnvironment()
    case_entry = entry("rb-act-case", company, None)
    case = env.run(
        acts.upsert_crm_case,
        UpsertCaseInput(draft=draft("rb-act-ticket", company), audit=case_entry, audit_rides=True),
    )
    assert note_posts(url) == []  # the ticket alone: its note rides
    riding = case_entry.model_copy(update={"case_id": case.id})
    day0 = entry("rb-act-day0", company, case.id, action="send_email")
    with limits.attempt(1):
        result = env.run(acts.write_crm_audit, WriteAuditInput(entry=day0, more=[riding]))
    assert [r["path"] for r in note_posts(url)] == [BATCH]
    assert result.id == notes_with_ref(hs, "rb-act-day0")[0]
    assert len(notes_with_ref(hs, "rb-act-case")) == 1
    # a flush of an entry that rode alone (before a durable wait): one batch of one
    alone = entry("rb-act-alone", company, case.id, action="apply_credit")
    with limits.attempt(1):
        flushed = env.run(acts.write_crm_audit, WriteAuditInput(entry=alone, entry_rides=True))
    assert flushed.id == notes_with_ref(hs, "rb-act-alone")[0]


def test_a_crm_without_batched_notes_ignores_riding_entries() -> None:
    """Salesforce writes the case's entry with the case (/composite): ``more`` and a flushed
    riding entry write nothing more."""

    class Composite:
        def __init__(self) -> None:
            self.written: list[str] = []

        def write_audit(self, e: object) -> str:
            self.written.append(e.key)  # type: ignore[attr-defined]
            return f"log-{len(self.written)}"

    fake = Composite()
    acts, env = CrmActivities(fake), ActivityEnvironment()  # type: ignore[arg-type]
    day0, case_entry = entry("rb-sf-day0", "001", "500"), entry("rb-sf-case", "001", "500")
    result = env.run(acts.write_crm_audit, WriteAuditInput(entry=day0, more=[case_entry]))
    assert (result.id, fake.written) == ("log-1", ["rb-sf-day0"])
    flushed = env.run(acts.write_crm_audit, WriteAuditInput(entry=case_entry, entry_rides=True))
    assert (flushed.id, fake.written) == ("", ["rb-sf-day0"])
