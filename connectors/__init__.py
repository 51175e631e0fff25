"""Vendor connectors (official SDKs behind ``BillingPlatform`` / ``CrmSystem`` and the use cases'
small protocols).

The vendor SDKs and HTTP libraries log whole exchanges below WARNING: request URLs with their
query strings at INFO (``httpx``: a Chargebee ``customers?email[is]=…`` search, a Zendesk
requester lookup) and response bodies at DEBUG (``chargebee.http_request``, ``zenpy``,
``anthropic``, ``zeep``: customers' names, emails, addresses, ticket comments). No customer data
in our logs, whatever ``REVBRIDGE_LOG_LEVEL`` says: their loggers stay at WARNING. What a vendor
call did is logged by RevBridge itself, without its data (``revbridge.http``: vendor, method,
status).
"""

from __future__ import annotations

import logging

#: third-party loggers that write request URLs or bodies below WARNING
VENDOR_LOGGERS = (
    "anthropic", "chargebee", "httpcore", "httpx", "hubspot", "recurly", "requests",
    "simple_salesforce", "stripe", "urllib3", "zeep", "zenpy", "zuora_sdk",
)  # fmt: skip


def quiet_vendor_loggers() -> None:
    """Hold the vendor SDKs' loggers at WARNING (done on import; the webhook service, which
    calls HubSpot and Recurly without importing a connector, calls it at start)."""
    for name in VENDOR_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


quiet_vendor_loggers()
