"""The account sync's callouts (issue 19): Zuora has no standard event for an account or contact
change, so RevBridge's install guide defines two **custom events** (``/events/event-triggers``)
on the Account and Contact objects (condition ``changeType == 'UPDATE'``), each with a callout
template of IDs only, as every other RevBridge template. Subscription changes come as the
standard Order Processed callout (with Orders enabled the legacy amendment events are off).

Custom event triggers fire for every change, whoever made it (the UI, an import, the API:
RevBridge's own writes too; the sync recognises those by value equality)."""

from __future__ import annotations

from typing import Any

#: event category → callout template (merge fields)
SYNC_TEMPLATES: dict[str, dict[str, str]] = {
    "AccountChanged": {
        "eventCategory": "AccountChanged",
        "eventTimestamp": "<Event.Timestamp>",
        "accountId": "<Account.Id>",
        "accountNumber": "<Account.AccountNumber>",
    },
    "ContactChanged": {
        "eventCategory": "ContactChanged",
        "eventTimestamp": "<Event.Timestamp>",
        "contactId": "<Contact.Id>",
        "accountId": "<Contact.AccountId>",
    },
}


def account_changed(acct: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return (
        "AccountChanged",
        {"Account.Id": acct["id"], "Account.AccountNumber": acct["accountNumber"]},
    )


def contact_changed(contact: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return (
        "ContactChanged",
        {"Contact.Id": contact["id"], "Contact.AccountId": str(contact.get("accountId") or "")},
    )
