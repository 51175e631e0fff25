"""A second worker process for the pacing test: the real ``build_worker`` group against the
test's sandboxes and Temporal, with the limits given on the command line. Prints ``ready`` once
it polls, and stops when its stdin closes.

    python -m tests.limits.worker_process TARGET NAMESPACE TASK_QUEUE URLS_JSON RATE PACE PROCESSES
"""

from __future__ import annotations

import asyncio
import json
import sys

from temporalio.client import Client

from activities.budget import Limits, VendorLimit
from connectors.registry import build_billing, build_crm
from infra.codec import data_converter
from tests.limits.conftest import HTTP_TIMEOUT_S
from tests.pairs import pair_settings
from workers.main import build_worker


async def main(argv: list[str]) -> None:
    target, namespace, task_queue, urls, rate, pace, processes = argv
    settings = pair_settings(json.loads(urls), "chargebee", "salesforce", task_queue).model_copy(
        update={"http_timeout_s": HTTP_TIMEOUT_S}
    )
    limits = Limits(
        pace=float(pace),
        worker_processes=int(processes),
        vendors={"chargebee": VendorLimit(per_second=float(rate))},
    )
    client = await Client.connect(target, namespace=namespace, data_converter=data_converter())
    group = build_worker(
        client, build_billing(settings), build_crm(settings), task_queue=task_queue, limits=limits
    )
    async with group:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
