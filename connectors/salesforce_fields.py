"""What RevBridge needs on a Salesforce org, as one table: every field it reads or writes, by
object, with its type, the length the connector cuts text to, and the picklist values it writes.

Three readers, so they cannot disagree: the connector (connectors/salesforce.py) truncates to these
lengths before sending, ``preflight`` (``revbridge doctor``) checks a real org against the table,
and ``revbridge setup crm`` (connectors/salesforce_setup.py) creates and grants what is missing.
``object_checks`` judges one describe of the org against the table (``preflight``'s lines; setup
plans from the same judgement). Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.models import CasePriority
from domain.preflight import Check, CheckStatus

VENDOR = "salesforce"
LONG_TEXT = 32768  # Long Text Area length of the churn and billing-context fields


@dataclass(frozen=True)
class Need:
    """A field RevBridge reads or writes: its type family and, for text, the length the
    connector cuts to (the org's field must hold at least that much)."""

    type: str  # string | textarea | picklist | double | percent | currency | email | date | …
    length: int = 0
    external_id: bool = False
    writes: bool = True
    #: picklist values RevBridge writes (a restricted picklist must offer them)
    values: tuple[str, ...] = ()


#: Every field RevBridge needs, by object: what ``preflight`` checks on a real org and the
#: lengths the connector truncates to before sending (a longer value is a permanent 400
#: ``STRING_TOO_LONG`` on a real org). Standard fields carry Salesforce's documented lengths
#: (``Description`` long text areas: 32,000); custom ones the lengths RevBridge declares.
NEEDS: dict[str, dict[str, Need]] = {
    "Account": {
        "Billing_Customer_Id__c": Need("string", 255, external_id=True),
        "Billing_Platform__c": Need("string", 40),
        "Billing_Subscription_Id__c": Need("string", 255),
        "Billing_Status__c": Need("string", 255),
        "MRR__c": Need("currency"),
        "Customer_Tier__c": Need("picklist", writes=False),
        "Churn_Risk__c": Need("double"),
        "Churn_Level__c": Need("picklist", values=("low", "medium", "high", "critical")),
        "Churn_Reasons__c": Need("textarea", LONG_TEXT),
        "Churn_Narrative__c": Need("textarea", LONG_TEXT),
        "Churn_Scored_At__c": Need("datetime"),
        # the account sync's golden-record fields (connectors/sync/salesforce.py)
        "Billing_Plan__c": Need("string", 255),
        "Next_Renewal__c": Need("date"),
        "Payment_Health__c": Need("string", 40),
        "Billing_Contact_Email__c": Need("email"),
        "Billing_Contact_Name__c": Need("string", 255),
        # the account sync's health profile (connectors/sync/salesforce.py HEALTH)
        "Health_Summary__c": Need("string", 255),
        "Subscription_Health__c": Need("textarea", LONG_TEXT),
        "Tenure_Months__c": Need("double"),
        "Payment_Success_Rate__c": Need("percent"),
        "Open_Dunning__c": Need("double"),
        "Usage_Trend__c": Need("string", 40),
    },
    "Opportunity": {
        "RevBridge_Key__c": Need("string", 64, external_id=True),  # expansion's upsert key
        # what expansion writes on the opportunity it opens (and NextStep when it closes it)
        "Type": Need("picklist", values=("Existing Customer - Upgrade",)),
        "NextStep": Need("string", 255),
        "Description": Need("textarea", 32000),
        "Billing_Subscription_Id__c": Need("string", 255),
        "Billing_Status__c": Need("string", 255),
        "MRR__c": Need("currency"),
        "Term_Months__c": Need("double", writes=False),
        "Payment_Terms__c": Need("picklist", writes=False),
        "Start_Date__c": Need("date", writes=False),
    },
    "Case": {
        "Subject": Need("string", 255),
        "Description": Need("textarea", 32000),
        "Status": Need("picklist", values=("New",)),
        "Priority": Need("picklist", values=tuple(p.value for p in CasePriority)),
        "Origin": Need("picklist", values=("Web",)),
        "Type": Need("picklist", values=("Billing",)),
        "RevBridge_Key__c": Need("string", 64, external_id=True),
        "Billing_Invoice_Id__c": Need("string", 255),
        "Billing_Context__c": Need("textarea", LONG_TEXT),
    },
    "Task": {
        "Subject": Need("string", 255),
        "Description": Need("textarea", 32000),
        "Status": Need("picklist", values=("Not Started",)),
        "Priority": Need("picklist", values=("High", "Normal")),
        "RevBridge_Key__c": Need("string", 64, external_id=True),
    },
    "AI_Agent_Log__c": {
        "RevBridge_Key__c": Need("string", 64, external_id=True),
        "Use_Case__c": Need("string", 80),
        "Action__c": Need("string", 255),
        "Decision__c": Need("string", 40),
        "Policy_Ids__c": Need("string", 255),
        "Approver__c": Need("string", 255),
        "Reasoner__c": Need("string", 80),
        "Outcome__c": Need("string", 255),
        "Parameters_Hash__c": Need("string", 128),
        "Workflow_Id__c": Need("string", 255),
        "Run_Id__c": Need("string", 255),
        "Account__c": Need("reference"),
        "Case__c": Need("reference"),
        "Details__c": Need("textarea", 131072),
    },
    # usage-based expansion (connectors/expansion/salesforce.py): a draft quote on the
    # opportunity (Quotes enabled in the org) and the signal record on the account
    "Quote": {
        "Name": Need("string", 255),
        "Status": Need("picklist", values=("Draft", "Rejected")),
        "Description": Need("textarea", 32000),
        "ExpirationDate": Need("date"),
        "RevBridge_Key__c": Need("string", 64, external_id=True),
    },
    "QuoteLineItem": {
        "Quantity": Need("double"),
        "UnitPrice": Need("currency"),
        "RevBridge_Key__c": Need("string", 64, external_id=True),
    },
    "Expansion_Signal__c": {
        "RevBridge_Key__c": Need("string", 64, external_id=True),
        "Account__c": Need("reference"),
        "Opportunity__c": Need("reference"),
        "Quote__c": Need("reference"),
        "Status__c": Need("picklist", values=("Open", "Won", "Lost", "Expired", "Closed")),
        "Billing_Platform__c": Need("string", 40),
        "Billing_Customer_Id__c": Need("string", 255),
        "Billing_Subscription_Id__c": Need("string", 255),
        "Metered_Item__c": Need("string", 255),
        "Current_Price__c": Need("string", 255),
        "Recommended_Price__c": Need("string", 255),
        "Upgrade_MRR__c": Need("currency"),
        "Days_To_Limit__c": Need("double"),
        "Crossing_Date__c": Need("date"),
        "Crossing_Earliest__c": Need("date"),
        "Crossing_Latest__c": Need("date"),
        "Confidence__c": Need("percent"),
        "Projected_Usage__c": Need("double"),
        "Included_Units__c": Need("double"),
        "Reasons__c": Need("textarea", LONG_TEXT),
        "Close_Reason__c": Need("string", 255),
        "Workflow_Id__c": Need("string", 255),
    },
    # reconciliation (connectors/reconcile/salesforce.py): one record per exception
    "Billing_Exception__c": {
        "Exception_Id__c": Need("string", 40, external_id=True),
        "Kind__c": Need("string", 60),
        "Severity__c": Need("picklist", values=("low", "medium", "high")),
        "Status__c": Need(
            "picklist", values=("Open", "Waiting for approval", "Approved", "Rejected", "Closed")
        ),
        "Account__c": Need("reference"),
        "Billing_Customer_Id__c": Need("string", 255),
        "Records__c": Need("string", 255),
        "Evidence__c": Need("textarea", 32000),
        "Proposed_Fix__c": Need("string", 255),
        "Approver_Role__c": Need("string", 40),
        "First_Seen__c": Need("date"),
        "Last_Seen__c": Need("date"),
        "Resolved_On__c": Need("date"),
        "Age_Days__c": Need("double"),
        "Resolution__c": Need("string", 255),
    },
}
#: the objects RevBridge creates records of (the integration user needs create and edit)
CREATES = (
    "Opportunity",
    "Case",
    "Task",
    "AI_Agent_Log__c",
    "Quote",
    "QuoteLineItem",
    "Expansion_Signal__c",
    "Billing_Exception__c",
)
#: standard objects an org has only once a feature is on (what the admin turns on)
FEATURES = {"Quote": "turn on Quotes (Setup > Quote Settings > Enable)"}
#: the fix for an object the integration user cannot use
ACCESS_FIX = "give the integration user the RevBridge permission set (API Enabled, object access)"
#: the org's field types that hold what RevBridge writes as each type of NEEDS
_COMPATIBLE = {
    "string": {"string", "textarea"},
    "textarea": {"textarea", "string"},
    "picklist": {"picklist", "string"},
    "double": {"double", "percent"},
    "currency": {"currency", "double"},
    "percent": {"percent", "double"},
    "email": {"email", "string"},
    "date": {"date"},
    "datetime": {"datetime"},
    "reference": {"reference"},
}


def _check(name: str, status: CheckStatus, detail: str = "", fix: str = "") -> Check:
    return Check(system=VENDOR, name=name, status=status, detail=detail, fix=fix)


def object_checks(obj: str, result: dict[str, Any]) -> list[Check]:
    """One describe's findings: a FAIL per missing object, permission, field, type, length
    or external-ID flag; one OK line when the object has everything RevBridge needs."""
    name = f"object:{obj}"
    status = int(result.get("httpStatusCode") or 500)
    describe = result.get("body")
    if status == 404 or (status >= 400 and error_code(describe) in ("NOT_FOUND", "INVALID_TYPE")):
        fix = (
            f"run `revbridge setup crm` (it deploys {obj} with RevBridge's fields), "
            "or grant the integration user Read on it"
            if obj.endswith("__c")
            else (f"{FEATURES[obj]}, then " if obj in FEATURES else "")
            + f"grant the integration user Read on {obj}"
        )
        return [_check(name, CheckStatus.FAIL, "not visible to the integration user", fix)]
    if status >= 300 or not isinstance(describe, dict):
        detail = f"describe answered {status} {error_code(describe) or ''}".strip()
        return [_check(name, CheckStatus.FAIL, detail, ACCESS_FIX)]
    checks: list[Check] = []
    wanted = [("Read", "queryable", True), ("Create", "createable", obj in CREATES)]
    wanted.append(("Edit", "updateable", any(n.writes for n in NEEDS[obj].values())))
    missing_perms = [perm for perm, flag, needed in wanted if needed and not describe.get(flag)]
    if missing_perms:
        checks.append(
            _check(
                f"{name}:permissions",
                CheckStatus.FAIL,
                f"the integration user lacks {', '.join(missing_perms)}",
                f"grant {'/'.join(missing_perms)} on {obj} in the integration user's permission set",
            )
        )
    fields = {f.get("name", "").lower(): f for f in describe.get("fields") or []}
    for field_name, need in NEEDS[obj].items():
        problem = field_problem(need, fields.get(field_name.lower()))
        if problem:
            detail, fix = problem
            checks.append(
                _check(
                    f"field:{obj}.{field_name}",
                    CheckStatus.FAIL,
                    detail,
                    fix.format(f"{obj}.{field_name}"),
                )
            )
    if not checks:
        checks.append(_check(name, CheckStatus.OK, f"{len(NEEDS[obj])} fields as RevBridge needs"))
    return checks


def field_problem(need: Need, field: dict[str, Any] | None) -> tuple[str, str] | None:
    """(detail, fix with ``{}`` for the field's name) when the org's field will not do."""
    kind = need.type + (f"({need.length})" if need.length else "")
    if field is None:
        return (
            "missing or not visible",
            f"create {{}} as {kind}, or grant the integration user read/edit on it "
            "(field-level security): `revbridge setup crm` does both",
        )
    actual = str(field.get("type") or "")
    if actual not in _COMPATIBLE[need.type]:
        return f"is {actual}, RevBridge needs {need.type}", f"recreate {{}} as {kind}"
    if need.length and int(field.get("length") or 0) < need.length:
        return (
            f"holds {field.get('length')} characters, RevBridge writes up to {need.length}",
            f"raise the length of {{}} to {need.length}",
        )
    if need.external_id and not field.get("externalId"):
        return "is not an External ID", "mark {} as External ID (and Unique)"
    offered = {p.get("value") for p in field.get("picklistValues") or [] if p.get("active", True)}
    lacking = [v for v in need.values if v not in offered]
    if lacking and field.get("restrictedPicklist"):
        values = ", ".join(lacking)
        return f"restricted picklist lacks {values}", f"add {values} to the picklist {{}}"
    if need.writes and not (field.get("createable") and field.get("updateable")):
        return (
            "is read-only for the integration user",
            "give the integration user Edit on {} (field-level security; `revbridge setup crm` "
            "grants it in the RevBridge Integration permission set)",
        )
    return None


def error_code(body: Any) -> str | None:
    if isinstance(body, list) and body and isinstance(body[0], dict):
        return body[0].get("errorCode")
    return None
