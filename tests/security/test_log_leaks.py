"""No customer data in the logs, even at ``REVBRIDGE_LOG_LEVEL=DEBUG``: the new use cases' reads
(account sync views of a Chargebee, Stripe and Salesforce customer, a Chargebee search by
email) with every logger the worker has at DEBUG write no email, name, company or credential.

Seen before the fix (``revbridge demo --scenario sync|reconcile|revenue|expansion``,
``--channel marketing-cloud``, ``--desk zendesk`` at DEBUG): ``chargebee.http_request`` logged
whole customer bodies (email, first/last name, company), ``zenpy.lib.api`` requesters' emails and
ticket comments; at INFO ``httpx`` logs each request URL, a search by email included. Workflow IDs
and search attributes of those demos carried provider IDs only (checked in the same runs)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest

from connectors import VENDOR_LOGGERS, quiet_vendor_loggers
from connectors.registry import build_billing, build_crm
from connectors.sync import sync_billing, sync_crm
from infra.telemetry import configure_logging
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.salesforce import SalesforceEmulator
from sandbox.stripe import StripeEmulator
from tests.pairs import CB_KEY, SF_ID, SF_SECRET, STRIPE_KEY, STRIPE_SECRET, pair_settings

EMAIL = "jane.doe+leak@customer-leak.example"
COMPANY = "Leakwatch Holdings"
FIRST, LAST = "Janette", "Doevanich"


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")


@pytest.fixture()
def debug_logs() -> Iterator[Capture]:
    root = logging.getLogger()
    level, capture = root.level, Capture()
    configure_logging({"REVBRIDGE_LOG_LEVEL": "DEBUG"})
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        root.setLevel(level)


def test_vendor_reads_at_debug_log_no_customer_data(debug_logs: Capture) -> None:
    emulators = {
        ChargebeeEmulator(api_key=CB_KEY): 0,
        StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET): 0,
        SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET): 0,
    }
    with ServerThread(emulators) as thread:
        urls = {**thread.urls, "hubspot": "http://127.0.0.1:9"}  # (not called here)
        settings = pair_settings(urls, "chargebee", "salesforce", "leaks")
        cb = build_billing(settings)
        st = build_billing(settings.model_copy(update={"billing": "stripe"}))
        sf = build_crm(settings)
        cid = f"cus_leak_{uuid.uuid4().hex[:6]}"
        person = {"email": EMAIL, "company": COMPANY, "first_name": FIRST, "last_name": LAST}
        cb.client.Customer.create({"id": cid, **person})
        stripe_id = st.client.v1.customers.create({"name": f"{FIRST} {LAST}", "email": EMAIL}).id
        account = sf._call(
            lambda api: api.Account.create(
                {"Name": COMPANY, "Billing_Customer_Id__c": cid, "Billing_Platform__c": "chargebee"}
            ),
            what="seed",
        )["id"]

        def reads() -> str:
            debug_logs.lines.clear()
            assert sync_billing(cb).sync_view(cid)["billing_contact"] == EMAIL
            assert sync_billing(st).sync_view(stripe_id)["billing_contact"] == EMAIL
            assert sync_crm(sf).sync_view(account)["account_name"] == COMPANY
            assert [c.id for c in cb.find_customers(EMAIL, None)] == [cid]
            return "\n".join(debug_logs.lines)

        # the check can see a leak: the SDKs' own loggers let through, the email is logged
        for name in VENDOR_LOGGERS:
            logging.getLogger(name).setLevel(logging.NOTSET)
        try:
            assert EMAIL in reads()
        finally:
            quiet_vendor_loggers()
        text = reads()

    for secret in (EMAIL, "customer-leak", "jane.doe", COMPANY, FIRST, LAST, CB_KEY, STRIPE_KEY, SF_SECRET):  # fmt: skip
        assert secret not in text, f"{secret!r} logged:\n" + "\n".join(
            line[:300] for line in debug_logs.lines if secret in line
        )
    assert "%40customer-leak" not in text  # an email URL-encoded in a search's query string
