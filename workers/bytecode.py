"""Bytecode for our modules before the worker serves.

The workflow sandbox imports each workflow's modules afresh for every workflow instance. Where
Python may not write bytecode (``PYTHONDONTWRITEBYTECODE=1``) and a source checkout has none
fresh, every instance compiled them from source again: about a tenth of the worker's busy CPU
samples in the profile of 2026-12-07 (``SourceLoader.source_to_code``). An installed wheel is
compiled by pip and never pays it; ``make dev`` / ``make demo`` from a checkout did.
``compileall`` writes the bytecode whatever that variable says; a read-only tree is left as it
is (the worker runs as before, only slower).
"""

from __future__ import annotations

import compileall
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: our packages, as the installed wheel has them
PACKAGES = (
    "activities",
    "cli",
    "connectors",
    "domain",
    "infra",
    "webhooks",
    "workers",
    "workflows",
)


def compile_sources(always: bool = False) -> None:
    """Compile our packages when the interpreter would not (or ``always``): quiet, never fatal."""
    if not (always or sys.dont_write_bytecode):
        return
    for package in PACKAGES:
        try:
            compileall.compile_dir(str(ROOT / package), quiet=2)
        except OSError:  # a read-only install: nothing to gain, nothing to break
            continue
