"""Quote-to-cash, the billing customer: the product mapping every line needs, and the customer —
the link we wrote before, else exactly one customer with the contact's email (linked), else similar
customers offered to a person, else a new customer (governed). Every write through the gate, its
compensation registered before it runs."""

from __future__ import annotations

from temporalio import workflow

from workflows.governed.gate import Permit
from workflows.options import LOCAL_POLICY, READ

with workflow.unsafe.imports_passed_through():
    from activities.policy import PolicyActivities
    from activities.quote import (
        CreateCustomerInput,
        FindCustomerInput,
        GetPricesInput,
        QuoteActivities,
        ReadMappingInput,
        SetCrmLinkInput,
        UndoCustomerInput,
    )
    from domain.approvals import ProposedAction
    from domain.ids import idempotency_key
    from domain.matching import rank_candidates
    from domain.models import BillingCustomer, CrmAccount
    from domain.policy import ActionKind, EligibleApproversInput
    from domain.quote import (
        NEW_CUSTOMER,
        SIGNAL_CUSTOMER_PICKED,
        SIGNAL_MAPPING_FIXED,
        CustomerCandidate,
        CustomerPick,
        ProductMapping,
        price_problems,
        unmapped_products,
    )
    from domain.records import CustomerDraft, Opportunity, Price

#: runs started before the write gate linked customers and wrote CRM links without asking policy
GATED_LINKS_PATCH = "q2c-gated-links"
#: runs started before took a customer pick or a mapping fix from anyone (issue 13): since, only
#: from the roles that may approve what the answer leads to (policies/approvers.yaml)
PERSON_ROLES_PATCH = "q2c-person-roles"


class RollBack(Exception):
    """Internal: stop here and undo what was done (a rejection, an expiry, a missing account)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CustomerSteps:
    """Mixin of :class:`~workflows.quote_to_cash.workflow.QuoteToCashWorkflow`."""

    # --- products ------------------------------------------------------------------------------------

    async def _map_products(self, opp: Opportunity) -> tuple[ProductMapping, dict[str, Price]]:
        """The mapping and prices for every line, waiting for a person while any is missing."""
        billing = self._input.billing
        while True:
            self._update(stage="mapping products to prices")
            mapping = await workflow.execute_activity_method(
                QuoteActivities.q2c_read_product_mapping,
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
                    QuoteActivities.q2c_get_prices,
                    GetPricesInput(refs=refs),
                    summary=f"read {len(refs)} {billing} price(s)",
                    **READ,
                )
                prices = found.prices
            problems |= price_problems(opp, mapping, billing, prices)
            if not problems:
                self._update(unmapped={})
                return mapping, prices
            # who may answer is known before the wait shows: every fix it counts was checked
            self.s.fix_eligible = await self._who_may(ActionKind.CREATE_SUBSCRIPTION)
            self._update(stage="waiting for the product mapping", unmapped=problems)
            workflow.set_current_details(
                "**Waiting for a person: unknown product(s)**\n\n"
                + "\n".join(f"- `{code}`: {why}" for code, why in sorted(problems.items()))
                + f"\n\nAdd them to policies/products.yaml (and the {billing} catalogue), then "
                f'send the signal `{SIGNAL_MAPPING_FIXED}` with `{{"by": "you@example.com"}}`.'
            )
            seen = len(self.s.mapping_fixes)
            try:
                await workflow.wait_condition(
                    lambda seen=seen: len(self.s.mapping_fixes) > seen,
                    timeout=self._input.approval.expire_after,
                    timeout_summary="product mapping fix",
                )
            except TimeoutError:
                raise RollBack(
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
            QuoteActivities.q2c_find_billing_customer,
            FindCustomerInput(crm=crm, account_id=account.id, email=email, company=account.name),
            summary="look for the customer in billing",
            **READ,
        )
        if search.linked is not None:
            return self._customer(search.linked.id, "linked (billing)")
        if len(search.by_email) == 1 and not _linked_elsewhere(search.by_email[0], account.id):
            await self._link(search.by_email[0].id, account)
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
                await self._link(pick.customer_id, account)
                return self._customer(pick.customer_id, f"picked by {pick.by or 'a person'}")
        return await self._create_customer(opp, account, email)

    async def _who_may(self, kind: ActionKind) -> list[str] | None:
        """Who may answer a wait whose answer leads to ``kind`` (a pick links or creates the
        customer; a mapping fix lets the subscription be created): the people in the action's
        roles. Loaded before the wait opens, so every answer it counts was checked."""
        if not workflow.patched(PERSON_ROLES_PATCH):
            return None
        eligible = await workflow.execute_local_activity_method(
            PolicyActivities.eligible_approvers,
            EligibleApproversInput(action=kind),
            summary="who may answer",
            **LOCAL_POLICY,
        )
        return list(eligible.emails)

    async def _ask_for_customer(self, candidates: list[CustomerCandidate]) -> CustomerPick:
        self.s.pick_eligible = await self._who_may(ActionKind.CREATE_CUSTOMER)
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
                lambda: self.s.pick is not None,
                timeout=self._input.approval.expire_after,
                timeout_summary="customer pick",
            )
        except TimeoutError:
            raise RollBack("no one picked the billing customer in time") from None
        assert self.s.pick is not None
        self._update(candidates=[])
        return self.s.pick

    async def _link(self, customer_id: str, account: CrmAccount) -> None:
        """Link an existing customer to the account in billing (undone by clearing the link):
        a field RevBridge owns, so policy only — observe mode links nothing."""
        permit = await self.housekeeping_since(
            GATED_LINKS_PATCH, ActionKind.UPDATE_BILLING_FIELD, self._account_facts(account)
        )
        if not permit.allowed:
            return

        async def set_link(account_id: str | None, step: str, summary: str) -> None:
            await self.write(
                permit,
                QuoteActivities.q2c_set_crm_link,
                SetCrmLinkInput(
                    customer_id=customer_id,
                    crm=self._input.crm,
                    account_id=account_id,
                    idempotency_key=idempotency_key(workflow.info().workflow_id, step),
                ),
                summary=summary,
            )

        async def unlink() -> str:
            await set_link(None, "unlink-customer", "compensate: unlink the customer")
            return f"unlinked customer {customer_id}"

        self._saga.register("link customer", unlink)
        await set_link(account.id, "link-customer", "link the customer to the CRM account")

    async def _create_customer(
        self, opp: Opportunity, account: CrmAccount, email: str | None
    ) -> str:
        assert self.s.plan is not None
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
            net_term_days=self.s.plan.net_term_days,
        )

        async def create(permit: Permit, action: ProposedAction) -> str:
            async def delete() -> str:
                created = self.s.created_customer
                undone = await self.write(
                    permit,
                    QuoteActivities.q2c_undo_customer,
                    UndoCustomerInput(
                        draft=draft,
                        customer_id=created.id if created else None,
                        idempotency_key=idempotency_key(
                            workflow.info().workflow_id, "delete-customer"
                        ),
                    ),
                    summary="compensate: delete the customer we created",
                )
                return undone.did

            self._saga.register("create customer", delete)
            self.s.created_customer = await self.write(
                permit,
                QuoteActivities.q2c_create_billing_customer,
                CreateCustomerInput(draft=draft),
                summary="create the billing customer",
            )
            return self.s.created_customer.id

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
        if governed.status != "executed" or self.s.created_customer is None:
            raise RollBack(f"create_customer {governed.status}")
        return self._customer(self.s.created_customer.id, "created")

    def _customer(self, customer_id: str, how: str) -> str:
        self._update(customer_id=customer_id, customer_how=how)
        return customer_id


def _linked_elsewhere(customer: BillingCustomer, account_id: str) -> bool:
    other = customer.metadata.get("crm_account_id")
    return bool(other) and other != account_id
