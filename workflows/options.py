"""Activity options shared by every workflow: timeouts and retry policies by kind of call."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

#: reads: safe to retry for a while
READ: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=60), maximum_attempts=20),
}
#: writes stop retrying well inside Chargebee's 30-minute idempotency window (the shortest of
#: the vendors'), so a late retry can never be taken for a new request
WRITE: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "schedule_to_close_timeout": timedelta(minutes=25),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=60)),
}
#: policy decisions: local and fast; an engine error is a deny, not an exception
POLICY: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=10),
}
