"""``python -m bench`` (``make bench``): ingest, end-to-end dunning and the sustained load
(bench/sustained.py: 50 failed payments/s for 60 s) on one fresh dev server, a table on stdout, and
``bench/RESULTS.md``; then the churn sweep bench (bench/churn_soak.py ``make_bench``: every billing
platform over 500 customers, Chargebee over 10,000, each swept twice) and the reconciliation on dev
servers of their own (``python -m bench --no-soak`` skips those; ``python -m bench.churn_soak
--bulk 100000`` is the 100,000-customer sweep, not part of ``make bench``)."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import churn_soak, drafting, expansion, flows, ingest, reconcile, report, sustained
from bench import revenue as revenue_close
from bench import sync as account_sync
from bench.common import stack

#: after this many seconds no new burst round of the dunning benchmark starts
BUDGET_S = 170.0


async def main() -> int:
    began = time.monotonic()
    load_before = os.getloadavg()
    logs = Path(tempfile.mkdtemp(prefix="revbridge-bench-"))
    try:
        async with stack(logs) as st:
            print("1/4 webhook ingest …", flush=True)
            ing = ingest.summarize(await ingest.run(st))
            print(
                f"    ingest ratio = {ing['webhooks_per_s']:.0f} webhooks/s / "
                f"{ing['floor_per_s']:.0f} raw starts/s = {ing['ratio']:.2f}; "
                f"{ing['missing']} lost, {ing['extra_runs']} duplicate runs",
                flush=True,
            )
            print("2/4 end-to-end dunning and peak RSS …", flush=True)
            # bounded: fewer burst rounds if ingest ran slow (make bench stays well under 5 min)
            budget = max(30.0, BUDGET_S - (time.monotonic() - began))
            fl = flows.summarize(await flows.run(st, budget_s=budget))
            print(
                f"    flow ratio = {fl['flows_per_s']:.2f} flows/s / "
                f"{fl['floor_per_s']:.2f} workflows/s = {fl['ratio']:.2f} "
                f"(CPU ratio {report.cpu_ratio(fl):.2f}); peak RSS worker "
                f"{fl['rss_mb']['worker']:.0f} MB, webhooks {fl['rss_mb']['webhooks']:.0f} MB",
                flush=True,
            )
            print(
                f"3/4 sustained load: {sustained.RATE_PER_S:g} failed payments/s for "
                f"{sustained.DURATION_S:g} s …",
                flush=True,
            )
            sus = sustained.summarize(await sustained.run(st))
            print(sustained.line(sus), flush=True)
    except BaseException:
        print(f"benchmark failed; process logs kept in {logs}")
        raise
    shutil.rmtree(logs, ignore_errors=True)
    elapsed = time.monotonic() - began
    report.write(ing, fl, elapsed, (load_before, os.getloadavg()))
    report.print_table(ing, fl, elapsed)
    sustained.write_section(sus)
    if "--no-soak" in sys.argv:
        return 0
    print("4/4 churn sweep, every billing platform …", flush=True)
    soak = await churn_soak.make_bench()
    # the daily reconciliation over 10,000 customers (issue 20): its own dev server too
    reconciled = await reconcile.main()
    # and on Zuora (Object Query pages with their expansions), 2,000 customers
    reconciled = await reconcile.main(reconcile.ZUORA_BOOK_SIZE, billing="zuora") or reconciled
    # usage-based expansion's daily intake and forecasting over 10,000 customers (issue 21)
    expanded = expansion.main()
    # drafting (issue 22): the rules path's cost, the llm path's overhead, containment's catch
    drafted = drafting.main()
    # the account sync (issue 19): CRM calls per 1,000 minor changes, immediate latency, backfill
    synced = await account_sync.main()
    # the month close (issue 20): 10,000 customers' documents read in bulk, posted once to NetSuite
    closed = revenue_close.main()
    return expanded or drafted or synced or reconciled or soak or closed


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(main()))
