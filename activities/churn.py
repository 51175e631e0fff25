"""Churn intervention's activities: score a customer, write the score, offer a discount, and walk
the book for the scheduled sweep.

Scoring reads the configuration (``policies/churn.yaml``), the billing snapshot and the CRM's
account and open cases in one activity, so the inputs and the result of every score sit together
in the workflow's history (and the configuration it used with them). The sweep's page activity
lists one page of customers, reads them in bulk (one billing read, one CRM read with the scores
the CRM stores), signals-with-start the at-risk customers' churn workflows, signals the running
interventions whose score moved (one visibility query per page) and hands back the low-risk scores
that moved for the sweep's gated write: an unchanged book writes and signals nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from activities.errors import to_application_error, vendor_errors
from activities.policy import DEFAULT_POLICY_DIR
from activities.writes import writes
from connectors.base import BillingPlatform, ConnectorError, CrmSystem, NotFound
from domain import churn
from domain.audit import AuditEntry, parameters_hash
from domain.churn import (
    ChurnConfig,
    ChurnInput,
    ChurnScore,
    ChurnSignals,
    ScoredAccount,
    SweepHandoff,
    SweepSnapshot,
)
from domain.ids import churn_workflow_id, idempotency_key
from domain.models import CaseSummary, CrmAccount, Frozen
from domain.records import ChurnScoreRecord, CustomerPage, CustomerSnapshot
from domain.starts import start_options
from domain.temporal import SIGNAL_RISK

log = logging.getLogger("revbridge.churn")

DEFAULT_CHURN_CONFIG = DEFAULT_POLICY_DIR / "churn.yaml"
#: how many customers of a page the sweep scores at once
SWEEP_CONCURRENCY = 4


# --- inputs and outputs --------------------------------------------------------------------------


class ScoreCustomerInput(Frozen):
    billing: str
    customer_id: str
    #: the moment the score is "as of" (the workflow's clock, so a retry scores the same moment)
    now: datetime
    #: the MRR a previous score of this intervention saw (None: estimate from the invoices)
    baseline_mrr: int | None = None
    #: the CRM account and open cases a dunning run read moments before (``has_crm``): the
    #: score uses them instead of reading the CRM again
    has_crm: bool = False
    account: CrmAccount | None = None
    open_cases: list[CaseSummary] = []
    #: what the sweep that started the intervention scored it from (issue 15): its billing
    #: snapshot, CRM account and open cases, used instead of reading either system again
    sweep: SweepHandoff | None = None


class CustomerScore(Frozen):
    """One score, with what it was computed from (small: numbers and IDs)."""

    config: ChurnConfig
    signals: ChurnSignals
    result: ChurnScore
    account: CrmAccount | None = None
    #: the live subscription a retention offer would go on, and its current discount
    subscription_id: str | None = None
    subscription_discount: float = 0
    currency: str = "USD"
    #: the score and level the CRM already holds for the account (None: never scored, or the
    #: account came from a read that does not carry them, such as a dunning run's handoff)
    stored_score: int | None = None
    stored_level: str | None = None
    #: the billing customer's language (its locale), for the CSM note; None: not known
    language: str | None = None


class WriteChurnScoreInput(Frozen):
    record: ChurnScoreRecord


class ApplyDiscountInput(Frozen):
    subscription_id: str
    percent: float
    months: int
    idempotency_key: str


class DiscountResult(Frozen):
    id: str


class SweepPageInput(Frozen):
    billing: str
    sweep_id: str
    cursor: str | None = None
    limit: int = 100
    #: passed on to the per-customer workflows the page starts
    follow_up: timedelta | None = None
    #: True only for sweeps started before the write gate (they wrote low-risk scores here);
    #: now the page returns them and the workflow writes them through the gate
    write_low_risk: bool = True


class SweepPageResult(Frozen):
    customers: int
    #: at-risk customers whose churn workflow was signalled-with-start
    signalled: int
    #: low-risk scores the page wrote to the CRM itself (sweeps started before the write gate)
    written: int = 0
    next_cursor: str | None = None
    #: low-risk scores for the workflow to write through the gate
    low_risk: list[ChurnScoreRecord] = []
    #: low-risk customers whose running intervention was signalled to rescore (only those the
    #: page's one visibility query found running)
    rescored: int = 0
    #: customers whose score is within ``sweep_write_threshold`` of the CRM's, same level
    unchanged: int = 0


class WriteChurnScoresInput(Frozen):
    records: list[ChurnScoreRecord]


# --- the activities ------------------------------------------------------------------------------


#: the last configuration read per file, with the file's (mtime, size) when it was read
_CONFIGS: dict[Path, tuple[tuple[int, int], ChurnConfig]] = {}


def load_config(path: Path) -> ChurnConfig:
    """The scorecard configuration; a broken file raises (the activity retries until fixed).
    Parsed again only when the file changed (its mtime or size): every score reads it, and the
    YAML parse and validation were a visible share of the worker's CPU per failed payment
    (issue 15, bench/profile-worker.txt); an edit still counts from the next score on."""
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        cached = _CONFIGS.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        config = ChurnConfig.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ApplicationError(
            f"{path.name} is unusable: {str(exc)[:300]}", type="churn.config_invalid"
        ) from None
    _CONFIGS[path] = (stamp, config)
    return config


class ChurnActivities:
    def __init__(
        self, billing: BillingPlatform, crm: CrmSystem, config_path: Path = DEFAULT_CHURN_CONFIG
    ) -> None:
        self.billing = billing
        self.crm = crm
        self.config_path = config_path

    def methods(self) -> list[Any]:
        """The activity methods a worker registers."""
        return [
            self.churn_score_customer,
            self.churn_write_score,
            self.churn_write_scores,
            self.churn_apply_discount,
            self.churn_sweep_page,
        ]

    def score_now(
        self,
        customer_id: str,
        now: datetime,
        baseline_mrr: int | None = None,
        crm: tuple[CrmAccount | None, list[CaseSummary]] | None = None,
        snapshot: CustomerSnapshot | None = None,
    ) -> CustomerScore:
        """Score one customer from live data (the activity, and ``revbridge churn score``);
        ``crm``: the account and open cases already read (a dunning run's handoff, or the
        sweep's); ``snapshot``: the billing snapshot already read (the sweep's)."""
        config = load_config(self.config_path)
        if snapshot is None:
            snapshot = self.billing.customer_snapshot(customer_id)
        if crm is not None:
            account, cases = crm
        else:
            # the account with its open cases and the score the CRM stores, in one read (one
            # SOQL on Salesforce, where find_account + open_cases took two)
            found = self.crm.find_accounts_with_cases(self.billing.name, [customer_id])
            account, cases = found.get(customer_id, (None, []))
        return _scored(config, snapshot, account, cases, now, baseline_mrr)

    @activity.defn(name="churn_score_customer")
    @vendor_errors
    def churn_score_customer(self, input: ScoreCustomerInput) -> CustomerScore:
        if input.sweep is not None:
            sweep = input.sweep
            crm = (sweep.account, list(sweep.open_cases))
            return self.score_now(
                input.customer_id, input.now, input.baseline_mrr, crm, sweep.snapshot
            )
        crm = (input.account, input.open_cases) if input.has_crm else None
        return self.score_now(input.customer_id, input.now, input.baseline_mrr, crm)

    @writes
    @activity.defn(name="churn_write_score")
    @vendor_errors
    def churn_write_score(self, input: WriteChurnScoreInput) -> None:
        self.crm.write_churn_score(input.record)

    @writes
    @activity.defn(name="churn_write_scores")
    @vendor_errors
    def churn_write_scores(self, input: WriteChurnScoresInput) -> None:
        """A page of low-risk scores from the sweep: the CRM's bulk write (Salesforce sObject
        Collections, HubSpot batch update), field sets, so a retry is idempotent. An account
        deleted since the read is not retried (the others are written); it is logged by count."""
        failed = self.crm.write_churn_scores(list(input.records))
        if failed:
            codes = sorted(set(failed.values()))
            log.warning("sweep: %d churn score(s) not written (%s)", len(failed), ", ".join(codes))

    @writes
    @activity.defn(name="churn_apply_discount")
    @vendor_errors
    def churn_apply_discount(self, input: ApplyDiscountInput) -> DiscountResult:
        return DiscountResult(
            id=self.billing.apply_discount(
                input.subscription_id, input.percent, input.months, input.idempotency_key
            )
        )

    @activity.defn(name="churn_sweep_page")
    async def churn_sweep_page(self, input: SweepPageInput) -> SweepPageResult:
        """Score one page of customers. Below the task threshold the score is written to the
        CRM here (with its audit entry) and a running intervention, if any, is signalled to
        rescore; at or above it the customer's churn workflow is signalled-with-start and takes
        over (task, offer, follow-up). Only at-risk customers cost a workflow, so a nightly
        sweep of a large book stays cheap.

        Heartbeats the count done, so a retried attempt resumes where it stopped; the signals
        carry the sweep's event ID, so a customer signalled twice in one sweep rescores once.
        """
        info = activity.info()
        try:
            # a platform whose list allows more than the sweep's page asks for it (Recurly: 200
            # a page, half the list and CRM reads per customer: issue 15); the rest of the
            # page's work is sized by what the list returns
            limit = max(input.limit, int(getattr(self.billing, "sweep_page_size", 0) or 0))
            page = await asyncio.to_thread(self.billing.list_customers, input.cursor, limit)
        except ConnectorError as err:
            raise to_application_error(err) from None
        if not input.write_low_risk:
            return await self._bulk_page(input, page)
        done = int(info.heartbeat_details[0]) if info.heartbeat_details else 0
        client = activity.client()
        now = datetime.now(UTC)
        config = load_config(self.config_path)

        low_risk: list[ChurnScoreRecord] = []

        async def one(customer_id: str) -> tuple[int, int]:
            """(interventions signalled, low-risk scores written) for one customer."""
            try:
                workflow_id = churn_workflow_id(input.billing, customer_id)
            except ValueError:
                log.warning("sweep: skipping a customer ID that is not a provider ID")
                return 0, 0
            signal = churn.sweep_signal(input.billing, customer_id, input.sweep_id, now)
            try:
                scored = await asyncio.to_thread(self.score_now, customer_id, now)
            except NotFound:
                return 0, 0  # deleted between the list and the read
            except ConnectorError as err:
                raise to_application_error(err) from None
            if scored.result.score >= config.task_threshold:
                await client.start_workflow(
                    churn.WORKFLOW_TYPE,
                    ChurnInput(
                        billing=input.billing, customer_id=customer_id, follow_up=input.follow_up
                    ),
                    id=workflow_id,
                    task_queue=info.task_queue,
                    start_signal=SIGNAL_RISK,
                    start_signal_args=[signal],
                    # the webhook route's policies (domain.starts): a running one is rescored
                    **start_options(churn.WORKFLOW_TYPE),
                )
                return 1, 0
            written = 0
            if scored.account is not None and not input.write_low_risk:
                low_risk.append(_record(scored, now))
            elif scored.account is not None:
                try:
                    await asyncio.to_thread(
                        self._write_low_risk, scored, customer_id, workflow_id, input.sweep_id, now
                    )
                except ConnectorError as err:
                    raise to_application_error(err) from None
                written = 1
            with contextlib.suppress(RPCError):  # NOT_FOUND: no intervention running
                await client.get_workflow_handle(workflow_id).signal(SIGNAL_RISK, signal)
            return 0, written

        ids = [c.id for c in page.customers]
        signalled = written = 0
        for start in range(done, len(ids), SWEEP_CONCURRENCY):
            chunk = ids[start : start + SWEEP_CONCURRENCY]
            for s, w in await asyncio.gather(*(one(i) for i in chunk)):
                signalled, written = signalled + s, written + w
            activity.heartbeat(start + len(chunk))
        return SweepPageResult(
            customers=len(ids),
            signalled=signalled,
            written=written,
            next_cursor=page.next_cursor,
            low_risk=low_risk,
        )

    async def _bulk_page(self, input: SweepPageInput, page: CustomerPage) -> SweepPageResult:
        """A page in bulk: one billing read and one CRM read for the whole page, every score
        computed here, the low-risk ones that moved (``score_moved``) handed back to the
        workflow's gated write, one visibility query for the interventions still running, and
        signals only to those whose score moved; an at-risk customer is signalled-with-start
        unless its intervention is running with this very score. An unchanged book writes
        nothing and signals nothing."""
        info = activity.info()
        done = int(info.heartbeat_details[0]) if info.heartbeat_details else 0
        client = activity.client()
        now = datetime.now(UTC)
        config = load_config(self.config_path)
        workflow_ids: dict[str, str] = {}
        for customer in page.customers:
            try:
                workflow_ids[customer.id] = churn_workflow_id(input.billing, customer.id)
            except ValueError:
                log.warning("sweep: skipping a customer ID that is not a provider ID")
        ids = list(workflow_ids)
        try:
            snapshots = await asyncio.to_thread(self.billing.customer_snapshots, ids)
            accounts = await asyncio.to_thread(
                self.crm.find_accounts_with_cases, input.billing, ids
            )
        except ConnectorError as err:
            raise to_application_error(err) from None
        at_risk: list[str] = []
        calm: list[str] = []
        #: customers whose score moved against the CRM's stored one (or who have none)
        moved: set[str] = set()
        low_risk: list[ChurnScoreRecord] = []
        for cid in ids:
            snapshot = snapshots.get(cid)
            if snapshot is None:
                continue  # deleted between the list and the read
            account, cases = accounts.get(cid, (None, []))
            scored = _scored(config, snapshot, account, cases, now)
            if scored.account is None or churn.score_moved(scored.account, scored.result, config):
                moved.add(cid)
            if scored.result.score >= config.task_threshold:
                at_risk.append(cid)
                continue
            calm.append(cid)
            if scored.account is not None and cid in moved:
                low_risk.append(_record(scored, now))
        running = await _running_interventions(client, [workflow_ids[c] for c in ids])
        # at risk: signal-with-start, unless its intervention is running and already holds this
        # score; low risk: only a running intervention, and only when the score moved (a rescore
        # of an unchanged customer would write the same score again)
        targets = [(c, True) for c in at_risk if c in moved or workflow_ids[c] not in running] + [
            (c, False) for c in calm if c in moved and workflow_ids[c] in running
        ]
        started = sum(1 for _, s in targets if s)

        async def one(customer_id: str, start: bool) -> None:
            signal = churn.sweep_signal(input.billing, customer_id, input.sweep_id, now)
            workflow_id = workflow_ids[customer_id]
            if start:
                await client.start_workflow(
                    churn.WORKFLOW_TYPE,
                    ChurnInput(
                        billing=input.billing,
                        customer_id=customer_id,
                        follow_up=input.follow_up,
                        sweep=_handoff(
                            snapshots[customer_id], *accounts.get(customer_id, (None, []))
                        ),
                    ),
                    id=workflow_id,
                    task_queue=info.task_queue,
                    start_signal=SIGNAL_RISK,
                    start_signal_args=[signal],
                    # the webhook route's policies (domain.starts): a running one is rescored
                    **start_options(churn.WORKFLOW_TYPE),
                )
                return
            with contextlib.suppress(RPCError):  # NOT_FOUND: it ended since the query
                await client.get_workflow_handle(workflow_id).signal(SIGNAL_RISK, signal)

        for start in range(done, len(targets), SWEEP_CONCURRENCY):
            chunk = targets[start : start + SWEEP_CONCURRENCY]
            await asyncio.gather(*(one(c, s) for c, s in chunk))
            activity.heartbeat(start + len(chunk))
        return SweepPageResult(
            customers=len(page.customers),
            signalled=started,
            next_cursor=page.next_cursor,
            low_risk=low_risk,
            rescored=len(targets) - started,
            unchanged=len(ids) - len(moved),
        )

    def _write_low_risk(
        self,
        scored: CustomerScore,
        customer_id: str,
        workflow_id: str,
        sweep_id: str,
        now: datetime,
    ) -> None:
        """A low-risk score from the sweep: the CRM fields and one agent-log entry."""
        assert scored.account is not None
        result = scored.result
        self.crm.write_churn_score(_record(scored, now))
        info = activity.info()
        self.crm.write_audit(
            AuditEntry(
                key=idempotency_key(workflow_id, f"sweep:{sweep_id}:write_churn_score"),
                use_case=churn.USE_CASE,
                action="write_churn_score",
                parameters_hash=parameters_hash(
                    {"score": result.score, "level": result.level.value, "sweep": sweep_id}
                ),
                decision="allow",
                outcome="written",
                summary=f"Churn risk {result.score}/100 ({result.level.value}), nightly sweep "
                f"{sweep_id}: " + ("; ".join(result.reasons) or "no risk factor present"),
                workflow_id=info.workflow_id,
                run_id=info.workflow_run_id,
                account_id=scored.account.id,
                at=now,
            )
        )


def _handoff(
    snapshot: CustomerSnapshot, account: CrmAccount | None, cases: list[CaseSummary]
) -> SweepHandoff:
    """What a page scored a customer from, for the intervention it starts (a running one is
    only signalled: the start's input is then dropped, and it reads for itself)."""
    if account is not None and not isinstance(account, ScoredAccount):
        account = ScoredAccount.model_validate(account.model_dump())
    if not isinstance(snapshot, SweepSnapshot):
        snapshot = SweepSnapshot.model_validate(snapshot.model_dump())
    return SweepHandoff(snapshot=snapshot, account=account, open_cases=cases)


def _record(scored: CustomerScore, now: datetime) -> ChurnScoreRecord:
    """A low-risk score as the CRM keeps it."""
    assert scored.account is not None
    result = scored.result
    return ChurnScoreRecord(
        account_id=scored.account.id,
        score=result.score,
        level=result.level.value,
        reasons=result.reasons,
        narrative=churn.narrative(result, scored.signals),
        scored_at=now,
    )


def _scored(
    config: ChurnConfig,
    snapshot: CustomerSnapshot,
    account: CrmAccount | None,
    cases: list[CaseSummary],
    now: datetime,
    baseline_mrr: int | None = None,
) -> CustomerScore:
    signals = churn.signals_from(snapshot, account, cases, now, baseline_mrr)
    sub = churn.main_subscription(snapshot)
    stored = account if isinstance(account, churn.ScoredAccount) else None
    return CustomerScore(
        stored_score=stored.churn_risk if stored else None,
        stored_level=stored.churn_level if stored else None,
        config=config,
        signals=signals,
        result=churn.score(signals, config),
        account=account,
        subscription_id=sub.id if sub else None,
        subscription_discount=sub.discount_percent if sub else 0,
        currency=snapshot.customer.currency,
        language=snapshot.customer.language,
    )


#: workflow IDs per visibility query (the query string stays well under the server's limit)
_VISIBILITY_IN_MAX = 100


async def _running_interventions(client: Client, workflow_ids: list[str]) -> set[str]:
    """Which of these churn interventions are running: one visibility query per 100 IDs
    (``WorkflowId IN (...)`` on the intervention type, ``ExecutionStatus = "Running"``).
    Visibility lags a moment behind a start; a run it misses is rescored by the next sweep."""
    running: set[str] = set()
    safe = [w for w in workflow_ids if '"' not in w and "\\" not in w]
    for start in range(0, len(safe), _VISIBILITY_IN_MAX):
        chunk = ", ".join(f'"{w}"' for w in safe[start : start + _VISIBILITY_IN_MAX])
        query = (
            f'WorkflowType = "{churn.WORKFLOW_TYPE}" AND ExecutionStatus = "Running" '
            f"AND WorkflowId IN ({chunk})"
        )
        async for execution in client.list_workflows(query, page_size=_VISIBILITY_IN_MAX):
            running.add(execution.id)
    return running
