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

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.approval import Execute, Governed, GovernedWorkflow
from workflows.auditing import audit_entry, write_audit
from workflows.options import READ, WRITE
from workflows.saga import Saga

with workflow.unsafe.imports_passed_through():
    from activities.crm import CrmActivities
    from activities.models import UpsertTaskInput
    from activities.quote import (
        CreateCustomerInput,
        CreateSubscriptionInput,
        FindCustomerInput,
        GetOpportunityInput,
        GetPricesInput,
        QuoteActivities,
        ReadMappingInput,
        SetCrmLinkInput,
        UndoCustomerInput,
        UndoSubscriptionInput,
        WriteBillingLinkInput,
    )
    from domain import temporal as names
    from domain.approvals import PendingApproval, ProposedAction, RefusedApproval
    from domain.ids import idempotency_key
    from domain.matching import rank_candidates
    from domain.models import BillingCustomer, CrmAccount, NoteTarget, TaskDraft
    from domain.policy import AccountFacts, ActionKind
    from domain.quote import (
        NEW_CUSTOMER,
        QUERY_STATUS,
        SIGNAL_CUSTOMER_PICKED,
        SIGNAL_MAPPING_FIXED,
        WORKFLOW_TYPE,
        CustomerCandidate,
        CustomerPick,
        MappingFixed,
        ProductMapping,
        QuotePlan,
        QuoteToCashInput,
        QuoteToCashResult,
        QuoteToCashStatus,
        plan_subscription,
        price_problems,
        unmapped_products,
    )
    from domain.records import (
        BillingLink,
        CustomerDraft,
        Opportunity,
        Price,
        SubscriptionDraft,
        SubscriptionRef,
    )

USE_CASE = "quote_to_cash"


class _RollBack(Exception):
    """Internal: stop here and undo what was done (a rejection, an expiry, a missing account)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@workflow.defn(name=WORKFLOW_TYPE)
class QuoteToCashWorkflow(GovernedWorkflow):
    use_case = USE_CASE

    @workflow.init
    def __init__(self, input: QuoteToCashInput) -> None:
        self._input = input
        self._status = QuoteToCashStatus(
            stage="reading the opportunity", opportunity_id=input.opportunity_id
        )
        self._mapping_fixes: list[MappingFixed] = []
        self._pick: CustomerPick | None = None
        self._opp: Opportunity | None = None
        self._account: CrmAccount | None = None
        self._plan: QuotePlan | None = None
        #: a customer this run created (deleted on rollback) vs one it found
        self._created_customer: BillingCustomer | None = None
        self._customer_id: str | None = None
        self._subscription: SubscriptionRef | None = None
        self._rollback_reason = ""
        self._saga = Saga(on_failure=self._compensation_failed)
        self._init_gate()

    # --- messages ------------------------------------------------------------------------------------

    @workflow.signal(
        name=SIGNAL_MAPPING_FIXED,
        description="The product mapping (policies/products.yaml) or the billing catalogue was "
        "fixed: re-read it. Payload {by, note}.",
    )
    def mapping_fixed(self, fix: MappingFixed) -> None:
        self._mapping_fixes.append(fix)

    @workflow.signal(
        name=SIGNAL_CUSTOMER_PICKED,
        description="Which offered billing customer this deal belongs to: {customer_id, by}; "
        'customer_id "new" creates one.',
    )
    def customer_picked(self, pick: CustomerPick) -> None:
        offered = {c.customer_id for c in self._status.candidates}
        if self._pick is not None or not offered:
            self._refuse(f"pick {pick.customer_id!r} ignored: no customer choice is open")
        elif pick.customer_id != NEW_CUSTOMER and pick.customer_id not in offered:
            self._refuse(f"pick {pick.customer_id!r} ignored: not one of the offered candidates")
        else:
            self._pick = pick

    @workflow.query(name=QUERY_STATUS, description="Where this quote-to-cash run stands.")
    def status(self) -> QuoteToCashStatus:
        return self._status

    # --- the run ---------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: QuoteToCashInput) -> QuoteToCashResult:
        self._refusal_auditor = asyncio.create_task(self.audit_refusals(self._audit_refusal))
        workflow.upsert_search_attributes([names.USE_CASE.value_set(USE_CASE)])
        try:
            result = await self._quote_to_cash()
        except _RollBack as stop:
            result = await self._roll_back(stop.reason)
        except ActivityError as err:
            result = await self._roll_back(f"{_activity_name(err)} failed: {_cause(err)}")
        except asyncio.CancelledError:
            # An operator cancelled the run: leave both systems as they were, then stop.
            await self._roll_back("the run was cancelled")
            raise
        return await self._finish(result)

    async def _quote_to_cash(self) -> QuoteToCashResult:
        found = await workflow.execute_activity_method(
            QuoteActivities.get_opportunity,
            GetOpportunityInput(opportunity_id=self._input.opportunity_id),
            summary="re-read the opportunity",
            **READ,
        )
        opp = self._opp = found.opportunity
        if opp is None:
            return self._closed("not_found", "the CRM has no such opportunity")
        if not opp.won:
            # Events are triggers, not truth: reopened or a stale callout.
            return self._closed("not_won", f"stage is {opp.stage!r}")
        if opp.billing_subscription_id:
            return self._closed(
                "already_live", f"already linked to subscription {opp.billing_subscription_id}"
            )
        if opp.account is None:
            raise _RollBack("the opportunity has no account")
        if not opp.lines:
            raise _RollBack("the opportunity has no line items")
        account = self._account = opp.account
        self._update(account_id=account.id, currency=opp.currency)
        # Registered first, so it runs last: once billing is clean, the CRM gets its link back
        # as it was before this run, and the reason. The write-back below is a field set this
        # one compensation also undoes.
        self._saga.register("crm link", self._restore_crm_link)

        mapping, prices = await self._map_products(opp)
        plan = self._plan = plan_subscription(
            opp, mapping, self._input.billing, prices, workflow.now().date()
        )
        self._update(mrr=plan.mrr, discount_percent=plan.discount_percent)

        customer_id = self._customer_id = await self._find_or_create_customer(opp, account)
        workflow.upsert_search_attributes([names.CUSTOMER.value_set(customer_id)])

        self._update(stage="creating the subscription")
        governed = await self._govern_subscription(opp, account, plan, customer_id)
        if governed.status != "executed" or self._subscription is None:
            by = f" by {governed.approver}" if governed.approver else ""
            note = f" ({governed.note})" if governed.note else ""
            raise _RollBack(f"create_subscription {governed.status}{by}{note}")
        sub = self._subscription

        self._update(stage="writing the billing link to the CRM")
        mrr = sub.mrr or plan.mrr
        await self._write_link(customer_id, sub.id, mrr, status=sub.status)

        self._update(stage="opening the provisioning task")
        await workflow.execute_activity_method(
            CrmActivities.upsert_crm_task,
            UpsertTaskInput(draft=self._provisioning_task(opp, account, sub)),
            summary="open the provisioning task",
            **WRITE,
        )
        await self._audit(
            "quote_to_cash_live",
            decision="allow",
            outcome="live",
            summary=f"Opportunity {opp.id} is live: subscription {sub.id} ({sub.status}) for "
            f"customer {customer_id} ({self._status.customer_how}), MRR {mrr / 100:,.2f} "
            f"{sub.currency}; IDs written to CRM account {account.id}.",
            note_on=customer_id,
        )
        self._update(stage="live", subscription_id=sub.id, mrr=mrr, outcome="live")
        return self._result("live")

    # --- products ------------------------------------------------------------------------------------

    async def _map_products(self, opp: Opportunity) -> tuple[ProductMapping, dict[str, Price]]:
        """The mapping and prices for every line, waiting for a person while any is missing."""
        billing = self._input.billing
        while True:
            self._update(stage="mapping products to prices")
            mapping = await workflow.execute_activity_method(
                QuoteActivities.read_product_mapping,
                ReadMappingInput(),
                summary="read the product mapping",
                **READ,
            )
            problems = unmapped_products(opp, mapping, billing)
            refs = sorted(
                {
                    ref
                    for line in opp.lines
                    if (ref := mapping.price_for(line.product_code, billing)) is not None
                }
            )
            prices: dict[str, Price] = {}
            if refs:
                found = await workflow.execute_activity_method(
                    QuoteActivities.get_prices,
                    GetPricesInput(refs=refs),
                    summary=f"read {len(refs)} {billing} price(s)",
                    **READ,
                )
                prices = found.prices
            problems |= price_problems(opp, mapping, billing, prices)
            if not problems:
                self._update(unmapped={})
                return mapping, prices
            self._update(stage="waiting for the product mapping", unmapped=problems)
            workflow.set_current_details(
                "**Waiting for a person: unknown product(s)**\n\n"
                + "\n".join(f"- `{code}`: {why}" for code, why in sorted(problems.items()))
                + f"\n\nAdd them to policies/products.yaml (and the {billing} catalogue), then "
                f'send the signal `{SIGNAL_MAPPING_FIXED}` with `{{"by": "you@example.com"}}`.'
            )
            seen = len(self._mapping_fixes)
            try:
                await workflow.wait_condition(
                    lambda seen=seen: len(self._mapping_fixes) > seen,
                    timeout=self._input.approval.expire_after,
                    timeout_summary="product mapping fix",
                )
            except TimeoutError:
                raise _RollBack(
                    f"no product mapping for {', '.join(sorted(problems))} in time"
                ) from None

    # --- the billing customer -----------------------------------------------------------------------

    async def _find_or_create_customer(self, opp: Opportunity, account: CrmAccount) -> str:
        self._update(stage="finding the billing customer")
        billing, crm = self._input.billing, self._input.crm
        if account.billing_customer_id and account.billing_platform in (None, billing):
            return self._customer(account.billing_customer_id, "linked (CRM)")
        email = next((c.email for c in opp.contacts if c.email), None)
        search = await workflow.execute_activity_method(
            QuoteActivities.find_billing_customer,
            FindCustomerInput(crm=crm, account_id=account.id, email=email, company=account.name),
            summary="look for the customer in billing",
            **READ,
        )
        if search.linked is not None:
            return self._customer(search.linked.id, "linked (billing)")
        if len(search.by_email) == 1 and not _linked_elsewhere(search.by_email[0], account.id):
            await self._link(search.by_email[0].id, account.id)
            return self._customer(search.by_email[0].id, "matched by email")
        found = [*search.by_email, *search.by_company]
        elsewhere = {c.id for c in found if _linked_elsewhere(c, account.id)}
        candidates = [
            c.model_copy(update={"reasons": [*c.reasons, "linked to another CRM account"]})
            if c.customer_id in elsewhere
            else c
            for c in rank_candidates(
                account.name,
                email,
                found,
                exact_email_ids=frozenset(c.id for c in search.by_email),
            )
        ]
        if candidates:
            pick = await self._ask_for_customer(candidates)
            if pick.customer_id != NEW_CUSTOMER:
                await self._link(pick.customer_id, account.id)
                return self._customer(pick.customer_id, f"picked by {pick.by or 'a person'}")
        return await self._create_customer(opp, account, email)

    async def _ask_for_customer(self, candidates: list[CustomerCandidate]) -> CustomerPick:
        self._update(stage="waiting for a person to pick the customer", candidates=candidates)
        workflow.set_current_details(
            "**Waiting for a person: which billing customer is this deal's account?**\n\n"
            + "\n".join(
                f"- `{c.customer_id}` (score {c.score:.2f}: {', '.join(c.reasons)})"
                for c in candidates
            )
            + f"\n\nSend the signal `{SIGNAL_CUSTOMER_PICKED}` with "
            f'`{{"customer_id": "{candidates[0].customer_id}", "by": "you@example.com"}}`, '
            f'or `"customer_id": "{NEW_CUSTOMER}"` to create a new customer.'
        )
        try:
            await workflow.wait_condition(
                lambda: self._pick is not None,
                timeout=self._input.approval.expire_after,
                timeout_summary="customer pick",
            )
        except TimeoutError:
            raise _RollBack("no one picked the billing customer in time") from None
        assert self._pick is not None
        self._update(candidates=[])
        return self._pick

    async def _link(self, customer_id: str, account_id: str) -> None:
        """Link an existing customer to the account in billing (undone by clearing the link)."""
        wf_id = workflow.info().workflow_id

        async def unlink() -> str:
            await workflow.execute_activity_method(
                QuoteActivities.set_crm_link,
                SetCrmLinkInput(
                    customer_id=customer_id,
                    crm=self._input.crm,
                    account_id=None,
                    idempotency_key=idempotency_key(wf_id, "unlink-customer"),
                ),
                summary="compensate: unlink the customer",
                **WRITE,
            )
            return f"unlinked customer {customer_id}"

        self._saga.register("link customer", unlink)
        await workflow.execute_activity_method(
            QuoteActivities.set_crm_link,
            SetCrmLinkInput(
                customer_id=customer_id,
                crm=self._input.crm,
                account_id=account_id,
                idempotency_key=idempotency_key(wf_id, "link-customer"),
            ),
            summary="link the customer to the CRM account",
            **WRITE,
        )

    async def _create_customer(
        self, opp: Opportunity, account: CrmAccount, email: str | None
    ) -> str:
        assert self._plan is not None
        contact = next((c for c in opp.contacts if c.email == email), None)
        first, _, last = (contact.name if contact else "").partition(" ")
        draft = CustomerDraft(
            key=idempotency_key(workflow.info().workflow_id, "create-customer"),
            company=account.name,
            email=email,
            first_name=first or None,
            last_name=last or None,
            crm=self._input.crm,
            crm_account_id=account.id,
            currency=opp.currency,
            net_term_days=self._plan.net_term_days,
        )

        async def create(action: ProposedAction) -> str:
            async def delete() -> str:
                created = self._created_customer
                undone = await workflow.execute_activity_method(
                    QuoteActivities.undo_customer,
                    UndoCustomerInput(
                        draft=draft,
                        customer_id=created.id if created else None,
                        idempotency_key=idempotency_key(
                            workflow.info().workflow_id, "delete-customer"
                        ),
                    ),
                    summary="compensate: delete the customer we created",
                    **WRITE,
                )
                return undone.did

            self._saga.register("create customer", delete)
            self._created_customer = await workflow.execute_activity_method(
                QuoteActivities.create_billing_customer,
                CreateCustomerInput(draft=draft),
                summary="create the billing customer",
                **WRITE,
            )
            return self._created_customer.id

        governed = await self._govern(
            ProposedAction(
                kind=ActionKind.CREATE_CUSTOMER,
                customer_id=f"new:{account.id}",
                subject_id=opp.id,
                currency=opp.currency,
                reason="no billing customer exists for the won deal's account",
            ),
            account,
            why=f"Opportunity {opp.id} was won; account {account.id} has no billing customer.",
            execute=create,
        )
        if governed.status != "executed" or self._created_customer is None:
            raise _RollBack(f"create_customer {governed.status}")
        return self._customer(self._created_customer.id, "created")

    def _customer(self, customer_id: str, how: str) -> str:
        self._update(customer_id=customer_id, customer_how=how)
        return customer_id

    # --- the subscription ----------------------------------------------------------------------------

    async def _govern_subscription(
        self, opp: Opportunity, account: CrmAccount, plan: QuotePlan, customer_id: str
    ) -> Governed:
        draft = SubscriptionDraft(
            key=idempotency_key(workflow.info().workflow_id, "create-subscription"),
            customer_id=customer_id,
            lines=plan.lines,
            currency=plan.currency,
            start_date=plan.start_date,
            term_months=plan.term_months,
            discount_percent=plan.discount_percent,
            net_term_days=plan.net_term_days,
            crm=self._input.crm,
            crm_opportunity_id=opp.id,
        )

        async def create(action: ProposedAction) -> str:
            async def cancel() -> str:
                sub = self._subscription
                undone = await workflow.execute_activity_method(
                    QuoteActivities.undo_subscription,
                    UndoSubscriptionInput(
                        draft=draft,
                        subscription_id=sub.id if sub else None,
                        idempotency_key=idempotency_key(
                            workflow.info().workflow_id, "cancel-subscription"
                        ),
                        reason=f"RevBridge quote-to-cash rolled back: {self._rollback_reason}"[
                            :250
                        ],
                    ),
                    summary="compensate: cancel the subscription",
                    **WRITE,
                )
                return undone.did

            self._saga.register("create subscription", cancel)
            self._subscription = await workflow.execute_activity_method(
                QuoteActivities.create_subscription,
                CreateSubscriptionInput(draft=draft),
                summary="create the subscription",
                **WRITE,
            )
            self._update(subscription_id=self._subscription.id)
            return self._subscription.id

        lines = ", ".join(f"{line.quantity} × {line.price_id}" for line in plan.lines)
        return await self._govern(
            ProposedAction(
                kind=ActionKind.CREATE_SUBSCRIPTION,
                customer_id=customer_id,
                subject_id=opp.id,
                amount=plan.mrr,
                currency=plan.currency,
                discount_percent=plan.discount_percent,
                months=plan.term_months,
                terms=plan.terms,
                custom_terms=plan.custom_terms,
                reason=f"won deal: {lines}",
            ),
            account,
            why=f"Opportunity {opp.id} was won: {lines}, {plan.discount_percent:g}% off, "
            f"{plan.term_months} months, MRR {plan.mrr / 100:,.2f} {plan.currency}"
            + (f"; non-standard: {plan.terms}" if plan.custom else ""),
            execute=create,
        )

    async def _govern(
        self, action: ProposedAction, account: CrmAccount, why: str, execute: Execute
    ) -> Governed:
        assert self._plan is not None
        governed = await self.govern(
            action,
            AccountFacts(id=account.id, tier=account.tier, mrr=self._plan.mrr),
            why=why,
            execute=execute,
            audit=self._audit_governed,
            timing=self._input.approval,
            crm_account_id=account.id,
        )
        self._update(
            actions=[
                *self._status.actions,
                governed.line,
            ],
        )
        return governed

    # --- the CRM link --------------------------------------------------------------------------------

    async def _write_link(
        self, customer_id: str | None, subscription_id: str | None, mrr: int, status: str
    ) -> None:
        assert self._opp is not None and self._account is not None
        await workflow.execute_activity_method(
            QuoteActivities.write_billing_link,
            WriteBillingLinkInput(
                link=BillingLink(
                    account_id=self._account.id,
                    opportunity_id=self._opp.id,
                    billing=self._input.billing,
                    customer_id=customer_id,
                    subscription_id=subscription_id,
                    mrr=mrr,
                    currency=self._opp.currency,
                    status=status[:250],
                )
            ),
            summary="write the billing link to the CRM"
            if subscription_id
            else "put the rollback reason on the opportunity",
            **WRITE,
        )

    async def _restore_crm_link(self) -> str:
        """Compensation of the write-back: the account keeps the link it had before this run
        (none, or its existing customer), the opportunity loses the subscription and carries
        the reason."""
        account = self._account
        assert account is not None
        before = (
            account.billing_customer_id
            if account.billing_platform in (None, self._input.billing)
            else None
        )
        await self._write_link(before, None, 0, status=f"rolled back: {self._rollback_reason}")
        return "restored the CRM link and recorded the reason"

    # --- rolling back ----------------------------------------------------------------------------------

    async def _roll_back(self, reason: str) -> QuoteToCashResult:
        self._rollback_reason = reason
        self._update(stage="rolling back", reason=reason)
        workflow.set_current_details(f"Rolling back: {reason}")
        unwound = await self._saga.unwind()
        self._update(compensations=unwound.undone, compensation_failures=unwound.failed)
        customer_left = self._customer_id if self._created_customer is None else None
        await self._audit(
            "quote_to_cash_rolled_back",
            decision="allow",  # undoing our own writes needs no permission
            outcome="rolled back" + (" (incomplete)" if unwound.failed else ""),
            summary=f"Opportunity {self._input.opportunity_id} was rolled back: {reason}. "
            f"Undone: {'; '.join(unwound.undone) or 'nothing was written'}."
            + (f" NOT undone: {'; '.join(unwound.failed)}." if unwound.failed else ""),
            note_on=customer_left,
        )
        self._update(outcome="rolled_back")
        if unwound.failed:
            raise ApplicationError(
                f"rollback incomplete: {'; '.join(unwound.failed)}"[:500],
                type="QuoteToCashCompensationFailed",
                non_retryable=True,
            )
        return self._result("rolled_back", reason)

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

    async def _audit_governed(self, governed: Governed) -> None:
        action = governed.action
        customer = self._created_customer.id if self._created_customer else self._customer_id
        await self._audit(action.kind.value, **governed.audit_fields(), note_on=customer)

    async def _audit_refusal(
        self, refused: RefusedApproval, pending: PendingApproval | None
    ) -> None:
        await self._audit("approval_refused", **refused.audit_fields())

    async def _audit(
        self,
        action: str,
        *,
        decision: str,
        outcome: str,
        summary: str,
        policy_ids: list[str] | None = None,
        approver: str | None = None,
        key_suffix: str = "",
        parameters: dict | None = None,
        note_on: str | None = None,
    ) -> None:
        """CRM agent log always; a billing note on the customer when there is one to hold it."""
        entry = audit_entry(
            USE_CASE,
            action,
            decision=decision,
            outcome=outcome,
            summary=summary,
            policy_ids=policy_ids,
            approver=approver,
            account_id=self._account.id if self._account else None,
            parameters=parameters
            or {"action": action, "opportunity": self._input.opportunity_id, "s": key_suffix},
            key_suffix=key_suffix,
        )
        ids = await write_audit(entry, (NoteTarget.CUSTOMER, note_on) if note_on else None)
        self._update(audit_ids=[*self._status.audit_ids, *ids])

    # --- helpers ---------------------------------------------------------------------------------------

    def _provisioning_task(
        self, opp: Opportunity, account: CrmAccount, sub: SubscriptionRef
    ) -> TaskDraft:
        assert self._plan is not None
        lines = "\n".join(f"- {line.quantity} × {line.price_id}" for line in self._plan.lines)
        return TaskDraft(
            key=idempotency_key(workflow.info().workflow_id, "provisioning-task"),
            account_id=account.id,
            subject=f"Provision opportunity {opp.id}: subscription {sub.id}"[:250],
            description=(
                f"Opportunity {opp.id} is won and billed on {self._input.billing}: subscription "
                f"{sub.id} ({sub.status}) for customer {sub.customer_id}.\n{lines}\n"
                f"Term {self._plan.term_months} months"
                + (f", starts {self._plan.start_date}" if self._plan.start_date else "")
                + f".\nOpened by RevBridge workflow {workflow.info().workflow_id}."
            ),
        )

    def _refuse(self, why: str) -> None:
        self._update(refused=[*self._status.refused, why])

    def _closed(self, outcome: str, reason: str) -> QuoteToCashResult:
        self._update(stage="closed", outcome=outcome, reason=reason)
        return self._result(outcome, reason)

    def _result(self, outcome: str, reason: str = "") -> QuoteToCashResult:
        return QuoteToCashResult(
            outcome=outcome,
            opportunity_id=self._input.opportunity_id,
            customer_id=self._customer_id if outcome == "live" else None,
            subscription_id=self._subscription.id
            if outcome == "live" and self._subscription
            else None,
            reason=reason,
            audit_ids=self._status.audit_ids,
        )

    def _update(self, **changes: object) -> None:
        stage = self._status.stage
        self._status = self._status.model_copy(update=changes)
        if self._status.stage != stage:
            # the Web UI's current details follow the stage (waits overwrite them with what a
            # person has to do)
            s = self._status
            workflow.set_current_details(
                f"{s.stage}: opportunity {s.opportunity_id}"
                + (f", customer {s.customer_id}" if s.customer_id else "")
                + (f", subscription {s.subscription_id}" if s.subscription_id else "")
            )

    async def _finish(self, result: QuoteToCashResult) -> QuoteToCashResult:
        await self.refusals_audited()
        self._refusal_auditor.cancel()
        workflow.set_current_details(
            f"Closed: {result.outcome}"
            + (f" — {result.reason}" if result.reason else "")
            + (f". Subscription {result.subscription_id}." if result.subscription_id else ".")
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return result.model_copy(update={"audit_ids": self._status.audit_ids})


def _linked_elsewhere(customer: BillingCustomer, account_id: str) -> bool:
    other = customer.metadata.get("crm_account_id")
    return bool(other) and other != account_id


def _activity_name(err: ActivityError) -> str:
    return (err.activity_type or "a step").removeprefix("q2c_")


def _cause(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'error'}: {cause.message}"[:200]
    return str(cause or err)[:200]
