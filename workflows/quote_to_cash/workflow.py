"""Quote-to-cash: a won deal becomes a live subscription, linked on both sides — exactly once, or
cleanly undone.

The story: a CRM says an opportunity (Salesforce) or deal (HubSpot) is closed-won — through its
callout / webhook, or the catch-up query that finds won deals whose callout never came. Exactly
one run exists per deal (``q2c:{crm}:{opportunity_id}``, started with ``REJECT_DUPLICATE`` and
``USE_EXISTING``). We do not trust the event: we re-read the deal with its account, contacts and
line items, and stop if it is not won (or was linked already).

Each CRM product becomes a billing price through policies/products.yaml (read by an activity, so
the mapping used is in history). A product the mapping or the billing catalogue does not cover
stops the run: the Web UI shows which codes and why, and a person fixes the file (or the
catalogue) and sends ``mapping_fixed``; the run re-reads and goes on.

Then the billing customer, without duplicates: the link we wrote before (CRM or billing side),
else exactly one customer with the contact's email (linked), else similar customers ranked by
name and email domain, offered to a person (``customer_picked`` with an ID or ``"new"``), else a
new customer. The subscription (start date, term, quantities, discount, payment terms) goes
through the approval gate: standard terms are allowed, a discount above policy or custom terms
wait for RevOps. The billing IDs, MRR and status go back to the CRM account and opportunity, a
provisioning task is opened, and every step is audited on both sides.

Every write registers its compensation before it runs (workflows/saga.py). If a later step fails
for good, or the subscription is rejected, blocked or expires, the compensations run newest
first — cancel the subscription, clear the CRM link, unlink or delete the customer we created —
and the reason goes on the opportunity and into the audit trail. A compensation that fails is
audited and fails the run, so a person sees it.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.governed.audit import AuditScope
from workflows.governed.base import GovernedWorkflow
from workflows.governed.gate import Governed
from workflows.governed.saga import Saga
from workflows.options import READ
from workflows.quote_to_cash.customer import CustomerSteps, RollBack
from workflows.quote_to_cash.subscription import EXPANSION_UPGRADE_PATCH, SubscriptionSteps

with workflow.unsafe.imports_passed_through():
    from activities.quote import GetOpportunityInput, QuoteActivities
    from domain import temporal as names
    from domain.models import CrmAccount, NoteTarget
    from domain.policy import AccountFacts
    from domain.quote import (
        NEW_CUSTOMER,
        QUERY_STATUS,
        SIGNAL_CUSTOMER_PICKED,
        SIGNAL_MAPPING_FIXED,
        WORKFLOW_TYPE,
        CustomerPick,
        MappingFixed,
        QuoteToCashInput,
        QuoteToCashResult,
        QuoteToCashState,
        QuoteToCashStatus,
        plan_subscription,
    )
    from domain.temporal import UseCase


T = TypeVar("T", CustomerPick, MappingFixed)

#: a billing account that lacks a setting (a payment term, Contract Terms, the CRM-link field)
#: ends the run as ``needs_configuration`` with the fix, not as a failure to investigate
NEEDS_CONFIGURATION_PATCH = "q2c-needs-configuration"


@workflow.defn(name=WORKFLOW_TYPE)
class QuoteToCashWorkflow(CustomerSteps, SubscriptionSteps, GovernedWorkflow):
    use_case = UseCase.QUOTE_TO_CASH

    @workflow.init
    def __init__(self, input: QuoteToCashInput) -> None:
        self._input = input
        self.s = QuoteToCashState(
            status=QuoteToCashStatus(
                stage="reading the opportunity", opportunity_id=input.opportunity_id
            )
        )
        self._saga = Saga(on_failure=self._compensation_failed)
        self._init_governed()

    # --- messages ------------------------------------------------------------------------------------

    @workflow.signal(
        name=SIGNAL_MAPPING_FIXED,
        description="The product mapping (policies/products.yaml) or the billing catalogue was "
        "fixed: re-read it. Payload {by, note}.",
    )
    async def mapping_fixed(self, raw: RawValue) -> None:
        # raw: where senders are verified, the person in ``by`` must be who signed in
        fix = self._person_signal(raw, MappingFixed)
        if fix is None or self._refused_sender(raw, fix.by, "mapping fix"):
            return
        if not self._refused_role(fix.by, self.s.fix_eligible, "mapping fix"):
            self.s.mapping_fixes.append(fix)
            return
        await self._audit_refused_answer(fix.by)

    @workflow.signal(
        name=SIGNAL_CUSTOMER_PICKED,
        description="Which offered billing customer this deal belongs to: {customer_id, by}; "
        'customer_id "new" creates one.',
    )
    async def customer_picked(self, raw: RawValue) -> None:
        pick = self._person_signal(raw, CustomerPick)
        what = f"pick {pick.customer_id!r}" if pick is not None else ""
        if pick is None or self._refused_sender(raw, pick.by, what):
            return
        if self._refused_role(pick.by, self.s.pick_eligible, what):
            await self._audit_refused_answer(pick.by)
            return
        offered = {c.customer_id for c in self.s.status.candidates}
        if self.s.pick is not None or not offered:
            self._refuse(f"pick {pick.customer_id!r} ignored: no customer choice is open")
        elif pick.customer_id != NEW_CUSTOMER and pick.customer_id not in offered:
            self._refuse(f"pick {pick.customer_id!r} ignored: not one of the offered candidates")
        else:
            self.s.pick = pick

    def _person_signal(self, raw: RawValue, model: type[T]) -> T | None:
        """A person's signal payload as ``model``, or None — refused, shown, the run goes on."""
        try:
            return model.model_validate(workflow.payload_converter().from_payload(raw.payload))
        except Exception as exc:  # a payload missing a field or not JSON: one line, not a stop
            line = f"a {model.__name__} signal changed nothing: bad payload ({type(exc).__name__})"
            self._refuse(line)
            self._show_refusal(line, None)
            return None

    def _refused_sender(self, raw: RawValue, by: str, what: str) -> bool:
        why = self._unverified_sender(raw, by, patch=True)
        if why is not None:
            self._refuse(f"{what} ignored: {why}")
            self._show_refusal(f"{what} ignored: {why}", None)
        return why is not None

    def _refused_role(self, by: str, eligible: list[str] | None, what: str) -> bool:
        """A pick or fix from someone outside the roles that may answer it (RevOps by default,
        policies/approvers.yaml) changes nothing: refused and shown, the run waits on."""
        if eligible is None or by.strip().lower() in {e.lower() for e in eligible}:
            return False
        line = f"{what} ignored: {by or 'an unnamed sender'} is not among who may answer"
        self._refuse(line)
        self._show_refusal(line, None)
        return True

    async def _audit_refused_answer(self, by: str) -> None:
        """The role refusal just shown, audited on both sides (one entry per refusal). Only runs
        with the role check (``q2c-person-roles``) refuse this way, so older histories replay."""
        line = self.s.status.refused[-1]
        try:
            await self.audit(
                "answer_refused",
                decision="refused",
                outcome="refused",
                summary=line,
                approver=by or None,
                key_suffix=f"refused-{len(self.s.status.refused)}",
            )
        except ActivityError as err:  # the audit gave up: logged and shown, never fatal
            workflow.logger.warning("audit of a refused answer failed: %s", err.cause or err)
            self._refuse(f"(not audited: {err.cause or err})"[:300])

    @workflow.query(name=QUERY_STATUS, description="Where this quote-to-cash run stands.")
    def status(self) -> QuoteToCashStatus:
        return self.s.status

    # --- the run ---------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: QuoteToCashInput) -> QuoteToCashResult:
        workflow.upsert_search_attributes([names.USE_CASE_KEY.value_set(self.use_case)])
        try:
            result = await self._quote_to_cash()
        except RollBack as stop:
            result = await self._roll_back(stop.reason)
        except ActivityError as err:
            if _needs_configuration(err) and workflow.patched(NEEDS_CONFIGURATION_PATCH):
                result = await self._roll_back(
                    f"{_activity_name(err)}: the billing account {_message(err)}",
                    outcome="needs_configuration",
                )
            else:
                result = await self._roll_back(f"{_activity_name(err)} failed: {_cause(err)}")
        except asyncio.CancelledError:
            # An operator cancelled the run: leave both systems as they were, then stop.
            await self._roll_back("the run was cancelled")
            raise
        return await self._finish(result)

    async def _quote_to_cash(self) -> QuoteToCashResult:
        found = await workflow.execute_activity_method(
            QuoteActivities.q2c_get_opportunity,
            GetOpportunityInput(opportunity_id=self._input.opportunity_id),
            summary="re-read the opportunity",
            **READ,
        )
        opp = self.s.opp = found.opportunity
        if opp is None:
            return self._closed("not_found", "the CRM has no such opportunity")
        if not opp.won:
            # Events are triggers, not truth: reopened or a stale callout.
            return self._closed("not_won", f"stage is {opp.stage!r}")
        if found.go_live and (opp.close_date is None or opp.close_date < found.go_live):
            # A deal won before RevBridge went live is billed already (someone edited it, so the
            # catch-up saw it): provisioning it again would bill the customer twice.
            return self._closed(
                "before_go_live",
                f"closed {opp.close_date or 'on an unknown date'}, before go-live "
                f"({found.go_live}): never provisioned automatically; `revbridge link` links "
                "it to its existing subscription",
            )
        if opp.billing_subscription_id:
            return self._closed(
                "already_live", f"already linked to subscription {opp.billing_subscription_id}"
            )
        if opp.account is None:
            raise RollBack("the opportunity has no account")
        if found.expansion is not None and workflow.patched(EXPANSION_UPGRADE_PATCH):
            # a usage-based expansion won: change the subscription it grew out of (issue 21)
            self.s.account = opp.account
            self._update(account_id=opp.account.id, currency=opp.currency)
            return await self._upgrade(opp, opp.account, found.expansion)
        if not opp.lines:
            raise RollBack("the opportunity has no line items")
        account = self.s.account = opp.account
        self._update(account_id=account.id, currency=opp.currency)
        # Registered first, so it runs last: once billing is clean, the CRM gets its link back
        # as it was before this run, and the reason. The write-back below is a field set this
        # one compensation also undoes.
        self._saga.register("crm link", self._restore_crm_link)

        mapping, prices = await self._map_products(opp)
        plan = self.s.plan = plan_subscription(
            opp, mapping, self._input.billing, prices, workflow.now().date()
        )
        self._update(mrr=plan.mrr, discount_percent=plan.discount_percent)

        customer_id = self.s.customer_id = await self._find_or_create_customer(opp, account)
        workflow.upsert_search_attributes([names.CUSTOMER_KEY.value_set(customer_id)])

        self._update(stage="creating the subscription")
        governed = await self._govern_subscription(opp, account, plan, customer_id)
        if governed.status != "executed" or self.s.subscription is None:
            by = f" by {governed.approver}" if governed.approver else ""
            note = f" ({governed.note})" if governed.note else ""
            raise RollBack(f"create_subscription {governed.status}{by}{note}")
        sub = self.s.subscription

        self._update(stage="writing the billing link to the CRM")
        mrr = sub.mrr or plan.mrr
        await self._write_link(customer_id, sub.id, mrr, status=sub.status)

        self._update(stage="opening the provisioning task")
        await self._open_provisioning_task(opp, account, sub)
        await self._audit(
            "quote_to_cash_live",
            decision="allow",
            outcome="live",
            summary=f"Opportunity {opp.id} is live: subscription {sub.id} ({sub.status}) for "
            f"customer {customer_id} ({self.s.status.customer_how}), MRR {mrr / 100:,.2f} "
            f"{sub.currency}; IDs written to CRM account {account.id}.",
            note_on=customer_id,
        )
        self._update(stage="live", subscription_id=sub.id, mrr=mrr, outcome="live")
        return self._result("live")

    # --- rolling back ----------------------------------------------------------------------------------

    async def _roll_back(self, reason: str, outcome: str = "rolled_back") -> QuoteToCashResult:
        self.s.rollback_reason = reason
        self._update(stage="rolling back", reason=reason)
        workflow.set_current_details(f"Rolling back: {reason}")
        unwound = await self._saga.unwind()
        self._update(compensations=unwound.undone, compensation_failures=unwound.failed)
        customer_left = self.s.customer_id if self.s.created_customer is None else None
        await self._audit(
            "quote_to_cash_rolled_back",
            decision="allow",  # undoing our own writes needs no permission
            outcome="rolled back" + (" (incomplete)" if unwound.failed else ""),
            summary=f"Opportunity {self._input.opportunity_id} was rolled back: {reason}. "
            f"Undone: {'; '.join(unwound.undone) or 'nothing was written'}."
            + (f" NOT undone: {'; '.join(unwound.failed)}." if unwound.failed else ""),
            note_on=customer_left,
        )
        self._update(outcome=outcome)
        if unwound.failed:
            raise ApplicationError(
                f"rollback incomplete: {'; '.join(unwound.failed)}"[:500],
                type="QuoteToCashCompensationFailed",
                non_retryable=True,
            )
        return self._result(outcome, reason)

    async def _compensation_failed(self, step: str, err: ActivityError) -> None:
        await self._audit(
            "compensation_failed",
            decision="allow",
            outcome="failed",
            summary=f"Undoing '{step}' for opportunity {self._input.opportunity_id} failed: "
            f"{_cause(err)}. A person must undo it by hand.",
            key_suffix=step.replace(" ", "-"),
        )

    # --- audit -------------------------------------------------------------------------------------------

    def _audit_scope(self) -> AuditScope:
        customer = self.s.created_customer.id if self.s.created_customer else self.s.customer_id
        return AuditScope(
            use_case=self.use_case,
            account_id=self.s.account.id if self.s.account else None,
            billing_note=(NoteTarget.CUSTOMER, customer) if customer else None,
        )

    async def _audit_governed(self, governed: Governed) -> None:
        await self._audit(governed.action.kind.value, **governed.audit_fields(), note=True)

    async def _audit(
        self,
        action: str,
        *,
        parameters: dict | None = None,
        key_suffix: str = "",
        note: bool = False,
        note_on: str | None = None,
        **fields: object,
    ) -> None:
        """CRM agent log always; a billing note on the customer when there is one to hold it."""
        where = True if note else ((NoteTarget.CUSTOMER, note_on) if note_on else None)
        ids = await self.audit(
            action,
            parameters=parameters
            or {"action": action, "opportunity": self._input.opportunity_id, "s": key_suffix},
            key_suffix=key_suffix,
            billing_note=where,
            **fields,  # type: ignore[arg-type]
        )
        await self._record_audit_ids(ids)

    async def _record_audit_ids(self, ids: list[str]) -> None:
        self._update(audit_ids=[*self.s.status.audit_ids, *ids])

    def _account_facts(self, account: CrmAccount) -> AccountFacts:
        return AccountFacts(
            id=account.id, tier=account.tier, mrr=self.s.plan.mrr if self.s.plan else 0
        )

    def _refuse(self, why: str) -> None:
        self._update(refused=[*self.s.status.refused, why])

    def _closed(self, outcome: str, reason: str) -> QuoteToCashResult:
        self._update(stage="closed", outcome=outcome, reason=reason)
        return self._result(outcome, reason)

    def _result(self, outcome: str, reason: str = "") -> QuoteToCashResult:
        return QuoteToCashResult(
            outcome=outcome,
            opportunity_id=self._input.opportunity_id,
            customer_id=self.s.customer_id if outcome == "live" else None,
            subscription_id=self.s.subscription.id
            if outcome == "live" and self.s.subscription
            else None,
            reason=reason,
            audit_ids=self.s.status.audit_ids,
        )

    def _update(self, **changes: object) -> None:
        stage = self.s.status.stage
        self.s.status = self.s.status.model_copy(update=changes)
        if self.s.status.stage != stage:
            # the Web UI's current details follow the stage (waits overwrite them with what a
            # person has to do)
            s = self.s.status
            workflow.set_current_details(
                f"{s.stage}: opportunity {s.opportunity_id}"
                + (f", customer {s.customer_id}" if s.customer_id else "")
                + (f", subscription {s.subscription_id}" if s.subscription_id else "")
            )

    async def _finish(self, result: QuoteToCashResult) -> QuoteToCashResult:
        workflow.set_current_details(
            f"Closed: {result.outcome}"
            + (f" — {result.reason}" if result.reason else "")
            + (f". Subscription {result.subscription_id}." if result.subscription_id else ".")
        )
        await self.handlers_finished()
        return result.model_copy(update={"audit_ids": self.s.status.audit_ids})


def _activity_name(err: ActivityError) -> str:
    return (err.activity_type or "a step").removeprefix("q2c_")


def _needs_configuration(err: ActivityError) -> bool:
    cause = err.cause
    return isinstance(cause, ApplicationError) and (cause.type or "").endswith(
        ".needs_configuration"
    )


def _message(err: ActivityError) -> str:
    cause = err.cause
    return (cause.message if isinstance(cause, ApplicationError) else str(err))[:300]


def _cause(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'error'}: {cause.message}"[:200]
    return str(cause or err)[:200]
