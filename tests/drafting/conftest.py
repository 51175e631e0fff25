"""Every fast workflow test talks to the session's time-skipping test server."""

from __future__ import annotations

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment


@pytest.fixture
def client(time_env: WorkflowEnvironment) -> Client:
    return time_env.client
