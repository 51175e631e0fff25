"""The Chargebee connector's error discipline and idempotency, through the official client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import ConnectorError, ErrorKind
from connectors.chargebee import ChargebeeBilling
from domain.models import NoteTarget
from domain.settings import ChargebeeSettings
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.scenarios import DEMO_CUSTOMERS, chargebee_seed


@pytest.fixture(scope="module")
def cb() -> Iterator[tuple[ChargebeeBilling, str]]:
    em = ChargebeeEmulator(api_key="k")
    with ServerThread({em: 0}) as thread:
        url = thread.urls["chargebee"]
        httpx.post(
            url + "/_sandbox/seed", json=chargebee_seed(DEMO_CUSTOMERS, "t1")
        ).raise_for_status()
        yield (
            ChargebeeBilling(
                ChargebeeSettings(site="acme-test", api_key=SecretStr("k"), api_url=url),
                timeout_s=1,
            ),
            url,
        )


def test_note_is_idempotent_by_key(cb: tuple[ChargebeeBilling, str]) -> None:
    billing, url = cb
    inv = DEMO_CUSTOMERS[0].ids("t1")["invoice"]
    first = billing.add_note(NoteTarget.INVOICE, inv, "hello", idempotency_key="rb-note-1")
    again = billing.add_note(NoteTarget.INVOICE, inv, "hello", idempotency_key="rb-note-1")
    assert first == again
    assert billing.list_notes(NoteTarget.INVOICE, inv).count("hello") == 1
    posts = [
        r
        for r in httpx.get(url + "/_sandbox/requests", params={"method": "POST"}).json()["requests"]
        if r["path"].endswith("/comments")
    ]
    assert {r["headers"]["chargebee-idempotency-key"] for r in posts} == {"rb-note-1"}


@pytest.mark.parametrize(
    ("fault", "kind", "retry_after"),
    [
        # 429, 5xx and commit-then-timeout: the contract suite (tests/contract)
        (
            {
                "kind": "status",
                "status": 400,
                "body": {
                    "message": "bad",
                    "type": "invalid_request",
                    "api_error_code": "param_wrong_value",
                    "http_status_code": 400,
                },
            },
            ErrorKind.PERMANENT,
            None,
        ),
    ],
    ids=["400"],
)
def test_errors_are_classified_for_temporal(
    cb: tuple[ChargebeeBilling, str], fault: dict, kind: ErrorKind, retry_after: float | None
) -> None:
    billing, url = cb
    httpx.post(
        url + "/_sandbox/faults", json={**fault, "path": r"/api/v2/invoices/.*", "times": 1}
    ).raise_for_status()
    try:
        with pytest.raises(ConnectorError) as err:
            billing.get_invoice_context(DEMO_CUSTOMERS[2].ids("t1")["invoice"])
        assert err.value.kind is kind
        assert err.value.retry_after == retry_after
    finally:
        httpx.delete(url + "/_sandbox/faults")
