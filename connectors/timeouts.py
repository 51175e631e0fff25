"""How long one vendor call may take: always less than the start-to-close timeout of the activity
that makes it (30 s for every activity that calls a vendor, ``workflows/options.py``).

Why: when the client's timeout is as long as the activity's (the LLM client's 30 s was), Temporal
abandons the attempt first — the activity's thread goes on waiting on a socket nobody will read,
and the failure is a bare start-to-close timeout instead of the connector's own classified error
(``ConnectorError`` RETRYABLE, with the vendor and "timeout" in its one line). With the call
bounded below, the attempt ends inside its own activity and is retried by Temporal's policy.

The clients apply it the way their HTTP libraries do: to connecting and to each wait for the
server's answer (requests, httpx, urllib3, smtplib). A connection that is refused or a server
that does not answer is bounded by it; an activity that makes several calls in a row can still
reach its start-to-close, and then each call has failed fast and the attempt is retried whole.
"""

from __future__ import annotations

#: the longest any one vendor call may take, in seconds: below the 30 s start-to-close with room
#: for the activity's own work around the call
MAX_CALL_S = 25.0


def call_timeout(requested_s: float) -> float:
    """``requested_s`` (a setting such as ``REVBRIDGE_HTTP_TIMEOUT_S``), capped at
    :data:`MAX_CALL_S`; a non-positive value is a configuration error."""
    if not requested_s > 0:
        raise ValueError(f"a call timeout must be positive, not {requested_s!r}")
    return min(float(requested_s), MAX_CALL_S)
