"""The account sync's fast tests talk to the session's time-skipping test server."""

from __future__ import annotations

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.conftest import own_time_skipping

#: this package's own time-skipping server (why: tests/conftest.py own_time_skipping)
time_env = pytest.fixture(scope="package")(own_time_skipping)


@pytest.fixture
def client(time_env: WorkflowEnvironment) -> Client:
    return time_env.client
