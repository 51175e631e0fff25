"""``python -m chaos`` (``make chaos``): every scenario on every pair, one line each ending in
``lost=… doubled=… stuck=…``; exit status 1 if any scenario lost, doubled or left anything stuck,
answered a 500, or had a piece exit by itself. Figures of the run: ``.revbridge/chaos/last-run.json``.

Options: ``--pairs chargebee×salesforce,…``, ``--scenarios worker-kills,…``, ``--events N``
(failed payments per scenario, default 10).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from chaos.scenarios import BY_NAME, PAIRS, SCENARIOS, Result, run
from chaos.stack import ROOT


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", default=",".join("×".join(x) for x in PAIRS))
    p.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS))
    p.add_argument("--events", type=int, default=10)
    p.add_argument("--keep", action="store_true", help="keep each run's folder (logs, db)")
    return p.parse_args(argv)


async def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    pairs = [tuple(p.replace("x", "×").split("×")) for p in args.pairs.split(",") if p]
    unknown = [n for n in args.scenarios.split(",") if n not in BY_NAME]
    if unknown or any(len(p) != 2 for p in pairs):
        print(f"chaos: unknown scenario or pair: {unknown or args.pairs}", file=sys.stderr)
        return 2
    scenarios = [BY_NAME[n] for n in args.scenarios.split(",") if n]
    results: list[Result] = []
    began = time.monotonic()
    for billing, crm in pairs:
        for sc in scenarios:
            folder = Path(tempfile.mkdtemp(prefix=f"revbridge-chaos-{sc.name}-"))
            print(f"{sc.name} on {billing}×{crm}: {sc.what}", flush=True)
            try:
                result = await run(sc, billing, crm, folder, events=args.events, say=_say)
            except Exception as exc:  # a scenario that could not run is a failure, not a trace
                print(f"  could not run: {type(exc).__name__}: {str(exc)[:300]} (logs: {folder})")
                results.append(None)  # type: ignore[arg-type]
                continue
            results.append(result)
            print("  " + result.line(), flush=True)
            for detail in result.verdict.details()[:10]:
                print(f"    {detail}")
            if result.exited:
                print(f"    exited by themselves: {', '.join(result.exited)} (logs: {folder})")
            if not args.keep and result.verdict.clean and not result.exited:
                shutil.rmtree(folder, ignore_errors=True)
            else:
                print(f"    logs: {folder}")
    done = [r for r in results if r is not None]
    out = ROOT / ".revbridge" / "chaos" / "last-run.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([_row(r) for r in done], indent=2))
    bad = (
        len(results)
        - len(done)
        + sum(1 for r in done if not r.verdict.clean or r.errors_5xx or r.exited)
    )
    print(
        f"{len(done)}/{len(results)} scenarios ran in {time.monotonic() - began:.0f} s; "
        f"{bad} failed; figures in {out.relative_to(ROOT)}"
    )
    return 1 if bad else 0


def _row(r: Result) -> dict:
    return {
        "scenario": r.scenario,
        "pair": r.pair,
        "events": r.events,
        "deliveries": r.deliveries,
        "kills": r.kills,
        "restarts": r.restarts,
        "faults": r.faults,
        "500s": r.errors_5xx,
        "exited": r.exited,
        "lost": len(r.verdict.lost),
        "doubled": len(r.verdict.doubled),
        "stuck": len(r.verdict.stuck),
        "details": r.verdict.details(),
        "seconds": round(r.seconds, 1),
    }


def _say(line: str) -> None:
    print(line, flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds the running scenario, which stops its stack's processes


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sys.exit(asyncio.run(main()))
    except KeyboardInterrupt:
        sys.exit(130)
