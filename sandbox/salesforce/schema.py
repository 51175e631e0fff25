"""Objects, fields, key prefixes and record IDs of the emulated org.

The schema drives everything else: input validation (types, lengths, required, picklists, unique),
SOQL name resolution (case-insensitive, canonical casing out), describe output and relationships.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# --- IDs ---------------------------------------------------------------------------------------

_SUFFIX_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order: sortable
_ID_RE = re.compile(r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?")
POD = "8N"  # the two "instance" characters after the key prefix


def id18(id15: str) -> str:
    """Append the case-safe suffix: bit i of chunk k is set when char i of chunk k is A-Z."""
    suffix = ""
    for k in range(3):
        chunk = id15[k * 5 : k * 5 + 5]
        bits = sum(1 << i for i, c in enumerate(chunk) if "A" <= c <= "Z")
        suffix += _SUFFIX_ALPHABET[bits]
    return id15 + suffix


def normalize_id(value: str) -> str | None:
    """The canonical 18-character form of a 15/18-character ID, or None if it is not one.

    An 18-character ID is case-insensitive: its suffix says which characters are upper case.
    """
    if not isinstance(value, str) or not _ID_RE.fullmatch(value):
        return None
    if len(value) == 15:
        return id18(value)
    suffix = value[15:].upper()
    body = []
    for k in range(3):
        idx = _SUFFIX_ALPHABET.find(suffix[k])
        if idx < 0:
            return None
        for i, c in enumerate(value[k * 5 : k * 5 + 5]):
            upper = bool(idx & (1 << i))
            if upper and not c.isalpha():
                return None
            body.append(c.upper() if upper else c.lower())
    canonical = id18("".join(body))
    return canonical if canonical[15:] == suffix else None


def make_id(prefix: str, seq: int) -> str:
    """An 18-char ID: key prefix + pod + 10 base62 chars (monotonic in ``seq``, mixed case)."""
    n = 62**9 * 11 + seq * 912_673  # a spread so IDs are mixed-case, not just digits
    chars = ""
    while n:
        n, r = divmod(n, 62)
        chars = _BASE62[r] + chars
    return id18(prefix + POD + chars.rjust(10, "0"))


# --- fields and objects ------------------------------------------------------------------------

TEXT_TYPES = {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist"}
NUMBER_TYPES = {"int", "double", "currency", "percent"}
ALL_TYPES = TEXT_TYPES | NUMBER_TYPES | {"id", "reference", "boolean", "date", "datetime"}
_TYPE_ALIASES = {
    "text": "string",
    "longtext": "textarea",
    "number": "double",
    "integer": "int",
    "lookup": "reference",
    "checkbox": "boolean",
    "bool": "boolean",
}
_SOAP_TYPES = {
    "id": "tns:ID",
    "reference": "tns:ID",
    "boolean": "xsd:boolean",
    "int": "xsd:int",
    "double": "xsd:double",
    "currency": "xsd:double",
    "percent": "xsd:double",
    "date": "xsd:date",
    "datetime": "xsd:dateTime",
}
#: fields seeding may set although the API may not (audit fields, like a data migration would)
AUDIT_FIELDS = {"createddate", "createdbyid", "lastmodifieddate", "lastmodifiedbyid"}


@dataclass
class Field:
    name: str
    type: str
    label: str = ""
    length: int = 0
    required: bool = False  # nillable=false and no default: must be given on create
    default: Any = None
    createable: bool = True
    updateable: bool = True
    external_id: bool = False
    unique: bool = False
    custom: bool = False
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    reference_to: tuple[str, ...] = ()
    relationship_name: str | None = None
    auto_number: str | None = None  # display format, e.g. "LOG-{0000}"
    calculated: bool = False  # derived by the org (IsClosed, IsWon, Name of a Contact)
    child_name: str | None = None  # the parent-to-child relationship name a lookup registers

    def __post_init__(self) -> None:
        self.label = self.label or _label(self.name)
        if not self.length and self.type in TEXT_TYPES:
            self.length = 32768 if self.type == "textarea" else 255

    @property
    def mandatory(self) -> bool:
        """A record must always carry a value (required, or a non-null picklist default)."""
        return (self.required or self.default is not None) and self.type != "boolean"

    @property
    def nillable(self) -> bool:
        return not (self.required or self.type in ("boolean", "id") or self.default is not None)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "soapType": _SOAP_TYPES.get(self.type, "xsd:string"),
            "length": self.length,
            "custom": self.custom,
            "externalId": self.external_id,
            "unique": self.unique,
            "idLookup": self.external_id or self.type == "id" or self.name == "Name",
            "caseSensitive": False,
            "nillable": self.nillable,
            "createable": self.createable,
            "updateable": self.updateable,
            "defaultedOnCreate": self.default is not None
            or self.auto_number is not None
            or self.name in ("Id", "OwnerId", "CreatedDate", "CreatedById")
            or self.type == "boolean",
            "calculated": self.calculated,
            "autoNumber": self.auto_number is not None,
            "defaultValue": self.default,
            "picklistValues": [
                {"value": v, "label": v, "active": True, "defaultValue": v == self.default}
                for v in self.picklist
            ],
            "restrictedPicklist": self.restricted,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.relationship_name,
            "filterable": True,
            "sortable": self.type != "textarea" or self.length <= 255,
        }


@dataclass
class ChildRelationship:
    name: str  # e.g. "Contacts", "AI_Agent_Logs__r"
    child: str  # child object API name
    field: str  # the lookup field on the child


@dataclass
class SObject:
    name: str
    label: str
    label_plural: str
    key_prefix: str
    custom: bool = False
    fields: dict[str, Field] = field(default_factory=dict)  # keyed by lower-case name
    children: dict[str, ChildRelationship] = field(default_factory=dict)  # lower-case name
    #: the API user's object permissions (its profile / permission sets): describe reports
    #: them, and DML without them is refused (``CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY``)
    createable: bool = True
    updateable: bool = True

    def field(self, name: str) -> Field | None:
        return self.fields.get(name.lower())

    def add(self, f: Field) -> Field:
        self.fields[f.name.lower()] = f
        return f

    def relationship(self, name: str) -> Field | None:
        """The lookup field behind a relationship name (``Account`` → AccountId)."""
        lname = name.lower()
        for f in self.fields.values():
            if f.relationship_name and f.relationship_name.lower() == lname:
                return f
        return None

    def urls(self, version: str) -> dict[str, str]:
        base = f"/services/data/v{version}/sobjects/{self.name}"
        return {"sobject": base, "describe": f"{base}/describe", "rowTemplate": f"{base}/{{ID}}"}

    def summary(self, version: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "labelPlural": self.label_plural,
            "keyPrefix": self.key_prefix,
            "custom": self.custom,
            "createable": self.createable,
            "updateable": self.updateable,
            "deletable": True,
            "queryable": True,
            "retrieveable": True,
            "searchable": True,
            "urls": self.urls(version),
        }

    def describe(self, version: str) -> dict[str, Any]:
        return {
            **self.summary(version),
            "fields": [f.describe() for f in self.fields.values()],
            "childRelationships": [
                {
                    "childSObject": c.child,
                    "field": c.field,
                    "relationshipName": c.name,
                    "cascadeDelete": False,
                }
                for c in self.children.values()
            ],
            "recordTypeInfos": [],
        }


class Schema:
    def __init__(self) -> None:
        self.objects: dict[str, SObject] = {}
        self._by_prefix: dict[str, SObject] = {}

    def get(self, name: str) -> SObject | None:
        return self.objects.get(name.lower())

    def for_id(self, record_id: str) -> SObject | None:
        return self._by_prefix.get(record_id[:3])

    def add_object(self, obj: SObject) -> SObject:
        self.objects[obj.name.lower()] = obj
        self._by_prefix[obj.key_prefix] = obj
        return obj

    def next_custom_prefix(self) -> str:
        n = 0
        while f"a0{_BASE62[n]}" in self._by_prefix:
            n += 1
        return f"a0{_BASE62[n]}"

    def add_field(self, obj: SObject, f: Field) -> Field:
        """Add a field; a lookup also registers the child relationship on its parent(s)
        (not the audit/owner lookups to User)."""
        obj.add(f)
        if f.type == "reference" and f.name not in _NO_CHILDREN:
            name = f.child_name or _default_child_relationship(obj)
            for parent in f.reference_to:
                target = self.get(parent)
                if target is not None and name.lower() not in target.children:
                    target.children[name.lower()] = ChildRelationship(name, obj.name, f.name)
        return f


_NO_CHILDREN = {"Id", "CreatedById", "LastModifiedById", "OwnerId"}


def _label(name: str) -> str:
    base = name[:-3] if name.endswith("__c") else name
    base = base.removesuffix("Id") if base.endswith("Id") and base != "Id" else base
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base).replace("_", " ").strip()


def _default_child_relationship(child: SObject) -> str:
    if child.custom:
        return child.name[:-3] + "s__r"
    return child.label_plural.replace(" ", "")


# --- field specs (seeding) ---------------------------------------------------------------------


def field_from_spec(spec: Mapping[str, Any]) -> Field:
    """A field from a seed spec: ``{"name", "type", "label"?, "length"?, "externalId"?,
    "unique"?, "required"?, "defaultValue"?, "picklistValues"?, "restrictedPicklist"?,
    "referenceTo"?, "relationshipName"?, "childRelationshipName"?}``."""
    name = spec["name"]
    ftype = _TYPE_ALIASES.get(str(spec.get("type", "string")).lower(), spec.get("type", "string"))
    ftype = str(ftype).lower()
    if ftype not in ALL_TYPES:
        raise ValueError(f"unknown field type {spec.get('type')!r} for {name}")
    refs = spec.get("referenceTo") or ()
    refs = (refs,) if isinstance(refs, str) else tuple(refs)
    rel = spec.get("relationshipName")
    if ftype == "reference" and not rel:
        rel = name[:-3] + "__r" if name.endswith("__c") else name.removesuffix("Id")
    picklist = tuple(
        v["value"] if isinstance(v, Mapping) else str(v) for v in spec.get("picklistValues", ())
    )
    f = Field(
        name=name,
        type=ftype,
        label=spec.get("label", ""),
        length=int(spec.get("length", 0)),
        required=bool(spec.get("required", False)),
        default=spec.get("defaultValue"),
        external_id=bool(spec.get("externalId", False)),
        unique=bool(spec.get("unique", False)),
        custom=name.endswith("__c"),
        picklist=picklist,
        restricted=bool(spec.get("restrictedPicklist", False)),
        reference_to=refs,
        relationship_name=rel if ftype == "reference" else None,
        child_name=spec.get("childRelationshipName"),
    )
    return f


# --- the base org ------------------------------------------------------------------------------


def _system_fields(owner: bool = True) -> list[Field]:
    ro = {"createable": False, "updateable": False}
    fields = [
        Field("Id", "id", "Record ID", length=18, **ro),
        Field("IsDeleted", "boolean", "Deleted", **ro),
        Field("CreatedDate", "datetime", "Created Date", **ro),
        Field(
            "CreatedById",
            "reference",
            "Created By ID",
            length=18,
            reference_to=("User",),
            relationship_name="CreatedBy",
            **ro,
        ),  # fmt: skip
        Field("LastModifiedDate", "datetime", "Last Modified Date", **ro),
        Field(
            "LastModifiedById",
            "reference",
            "Last Modified By ID",
            length=18,
            reference_to=("User",),
            relationship_name="LastModifiedBy",
            **ro,
        ),  # fmt: skip
        Field("SystemModstamp", "datetime", "System Modstamp", **ro),
    ]
    if owner:
        fields.append(
            Field(
                "OwnerId",
                "reference",
                "Owner ID",
                length=18,
                reference_to=("User",),
                relationship_name="Owner",
            )  # fmt: skip
        )
    return fields


def define_object(
    schema: Schema,
    name: str,
    label: str,
    plural: str,
    prefix: str,
    fields: Iterable[Field],
    owner: bool = True,
) -> SObject:
    obj = schema.add_object(SObject(name, label, plural, prefix, custom=name.endswith("__c")))
    for f in (*_system_fields(owner), *fields):
        schema.add_field(obj, f)
    return obj


def _ref(name: str, to: str | tuple[str, ...], rel: str, **kw: Any) -> Field:
    targets = (to,) if isinstance(to, str) else to
    return Field(name, "reference", length=18, reference_to=targets, relationship_name=rel, **kw)


def text_field(name: str, length: int = 255, **kw: Any) -> Field:
    return Field(name, "string", length=length, **kw)


def _pick(name: str, values: Iterable[str], **kw: Any) -> Field:
    return Field(name, "picklist", picklist=tuple(values), **kw)


def _key(name: str = "RevBridge_Key__c") -> Field:
    return text_field(name, 64, external_id=True, unique=True, custom=True, label="RevBridge Key")


OPPORTUNITY_STAGES = {
    "Prospecting": 10,
    "Qualification": 10,
    "Needs Analysis": 20,
    "Value Proposition": 50,
    "Id. Decision Makers": 60,
    "Perception Analysis": 70,
    "Proposal/Price Quote": 75,
    "Negotiation/Review": 90,
    "Closed Won": 100,
    "Closed Lost": 0,
}
CASE_STATUSES = ("New", "Working", "Escalated", "Closed")
PAYMENT_TERMS = ("Net 15", "Net 30", "Net 45", "Net 60")
CHURN_LEVELS = ("low", "medium", "high", "critical")
CONTACT_ROLES = (
    "Business User", "Decision Maker", "Economic Buyer", "Economic Decision Maker", "Evaluator",
    "Executive Sponsor", "Influencer", "Technical Buyer", "Other",
)  # fmt: skip
STANDARD_PRICE_BOOK = "Standard Price Book"
TASK_STATUSES = ("Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred")
_RO = {"createable": False, "updateable": False}


def base_schema() -> Schema:
    """Account, Contact, Opportunity (with products, price books, line items and contact roles),
    Case, Task, User and AI_Agent_Log__c. Standard ``Description`` long text areas hold 32,000
    characters (as in a real org); RevBridge's custom Long Text Areas declare their own length
    (up to 131,072). A longer value is refused with 400 ``STRING_TOO_LONG``."""
    s = Schema()
    define_object(s, "User", "User", "Users", "005", [
        Field("Name", "string", "Full Name", length=121, calculated=True, **_RO),
        text_field("FirstName", 40),
        text_field("LastName", 80, required=True),
        Field("Email", "email", length=128, required=True),
        text_field("Username", 80, unique=True),
        text_field("Alias", 8),
        Field("IsActive", "boolean", "Active", default=True),
        text_field("Title", 80),
    ], owner=False)  # fmt: skip
    define_object(s, "Account", "Account", "Accounts", "001", [
        text_field("Name", required=True, label="Account Name"),
        _pick("Type", ["Prospect", "Customer - Direct", "Customer - Channel", "Partner", "Other"],
              label="Account Type"),
        _pick("Industry", ["Agriculture", "Banking", "Communications", "Education", "Energy",
                           "Finance", "Healthcare", "Manufacturing", "Media", "Retail",
                           "Technology", "Other"]),
        Field("Website", "url"),
        Field("Phone", "phone", length=40, label="Account Phone"),
        Field("Description", "textarea", length=32000),
        _ref("ParentId", "Account", "Parent", label="Parent Account ID",
             child_name="ChildAccounts"),
        text_field("BillingStreet"), text_field("BillingCity", 40), text_field("BillingState", 80),
        text_field("BillingPostalCode", 20), text_field("BillingCountry", 80),
        Field("AnnualRevenue", "currency"),
        Field("NumberOfEmployees", "int", "Employees"),
        text_field("Billing_Customer_Id__c", external_id=True, unique=True, custom=True),
        text_field("Billing_Platform__c", 40, custom=True),
        text_field("Billing_Subscription_Id__c", custom=True),
        Field("MRR__c", "currency", "MRR", custom=True),
        _pick("Customer_Tier__c", ["SMB", "Mid-Market", "Enterprise", "Strategic"],
              restricted=True, custom=True),
        Field("Churn_Risk__c", "double", "Churn Risk", custom=True),
        text_field("Billing_Status__c", custom=True),
        _pick("Churn_Level__c", CHURN_LEVELS, restricted=True, custom=True),
        Field("Churn_Reasons__c", "textarea", custom=True, length=32768),
        Field("Churn_Narrative__c", "textarea", custom=True, length=32768),
        Field("Churn_Scored_At__c", "datetime", "Churn Scored At", custom=True),
    ])  # fmt: skip
    define_object(s, "Contact", "Contact", "Contacts", "003", [
        _ref("AccountId", "Account", "Account", label="Account ID"),
        Field("Name", "string", "Full Name", length=121, calculated=True, **_RO),
        text_field("FirstName", 40),
        text_field("LastName", 80, required=True),
        Field("Email", "email", length=80),
        Field("Phone", "phone", length=40, label="Business Phone"),
        Field("MobilePhone", "phone", length=40),
        text_field("Title", 128),
    ])  # fmt: skip
    # Products and price books (Sales Cloud with products enabled). They have no owner: access
    # follows the price book / opportunity. A standard price book is seeded by the emulator.
    define_object(s, "Product2", "Product", "Products", "01t", [
        text_field("Name", required=True, label="Product Name"),
        text_field("ProductCode", label="Product Code"),
        Field("Description", "textarea", "Product Description", length=4000),
        Field("IsActive", "boolean", "Active"),
        _pick("Family", ["Software", "Services", "Support"], label="Product Family"),
    ], owner=False)  # fmt: skip
    define_object(s, "Pricebook2", "Price Book", "Price Books", "01s", [
        text_field("Name", required=True, label="Price Book Name"),
        Field("IsActive", "boolean", "Active"),
        Field("IsStandard", "boolean", "Is Standard Price Book", **_RO),
        text_field("Description"),
    ], owner=False)  # fmt: skip
    define_object(s, "PricebookEntry", "Price Book Entry", "Price Book Entries", "01u", [
        Field("Name", "string", "Product Name", length=255, calculated=True, **_RO),
        _ref("Pricebook2Id", "Pricebook2", "Pricebook2", label="Price Book ID", required=True,
             updateable=False, child_name="PricebookEntries"),
        _ref("Product2Id", "Product2", "Product2", label="Product ID", required=True,
             updateable=False, child_name="PricebookEntries"),
        Field("ProductCode", "string", "Product Code", length=255, calculated=True, **_RO),
        Field("UnitPrice", "currency", "List Price", required=True),
        Field("IsActive", "boolean", "Active"),
        Field("UseStandardPrice", "boolean", "Use Standard Price"),
    ], owner=False)  # fmt: skip
    define_object(s, "Opportunity", "Opportunity", "Opportunities", "006", [
        _ref("AccountId", "Account", "Account", label="Account ID"),
        text_field("Name", 120, required=True),
        _pick("StageName", OPPORTUNITY_STAGES, required=True, restricted=True, label="Stage"),
        Field("CloseDate", "date", required=True),
        Field("Amount", "currency"),
        Field("Probability", "percent", "Probability (%)"),
        _pick("Type", ["Existing Customer - Upgrade", "Existing Customer - Replacement",
                       "Existing Customer - Downgrade", "New Customer"], label="Opportunity Type"),
        _pick("LeadSource", ["Web", "Phone Inquiry", "Partner Referral", "Other"]),
        text_field("NextStep"),
        Field("Description", "textarea", length=32000),
        Field("IsClosed", "boolean", "Closed", calculated=True, **_RO),
        Field("IsWon", "boolean", "Won", calculated=True, **_RO),
        # set by the org from the first line item's price book when left empty
        _ref("Pricebook2Id", "Pricebook2", "Pricebook2", label="Price Book ID",
             child_name="Opportunities"),
        Field("HasOpportunityLineItem", "boolean", "Has Line Item", calculated=True, **_RO),
        text_field("Billing_Subscription_Id__c", custom=True),
        Field("Term_Months__c", "double", "Term (Months)", custom=True),
        _pick("Payment_Terms__c", PAYMENT_TERMS, restricted=True, custom=True),
        Field("Start_Date__c", "date", "Start Date", custom=True),
        text_field("Billing_Status__c", custom=True),
        Field("MRR__c", "currency", "MRR", custom=True),
    ])  # fmt: skip
    define_object(s, "OpportunityLineItem", "Opportunity Product", "Opportunity Products", "00k", [
        _ref("OpportunityId", "Opportunity", "Opportunity", label="Opportunity ID",
             required=True, updateable=False, child_name="OpportunityLineItems"),
        # one of PricebookEntryId / Product2Id on create (automation.py resolves the other)
        _ref("PricebookEntryId", "PricebookEntry", "PricebookEntry",
             label="Price Book Entry ID", updateable=False, child_name="OpportunityLineItems"),
        _ref("Product2Id", "Product2", "Product2", label="Product ID", updateable=False,
             child_name="OpportunityLineItems"),
        Field("ProductCode", "string", "Product Code", length=255, calculated=True, **_RO),
        Field("Name", "string", "Opportunity Product Name", length=376, calculated=True, **_RO),
        Field("Quantity", "double", required=True),
        Field("UnitPrice", "currency", "Sales Price"),
        Field("ListPrice", "currency", "List Price", calculated=True, **_RO),
        Field("Discount", "percent"),
        Field("Subtotal", "currency", calculated=True, **_RO),
        Field("TotalPrice", "currency", "Total Price"),
        Field("ServiceDate", "date", "Date"),
        text_field("Description", label="Line Description"),
        Field("SortOrder", "int", "Sort Order", **_RO),
    ], owner=False)  # fmt: skip
    define_object(s, "OpportunityContactRole", "Opportunity Contact Role",
                  "Opportunity Contact Roles", "00K", [
        _ref("OpportunityId", "Opportunity", "Opportunity", label="Opportunity ID",
             required=True, updateable=False, child_name="OpportunityContactRoles"),
        _ref("ContactId", "Contact", "Contact", label="Contact ID", required=True,
             child_name="OpportunityContactRoles"),
        _pick("Role", CONTACT_ROLES),
        Field("IsPrimary", "boolean", "Primary"),
    ], owner=False)  # fmt: skip
    define_object(s, "Case", "Case", "Cases", "500", [
        Field("CaseNumber", "string", "Case Number", length=30, auto_number="{00000000}", **_RO),
        _ref("AccountId", "Account", "Account", label="Account ID"),
        _ref("ContactId", "Contact", "Contact", label="Contact ID"),
        text_field("Subject"),
        Field("Description", "textarea", length=32000),
        _pick("Status", CASE_STATUSES, default="New", restricted=True),
        _pick("Priority", ["High", "Medium", "Low"], default="Medium"),
        _pick("Origin", ["Phone", "Email", "Web"], label="Case Origin"),
        _pick("Type", ["Question", "Problem", "Feature Request"], label="Case Type"),
        _pick("Reason", ["Installation", "Equipment Complexity", "Performance", "Breakdown",
                         "Equipment Design", "Feedback", "Other"], label="Case Reason"),
        Field("IsClosed", "boolean", "Closed", calculated=True, **_RO),
        Field("ClosedDate", "datetime", "Closed Date", **_RO),
        Field("IsEscalated", "boolean", "Escalated"),
        Field("SuppliedEmail", "email", "Web Email", length=80),
        text_field("SuppliedName", 80, label="Web Name"),
        _key(),
        text_field("Billing_Invoice_Id__c", custom=True),
        Field("Billing_Context__c", "textarea", custom=True, length=32768),
    ])  # fmt: skip
    define_object(s, "Task", "Task", "Tasks", "00T", [
        _ref("WhoId", "Contact", "Who", label="Name ID"),
        _ref("WhatId", ("Account", "Opportunity", "Case"), "What", label="Related To ID"),
        text_field("Subject"),
        Field("ActivityDate", "date", "Due Date Only"),
        _pick("Status", TASK_STATUSES, default="Not Started", restricted=True),
        _pick("Priority", ["High", "Normal", "Low"], default="Normal", restricted=True),
        Field("Description", "textarea", length=32000),
        _pick("TaskSubtype", ["Task", "Email", "Call"], default="Task"),
        Field("IsClosed", "boolean", "Closed", calculated=True, **_RO),
        _key(),
    ])  # fmt: skip
    define_object(s, "AI_Agent_Log__c", "AI Agent Log", "AI Agent Logs", "a00", [
        Field("Name", "string", "Log Number", length=80, auto_number="LOG-{0000}", **_RO),
        _key(),
        text_field("Use_Case__c", 80, custom=True),
        text_field("Action__c", custom=True),
        _ref("Account__c", "Account", "Account__r", custom=True, label="Account"),
        _ref("Case__c", "Case", "Case__r", custom=True, label="Case"),
        text_field("Workflow_Id__c", custom=True),
        text_field("Run_Id__c", custom=True),
        text_field("Decision__c", 40, custom=True),
        text_field("Policy_Ids__c", custom=True),
        text_field("Approver__c", custom=True),
        text_field("Reasoner__c", 80, custom=True),
        text_field("Outcome__c", custom=True),
        text_field("Parameters_Hash__c", 128, custom=True),
        Field("Details__c", "textarea", custom=True, length=131072),
    ])  # fmt: skip
    return s
