"""Every fast workflow test talks to a time-skipping test server of its module's own.

A run one module leaves open without its worker stalls the clock of the server it is on
(tests/conftest.py ``own_time_skipping``); on the session's shared server, the full suite saw
four tests of test_trust.py wait out their 180 s timeout that pass in seconds alone. One server
per module costs about a second and isolates each file."""

from __future__ import annotations

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from tests.conftest import own_time_skipping

time_env = pytest.fixture(scope="module")(own_time_skipping)


@pytest.fixture
def client(time_env: WorkflowEnvironment) -> Client:
    return time_env.client
