"""Activity options shared by every workflow: timeouts and retry policies by kind of call, and
which vendor each activity calls (the worker routes vendor activities to the vendor's task
queue, where Temporal paces them: workers/vendor_queues.py).

Reads and writes never give up on a vendor that is down, rate limited or out of its daily
allowance: they retry without an attempt or time limit (a permanent error still fails at once,
as a non-retryable error), and a 429 or an exhausted allowance sets the next retry at the
vendor's reset (``next_retry_delay``). So a vendor down for six hours delays the run by six
hours; it does not fail it.

Writes used to stop retrying after 25 minutes, inside Chargebee's 30-minute idempotency-key
window, so that a late retry could never be taken for a new request. Exactly-once past the
window now comes from the writes themselves (docs/reliability.md "Vendor limits and budgets"):
Salesforce and HubSpot writes are upserts on an external key, which never expires; Chargebee
creates objects under IDs derived from the key (customers, subscriptions, coupons) and a retried
note or payment collection reads back what an earlier attempt committed before sending again;
Stripe keeps keys for at least 24 hours and its notes are metadata keys (a Stripe retry more than
24 hours after a commit whose answer was lost is the one case left; see the docs).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

#: one retry policy for vendor calls: quick first retries, then every 5 minutes, forever
VENDOR_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=0,
)

#: reads: retried until the vendor answers (a permanent error fails at once)
READ: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": VENDOR_RETRY,
}
#: writes: idempotent past any vendor key window (see above), so they wait out outages too
WRITE: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": VENDOR_RETRY,
}
#: policy decisions: local and fast; an engine error is a deny, not an exception
POLICY: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=10),
}

#: local activities (``workflow.execute_local_activity``): pure or local-file work — a policy
#: decision, the rules assessment, the playbook read, a reminder's draft — and the dunning run's
#: Temporal-only handoff to churn. They run inside the workflow's own task (a marker in history,
#: no activity task round trip through the server); their result is recorded all the same.
LOCAL_POLICY: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": POLICY["retry_policy"],
}
#: the assessment may be an LLM call (REVBRIDGE_REASONER=anthropic): vendor retries
LOCAL_READ: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=60),
    "retry_policy": VENDOR_RETRY,
}
#: Temporal calls from an activity (signal-with-start): retried for up to 10 minutes (a run
#: never waits longer for an optional handoff)
LOCAL_TEMPORAL: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=20),
    "schedule_to_close_timeout": timedelta(minutes=10),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=0),
}

# --- which vendor each activity calls ------------------------------------------------------------

BILLING = "billing"
CRM = "crm"

#: activities that call one vendor only: they run on that vendor's task queue
SINGLE_VENDOR: dict[str, str] = {
    # billing platform
    "get_invoice_context": BILLING,
    "add_billing_note": BILLING,
    "retry_payment": BILLING,
    "apply_credit": BILLING,
    "cancel_subscription": BILLING,
    "churn_apply_discount": BILLING,
    "support_customer_snapshot": BILLING,
    "q2c_get_prices": BILLING,
    "q2c_find_billing_customer": BILLING,
    "q2c_create_billing_customer": BILLING,
    "q2c_set_crm_link": BILLING,
    "q2c_create_subscription": BILLING,
    "q2c_active_subscriptions": BILLING,
    "q2c_undo_customer": BILLING,
    "q2c_undo_subscription": BILLING,
    "dunning_billing_changes": BILLING,
    "revenue_read_page": BILLING,
    "sync_write_billing": BILLING,
    "expansion_backfill": BILLING,
    # CRM
    "find_crm_account": CRM,
    "upsert_crm_case": CRM,
    "upsert_crm_task": CRM,
    "write_crm_audit": CRM,
    "churn_write_score": CRM,
    "churn_write_scores": CRM,
    "support_get_case": CRM,
    "support_annotate_case": CRM,
    "q2c_get_opportunity": CRM,
    "q2c_write_billing_link": CRM,
    "q2c_won_opportunities": CRM,
    "reconcile_upsert_exceptions": CRM,
    "reconcile_restore_fields": CRM,
    "sync_write_crm": CRM,
    "sync_bulk_write_crm": CRM,
    "expansion_find_account": CRM,
    "expansion_opportunity_state": CRM,
    "expansion_upsert_signal": CRM,
    "expansion_upsert_records": CRM,
    "expansion_close": CRM,
}
#: activities that call both (or a vendor and something else): they stay on the main queue,
#: paced per call inside the worker, and the daily budget still applies to them
MULTI_VENDOR: dict[str, tuple[str, ...]] = {
    "churn_score_customer": (BILLING, CRM),
    "churn_sweep_page": (BILLING, CRM),
    "reconcile_scan": (BILLING, CRM),
    "send_email": (BILLING,),
}


def vendor_sides(activity_type: str) -> tuple[str, ...]:
    """Which of the deployment's vendors (billing, CRM) an activity type calls."""
    side = SINGLE_VENDOR.get(activity_type)
    return (side,) if side else MULTI_VENDOR.get(activity_type, ())


def vendor_task_queue(task_queue: str, vendor: str) -> str:
    """The task queue of one vendor's activities: ``{task_queue}.{vendor}``."""
    return f"{task_queue}.{vendor}"


def activity_task_queue(activity_type: str, task_queue: str, vendors: dict[str, str]) -> str | None:
    """The queue an activity is scheduled on when the worker routes by vendor (``vendors`` maps
    ``billing``/``crm`` to the deployment's vendor names), or None to leave it where it is."""
    side = SINGLE_VENDOR.get(activity_type)
    vendor = vendors.get(side) if side else None
    return vendor_task_queue(task_queue, vendor) if vendor else None
