"""What the wheel ships besides code: the default local-stack config (``temporal-dev.yaml``) and
the governance data (``policies/``: Cedar policies and schema, modes, approvers, playbooks, churn
weights, the product map).

In a checkout, ``revbridge_data/policies`` and ``revbridge_data/temporal-dev.yaml`` are symlinks
to the top-level ``policies/`` and ``temporal-dev.yaml``, which stay the one team-editable copy;
building the wheel copies their content in (setuptools follows the links). Installed, they are
real files inside this package. Either way the paths below are the same, and nothing else of ours
needs to know which layout it runs from. Imports nothing of ours.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent

CONFIG_NAME = "temporal-dev.yaml"
POLICIES_NAME = "policies"


def _shipped(name: str) -> Path:
    path = _HERE / name
    if path.exists():
        return path.resolve()
    # a checkout whose git does not make symlinks: the top-level copy next to this package
    return (_HERE.parent / name).resolve()


def default_policy_dir() -> Path:
    """The policies the worker uses when ``REVBRIDGE_POLICY_DIR`` is not set."""
    return _shipped(POLICIES_NAME)


def default_config() -> Path:
    """The local stack's default ``temporal-dev.yaml`` (``revbridge init`` writes a copy)."""
    return _shipped(CONFIG_NAME)


def is_shipped(path: Path) -> bool:
    """Is ``path`` the installed package's own copy (not a checkout's file)? Its state (the dev
    server's database, logs) then belongs in the working directory, never in site-packages."""
    return path.resolve().parent == _HERE
