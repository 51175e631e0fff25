"""The Salesforce connector as production uses it: OAuth against a token endpoint, a new token on
INVALID_SESSION_ID, the JWT bearer flow, and errors classified for Temporal — via the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from connectors.base import ConnectorError, ErrorKind
from connectors.salesforce import SalesforceCrm
from domain.models import CaseDraft, CasePriority
from domain.settings import SalesforceSettings
from sandbox.framework import ServerThread
from sandbox.salesforce import INTEGRATION_USERNAME, SalesforceEmulator

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def sf() -> Iterator[tuple[SalesforceEmulator, str]]:
    pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    em = SalesforceEmulator(
        client_id="app", client_secret="s3cret", jwt_public_key_pem=pem.decode()
    )
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["salesforce"]


def settings(url: str, **overrides: object) -> SalesforceSettings:
    base = {
        "token_url": url + "/services/oauth2/token",
        "client_id": "app",
        "client_secret": SecretStr("s3cret"),
    }
    return SalesforceSettings(**{**base, **overrides})


def draft(key: str) -> CaseDraft:
    return CaseDraft(
        key=key,
        account_id=None,
        subject="s",
        description="d",
        priority=CasePriority.LOW,
        invoice_id="INV-1",
    )


def test_expired_session_gets_a_new_token_and_the_call_succeeds(
    sf: tuple[SalesforceEmulator, str],
) -> None:
    em, url = sf
    crm = SalesforceCrm(settings(url), timeout_s=5)
    assert crm.upsert_case(draft("rb-expiry-1")).created
    em.expire_all_tokens()
    again = crm.upsert_case(draft("rb-expiry-1"))
    assert not again.created  # same case, found again after re-authenticating
    tokens = [
        r
        for r in httpx.get(url + "/_sandbox/requests").json()["requests"]
        if r["path"].endswith("/oauth2/token")
    ]
    assert len(tokens) == 2
    assert all("s3cret" not in r["body"] for r in tokens)  # the ledger never shows the secret


def test_jwt_bearer_flow(sf: tuple[SalesforceEmulator, str], tmp_path: Path) -> None:
    _, url = sf
    key_file = tmp_path / "key.pem"
    key_file.write_bytes(
        KEY.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    crm = SalesforceCrm(
        settings(
            url,
            auth_flow="jwt_bearer",
            client_secret=None,
            username=INTEGRATION_USERNAME,
            private_key_file=str(key_file),
        ),
        timeout_s=5,
    )
    assert crm.find_account("chargebee", "nobody") is None


def test_wrong_client_secret_is_permanent(sf: tuple[SalesforceEmulator, str]) -> None:
    _, url = sf
    crm = SalesforceCrm(settings(url, client_secret=SecretStr("wrong")), timeout_s=5)
    with pytest.raises(ConnectorError) as err:
        crm.find_account("chargebee", "c1")
    assert err.value.kind is ErrorKind.PERMANENT and err.value.code == "invalid_client"
    assert "wrong" not in str(err.value)


def test_plain_http_token_url_is_refused_outside_loopback() -> None:
    with pytest.raises(ConnectorError):
        SalesforceCrm(settings("http://login.example.com"))


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        # 503, the API allocation (rate limited) and commit-then-timeout: tests/contract
        (
            {
                "kind": "status",
                "status": 400,
                "body": [{"message": "bad", "errorCode": "INVALID_FIELD"}],
            },
            ErrorKind.PERMANENT,
        ),
        (
            {
                "kind": "status",
                "status": 400,
                "body": [{"message": "locked", "errorCode": "UNABLE_TO_LOCK_ROW"}],
            },
            ErrorKind.RETRYABLE,
        ),
    ],
    ids=["invalid-field", "row-lock"],
)
def test_errors_are_classified_for_temporal(
    sf: tuple[SalesforceEmulator, str], fault: dict, kind: ErrorKind
) -> None:
    _, url = sf
    crm = SalesforceCrm(settings(url), timeout_s=1)
    crm.find_account("chargebee", "warm-up")  # token first, so the fault hits the API call
    httpx.post(
        url + "/_sandbox/faults", json={**fault, "path": r"/services/data/.*/query.*", "times": 1}
    ).raise_for_status()
    try:
        with pytest.raises(ConnectorError) as err:
            crm.find_account("chargebee", "c1")
        assert err.value.kind is kind
    finally:
        httpx.delete(url + "/_sandbox/faults")
