"""A Zendesk sandbox per module, zenpy pointed at it (reference §2.1: ZENPY_FORCE_SCHEME/NETLOC),
and a seeded account: an organization whose external ID is a billing customer, one without."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from zenpy import Zenpy

from domain.settings import ZendeskSettings
from sandbox.framework import ServerThread
from sandbox.zendesk import ZendeskEmulator

AGENT = "agent@revbridge.test"
TOKEN = "zd-sandbox-token"  # noqa: S105 - the sandbox's own credential
SECRET = "zd-webhook-secret"  # noqa: S105


@pytest.fixture(scope="module")
def zendesk_server() -> Iterator[tuple[ZendeskEmulator, str]]:
    em = ZendeskEmulator(agents={AGENT: TOKEN}, signing_secret=SECRET)
    with ServerThread({em: 0}) as srv:
        yield em, srv.urls["zendesk"]


@pytest.fixture
def zendesk(
    zendesk_server: tuple[ZendeskEmulator, str], monkeypatch: pytest.MonkeyPatch
) -> ZendeskEmulator:
    em, url = zendesk_server
    with em.lock:
        em.ledger.clear()
        em.faults.clear()
        em.webhook_targets.clear()
        em.deliveries.clear()
        em.reset_state()
    monkeypatch.setenv("ZENPY_FORCE_SCHEME", "http")
    monkeypatch.setenv("ZENPY_FORCE_NETLOC", urlsplit(url).netloc)
    return em


@pytest.fixture
def zendesk_url(zendesk_server: tuple[ZendeskEmulator, str], zendesk: ZendeskEmulator) -> str:
    return zendesk_server[1]


@pytest.fixture
def zenpy_client(zendesk: ZendeskEmulator) -> Zenpy:
    return Zenpy(subdomain="acme", email=AGENT, token=TOKEN, disable_cache=True)


@pytest.fixture
def zd_settings(zendesk_url: str) -> ZendeskSettings:
    return ZendeskSettings(subdomain="acme", email=AGENT, api_token=TOKEN, api_url=zendesk_url)


def seed_account(em: ZendeskEmulator) -> dict[str, int]:
    """Org 20 carries billing customer ``cust_org`` as its external ID; org 21 has none; user 10
    is in org 20, user 11 in org 21, user 12 in no organization."""
    em.seed(
        {
            "organizations": [
                {"id": 20, "name": "Acme Corp", "external_id": "cust_org"},
                {"id": 21, "name": "Globex"},
            ],
            "users": [
                {"id": 10, "name": "Ann", "email": "ann@acme.test", "organization_id": 20},
                {"id": 11, "name": "Gus", "email": "gus@globex.test", "organization_id": 21},
                {"id": 12, "name": "Solo", "email": "solo@example.test"},
            ],
        }
    )
    ids = em.seed(
        {
            "tickets": [
                {"requester_id": 10, "subject": "Why was I charged twice?", "description": "..."},
                {"requester_id": 11, "subject": "Invoice question", "description": "Hello"},
                {"requester_id": 12, "subject": "Refund", "description": "Please"},
            ]
        }
    )["tickets"]
    return {"org": ids[0], "email": ids[1], "none": ids[2]}
