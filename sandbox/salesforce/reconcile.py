"""The reconciliation's object in the sandbox org: ``Billing_Exception__c``, the custom object an
admin creates for RevBridge (docs/reconciliation.md), one record per open or closed billing ↔
CRM exception, upserted by its stable ``Exception_Id__c`` (an external ID, unique: a second
upsert of the same ID updates the one record). Key prefix ``a0R``; a lookup to the account
(child relationship ``Billing_Exceptions__r``).
"""

from __future__ import annotations

from sandbox.salesforce.schema import _RO, Field, Schema, _pick, _ref, define_object, text_field

EXCEPTION_STATUSES = ("Open", "Waiting for approval", "Approved", "Rejected", "Closed")
SEVERITIES = ("low", "medium", "high")


def add_reconcile_objects(s: Schema) -> None:
    define_object(s, "Billing_Exception__c", "Billing Exception", "Billing Exceptions", "a0R", [
        Field("Name", "string", "Exception Number", length=80, auto_number="EXC-{00000}", **_RO),
        text_field("Exception_Id__c", 40, external_id=True, unique=True, custom=True,
                   label="Exception ID"),
        text_field("Kind__c", 60, custom=True),
        _pick("Severity__c", SEVERITIES, restricted=True, custom=True),
        _pick("Status__c", EXCEPTION_STATUSES, restricted=True, custom=True, default="Open"),
        _ref("Account__c", "Account", "Account__r", custom=True, label="Account",
             child_name="Billing_Exceptions__r"),
        text_field("Billing_Customer_Id__c", custom=True),
        text_field("Records__c", custom=True),
        Field("Evidence__c", "textarea", custom=True, length=32768),
        text_field("Proposed_Fix__c", custom=True),
        text_field("Approver_Role__c", 40, custom=True),
        Field("First_Seen__c", "date", "First Seen", custom=True),
        Field("Last_Seen__c", "date", "Last Seen", custom=True),
        Field("Resolved_On__c", "date", "Resolved On", custom=True),
        Field("Age_Days__c", "double", "Age (Days)", custom=True),
        text_field("Resolution__c", custom=True),
    ])  # fmt: skip
