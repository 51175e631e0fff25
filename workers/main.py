"""The RevBridge worker: which workflows and activities run on which task queue, with which limits.

Activities call blocking vendor SDKs, so they run as sync activities on a sized thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.billing import BillingActivities
from activities.budget import LIMITS_FILE, BudgetGate, BudgetInterceptor, Limits, load_limits
from activities.churn import DEFAULT_CHURN_CONFIG, ChurnActivities
from activities.crm import CrmActivities
from activities.drafting import DraftingActivities, drafter_for
from activities.expansion import ExpansionActivities
from activities.messaging import MessagingActivities
from activities.playbook import PlaybookActivities
from activities.policy import DEFAULT_POLICY_DIR, PolicyActivities
from activities.quote import PRODUCTS_FILE, QuoteActivities
from activities.reasoning import (
    LLM_BUDGET_FILE,
    LlmLedger,
    ReasoningActivities,
    TemporalLlmLedger,
    load_llm_budgets,
)
from activities.reconcile import ReconcileActivities
from activities.revenue import REVENUE_FILE, RevenueActivities
from activities.support import SupportActivities, with_desk
from activities.sync import SyncActivities
from connectors import limits as vendor_limits
from connectors.base import BillingPlatform, CrmSystem
from connectors.email import SmtpMailer
from connectors.reasoner import LlmReasoner, Reasoner, RulesReasoner
from connectors.registry import (
    build_billing,
    build_crm,
    build_desk,
    build_erp,
    build_mailer,
    build_reasoner,
)
from connectors.revenue import revenue_source
from domain.dunning import WORKFLOW_TYPE as DUNNING_WORKFLOW_TYPE
from domain.settings import Settings
from domain.temporal import SEARCH_ATTRIBUTES, TASK_QUEUE
from infra import startup, telemetry
from infra.health import HealthServer, WorkerProbe, health_port_from_env
from workers import configuration, schedules
from workers.bytecode import compile_sources
from workers.vendor_queues import VendorRouting, WorkerGroup, vendor_workers
from workflows.account_sync.backfill import AccountSyncBackfillWorkflow
from workflows.account_sync.flush import AccountSyncFlushWorkflow
from workflows.account_sync.workflow import AccountSyncWorkflow
from workflows.churn.sweep import ChurnSweepWorkflow
from workflows.churn.workflow import ChurnInterventionWorkflow
from workflows.dunning.catch_up import DunningCatchUpWorkflow
from workflows.dunning.workflow import DunningWorkflow
from workflows.expansion.intake import ExpansionIntakeWorkflow
from workflows.expansion.workflow import ExpansionWorkflow
from workflows.llm_budget import LlmBudgetWorkflow
from workflows.options import BILLING, CRM, vendor_sides
from workflows.quote_to_cash.catch_up import QuoteToCashCatchUpWorkflow
from workflows.quote_to_cash.workflow import QuoteToCashWorkflow
from workflows.reconciliation.fix import ReconciliationFixWorkflow
from workflows.reconciliation.workflow import ReconciliationWorkflow
from workflows.revenue.workflow import RevenuePostingWorkflow
from workflows.support_context import SupportContextWorkflow

log = logging.getLogger("revbridge.worker")

WORKFLOWS = [
    DunningWorkflow,
    DunningCatchUpWorkflow,
    SupportContextWorkflow,
    ChurnInterventionWorkflow,
    ChurnSweepWorkflow,
    QuoteToCashWorkflow,
    QuoteToCashCatchUpWorkflow,
    LlmBudgetWorkflow,
    AccountSyncWorkflow,
    AccountSyncFlushWorkflow,
    AccountSyncBackfillWorkflow,
    ExpansionWorkflow,
    ExpansionIntakeWorkflow,
    ReconciliationWorkflow,
    ReconciliationFixWorkflow,
    RevenuePostingWorkflow,
]
ACTIVITY_THREADS = 16
#: on shutdown (a deploy's SIGTERM) running activities get this long to finish before they are
#: cancelled: longer than every activity's 30 s start-to-close (workflows/options.py), so a vendor
#: call in flight completes; the long heartbeating ones (the churn sweep) are cancelled and resume
#: from their last heartbeat elsewhere. The orchestrator's grace period must exceed it (docs).
GRACEFUL_SHUTDOWN = timedelta(seconds=40)
#: workflow types whose single-vendor activities skip the vendor queues (workers/vendor_queues.py):
#: the failed payment's path to its CRM case is three activities, each handed to this worker with
#: the workflow task that scheduled it instead of waiting for a vendor queue's poller
EAGER_WORKFLOWS = (DUNNING_WORKFLOW_TYPE,)


def activities_for(
    billing: BillingPlatform,
    crm: CrmSystem,
    reasoner: Reasoner | LlmReasoner,
    policies: PolicyActivities,
    mailer: SmtpMailer | None = None,
    llm_ledger: LlmLedger | None = None,
    erp: Any | None = None,
) -> list[Any]:
    # LLM token caps from policies/llm_budget.yaml, counted in the day's budget entity workflow
    budgets = load_llm_budgets(policies.policy_dir / LLM_BUDGET_FILE)
    # drafts: templates, or the reasoner's model under policies/drafting.yaml (issue 22)
    drafter = drafter_for(reasoner, policies.policy_dir, budgets, llm_ledger)
    m = MessagingActivities(billing, mailer, drafter)
    pb = PlaybookActivities(policies.policy_dir)
    b, c = BillingActivities(billing), CrmActivities(crm)
    r = ReasoningActivities(reasoner, budgets, llm_ledger)
    return [
        b.get_invoice_context,
        b.get_billing_customer,  # a customer read after the case (Recurly's hot path)
        b.add_billing_note,
        b.retry_payment,
        b.apply_credit,
        b.cancel_subscription,
        *b.catch_up_methods(),
        b.dunning_signal_churn,  # the dunning run's handoff to churn (a local activity)
        m.draft_reminder,
        DraftingActivities(drafter).draft_csm_outreach,  # the churn CSM note (a local activity)
        DraftingActivities(drafter).draft_support_summary,  # support note (a local activity)
        DraftingActivities(drafter).draft_health_line,  # account health line (local activity)
        m.send_email,
        pb.dunning_playbook,
        c.find_crm_account,
        c.upsert_crm_case,
        c.upsert_crm_task,
        c.write_crm_audit,
        r.assess_payment_failure,
        policies.decide_policy,
        policies.check_approver,
        policies.eligible_approvers,
        # the deployment's churn weights (policies/churn.yaml in REVBRIDGE_POLICY_DIR), like the rest
        *ChurnActivities(billing, crm, policies.policy_dir / DEFAULT_CHURN_CONFIG.name).methods(),
        *SupportActivities(billing, crm).methods(),
        # revenue recognition (issue 20): billing reads, and NetSuite when one is configured
        *RevenueActivities(
            revenue_source(billing), erp, policies.policy_dir / REVENUE_FILE
        ).methods(),
        *QuoteActivities(billing, crm, policies.policy_dir / PRODUCTS_FILE).methods(),
        # the golden customer record (issue 19): reads, field sets, bulk flushes, backfill
        *SyncActivities(billing, crm, policies.policy_dir).methods(),
        # usage-based expansion (issue 21): usage intake, CRM signal, opportunity and draft quote
        *ExpansionActivities(billing, crm, policies.policy_dir).methods(),
        # the daily reconciliation (issue 20): bulk reads, exceptions and restores in the CRM
        *ReconcileActivities(billing, crm, policies.policy_dir / PRODUCTS_FILE).methods(),
    ]


#: the workflow platform every plot stands on (workflows/governed, workflows/options: no module
#: state, no clock or randomness of its own) is passed through the sandbox instead of re-imported
#: for every workflow instance: about 25 ms of worker CPU per instance, the worker's largest cost
#: of our making (issue 15, bench/RESULTS.md). The plots themselves stay sandboxed.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "workflows.governed", "workflows.options"
    )
)


def build_worker(
    client: Client,
    billing: BillingPlatform,
    crm: CrmSystem,
    reasoner: Reasoner | LlmReasoner | None = None,
    task_queue: str = TASK_QUEUE,
    policy_dir: Path | None = None,
    executor: ThreadPoolExecutor | None = None,
    mailer: SmtpMailer | None = None,
    limits: Limits | None = None,
    erp: Any | None = None,
) -> WorkerGroup:
    """The main queue's worker (workflows, every activity) and one worker per vendor queue
    (workers/vendor_queues.py), paced by ``limits`` (default: policies/limits.yaml)."""
    own = policy_dir / LIMITS_FILE if policy_dir else None
    limits_file = own if own and own.exists() else None  # else REVBRIDGE_LIMITS_FILE / policies/
    gate = BudgetGate(limits=limits) if limits else BudgetGate(limits_file)
    limits = limits or load_limits(limits_file)
    vendors = {BILLING: billing.name, CRM: crm.name}
    rates = limits.process_rates(vendors.values())
    # the process's pacing is this worker's while it runs; a stopped worker gives back what was
    # there before (a process that runs several in turn — the tests, the bench — is not left
    # pacing a vendor at the share of a worker that no longer exists)
    paced_before = {vendor: vendor_limits.pacing_rate(vendor) for vendor in rates}
    vendor_limits.configure_pacing(rates)
    vendor_limits.add_listener(_allowance_gauge)
    budget = BudgetInterceptor(
        gate, lambda activity_type: tuple(vendors[s] for s in vendor_sides(activity_type))
    )
    activities = activities_for(
        billing,
        crm,
        reasoner or RulesReasoner(),
        PolicyActivities(policy_dir or DEFAULT_POLICY_DIR, crm=crm.name),
        mailer,
        TemporalLlmLedger(client, task_queue),
        erp,
    )
    # tracing comes from the client's TracingInterceptor (telemetry.temporal_interceptors)
    interceptors = [telemetry.MetricsInterceptor(), budget]
    main = Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=activities,
        activity_executor=executor
        or ThreadPoolExecutor(ACTIVITY_THREADS, thread_name_prefix="activity"),
        max_concurrent_activities=ACTIVITY_THREADS,
        # the failed payment's activities stay on this queue, dispatched eagerly (issue 15)
        interceptors=[*interceptors, VendorRouting(task_queue, vendors, EAGER_WORKFLOWS)],
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        workflow_runner=WORKFLOW_RUNNER,
    )
    return WorkerGroup(
        main,
        vendor_workers(
            client,
            task_queue,
            activities,
            vendors,
            limits,
            interceptors,
            ACTIVITY_THREADS,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        ),
        on_close=lambda: vendor_limits.configure_pacing(paced_before),
    )


def _allowance_gauge(entry: vendor_limits.Allowance) -> None:
    telemetry.record_vendor_allowance(entry.vendor, entry.remaining, entry.limit)


async def run(settings: Settings | None = None, stop: asyncio.Event | None = None) -> None:
    settings = settings or Settings.from_env(os.environ)
    # the sandbox re-imports our modules per workflow: not from source each time. In the
    # background, so a first start (nothing compiled yet) is not slower to serve or to fail
    threading.Thread(target=compile_sources, name="compile-sources", daemon=True).start()
    telemetry.setup_tracing(telemetry.SERVICE_WORKER, settings)
    runtime = telemetry.worker_runtime()  # Prometheus on REVBRIDGE_METRICS_PORT, when set
    billing, crm = build_billing(settings), build_crm(settings)
    # a support desk beside the CRM's cases (REVBRIDGE_DESK=zendesk): the support-context runs of
    # its tickets read and annotate the desk; everything else is the CRM (activities/support.py)
    crm = with_desk(crm, build_desk(settings, billing))
    # the email channel and the ERP too: a misconfigured one is one line now, not after Temporal
    mailer, erp = build_mailer(settings), build_erp(settings)
    # Liveness/readiness on REVBRIDGE_HEALTH_PORT (infra/health.py), up before Temporal is.
    probe = WorkerProbe(settings.task_queue)
    bind = health_port_from_env()
    health = await HealthServer(probe.live, probe.readiness, *bind).start() if bind else None
    try:
        # Temporal down at start is waited out; a permanent error is one line (infra/startup.py).
        client = await startup.connect_temporal(
            stop=stop,
            wait_limit_s=startup.wait_limit_from_env(),
            search_attributes=SEARCH_ATTRIBUTES,
            after_connect=lambda c: schedules.ensure_all(c, settings),
            interceptors=telemetry.temporal_interceptors(),
            **({"runtime": runtime} if runtime else {}),
        )
        if client is None:  # stopped while waiting
            return
        await _serve(client, settings, billing, crm, probe, stop, mailer, erp)
    finally:
        await probe.stop()
        if health is not None:
            await health.close()


async def _serve(
    client: Client,
    settings: Settings,
    billing: BillingPlatform,
    crm: CrmSystem,
    probe: WorkerProbe,
    stop: asyncio.Event | None,
    mailer: Any = None,
    erp: Any = None,
) -> None:
    worker = build_worker(
        client,
        billing,
        crm,
        reasoner=build_reasoner(settings),
        mailer=mailer,
        task_queue=settings.task_queue,
        policy_dir=Path(settings.policy_dir) if settings.policy_dir else None,
        erp=erp,
    )
    log.info(
        "worker polling task queue %s (billing=%s, crm=%s)",
        settings.task_queue,
        billing.name,
        crm.name,
    )
    async with worker:
        probe.attach(client)
        # a site or CRM that lacks a setting shows in the log now, not as a failed run later
        checks = asyncio.create_task(configuration.report([billing, crm]))
        try:
            await (stop or asyncio.Event()).wait()
        finally:
            checks.cancel()
