"""At worker start, the configured accounts' own preflight (the checks ``revbridge doctor``
prints): a billing site or CRM that lacks a setting RevBridge needs is reported in the log the
moment the worker starts, one line per finding with its fix — not first discovered as a failed
quote-to-cash run. Never fatal: the worker serves what it can, and a check that cannot run is
itself one line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from domain.preflight import CheckStatus

log = logging.getLogger("revbridge.worker")

#: a preflight that has not answered by then is reported and left behind
TIMEOUT_S = 60.0


async def report(connectors: Iterable[object], timeout_s: float = TIMEOUT_S) -> int:
    """Run each connector's ``preflight()`` (where it has one) and log its WARN and FAIL lines.
    Returns how many FAIL lines were logged."""
    failed = 0
    for connector in connectors:
        check = getattr(connector, "preflight", None)
        if check is None:
            continue
        name = getattr(connector, "name", type(connector).__name__)
        try:
            found = await asyncio.wait_for(asyncio.to_thread(check), timeout_s)
        except TimeoutError:
            log.warning("configuration: %s: preflight did not answer in %.0f s", name, timeout_s)
            continue
        except Exception as exc:  # one line, never a traceback in the worker's log
            log.warning("configuration: %s: preflight could not run (%s)", name, type(exc).__name__)
            continue
        for c in found:
            if c.status is CheckStatus.FAIL:
                failed += 1
                log.error("configuration: %s", c.line())
            elif c.status is CheckStatus.WARN:
                log.warning("configuration: %s", c.line())
    return failed
