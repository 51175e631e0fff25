"""Usage-based expansion's objects in the sandbox org: Quote and QuoteLineItem (Sales Cloud with
Quotes enabled: standard objects, key prefixes 0Q0 / 0QL), the custom object
``Expansion_Signal__c`` RevBridge's setup creates, and a ``RevBridge_Key__c`` external ID on
Opportunity, Quote and QuoteLineItem so every create is an idempotent upsert.

Quote ``Status`` values are the org defaults (Draft, Needs Review, In Review, Approved, Rejected,
Presented, Accepted, Denied); a quote line needs a price book entry, a quantity and a sales price
on create (REQUIRED_FIELD_MISSING otherwise), and its quote on create only.
"""

from __future__ import annotations

from sandbox.salesforce.schema import (
    _RO,
    Field,
    Schema,
    _key,
    _pick,
    _ref,
    define_object,
    text_field,
)

QUOTE_STATUSES = (
    "Draft", "Needs Review", "In Review", "Approved", "Rejected", "Presented", "Accepted", "Denied",
)  # fmt: skip
SIGNAL_STATUSES = ("Open", "Won", "Lost", "Expired", "Closed")


def add_expansion_objects(s: Schema) -> None:
    opp = s.get("Opportunity")
    assert opp is not None
    s.add_field(opp, _key())
    define_object(s, "Quote", "Quote", "Quotes", "0Q0", [
        text_field("Name", required=True, label="Quote Name"),
        _ref("OpportunityId", "Opportunity", "Opportunity", label="Opportunity ID",
             required=True, updateable=False, child_name="Quotes"),
        _ref("AccountId", "Account", "Account", label="Account ID", **_RO),
        _ref("Pricebook2Id", "Pricebook2", "Pricebook2", label="Price Book ID",
             child_name="Quotes"),
        _pick("Status", QUOTE_STATUSES, default="Draft", restricted=True),
        Field("ExpirationDate", "date", "Expiration Date"),
        Field("Description", "textarea", length=32000),
        Field("Discount", "percent"),
        Field("IsSyncing", "boolean", "Syncing", **_RO),
        _key(),
    ])  # fmt: skip
    define_object(s, "QuoteLineItem", "Quote Line Item", "Quote Line Items", "0QL", [
        _ref("QuoteId", "Quote", "Quote", label="Quote ID", required=True, updateable=False,
             child_name="QuoteLineItems"),
        _ref("PricebookEntryId", "PricebookEntry", "PricebookEntry",
             label="Price Book Entry ID", required=True, updateable=False,
             child_name="QuoteLineItems"),
        _ref("Product2Id", "Product2", "Product2", label="Product ID", updateable=False,
             child_name="QuoteLineItems"),
        Field("Quantity", "double", required=True),
        Field("UnitPrice", "currency", "Sales Price", required=True),
        Field("Discount", "percent"),
        text_field("Description", label="Line Item Description"),
        Field("ServiceDate", "date", "Date"),
        _key(),
    ], owner=False)  # fmt: skip
    define_object(s, "Expansion_Signal__c", "Expansion Signal", "Expansion Signals", "a0E", [
        Field("Name", "string", "Signal Number", length=80, auto_number="EXP-{0000}", **_RO),
        _key(),
        _ref("Account__c", "Account", "Account__r", custom=True, label="Account",
             child_name="Expansion_Signals__r"),
        _ref("Opportunity__c", "Opportunity", "Opportunity__r", custom=True,
             label="Opportunity", child_name="Expansion_Signals__r"),
        _ref("Quote__c", "Quote", "Quote__r", custom=True, label="Quote"),
        _pick("Status__c", SIGNAL_STATUSES, restricted=True, custom=True, label="Status"),
        text_field("Billing_Platform__c", 40, custom=True),
        text_field("Billing_Customer_Id__c", custom=True),
        text_field("Billing_Subscription_Id__c", custom=True),
        text_field("Metered_Item__c", custom=True),
        text_field("Current_Price__c", custom=True),
        text_field("Recommended_Price__c", custom=True),
        Field("Upgrade_MRR__c", "currency", "Upgrade MRR", custom=True),
        Field("Days_To_Limit__c", "double", "Days to Limit", custom=True),
        Field("Crossing_Date__c", "date", "Crossing Date", custom=True),
        Field("Crossing_Earliest__c", "date", "Crossing Earliest", custom=True),
        Field("Crossing_Latest__c", "date", "Crossing Latest", custom=True),
        Field("Confidence__c", "percent", "Confidence", custom=True),
        Field("Projected_Usage__c", "double", "Projected Usage per Period", custom=True),
        Field("Included_Units__c", "double", "Included Units per Period", custom=True),
        Field("Reasons__c", "textarea", custom=True, length=32768),
        text_field("Close_Reason__c", custom=True),
        text_field("Workflow_Id__c", custom=True),
    ])  # fmt: skip
