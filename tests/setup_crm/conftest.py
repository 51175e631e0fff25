"""A Salesforce sandbox per test module, its state reset before each test that takes ``sf``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.framework import ServerThread
from sandbox.salesforce import SalesforceEmulator
from tests.setup_crm.org import SF_ID, SF_SECRET


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[SalesforceEmulator, str]]:
    """The module's Salesforce sandbox and its URL."""
    em = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["salesforce"]


@pytest.fixture
def sf(server: tuple[SalesforceEmulator, str]) -> SalesforceEmulator:
    """The module's sandbox as a fresh emulator: state reset, ledger empty."""
    em = server[0]
    with em.lock:
        em.reset_state()
    em.ledger.clear()
    return em
