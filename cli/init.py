"""``revbridge init DIR``: a starter ``temporal-dev.yaml`` and ``policies/`` for a team to own.

Both are copies of what the package ships (``revbridge_data``). The written config points the
worker at the written ``policies/`` (``worker.policy_dir``), so an edit there is what the local
stack decides with; production points ``REVBRIDGE_POLICY_DIR`` at the same folder. Files that
exist are never overwritten without ``--force``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import revbridge_data
from cli.config import CliError

POLICY_DIR_LINES = (
    "  # the team's policies (written by `revbridge init`): edit them, the next decision uses them\n"
    "  policy_dir: policies\n"
)


def starter_config() -> str:
    """The packaged temporal-dev.yaml, with the worker reading ./policies."""
    text = revbridge_data.default_config().read_text(encoding="utf-8")
    marker = "\nworker:\n"
    if marker not in text or "policy_dir:" in text:
        raise CliError("the packaged temporal-dev.yaml has an unexpected shape")  # a packaging bug
    text = text.replace(marker, marker + POLICY_DIR_LINES, 1)
    return text


def init(directory: Path, force: bool = False) -> list[str]:
    """Write the starter files into ``directory`` (created if missing); returns what to print."""
    source = revbridge_data.default_policy_dir()
    config = directory / revbridge_data.CONFIG_NAME
    policies = directory / revbridge_data.POLICIES_NAME
    files = sorted(p for p in source.iterdir() if p.is_file())
    if not force:
        taken = [p for p in [config] + [policies / f.name for f in files] if p.exists()]
        if taken:
            raise CliError(
                f"{taken[0]} exists ({len(taken)} file(s) would be overwritten; --force does it)"
            )
    try:
        policies.mkdir(parents=True, exist_ok=True)
        config.write_text(starter_config(), encoding="utf-8")
        for f in files:
            shutil.copyfile(f, policies / f.name)
    except OSError as exc:
        raise CliError(f"cannot write to {directory}: {exc.strerror}") from None
    where = directory.resolve()
    return [
        f"wrote {config}",
        f"wrote {policies}/ ({len(files)} files: Cedar policies and schema, modes, approvers, "
        "playbooks, churn weights, product map)",
        f"next: cd {where} && revbridge dev   (or revbridge demo)",
    ]
