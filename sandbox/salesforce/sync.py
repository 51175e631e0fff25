"""The account sync's side of the sandbox org (issue 19): the Account fields RevBridge writes the
golden record to, and the record-triggered Flow an admin activates to call out on Account changes.

Fields (custom, on Account): ``Billing_Plan__c`` (text 255), ``Next_Renewal__c`` (date),
``Payment_Health__c`` (text 40), ``Billing_Contact_Email__c`` (email),
``Billing_Contact_Name__c`` (text 255); the health profile: ``Health_Summary__c`` (text 255),
``Subscription_Health__c`` (long text), ``Tenure_Months__c``, ``Open_Dunning__c`` (number),
``Payment_Success_Rate__c`` (percent), ``Usage_Trend__c`` (text 40). ``MRR__c``,
``Billing_Status__c`` and ``Customer_Tier__c`` exist already.

The Flow (off in a fresh org, as an inactive Flow is; ``POST /_sandbox/salesforce/flows
{"account_changed": true}`` activates it): after an Account update that changed any field, the
callout body is the usual one (package docstring) with ``"event": "account_changed"`` and
``"changedFields": [...]`` (a Flow compares ``$Record`` with ``$Record__Prior``); system fields
(``LastModifiedDate``, ``SystemModstamp``, ...) are not changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandbox.salesforce.schema import Field, Schema, text_field

_SYSTEM = {"LastModifiedDate", "SystemModstamp", "LastModifiedById", "LastViewedDate"}


def add_sync_fields(s: Schema) -> None:
    account = s.get("Account")
    assert account is not None
    for f in (
        text_field("Billing_Plan__c", custom=True),
        Field("Next_Renewal__c", "date", "Next Renewal", custom=True),
        text_field("Payment_Health__c", 40, custom=True),
        Field("Billing_Contact_Email__c", "email", "Billing Contact Email", length=80, custom=True),
        text_field("Billing_Contact_Name__c", custom=True),
        # the health profile (issue 19)
        text_field("Health_Summary__c", custom=True),
        Field(
            "Subscription_Health__c", "textarea", "Subscription Health", custom=True, length=32768
        ),
        Field("Tenure_Months__c", "double", "Tenure (months)", custom=True),
        Field("Payment_Success_Rate__c", "percent", "Payment Success Rate", custom=True),
        Field("Open_Dunning__c", "double", "Open Dunning", custom=True),
        text_field("Usage_Trend__c", 40, custom=True),
    ):
        s.add_field(account, f)


def changed_fields(old: Mapping[str, Any], rec: Mapping[str, Any]) -> list[str]:
    return sorted(k for k, v in rec.items() if k not in _SYSTEM and old.get(k) != v)
