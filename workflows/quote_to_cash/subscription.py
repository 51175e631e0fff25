"""Quote-to-cash, the subscription and the links: the subscription through the approval gate, the
billing IDs written back to the CRM, and the provisioning task — each write through the gate, each
compensation registered before its write."""

from __future__ import annotations

from temporalio import workflow

from workflows.governed.gate import Execute, Governed, Permit
from workflows.options import READ
from workflows.quote_to_cash.customer import GATED_LINKS_PATCH, RollBack

with workflow.unsafe.imports_passed_through():
    from activities.crm import CrmActivities
    from activities.models import UpsertTaskInput
    from activities.quote import (
        ActiveSubscriptionsInput,
        ChangeSubscriptionInput,
        CreateSubscriptionInput,
        QuoteActivities,
        UndoSubscriptionInput,
        WriteBillingLinkInput,
    )
    from domain import expansion as ex
    from domain import temporal as names
    from domain.approvals import ProposedAction
    from domain.expansion import ExpansionLink, ExpansionOutcome, OutcomeSignal
    from domain.ids import idempotency_key
    from domain.models import CrmAccount, TaskDraft
    from domain.policy import ActionKind
    from domain.quote import QuotePlan, QuoteToCashResult
    from domain.records import (
        BillingLink,
        Opportunity,
        Subscription,
        SubscriptionDraft,
        SubscriptionRef,
    )

#: runs started before it created the subscription without looking for one the customer has
DUPLICATE_GUARD_PATCH = "q2c-duplicate-guard"
#: runs started before it created a new subscription for every won deal; since, a won
#: usage-based expansion changes the existing subscription instead (issue 21)
EXPANSION_UPGRADE_PATCH = "q2c-expansion-upgrade"


class SubscriptionSteps:
    """Mixin of :class:`~workflows.quote_to_cash.workflow.QuoteToCashWorkflow`."""

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

        async def create(permit: Permit, action: ProposedAction) -> str:
            async def cancel() -> str:
                sub = self.s.subscription
                undone = await self.write(
                    permit,
                    QuoteActivities.q2c_undo_subscription,
                    UndoSubscriptionInput(
                        draft=draft,
                        subscription_id=sub.id if sub else None,
                        idempotency_key=idempotency_key(
                            workflow.info().workflow_id, "cancel-subscription"
                        ),
                        reason=f"RevBridge quote-to-cash rolled back: {self.s.rollback_reason}"[
                            :250
                        ],
                    ),
                    summary="compensate: cancel the subscription",
                )
                return undone.did

            self._saga.register("create subscription", cancel)
            self.s.subscription = await self.write(
                permit,
                QuoteActivities.q2c_create_subscription,
                CreateSubscriptionInput(draft=draft),
                summary="create the subscription",
            )
            self._update(subscription_id=self.s.subscription.id)
            return self.s.subscription.id

        lines = ", ".join(f"{line.quantity} × {line.price_id}" for line in plan.lines)
        existing = await self._active_subscriptions(customer_id, plan)
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
                duplicate_of=[sub.id for sub in existing],
                reason=f"won deal: {lines}",
            ),
            account,
            why=f"Opportunity {opp.id} was won: {lines}, {plan.discount_percent:g}% off, "
            f"{plan.term_months} months, MRR {plan.mrr / 100:,.2f} {plan.currency}"
            + (f"; non-standard: {plan.terms}" if plan.custom else "")
            + (
                ". The customer ALREADY HAS, for the same products: "
                + "; ".join(
                    f"{sub.id} ({sub.status}, {sub.quantity} × {sub.plan}, "
                    f"MRR {sub.mrr / 100:,.2f} {sub.currency})"
                    for sub in existing
                )
                + ". Approve only if the customer really buys a second one; else reject and "
                "link the deal to the existing subscription (`revbridge link`)"
                if existing
                else ""
            ),
            execute=create,
        )

    async def _upgrade(
        self, opp: Opportunity, account: CrmAccount, link: ExpansionLink
    ) -> QuoteToCashResult:
        """A won expansion: the existing subscription moves to the recommended plan (prorated,
        through the gate: a plan change waits for RevOps where policy says so), the new MRR goes
        back to the CRM, and the expansion workflow learns it was won. Nothing new is created,
        so there is nothing to compensate: a refused change ends the run as rolled back."""
        self.s.customer_id = link.customer_id
        workflow.upsert_search_attributes([names.CUSTOMER_KEY.value_set(link.customer_id)])
        self._update(stage="upgrading the subscription", customer_id=link.customer_id)
        mrr: list[int] = []

        async def change(permit: Permit, action: ProposedAction) -> str:
            changed = await self.write(
                permit,
                QuoteActivities.q2c_change_subscription,
                ChangeSubscriptionInput(
                    customer_id=link.customer_id,
                    subscription_id=link.subscription_id,
                    from_price_id=link.from_price_id,
                    to_price_id=link.to_price_id,
                    idempotency_key=idempotency_key(
                        workflow.info().workflow_id, "change-subscription"
                    ),
                ),
                summary="upgrade the existing subscription",
            )
            self.s.subscription = changed.subscription
            mrr.append(changed.mrr_before)
            return changed.subscription.id

        governed = await self._govern(
            ProposedAction(
                kind=ActionKind.CHANGE_PLAN,
                customer_id=link.customer_id,
                subject_id=link.subscription_id,
                amount=opp.amount,
                currency=opp.currency,
                terms=f"{link.from_price_id} → {link.to_price_id}, prorated",
                reason=f"won expansion {opp.id}: {link.from_price_id} → {link.to_price_id}",
            ),
            account,
            why=f"Opportunity {opp.id} (a usage-based expansion) was won: move subscription "
            f"{link.subscription_id} from {link.from_price_id} to {link.to_price_id}, prorated. "
            "No new subscription is created.",
            execute=change,
        )
        sub = self.s.subscription
        if governed.status != "executed" or sub is None:
            by = f" by {governed.approver}" if governed.approver else ""
            raise RollBack(f"change_plan {governed.status}{by}")
        self._update(stage="writing the billing link to the CRM")
        await self._write_link(link.customer_id, sub.id, sub.mrr, status=sub.status)
        before = mrr[0] if mrr else 0
        try:
            await workflow.get_external_workflow_handle(link.workflow_id).signal(
                ex.SIGNAL_OUTCOME,
                OutcomeSignal(
                    event_id=f"q2c:{workflow.info().workflow_id}",
                    opportunity_id=opp.id,
                    outcome=ExpansionOutcome.WON,
                    mrr_before=before,
                    mrr_after=sub.mrr,
                    subscription_id=sub.id,
                ),
            )
        except Exception as err:  # the expansion run ended: the CRM record says won anyway
            workflow.logger.warning("expansion %s not told: %s", link.workflow_id, err)
        await self._audit(
            "quote_to_cash_upgraded",
            decision="allow",
            outcome="live",
            summary=f"Expansion opportunity {opp.id} is live: subscription {sub.id} moved from "
            f"{link.from_price_id} to {link.to_price_id} (prorated), MRR "
            f"{before / 100:,.2f} → {sub.mrr / 100:,.2f} {sub.currency}; no new subscription.",
            note_on=link.customer_id,
        )
        reason = f"upgraded {sub.id}: {link.from_price_id} → {link.to_price_id}"
        self._update(stage="live", subscription_id=sub.id, mrr=sub.mrr, outcome="live")
        return self._result("live", reason)

    async def _active_subscriptions(self, customer_id: str, plan: object) -> list[Subscription]:
        """A customer that existed before this run may already pay for these products (an old
        deal edited after go-live, a deal closed twice): its live subscriptions for them."""
        if self.s.created_customer is not None or not workflow.patched(DUPLICATE_GUARD_PATCH):
            return []
        found = await workflow.execute_activity_method(
            QuoteActivities.q2c_active_subscriptions,
            ActiveSubscriptionsInput(
                customer_id=customer_id,
                price_ids=[line.price_id for line in plan.lines],  # type: ignore[attr-defined]
            ),
            summary="active subscriptions for the same products",
            **READ,
        )
        return list(found.subscriptions)

    async def _govern(
        self, action: ProposedAction, account: CrmAccount, why: str, execute: Execute
    ) -> Governed:
        governed = await self.govern(
            action,
            self._account_facts(account),
            why=why,
            execute=execute,
            audit=self._audit_governed,
            timing=self._input.approval,
            crm_account_id=account.id,
        )
        self._update(
            actions=[
                *self.s.status.actions,
                governed.line,
            ],
        )
        return governed

    # --- the CRM link --------------------------------------------------------------------------------

    async def _write_link(
        self, customer_id: str | None, subscription_id: str | None, mrr: int, status: str
    ) -> None:
        """The billing IDs, MRR and status onto the CRM account and opportunity: fields RevBridge
        owns, so policy only (observe mode writes nothing)."""
        assert self.s.opp is not None and self.s.account is not None
        permit = await self.housekeeping_since(
            GATED_LINKS_PATCH, ActionKind.UPDATE_CRM_FIELD, self._account_facts(self.s.account)
        )
        if not permit.allowed:
            return
        await self.write(
            permit,
            QuoteActivities.q2c_write_billing_link,
            WriteBillingLinkInput(
                link=BillingLink(
                    account_id=self.s.account.id,
                    opportunity_id=self.s.opp.id,
                    billing=self._input.billing,
                    customer_id=customer_id,
                    subscription_id=subscription_id,
                    mrr=mrr,
                    currency=self.s.opp.currency,
                    status=status[:250],
                )
            ),
            summary="write the billing link to the CRM"
            if subscription_id
            else "put the rollback reason on the opportunity",
        )

    async def _restore_crm_link(self) -> str:
        """Compensation of the write-back: the account keeps the link it had before this run
        (none, or its existing customer), the opportunity loses the subscription and carries
        the reason."""
        account = self.s.account
        assert account is not None
        before = (
            account.billing_customer_id
            if account.billing_platform in (None, self._input.billing)
            else None
        )
        await self._write_link(before, None, 0, status=f"rolled back: {self.s.rollback_reason}")
        return "restored the CRM link and recorded the reason"

    async def _open_provisioning_task(
        self, opp: Opportunity, account: CrmAccount, sub: SubscriptionRef
    ) -> None:
        permit = await self.housekeeping_since(
            GATED_LINKS_PATCH, ActionKind.CREATE_TASK, self._account_facts(account)
        )
        if permit.allowed:
            await self.write(
                permit,
                CrmActivities.upsert_crm_task,
                UpsertTaskInput(draft=self._provisioning_task(opp, account, sub)),
                summary="open the provisioning task",
            )

    def _provisioning_task(
        self, opp: Opportunity, account: CrmAccount, sub: SubscriptionRef
    ) -> TaskDraft:
        assert self.s.plan is not None
        lines = "\n".join(f"- {line.quantity} × {line.price_id}" for line in self.s.plan.lines)
        return TaskDraft(
            key=idempotency_key(workflow.info().workflow_id, "provisioning-task"),
            account_id=account.id,
            subject=f"Provision opportunity {opp.id}: subscription {sub.id}"[:250],
            description=(
                f"Opportunity {opp.id} is won and billed on {self._input.billing}: subscription "
                f"{sub.id} ({sub.status}) for customer {sub.customer_id}.\n{lines}\n"
                f"Term {self.s.plan.term_months} months"
                + (f", starts {self.s.plan.start_date}" if self.s.plan.start_date else "")
                + f".\nOpened by RevBridge workflow {workflow.info().workflow_id}."
            ),
        )
