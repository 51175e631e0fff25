"""bench/sustained.py's open-loop sender: sends keep their schedule however slow the answers
(the latency counts from the scheduled time), and only 2xx answers count as accepted."""

from __future__ import annotations

import asyncio

from bench.sustained import paced


async def test_an_open_loop_keeps_its_rate_and_counts_from_the_schedule() -> None:
    started: list[float] = []
    loop = asyncio.get_running_loop()

    async def send(i: int) -> str:
        started.append(loop.time())
        await asyncio.sleep(0.3)  # a slow service: the sender must not wait for it
        return "503" if i % 5 == 0 else "202"

    out = await paced(50, 1.0, send)
    assert out.sent == len(out.latencies_ms) == 50
    # 50 sends spread over one second, not serialized behind 0.3 s answers
    assert started[-1] - started[0] < 1.2
    assert min(out.latencies_ms) >= 290  # from the scheduled send time, not the answer
    assert out.statuses == {"202": 40, "503": 10}
    assert out.accepted == {i for i in range(50) if i % 5}
