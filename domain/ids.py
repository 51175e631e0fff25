"""Workflow IDs and idempotency keys: derived from business identity, never from attempts.

Workflow IDs carry provider IDs only (no names, emails, amounts): they show up in the Web UI,
in logs and in the vendors' audit records.
"""

from __future__ import annotations

import hashlib
import re

#: what a provider ID may look like in a workflow ID or search attribute (webhooks validate
#: every ID against it before any Temporal call)
PROVIDER_ID = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


def _provider_id(value: str) -> str:
    if not isinstance(value, str) or not PROVIDER_ID.fullmatch(value):
        raise ValueError(f"not a provider ID: {str(value)[:40]!r}")
    return value


def dunning_workflow_id(billing: str, invoice_id: str) -> str:
    return f"dunning:{_provider_id(billing)}:{_provider_id(invoice_id)}"


def q2c_workflow_id(crm: str, opportunity_id: str) -> str:
    return f"q2c:{_provider_id(crm)}:{_provider_id(opportunity_id)}"


def support_workflow_id(crm: str, case_id: str) -> str:
    return f"case:{_provider_id(crm)}:{_provider_id(case_id)}"


def churn_workflow_id(billing: str, customer_id: str) -> str:
    return f"churn:{_provider_id(billing)}:{_provider_id(customer_id)}"


def idempotency_key(workflow_id: str, step: str) -> str:
    """A stable key for one side effect of one workflow, the same on every attempt, across
    continue-as-new, resets and worker restarts.

    Hashed so it fits every vendor's limits and URL paths (Chargebee: 100 characters; Salesforce
    upserts put it in the URL path, where ``:`` and ``/`` are trouble).
    """
    digest = hashlib.sha256(f"{workflow_id}|{step}".encode()).hexdigest()
    return f"rb-{digest[:40]}"
