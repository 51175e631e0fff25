"""Names shared by workflows, workers, the webhook service and the CLI: task queues, search
attributes, signal names. Side-effect free, so the workflow sandbox may import it."""

from __future__ import annotations

from enum import StrEnum

from temporalio.common import SearchAttributeKey

TASK_QUEUE = "revbridge"


class UseCase(StrEnum):
    """The one name of each use case: its search attribute value, its policy principal
    (``RevBridge::Agent::"dunning"``), its mode in policies/modes.yaml and its audit entries."""

    DUNNING = "dunning"
    QUOTE_TO_CASH = "quote_to_cash"
    CHURN_INTERVENTION = "churn_intervention"
    SUPPORT_CONTEXT = "support_context"
    ACCOUNT_SYNC = "account_sync"
    EXPANSION = "expansion"
    RECONCILIATION = "reconciliation"
    REVENUE_RECOGNITION = "revenue_recognition"


USE_CASE_KEY = SearchAttributeKey.for_keyword("RevBridgeUseCase")
CUSTOMER_KEY = SearchAttributeKey.for_keyword("RevBridgeCustomer")
APPROVAL_KEY = SearchAttributeKey.for_keyword("RevBridgeApproval")
AMOUNT_AT_RISK_KEY = SearchAttributeKey.for_float("RevBridgeAmountAtRisk")

#: every custom search attribute RevBridge registers, with its type as the dev server names it
SEARCH_ATTRIBUTES: dict[str, str] = {
    USE_CASE_KEY.name: "Keyword",
    CUSTOMER_KEY.name: "Keyword",
    APPROVAL_KEY.name: "Keyword",
    AMOUNT_AT_RISK_KEY.name: "Double",
}
ALL_SEARCH_ATTRIBUTE_KEYS = (USE_CASE_KEY, CUSTOMER_KEY, APPROVAL_KEY, AMOUNT_AT_RISK_KEY)

SIGNAL_PAYMENT_FAILED = "payment_failed"
SIGNAL_INVOICE_PAID = "invoice_paid"
SIGNAL_RISK = "risk_signal"
