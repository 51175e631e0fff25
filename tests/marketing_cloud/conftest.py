"""A Marketing Cloud sandbox per module (reset before each test) and the connector pointed at its
auth host: the REST base comes from the token answer, as against a real tenant."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from connectors.marketing_cloud import MarketingCloudMailer
from domain.settings import MarketingCloudSettings
from sandbox.framework import ServerThread
from sandbox.marketing_cloud import MarketingCloudEmulator

CLIENT_ID = "mc-client-0001"
CLIENT_SECRET = "mc-s3cret"  # noqa: S105 - the sandbox's own credential
ACCOUNT = "100012345"


@pytest.fixture(scope="module")
def mc_server() -> Iterator[tuple[MarketingCloudEmulator, str]]:
    em = MarketingCloudEmulator(CLIENT_ID, CLIENT_SECRET, account_id=ACCOUNT)
    with ServerThread({em: 0}) as srv:
        yield em, srv.urls["marketing_cloud"]


@pytest.fixture
def mc(mc_server: tuple[MarketingCloudEmulator, str]) -> MarketingCloudEmulator:
    em = mc_server[0]
    with em.lock:
        em.ledger.clear()
        em.faults.clear()
        em.reset_state()
    return em


@pytest.fixture
def mc_url(mc_server: tuple[MarketingCloudEmulator, str], mc: MarketingCloudEmulator) -> str:
    return mc_server[1]


@pytest.fixture
def mc_settings(mc_url: str) -> MarketingCloudSettings:
    return MarketingCloudSettings(
        auth_url=mc_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        account_id=ACCOUNT,
        status_wait_s=2.0,
    )


@pytest.fixture
def mailer(mc_settings: MarketingCloudSettings) -> Iterator[MarketingCloudMailer]:
    m = MarketingCloudMailer(mc_settings, timeout_s=1.0)
    yield m
    m.close()


def token(url: str, **extra: object) -> dict:
    """A token through the auth host, as any client asks for one."""
    resp = httpx.post(
        f"{url}/v2/token",
        json={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            **extra,
        },
    )
    assert resp.status_code == 200, resp.text
    return resp.json()
