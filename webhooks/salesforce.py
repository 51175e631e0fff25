"""Salesforce record-triggered Flow HTTP callouts (reference §1.9): a JSON body we define, sent
through a Named Credential whose External Credential adds a static shared-secret header.

There is no HMAC of the body (Flow cannot compute one without Apex), so the secret header is
compared in constant time against every configured secret (rotation), and the org ID is checked
when configured. Flow does not redeliver: the quote-to-cash catch-up query covers lost callouts.

Body::

    {"event": "opportunity_closed_won" | "case_created", "eventId": "<uuid>",
     "sobject": "Opportunity" | "Case", "recordId": "006…", "orgId": "00D…",
     "occurredAt": "2024-05-01T12:00:00.000+0000", "record": {…}}
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from domain.golden import Side, SyncSignal
from domain.models import CaseOpened, DealWon
from webhooks import parsing
from webhooks.errors import Rejected

HEADER = "x-revbridge-webhook-secret"
CRM = "salesforce"


def verify(header: str | None, secrets: list[str]) -> None:
    if not header:
        raise Rejected(401, f"missing {HEADER} header", "missing_signature")
    # compare against every secret, without short-circuiting, so timing says nothing about which
    matched = [hmac.compare_digest(header.encode(), s.encode()) for s in secrets]
    if not any(matched):
        raise Rejected(401, "webhook secret does not match", "bad_signature")


def _occurred_at(value: Any) -> datetime:
    """The callout's time; the Flow body is ours, so a missing one is "now", a garbled one a 422."""
    if value is None:
        return datetime.now(UTC)
    return parsing.iso_timestamp(value, "occurredAt")


def is_echo(kind: Any, record: Any, integration_user_id: str | None) -> str | None:
    """Why this callout is our own write coming back, or None when a person (or another
    integration) caused it. Salesforce reports who did what on the record itself:

    - a Case carrying ``RevBridge_Key__c`` was opened by RevBridge (the key is how its create is
      idempotent; nobody else sets it) — its ``case_created`` callout is an echo;
    - any record whose last change was made by our integration user (``LastModifiedById``, or
      ``CreatedById`` on a create) is ours. A rep closing an opportunity RevBridge created is
      the rep's change (``LastModifiedById`` is the rep) and is routed.
    """
    if not isinstance(record, dict):
        return None
    if kind == "case_created" and record.get("RevBridge_Key__c"):
        return "a case RevBridge opened"
    if integration_user_id:
        field = "CreatedById" if kind == "case_created" else "LastModifiedById"
        if record.get(field) == integration_user_id:
            return "a change made by the RevBridge integration user"
    return None


def account_signal(
    event_id: str, record_id: str, record: Any, at: datetime, deployment: str | None = None
) -> SyncSignal | None:
    """An Account change callout (the account-change Flow, issue 19) as a trigger for the linked
    billing customer's account sync; an account no billing customer is linked to is not routed,
    nor one linked to another platform than the deployment's (``deployment``): its customer ID
    means nothing in this deployment's billing (as HubSpot's lookup, webhooks/hubspot.py)."""
    if not isinstance(record, dict):
        raise Rejected(400, "account_changed without record", "malformed_event")
    customer, billing = record.get("Billing_Customer_Id__c"), record.get("Billing_Platform__c")
    if not customer or not billing:
        return None
    billing = parsing.provider_id(billing, "record.Billing_Platform__c")
    customer = parsing.provider_id(customer, "record.Billing_Customer_Id__c")
    if deployment is not None and billing != deployment:
        return None
    return SyncSignal(
        billing=billing,
        customer_id=customer,
        side=Side.CRM,
        event_id=event_id,
        occurred_at=at,
        kind="account_changed",
        # the account the run reads back: an ID, never free text from the body
        crm_account_id=parsing.provider_id(record_id, "recordId"),
    )


def normalize(
    payload: Any,
    org_id: str | None = None,
    integration_user_id: str | None = None,
    sync: bool = False,
    billing: str | None = None,
) -> DealWon | CaseOpened | SyncSignal | parsing.Echo | None:
    """The callout body → a canonical event, an :class:`~webhooks.parsing.Echo` of our own
    write, or None for an event type we do not route."""
    if not isinstance(payload, dict):
        raise Rejected(400, "body is not a JSON object", "malformed_event")
    kind, event_id, record_id = (
        payload.get("event"),
        payload.get("eventId"),
        payload.get("recordId"),
    )
    if not isinstance(event_id, str) or not event_id:
        raise Rejected(400, "eventId is missing", "malformed_event")
    if not isinstance(record_id, str) or not record_id:
        raise Rejected(400, "recordId is missing", "malformed_event")
    event_id = parsing.text(event_id, "eventId", max_len=128)
    if org_id and payload.get("orgId") != org_id:
        raise Rejected(403, "callout from another Salesforce org", "wrong_org")
    at = _occurred_at(payload.get("occurredAt"))
    if kind == "account_changed" and sync:
        # ``sync``: the deployment runs the account sync (REVBRIDGE_ACCOUNT_SYNC)
        echo = is_echo(kind, payload.get("record"), integration_user_id)
        if echo:
            return parsing.Echo(echo)
        return account_signal(event_id, record_id, payload.get("record"), at, billing)
    if kind not in ("opportunity_closed_won", "case_created"):
        return None
    echo = is_echo(kind, payload.get("record"), integration_user_id)
    if echo:
        return parsing.Echo(echo)
    if kind == "opportunity_closed_won":
        return DealWon(crm=CRM, event_id=event_id, opportunity_id=record_id, occurred_at=at)
    return CaseOpened(crm=CRM, event_id=event_id, case_id=record_id, occurred_at=at)
