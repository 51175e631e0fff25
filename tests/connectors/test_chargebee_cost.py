"""What a Chargebee call costs (issue 15): one keep-alive HTTP client per connector instead of a
new client (and TCP connection) per request, and the invoice context in few calls — counted
from the connections opened and from the emulator's request ledger. Recurly's and Zuora's
connectors are held to the same one-connection rule."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.chargebee import ChargebeeBilling
from domain.settings import ChargebeeSettings
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.scenarios import DEMO_CUSTOMERS, chargebee_seed

CALLS = 20


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    em = ChargebeeEmulator(api_key="k", rate_limit_per_minute=None)
    with ServerThread({em: 0}) as thread:
        url = thread.urls["chargebee"]
        httpx.post(
            url + "/_sandbox/seed", json=chargebee_seed(DEMO_CUSTOMERS, "cost")
        ).raise_for_status()
        yield url


def _billing(url: str) -> ChargebeeBilling:
    return ChargebeeBilling(
        ChargebeeSettings(site="acme-test", api_key=SecretStr("k"), api_url=url), timeout_s=5
    )


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection opened in this process (httpcore's sync backend opens them with
    ``socket.create_connection``)."""
    opened: list[tuple[str, int]] = []
    real = socket.create_connection

    def counting(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(tuple(address[:2]))
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    return opened


def _ledger(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/_sandbox/requests").json()["requests"]


def test_twenty_calls_share_one_keep_alive_connection(
    site: str, connections: list[tuple[str, int]]
) -> None:
    billing = _billing(site)
    assert billing.keep_alive
    for _ in range(CALLS):
        assert billing.list_customers(limit=1).customers
    assert len(connections) == 1, connections
    billing.close()


def test_the_sdk_alone_opens_a_connection_per_call(
    site: str, connections: list[tuple[str, int]]
) -> None:
    """The waste the shared client removes: the official client called directly (outside the
    connector's calls) still opens one connection per request."""
    billing = _billing(site)
    customer = DEMO_CUSTOMERS[0].ids("cost")["customer"]
    for _ in range(3):
        billing.client.Customer.retrieve(customer)
    assert len(connections) == 3


def test_the_invoice_context_costs_at_most_three_calls_and_two_without_payments(
    site: str,
) -> None:
    billing = _billing(site)
    invoice = DEMO_CUSTOMERS[0].ids("cost")["invoice"]
    httpx.delete(site + "/_sandbox/requests").raise_for_status()
    ctx = billing.get_invoice_context(invoice)
    full = _ledger(site)
    assert ctx.customer.mrr > 0 and ctx.customer.created_at is not None
    httpx.delete(site + "/_sandbox/requests").raise_for_status()
    lean = billing.get_invoice_context(invoice, payments=0)
    short = _ledger(site)
    assert [r["path"].split("/")[3] for r in full] == [
        "invoices",
        "subscriptions",
        "transactions",
    ], [r["path"] for r in full]
    assert len(short) == 2, [r["path"] for r in short]
    assert lean.customer == ctx.customer and lean.invoice == ctx.invoice
    assert lean.recent_payments == []


@pytest.mark.parametrize("vendor", ["recurly", "zuora"])
def test_recurly_and_zuora_already_keep_one_connection(
    vendor: str, connections: list[tuple[str, int]]
) -> None:
    """The other SDKs' usage has no such waste: Recurly's client holds one ``http.client``
    connection (serialized by the connector's lock) and the Zuora connector one
    ``httpx.Client``; 20 reads open one connection (Zuora: the token request shares it)."""
    from connectors.recurly import RecurlyBilling
    from connectors.zuora import ZuoraBilling
    from domain.settings import RecurlySettings, ZuoraSettings
    from sandbox.recurly import RecurlyEmulator
    from sandbox.zuora import ZuoraEmulator

    em = (
        RecurlyEmulator(api_key="k", webhook_secrets=["s"])
        if vendor == "recurly"
        else ZuoraEmulator(client_id="id", client_secret="secret")
    )
    with em.lock:
        em.rate_limit_per_minute = None
    with ServerThread({em: 0}) as thread:
        url = thread.urls[vendor]
        connections.clear()
        billing: Any = (
            RecurlyBilling(RecurlySettings(api_key=SecretStr("k"), api_url=url), timeout_s=5)
            if vendor == "recurly"
            else ZuoraBilling(
                ZuoraSettings(client_id="id", client_secret=SecretStr("secret"), api_url=url),
                timeout_s=5,
            )
        )
        for _ in range(CALLS):
            billing.list_customers(limit=1)
        assert len(connections) == 1, connections
