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


USE_CASE = SearchAttributeKey.for_keyword("RevBridgeUseCase")
CUSTOMER = SearchAttributeKey.for_keyword("RevBridgeCustomer")
APPROVAL = SearchAttributeKey.for_keyword("RevBridgeApproval")
AMOUNT_AT_RISK = SearchAttributeKey.for_float("RevBridgeAmountAtRisk")

#: every custom search attribute RevBridge registers, with its type as the dev server names it
SEARCH_ATTRIBUTES: dict[str, str] = {
    USE_CASE.name: "Keyword",
    CUSTOMER.name: "Keyword",
    APPROVAL.name: "Keyword",
    AMOUNT_AT_RISK.name: "Double",
}
ALL_SEARCH_ATTRIBUTE_KEYS = (USE_CASE, CUSTOMER, APPROVAL, AMOUNT_AT_RISK)

SIGNAL_PAYMENT_FAILED = "payment_failed"
SIGNAL_INVOICE_PAID = "invoice_paid"
SIGNAL_RISK = "risk_signal"
