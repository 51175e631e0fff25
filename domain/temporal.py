"""Names shared by workflows, workers, the webhook service and the CLI: task queues, search
attributes, signal names. Side-effect free, so the workflow sandbox may import it."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TASK_QUEUE = "revbridge"

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
