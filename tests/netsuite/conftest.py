"""A NetSuite sandbox (TBA and OAuth 2.0 clients configured) per test module, reset before
each test, and connectors pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.netsuite import NetSuiteErp
from domain.revenue import Accounts
from domain.settings import NetSuiteSettings
from sandbox.framework import ServerThread
from sandbox.netsuite import M2mClient, NetSuiteEmulator, TbaCredentials

ACCOUNT = "1234567_SB1"
TBA = TbaCredentials(
    consumer_key="ck-revbridge-0001",
    consumer_secret="cs-s3cret&with/odd=chars",
    token_id="tk-revbridge-0001",
    token_secret="ts-s3cret",
)
CLIENT_ID = "m2m-client-0001"
CERT_ID = "cert-kid-0001"
ACCOUNTS = Accounts(deferred_revenue="2400", revenue="4000", products={"onboarding": "4100"})


@pytest.fixture(scope="module")
def m2m_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("netsuite") / "m2m.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, public.decode()


@pytest.fixture(scope="module")
def netsuite(m2m_key: tuple[Path, str]) -> Iterator[tuple[NetSuiteEmulator, str]]:
    em = NetSuiteEmulator(
        account_id=ACCOUNT,
        tba=[TBA],
        m2m=[M2mClient(client_id=CLIENT_ID, certificate_id=CERT_ID, public_key_pem=m2m_key[1])],
    )
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["netsuite"]


@pytest.fixture
def ns(netsuite: tuple[NetSuiteEmulator, str]) -> tuple[NetSuiteEmulator, str]:
    httpx.post(netsuite[1] + "/_sandbox/reset").raise_for_status()
    return netsuite


def tba_settings(url: str, **over: str) -> NetSuiteSettings:
    values = {
        "account_id": ACCOUNT,
        "api_url": url,
        "consumer_key": TBA.consumer_key,
        "consumer_secret": TBA.consumer_secret,
        "token_id": TBA.token_id,
        "token_secret": TBA.token_secret,
        **over,
    }
    return NetSuiteSettings.model_validate(values)


@pytest.fixture
def connector(ns: tuple[NetSuiteEmulator, str]) -> Iterator[Callable[..., NetSuiteErp]]:
    made: list[NetSuiteErp] = []

    def make(settings: NetSuiteSettings | None = None, **kwargs: object) -> NetSuiteErp:
        kwargs.setdefault("accounts", ACCOUNTS)
        erp = NetSuiteErp(settings or tba_settings(ns[1]), **kwargs)  # type: ignore[arg-type]
        made.append(erp)
        return erp

    yield make
    for erp in made:
        erp.close()


def ledger(url: str, method: str | None = None, prefix: str = "") -> list[dict]:
    params = {"path_prefix": prefix, **({"method": method} if method else {})}
    return httpx.get(url + "/_sandbox/requests", params=params).json()["requests"]


def entries(url: str) -> list[dict]:
    return httpx.get(url + "/_sandbox/netsuite/journal_entries").json()["journal_entries"]
