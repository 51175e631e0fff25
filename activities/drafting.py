"""Drafting customer-facing text with a model, under containment (issue 22).

:class:`Drafter` is what the messaging activity (``draft_reminder``) asks when a model may draft.
Its rules, in order:

1. **Template first, and the rules path is free.** Without a model (no key, the default) or for a
   kind ``policies/drafting.yaml`` keeps to templates, the reviewed template is the answer: zero
   model calls, no ledger call, nothing slower on the dunning hot path.
2. **Budgets.** A model call is reserved against the run's and the day's token caps in the same
   ledger as the assessment (``activities.reasoning``: the day's budget entity workflow on a
   worker), and settled with the real usage. No grant, no call: the template goes out, and the
   reason travels with it for the audit.
3. **Containment.** The prompt carries our facts in clear and customer-written text redacted and
   fenced (``domain.drafts.reminder_prompt``); the answer is judged by
   ``domain.drafts.contain_draft`` (closed schema, then every ``domain.draft_check`` check). A
   draft failing anything is discarded for the template with its reasons.
4. **Never fails the run.** A model that is down, slow or refusing is a reason on a template
   (``llm_unavailable: ...``), not a retry: the reminder is due now and the template is reviewed
   text.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio import activity

from activities.models import DraftReminderInput
from activities.reasoning import LlmLedger, LocalLlmLedger, _reservation_id
from connectors.base import ConnectorError
from connectors.reasoner import LlmClient, LlmReasoner
from domain.containment import (
    LlmBudgets,
    LlmReservation,
    LlmSettlement,
    LlmUsage,
    estimate_tokens,
)
from domain.draft_check import DraftFacts
from domain.drafts import (
    CSM_LANGUAGES,
    CSM_SYSTEM_PROMPT,
    HEALTH_SUBJECT,
    HEALTH_SYSTEM_PROMPT,
    SUPPORT_SYSTEM_PROMPT,
    SYSTEM_PROMPT,
    CsmFacts,
    DraftedMessage,
    DraftingPolicy,
    DraftKind,
    DraftOutput,
    HealthFacts,
    ReminderFacts,
    SupportFacts,
    Variant,
    contain_draft,
    csm_check_facts,
    csm_prompt,
    csm_template,
    health_check_facts,
    health_language,
    health_prompt,
    health_rules_line,
    load_drafting_policy,
    reminder_check_facts,
    reminder_prompt,
    support_check_facts,
    support_prompt,
)
from domain.messages import MessageDraft
from domain.models import Frozen

log = logging.getLogger(__name__)

TOOL = (
    "write_draft",
    "Record the drafted email: subject, body and the language it is written in. Only facts "
    "given as trusted; no offers, links or contact data that are not in them.",
)


class ReminderDraftInput(DraftReminderInput):
    """The reminder's facts for a model (all optional: a run from before drafting sends none)."""

    customer_id: str = ""
    segment: str = ""
    language: str = "en"
    failed_attempts: int = 0
    paid_before: int = 0
    account_name: str | None = None
    #: open support cases' subject and description (customer-written: fenced in the prompt)
    case_texts: list[str] = []
    #: the language the template was written in, when not ``language`` (set by the activity)
    template_language: str | None = None

    def facts(self) -> ReminderFacts:
        return ReminderFacts(
            customer_id=self.customer_id,
            invoice_id=self.invoice_id,
            amount_due=self.amount_due,
            currency=self.currency,
            failure_class=self.failure_class,
            segment=self.segment,
            tone=self.tone,
            reminder=self.reminder,
            reminders=self.reminders,
            days_left=self.days_left,
            language=self.language,
            failed_attempts=self.failed_attempts,
            paid_before=self.paid_before,
            open_cases=len(self.case_texts),
            company=self.company,
            account_name=self.account_name,
            case_texts=self.case_texts,
        )


@functools.cache
def _schema_json() -> str:
    return json.dumps(DraftOutput.model_json_schema())


def output_schema() -> dict[str, Any]:
    return json.loads(_schema_json())


class Drafter:
    """``llm`` None: templates only (the default). ``foreign_names``: names this deployment knows
    belong to other customers (checked on top of the company-name and customer-ID rules)."""

    def __init__(
        self,
        llm: LlmClient | None,
        policy: DraftingPolicy | None = None,
        budgets: LlmBudgets | None = None,
        ledger: LlmLedger | None = None,
        foreign_names: Callable[[], list[str]] | None = None,
    ) -> None:
        self.llm = llm
        self.policy = policy or DraftingPolicy()
        self.budgets = budgets or LlmBudgets()
        self.ledger: LlmLedger = ledger or LocalLlmLedger()
        self.foreign_names = foreign_names or (lambda: [])
        #: model calls made (for tests and the bench: the rules path makes none)
        self.calls = 0

    def enabled(self, kind: DraftKind) -> bool:
        return self.llm is not None and kind in self.policy.llm_kinds

    def language_for(self, requested: str | None) -> str:
        """The language to write to a customer in: theirs when policy allows drafts in it
        (``policies/drafting.yaml`` languages), else English."""
        return requested if requested and requested in self.policy.languages else "en"

    async def reminder(self, input: ReminderDraftInput, template: MessageDraft) -> DraftedMessage:
        """``template`` is written in ``input.language`` (``template_language`` says which when
        it is not): the fallback speaks the customer's language, English only when unknown."""
        tl = input.template_language or input.language
        if not self.enabled(DraftKind.REMINDER):
            return DraftedMessage.of(template, language=tl)
        facts = input.facts()
        if facts.language not in self.policy.languages:
            return DraftedMessage.of(
                template, language=tl, refusals=[f"language_not_allowed: {facts.language}"]
            )
        draft = await self.draft(
            reminder_prompt(facts, self.policy),
            reminder_check_facts(facts, self.policy),
            template,
            language=facts.language,
        )
        return draft if draft.variant is Variant.LLM else draft.model_copy(update={"language": tl})

    async def csm_outreach(self, facts: CsmFacts, subject: str) -> DraftedMessage:
        """The CSM task's note: risk summary, recommended action, outreach draft. In the
        customer's language when policy writes in it (else English); the rules text in that
        language when we have its words (:func:`domain.drafts.csm_template`), and a refused
        model draft falls back to it."""
        language = self.language_for(facts.language)
        facts = facts.model_copy(update={"language": language})
        written = language if language in CSM_LANGUAGES else "en"
        template = MessageDraft(subject=subject, body=csm_template(facts))
        if not self.enabled(DraftKind.CSM_OUTREACH):
            return DraftedMessage.of(template, language=written)
        draft = await self.draft(
            csm_prompt(facts),
            csm_check_facts(facts, self.policy),
            template,
            language=language,
            system=CSM_SYSTEM_PROMPT,
        )
        if draft.variant is Variant.LLM:
            return draft
        return draft.model_copy(update={"language": written})

    async def support_summary(self, facts: SupportFacts, subject: str) -> DraftedMessage:
        """The support-context note's summary, rewritten from the rules summary's facts."""
        template = MessageDraft(subject=subject, body=facts.template)
        if not self.enabled(DraftKind.SUPPORT_SUMMARY):
            return DraftedMessage.of(template)
        if facts.language not in self.policy.languages:
            return DraftedMessage.of(template, refusals=[f"language_not_allowed: {facts.language}"])
        return await self.draft(
            support_prompt(facts),
            support_check_facts(facts, self.policy),
            template,
            language=facts.language,
            system=SUPPORT_SYSTEM_PROMPT,
        )

    async def health_line(self, facts: HealthFacts, rules_line: str) -> DraftedMessage:
        """The account's one-line health summary: the rules line, or a model's phrasing of the
        same figures (every number one of the facts', one line, no offer)."""
        template = MessageDraft(subject=HEALTH_SUBJECT, body=rules_line)
        if not self.enabled(DraftKind.HEALTH_LINE):
            return DraftedMessage.of(template)
        if facts.language not in self.policy.languages:
            return DraftedMessage.of(template, refusals=[f"language_not_allowed: {facts.language}"])
        return await self.draft(
            health_prompt(facts, rules_line),
            health_check_facts(facts, rules_line, self.policy),
            template,
            language=facts.language,
            system=HEALTH_SYSTEM_PROMPT,
        )

    async def draft(
        self,
        prompt: str,
        facts: DraftFacts,
        template: MessageDraft,
        *,
        language: str,
        system: str = SYSTEM_PROMPT,
    ) -> DraftedMessage:
        assert self.llm is not None

        def fallback(reason: str) -> DraftedMessage:
            return DraftedMessage.of(template, refusals=[reason[:300]])

        info = activity.info() if activity.in_activity() else None
        run_key = info.workflow_id if info else "local"
        rid = _reservation_id(info) if info else f"local-{self.calls}"
        when = info.current_attempt_scheduled_time if info else datetime.now(UTC)
        day = when.astimezone(UTC).date().isoformat()
        request = LlmReservation(
            reservation_id=rid,
            run_key=run_key,
            input_tokens=estimate_tokens(system, prompt, _schema_json()),
            output_tokens=int(getattr(self.llm, "max_tokens", 1024)),
            caps=self.budgets,
        )
        try:
            grant = await self.ledger.reserve(day, request)
        except Exception as err:  # noqa: BLE001 - no book, no call: the template goes out
            return fallback(f"llm_budget_unavailable: {type(err).__name__}")
        if not grant.granted:
            return fallback(f"budget_exceeded: {grant.reason}; the LLM was not asked")
        self.calls += 1
        try:
            reply = await asyncio.to_thread(
                self.llm.complete, system, prompt, output_schema(), TOOL
            )
        except ConnectorError as err:
            if err.status is not None:  # an answered error was not billed
                await self._settle(day, rid, run_key, LlmUsage(calls=1))
            return fallback(f"llm_unavailable: {err}")
        except Exception as err:  # noqa: BLE001 - a draft never fails the run: the template
            log.warning("drafting failed unexpectedly (%s): the template", type(err).__name__)
            return fallback(f"llm_unavailable: {type(err).__name__}")
        await self._settle(day, rid, run_key, reply.usage)
        return contain_draft(
            reply.raw,
            facts,
            template,
            language=language,
            model=reply.model,
            foreign_names=self.foreign_names(),
        )

    async def _settle(self, day: str, rid: str, run_key: str, usage: LlmUsage) -> None:
        try:
            await self.ledger.settle(
                day, LlmSettlement(reservation_id=rid, run_key=run_key, usage=usage)
            )
        except Exception as err:  # noqa: BLE001 - the estimate stays charged: never less safe
            log.warning("LLM usage not settled (%s): the estimate stays charged", err)


class CsmDraftInput(CsmFacts):
    subject: str


class SupportDraftInput(SupportFacts):
    subject: str = "Billing context"


class HealthLineInput(HealthFacts):
    """An account's health figures (:class:`domain.drafts.HealthFacts`) and, optionally, the
    caller's own rules line; without one, :func:`domain.drafts.health_rules_line` writes it. The
    caller's line is the fallback, and its figures are facts a draft may repeat."""

    rules_line: str | None = None


class HealthLineDraft(Frozen):
    """The line to write on the CRM account: the rules line, or a model's that passed every
    check (``variant`` says which); ``refusals`` are why a model's line was discarded (audit
    them as ``draft_refused``, CRM-only)."""

    line: str
    variant: Variant = Variant.TEMPLATE
    refusals: list[str] = []
    model: str | None = None
    language: str = "en"


class DraftingActivities:
    """Drafts a workflow asks for directly (the dunning reminder is the messaging activity's)."""

    def __init__(self, drafter: Drafter) -> None:
        self.drafter = drafter

    @activity.defn(name="draft_csm_outreach")
    async def draft_csm_outreach(self, input: CsmDraftInput) -> DraftedMessage:
        facts = CsmFacts.model_validate(input.model_dump(exclude={"subject"}))
        return await self.drafter.csm_outreach(facts, input.subject)

    @activity.defn(name="draft_support_summary")
    async def draft_support_summary(self, input: SupportDraftInput) -> DraftedMessage:
        facts = SupportFacts.model_validate(input.model_dump(exclude={"subject"}))
        return await self.drafter.support_summary(facts, input.subject)

    @activity.defn(name="draft_health_line")
    async def draft_health_line(self, input: HealthLineInput) -> HealthLineDraft:
        """A local activity: no vendor call, never fails (a model's trouble is a refusal)."""
        facts = HealthFacts.model_validate(input.model_dump(exclude={"rules_line"}))
        # the account's language when policy writes in it, else English (not a refusal)
        facts = facts.model_copy(update={"language": self.drafter.language_for(facts.language)})
        rules = " ".join((input.rules_line or health_rules_line(facts)).split())
        draft = await self.drafter.health_line(facts, rules)
        line = draft.body if draft.variant is Variant.LLM else rules
        return HealthLineDraft(
            line=line,
            variant=draft.variant,
            refusals=draft.refusals,
            model=draft.model,
            # the rules line is in the account's language when we have its words
            language=draft.language if draft.variant is Variant.LLM else health_language(facts),
        )


def drafter_for(
    reasoner: object, policy_dir: Path, budgets: LlmBudgets, ledger: LlmLedger | None
) -> Drafter:
    """The worker's drafter: the reasoner's model when it has one (``REVBRIDGE_REASONER=
    anthropic``), else templates only; the same budgets and ledger as the assessment."""
    llm = reasoner.client if isinstance(reasoner, LlmReasoner) else None
    return Drafter(llm, load_drafting_policy(policy_dir), budgets, ledger)
