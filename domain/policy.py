"""Governance: every side effect asks the Cedar policy engine first.

Pure evaluation over policy text and data handed in (the activity in ``activities/policy.py``
reads them from ``policies/``). Three outcomes, each with the policy IDs (``@id`` annotations)
that decided it:

- ``allow``: the agent may do it now.
- ``needs_approval``: it becomes allowed once a human in one of ``approver_roles`` approves.
- ``deny``: not allowed, approval or not.

How ``needs_approval`` is derived: one batch of Cedar requests on the *same* action —
``RevBridge::Action::"<kind>"`` — differing only in ``context.approval``:

1. the request as it stands (``approval.approved`` is true only when ``approved_by`` is a listed
   human holding a role approvers.yaml names for the action);
2. one probe per role approvers.yaml names for the action, with
   ``approval = {approved: true, approver_roles: {role}}``.

If (1) is allowed the outcome is ``allow``; else the roles whose probe is allowed are the
``approver_roles`` of a ``needs_approval``; none → ``deny``. So approvers.yaml says who *may*
approve an action and Cedar may demand a specific role on top (an approval counts when both agree).

Deny by default (no permit → deny, reported as ``default_deny``), ``forbid`` wins, and any engine
error — unparsable policy, schema or policy-validation error, bad entity, evaluation error,
exception — is ``deny`` with ``engine_error`` and the error text. Policies are validated against
the schema when loaded, because Cedar skips a policy that errors at evaluation time, and a
skipped ``forbid`` would fail open.

Rollout modes are enforced here, in code, so no policy edit can switch them off (the mode is
also in ``context.mode`` for policies that care): ``observe`` → every write is ``deny`` with
``mode_observe``; ``assist`` → an ``allow`` without an approval becomes ``needs_approval`` with
``mode_assist``; ``auto`` → the policies decide.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cedarpy
from pydantic import Field, model_validator

from domain.models import CustomerTier, Frozen

NAMESPACE = "RevBridge"
WORKSPACE_ID = "revbridge"

#: pseudo policy IDs for decisions no Cedar policy made
ENGINE_ERROR = "engine_error"
DEFAULT_DENY = "default_deny"
MODE_OBSERVE = "mode_observe"
MODE_ASSIST = "mode_assist"

_MAX_ERROR_CHARS = 2000


class ActionKind(StrEnum):
    """The kinds of side effect an agent can ask for (all are writes)."""

    CREATE_CASE = "create_case"
    CREATE_TASK = "create_task"
    SEND_EMAIL = "send_email"
    APPLY_CREDIT = "apply_credit"
    OFFER_DISCOUNT = "offer_discount"
    CHANGE_PLAN = "change_plan"
    PAUSE_SUBSCRIPTION = "pause_subscription"
    CANCEL_SUBSCRIPTION = "cancel_subscription"
    REFUND = "refund"
    RETRY_PAYMENT = "retry_payment"
    UPDATE_CRM_FIELD = "update_crm_field"
    WRITE_NOTE = "write_note"
    CREATE_SUBSCRIPTION = "create_subscription"
    CREATE_CUSTOMER = "create_customer"
    #: a field RevBridge owns on a billing record (the CRM link on a customer)
    UPDATE_BILLING_FIELD = "update_billing_field"
    #: a summarized revenue-recognition journal entry posted to the ERP (issue 20)
    POST_JOURNAL_ENTRY = "post_journal_entry"


class StartAction(StrEnum):
    """Work a human starts by hand (the CLI asks :meth:`PolicySet.may_start`)."""

    START_DUNNING = "start_dunning"
    START_CHURN_SWEEP = "start_churn_sweep"
    RERUN_QUOTE_TO_CASH = "rerun_quote_to_cash"
    READ = "read"


class Mode(StrEnum):
    OBSERVE = "observe"
    ASSIST = "assist"
    AUTO = "auto"


class Origin(StrEnum):
    RULES = "rules"
    LLM = "llm"
    HUMAN = "human"


class Outcome(StrEnum):
    ALLOW = "allow"
    NEEDS_APPROVAL = "needs_approval"
    DENY = "deny"


# --- requests and decisions (activity input / output) ----------------------------------------------


class AccountFacts(Frozen):
    """What policies may know about the account a side effect touches. Money in minor units."""

    id: str = Field(min_length=1)  # CRM account ID or billing customer ID
    tier: CustomerTier = CustomerTier.SMB
    mrr: int = 0
    region: str = ""
    lifetime_value: int = 0
    strategic: bool = False


class PolicyRequest(Frozen):
    use_case: str = Field(min_length=1)
    action: ActionKind
    account: AccountFacts
    amount: int = 0  # minor units of ``currency``
    currency: str = "USD"
    origin: Origin = Origin.RULES
    discount_percent: float = Field(default=0, ge=0, le=100)
    #: non-standard terms (custom payment terms, a price override) beyond the discount
    custom_terms: bool = False
    #: the customer already has an active subscription for the same products (quote-to-cash)
    duplicate_subscription: bool = False
    #: the human whose approval is attached (from the approval signal); checked, never trusted
    approved_by: str | None = None


class PolicyDecision(Frozen):
    outcome: Outcome
    #: the @id of every policy that decided it, plus mode_observe / mode_assist / default_deny /
    #: engine_error where no policy (or not only a policy) did
    policy_ids: list[str] = []
    #: for needs_approval: the roles any of whose members can approve
    approver_roles: list[str] = []
    mode: Mode | None = None
    #: the approver whose approval counted (None when there was none, or it did not count)
    approved_by: str | None = None
    reasons: list[str] = []

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOW


class EligibleApproversInput(Frozen):
    action: ActionKind
    roles: list[str] = []


class EligibleApprovers(Frozen):
    emails: list[str]
    #: their users in the deployment's CRM (approvers.yaml ``crm_users``), for reminder tasks
    crm_user_ids: list[str] = []


class CheckApproverInput(Frozen):
    email: str
    action: ActionKind


class ApproverCheck(Frozen):
    email: str
    action: ActionKind
    allowed: bool
    #: the roles the action needs (approvers.yaml) and the roles the person holds
    required_roles: list[str] = []
    holds_roles: list[str] = []
    reason: str


# --- policy data ------------------------------------------------------------------------------------


class ModesConfig(Frozen):
    """modes.yaml: the rollout mode per use case. A use case not listed gets ``default``."""

    default: Mode = Mode.OBSERVE
    use_cases: dict[str, Mode] = {}


class ApproversConfig(Frozen):
    """approvers.yaml: which roles may approve each action, and who is in each role."""

    default: list[str] = ["revops"]
    actions: dict[ActionKind, list[str]] = {}
    roles: dict[str, list[str]] = {}
    #: each approver's user in the CRM (a Salesforce User ID, a HubSpot owner ID): one ID for the
    #: deployment's CRM, or one per CRM (``{salesforce: 005…, hubspot: "…"}``)
    crm_users: dict[str, str | dict[str, str]] = {}

    @model_validator(mode="after")
    def _roles_are_declared(self) -> ApproversConfig:
        used = set(self.default).union(*self.actions.values())
        unknown = sorted(used - set(self.roles))
        if unknown:
            raise ValueError(f"roles used but not declared under `roles`: {', '.join(unknown)}")
        return self


class PolicyError(Exception):
    """The policy data cannot be used; every decision is ``deny`` / ``engine_error``."""


@dataclass(frozen=True)
class _Approval:
    approved: bool
    roles: frozenset[str]
    email: str | None = None


@dataclass(frozen=True)
class _Result:
    allowed: bool
    ids: tuple[str, ...]  # @id annotations, sorted


def _uid(entity_type: str, entity_id: str) -> dict[str, str]:
    return {"type": f"{NAMESPACE}::{entity_type}", "id": entity_id}


def _normalize_email(email: str | None) -> str:
    return (email or "").strip().lower()


def _dedup(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _truncate(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[:_MAX_ERROR_CHARS] + "…"


def _policy_ids(texts: Mapping[str, str]) -> list[str]:
    """Parse each file on its own (errors name the file); every policy needs a unique ``@id``."""
    seen: dict[str, str] = {}
    for name, text in texts.items():
        try:
            est = json.loads(cedarpy.policies_to_json_str(text))
        except Exception as exc:  # cedarpy raises ValueError on parse errors
            raise PolicyError(f"{name}: cannot parse Cedar: {exc}") from exc
        if est.get("templates"):
            raise PolicyError(f"{name}: policy templates are not supported")
        for position, policy in enumerate(est.get("staticPolicies", {}).values(), start=1):
            policy_id = (policy.get("annotations") or {}).get("id")
            if not policy_id:
                raise PolicyError(f"{name}: policy #{position} has no @id annotation")
            if policy_id in seen:
                raise PolicyError(
                    f"{name}: duplicate @id {policy_id!r} (also in {seen[policy_id]})"
                )
            seen[policy_id] = name
    return list(seen)


class PolicySet:
    """Cedar policies + schema + modes + approvers, ready to decide.

    Never raises on bad input: a set that cannot be used remembers why (:attr:`error`) and then
    denies everything with ``engine_error``.
    """

    def __init__(
        self,
        policies: str | Mapping[str, str],
        *,
        schema: str | None = None,
        modes: Mapping[str, Any] | None = None,
        approvers: Mapping[str, Any] | None = None,
    ) -> None:
        self._error: str | None = None
        self.policy_ids: list[str] = []  # every @id in the set, in file order
        self._modes = ModesConfig()
        self._approvers = ApproversConfig(default=[])
        try:
            self._modes = ModesConfig.model_validate(dict(modes or {}))
            self._approvers = (
                ApproversConfig.model_validate(dict(approvers))
                if approvers is not None
                else ApproversConfig(default=[])
            )
            texts = {"<policies>": policies} if isinstance(policies, str) else dict(policies)
            self.policy_ids = _policy_ids(texts)
            combined = "\n".join(texts.values())
            self._schema = cedarpy.Schema.from_str(schema) if schema is not None else None
            if schema is not None:
                result = cedarpy.validate_policies(combined, self._schema)
                if not result.validation_passed:
                    names = result.id_annotations_by_policy_id
                    problems = [
                        f"{names.get(e.policy_id, e.policy_id) or 'schema'}: {e.error}"
                        for e in result.errors
                    ]
                    raise PolicyError("policy validation failed: " + "; ".join(problems))
            self._cedar = cedarpy.PolicySet.from_str(combined)
        except Exception as exc:
            self._error = _truncate(f"{type(exc).__name__}: {exc}")

    @classmethod
    def broken(cls, error: str) -> PolicySet:
        """A set that denies everything because its data could not be read."""
        instance = cls("")
        instance._error = _truncate(error)
        return instance

    @property
    def error(self) -> str | None:
        return self._error

    # --- modes and approvers ------------------------------------------------------------------------

    def mode_for(self, use_case: str) -> Mode:
        if self._error:
            return Mode.OBSERVE
        return self._modes.use_cases.get(use_case, self._modes.default)

    def approver_roles(self, action: ActionKind | str) -> list[str]:
        """The roles whose members may approve ``action`` (approvers.yaml; ValueError if unknown)."""
        kind = ActionKind(action)
        if self._error:
            return []
        return list(self._approvers.actions.get(kind, self._approvers.default))

    def roles_of(self, email: str | None) -> set[str]:
        who = _normalize_email(email)
        if self._error or "@" not in who:
            return set()
        return {
            role
            for role, members in self._approvers.roles.items()
            if who in {_normalize_email(m) for m in members}
        }

    def eligible_approvers(self, action: ActionKind | str, roles: Iterable[str] = ()) -> list[str]:
        """Everyone who may approve ``action`` (limited to ``roles`` when given: the roles the
        decision named), sorted. The approval gate checks approvers against this list."""
        try:
            required = set(self.approver_roles(action))
        except ValueError:
            return []
        wanted = required & set(roles) if roles else required
        return sorted(
            {_normalize_email(m) for r in wanted for m in self._approvers.roles.get(r, [])}
        )

    def crm_user_ids(self, emails: Iterable[str], crm: str | None) -> list[str]:
        """The CRM users of ``emails`` (approvers.yaml ``crm_users``), in order, for ``crm``
        (the deployment's CRM; a plain ID counts for any). People without one are left out."""
        users = {_normalize_email(k): v for k, v in self._approvers.crm_users.items()}
        found: list[str] = []
        for email in emails:
            user = users.get(_normalize_email(email))
            if isinstance(user, dict):
                user = user.get(crm or "")
            if user and user not in found:
                found.append(str(user))
        return found

    def can_approve(self, email: str | None, action: ActionKind | str) -> bool:
        """True only for a listed human holding a role that may approve ``action``; never for an
        agent (agents are not listed) or an unknown email."""
        try:
            required = set(self.approver_roles(action))
        except ValueError:
            return False
        return bool(self.roles_of(email) & required)

    def check_approver(self, email: str, action: ActionKind | str) -> ApproverCheck:
        kind = ActionKind(action)
        required, holds = self.approver_roles(kind), sorted(self.roles_of(email))
        allowed = self.can_approve(email, kind)
        if allowed:
            reason = (
                f"{email} may approve {kind} as {', '.join(sorted(set(holds) & set(required)))}"
            )
        elif self._error:
            reason = f"policy data unusable: {self._error}"
        else:
            reason = (
                f"{email} may not approve {kind}: it needs {' or '.join(required) or 'no one'}, "
                f"they hold {', '.join(holds) or 'no role'}"
            )
        return ApproverCheck(
            email=email,
            action=kind,
            allowed=allowed,
            required_roles=required,
            holds_roles=holds,
            reason=reason,
        )

    # --- decisions ----------------------------------------------------------------------------------

    def decide(self, req: PolicyRequest) -> PolicyDecision:
        if self._error:
            return engine_error_decision(self._error, mode=None)
        mode = self.mode_for(req.use_case)
        approval, notes = self._approval_for(req)
        try:
            if mode is Mode.OBSERVE:
                would = self._decide(req, Mode.AUTO, approval, [])
                return PolicyDecision(
                    outcome=Outcome.DENY,
                    policy_ids=[MODE_OBSERVE],
                    mode=mode,
                    reasons=[
                        f"use case {req.use_case!r} is in observe mode: writes are reported, "
                        "never made",
                        f"in auto mode the policies would say {would.outcome} "
                        f"({', '.join(would.policy_ids)})",
                    ],
                )
            return self._decide(req, mode, approval, notes)
        except PolicyError as exc:
            return engine_error_decision(str(exc), mode=mode)

    def _approval_for(self, req: PolicyRequest) -> tuple[_Approval, list[str]]:
        if req.approved_by is None:
            return _Approval(False, frozenset()), []
        check = self.check_approver(req.approved_by, req.action)
        if check.allowed:
            email = _normalize_email(req.approved_by)
            return _Approval(True, frozenset(check.holds_roles), email), []
        return _Approval(False, frozenset()), [f"approval not counted: {check.reason}"]

    def _decide(
        self, req: PolicyRequest, mode: Mode, approval: _Approval, notes: list[str]
    ) -> PolicyDecision:
        roles = self.approver_roles(req.action)
        entities = _entities(req)
        requests = [_request(req, mode, approval)] + [
            _request(req, mode, _Approval(True, frozenset({role}))) for role in roles
        ]
        current, *probes = self._evaluate(requests, entities)
        approvable = [role for role, probe in zip(roles, probes, strict=True) if probe.allowed]
        permits = _dedup(i for probe in probes if probe.allowed for i in probe.ids)
        what = f"{req.action} on {req.account.id}"

        if current.allowed and (mode is Mode.AUTO or approval.approved):
            reasons = [*notes, f"{what} allowed by {', '.join(current.ids)}"]
            if approval.approved:
                reasons.append(f"approved by {approval.email}")
            return PolicyDecision(
                outcome=Outcome.ALLOW,
                policy_ids=list(current.ids),
                mode=mode,
                approved_by=approval.email,
                reasons=reasons,
            )

        if current.allowed:  # assist mode, no approval attached
            ids = _dedup([MODE_ASSIST, *current.ids])
            if approvable:
                return PolicyDecision(
                    outcome=Outcome.NEEDS_APPROVAL,
                    policy_ids=ids,
                    approver_roles=approvable,
                    mode=mode,
                    reasons=[
                        *notes,
                        f"use case {req.use_case!r} is in assist mode: every write needs approval",
                        f"{what} would be allowed by {', '.join(current.ids)}; "
                        f"approver roles: {', '.join(approvable)}",
                    ],
                )
            return PolicyDecision(
                outcome=Outcome.DENY,
                policy_ids=ids,
                mode=mode,
                reasons=[
                    *notes,
                    f"use case {req.use_case!r} is in assist mode and no approver role "
                    f"({', '.join(roles) or 'none configured'}) satisfies the policies",
                ],
            )

        blocked = (
            f"forbidden by {', '.join(current.ids)}"
            if current.ids
            else "no policy permits it without an approval"
        )
        if approval.approved:
            notes = [*notes, f"the approval by {approval.email} does not make it allowed"]
        if approvable:
            return PolicyDecision(
                outcome=Outcome.NEEDS_APPROVAL,
                policy_ids=_dedup([*current.ids, *permits]),
                approver_roles=approvable,
                mode=mode,
                reasons=[
                    *notes,
                    f"{what}: {blocked}",
                    f"an approval by {' or '.join(approvable)} makes it allowed "
                    f"({', '.join(permits)})",
                ],
            )
        forbids = _dedup([*current.ids, *(i for probe in probes for i in probe.ids)])
        return PolicyDecision(
            outcome=Outcome.DENY,
            policy_ids=forbids or [DEFAULT_DENY],
            mode=mode,
            reasons=[
                *notes,
                f"{what} forbidden by {', '.join(forbids)}"
                if forbids
                else f"{what}: no policy permits it, with or without an approval (deny by default)",
            ],
        )

    def may_start(self, email: str, what: StartAction | str) -> PolicyDecision:
        """May this human start ``what`` by hand? ``allow`` or ``deny`` (the CLI asks)."""
        if self._error:
            return engine_error_decision(self._error, mode=None)
        try:
            action = StartAction(what)
        except ValueError:
            return PolicyDecision(
                outcome=Outcome.DENY,
                policy_ids=[DEFAULT_DENY],
                reasons=[f"unknown action {what!r}"],
            )
        who = _normalize_email(email)
        roles = self.roles_of(who)
        human = _uid("Human", who)
        entities = [
            {"uid": human, "attrs": {"roles": sorted(roles)}, "parents": []},
            {"uid": _uid("Workspace", WORKSPACE_ID), "attrs": {}, "parents": []},
        ]
        request = {
            "principal": human,
            "action": _uid("Action", action),
            "resource": _uid("Workspace", WORKSPACE_ID),
            "context": {},
        }
        try:
            (result,) = self._evaluate([request], entities)
        except PolicyError as exc:
            return engine_error_decision(str(exc), mode=None)
        holds = ", ".join(sorted(roles)) or "no role"
        if result.allowed:
            return PolicyDecision(
                outcome=Outcome.ALLOW,
                policy_ids=list(result.ids),
                reasons=[f"{who} ({holds}) may {action}: {', '.join(result.ids)}"],
            )
        return PolicyDecision(
            outcome=Outcome.DENY,
            policy_ids=list(result.ids) or [DEFAULT_DENY],
            reasons=[f"{who} ({holds}) may not {action}"],
        )

    def _evaluate(
        self, requests: list[dict[str, Any]], entities: list[dict[str, Any]]
    ) -> list[_Result]:
        try:
            answers = cedarpy.is_authorized_batch(
                requests, self._cedar, entities, schema=self._schema
            )
        except Exception as exc:
            raise PolicyError(f"{type(exc).__name__}: {exc}") from exc
        results = []
        for answer in answers:
            if answer.diagnostics.errors:
                raise PolicyError("; ".join(answer.diagnostics.errors))
            if answer.decision is cedarpy.Decision.NoDecision:
                raise PolicyError("the engine reached no decision")
            names = answer.diagnostics.id_annotations_by_reason
            ids = sorted(names.get(p) or p for p in answer.diagnostics.reasons)
            results.append(_Result(answer.allowed, tuple(ids)))
        return results


def engine_error_decision(error: str, *, mode: Mode | None = None) -> PolicyDecision:
    return PolicyDecision(
        outcome=Outcome.DENY,
        policy_ids=[ENGINE_ERROR],
        mode=mode,
        reasons=[f"policy engine error: {_truncate(error)}"],
    )


def _entities(req: PolicyRequest) -> list[dict[str, Any]]:
    a = req.account
    return [
        {"uid": _uid("Agent", req.use_case), "attrs": {}, "parents": []},
        {
            "uid": _uid("Account", a.id),
            "attrs": {
                "tier": str(a.tier),
                "mrr": a.mrr,
                "region": a.region,
                "lifetime_value": a.lifetime_value,
                "strategic": a.strategic,
            },
            "parents": [],
        },
    ]


def _request(req: PolicyRequest, mode: Mode, approval: _Approval) -> dict[str, Any]:
    return {
        "principal": _uid("Agent", req.use_case),
        "action": _uid("Action", req.action),
        "resource": _uid("Account", req.account.id),
        "context": {
            "amount": req.amount,
            "currency": req.currency,
            "origin": str(req.origin),
            "mode": str(mode),
            # Cedar decimals carry at most four fractional digits
            "discount_percent": {"__extn": {"fn": "decimal", "arg": f"{req.discount_percent:.4f}"}},
            "custom_terms": req.custom_terms,
            "approval": {"approved": approval.approved, "approver_roles": sorted(approval.roles)},
            # optional in the schema: sent only when set, so policy folders copied before it
            # existed keep validating every other request
            **({"duplicate_subscription": True} if req.duplicate_subscription else {}),
        },
    }
