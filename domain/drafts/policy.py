"""Where a model may draft and what it may answer (``policies/drafting.yaml``, the closed
:class:`DraftOutput`), what happens to its answer (:func:`contain_draft`: the schema, then every
check of ``domain.draft_check``; a refused draft gives the template), and the hash an approval
binds and the send re-checks (:func:`draft_sha256`)."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, StrictStr, ValidationError

from domain.config_file import load_model
from domain.draft_check import DraftFacts, check_draft
from domain.messages import MessageDraft
from domain.models import Strict

DRAFTING_FILE = "drafting.yaml"
#: the approval binds this prefix + the SHA-256 of the reviewed text (ProposedAction.subject_id)
SHA_PREFIX = "draft-sha256:"
MAX_SUBJECT_CHARS = 200
#: a dunning run's memo key naming the variants its reminders went out as ("llm", "template"),
#: for recovery attribution (``revbridge report recovery``)
VARIANT_MEMO = "draft_variants"


class DraftKind(StrEnum):
    REMINDER = "reminder"
    CSM_OUTREACH = "csm_outreach"
    SUPPORT_SUMMARY = "support_summary"
    HEALTH_LINE = "health_line"


class Variant(StrEnum):
    TEMPLATE = "template"
    LLM = "llm"


class DraftOutput(Strict):
    """The closed schema a model answers in (a tool's ``input_schema``): nothing else is read."""

    subject: Annotated[StrictStr, Field(min_length=1, max_length=MAX_SUBJECT_CHARS)]
    body: Annotated[StrictStr, Field(min_length=1, max_length=4000)]
    #: ISO 639-1 code of the language written in
    language: Annotated[StrictStr, Field(pattern=r"^[a-z]{2}$")]


class DraftingPolicy(Strict):
    """``policies/drafting.yaml``: where a model may draft, and where its draft may go out alone."""

    #: kinds of text a model may draft (the rest: templates only)
    llm_kinds: list[DraftKind] = [DraftKind.REMINDER, DraftKind.CSM_OUTREACH]
    #: language → Unicode scripts its letters may come from
    languages: dict[str, list[str]] = {
        "en": ["LATIN"],
        "de": ["LATIN"],
        "fr": ["LATIN"],
        "es": ["LATIN"],
    }
    #: URL prefixes a draft may link to (the billing platform's hosted payment page)
    payment_links: list[str] = []
    max_chars: Annotated[int, Field(ge=200, le=4000)] = 1500


def load_drafting_policy(policy_dir: Path) -> DraftingPolicy:
    path = policy_dir / DRAFTING_FILE
    if not path.exists():
        return DraftingPolicy()
    return load_model(path, DraftingPolicy, ValueError)


def draft_sha256(subject: str, body: str) -> str:
    """The hash an approval binds: exactly this subject and body (length-prefixed, so no split
    of the same characters between the two hashes alike)."""
    raw = f"{len(subject)}:{subject}\n{body}".encode()
    return hashlib.sha256(raw).hexdigest()


class DraftedMessage(MessageDraft):
    """A message ready for review or sending. Results recorded before drafting existed decode
    with the defaults (a template, no hash)."""

    variant: Variant = Variant.TEMPLATE
    #: why a model's draft was discarded (``code: detail``), for the audit; empty otherwise
    refusals: list[str] = []
    model: str | None = None
    language: str = "en"
    sha256: str = ""

    @classmethod
    def of(cls, draft: MessageDraft, **update: Any) -> DraftedMessage:
        fields = {"subject": draft.subject, "body": draft.body, **update}
        fields["sha256"] = draft_sha256(fields["subject"], fields["body"])
        return cls(**fields)

    def hash_ok(self) -> bool:
        return self.sha256 == draft_sha256(self.subject, self.body)


def _amount(minor: int, currency: str) -> str:
    return f"{minor / 100:,.2f} {currency.upper()}"


def contain_draft(
    raw: Any,
    facts: DraftFacts,
    template: MessageDraft,
    *,
    language: str,
    model: str | None = None,
    foreign_names: list[str] | None = None,
) -> DraftedMessage:
    """The model's raw answer judged by code: a draft that passes every check, or the template
    with every reason the draft was refused."""

    def fallback(reasons: list[str]) -> DraftedMessage:
        return DraftedMessage.of(template, refusals=[r[:300] for r in reasons[:10]], model=model)

    try:
        out = DraftOutput.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        return fallback([f"schema_violation: {where}: {first['msg']}"])
    if out.language != language:
        return fallback([f"wrong_language: {out.language}, asked for {language}"])
    if foreign_names:
        facts = facts.model_copy(update={"foreign_names": [*facts.foreign_names, *foreign_names]})
    refusals = check_draft(out.subject, facts.model_copy(update={"max_chars": MAX_SUBJECT_CHARS}))
    refusals += check_draft(out.body, facts)
    if refusals:
        return fallback(sorted({r.line() for r in refusals}))
    return DraftedMessage.of(
        MessageDraft(subject=out.subject, body=out.body),
        variant=Variant.LLM,
        model=model,
        language=language,
    )


def approval_subject(draft: DraftedMessage) -> str:
    """What the approval binds (``ProposedAction.subject_id``): the hash of the reviewed text."""
    return SHA_PREFIX + draft.sha256


def approved_text_matches(draft: DraftedMessage, subject_id: str | None) -> bool:
    """Before an approved send: the approval names this exact text and the text still hashes to
    it (nothing edited it between review and send)."""
    return subject_id == approval_subject(draft) and draft.hash_ok()


def review_task_text(draft: DraftedMessage, action_id: str, workflow_id: str) -> str:
    """The rep's CRM task: the exact text, its hash, and how to approve & send it."""
    who = "a model (checked against the facts)" if draft.variant is Variant.LLM else "the template"
    return (
        f"Drafted by {who}. Approve & send sends exactly this text, once; any other text is "
        "refused before it reaches the mail relay.\n\n"
        f"Subject: {draft.subject}\n\n{draft.body}\n\n---\n"
        f"SHA-256: {draft.sha256}\n"
        f"Approve & send: revbridge approve {workflow_id} --action {action_id} --as <email> "
        "(or the Web UI's approval signal with this action_id)."
    )
