"""The wheel is the product: it ships the default stack config and policies/, resolves both from
the installed package when there is no checkout, and `revbridge init` writes a starter a team
owns. (.ci/run also installs the wheel with its dependencies into a fresh virtualenv and runs
`revbridge demo` from an empty directory.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import revbridge_data
from activities.policy import DEFAULT_POLICY_DIR, load_policy_set
from cli.config import CliError, StackConfig, config_path
from cli.init import init

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILES = sorted(p.name for p in (ROOT / "policies").iterdir() if p.is_file())


def python(*args: str, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REVBRIDGE_", "TEMPORAL_"))}
    return subprocess.run(  # noqa: S603
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "PYTHONPATH": str(pythonpath)},
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel built from a copy of this checkout (the build leaves nothing in the tree),
    with the virtualenv's setuptools: no download."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(
        ROOT,
        src,
        symlinks=True,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", ".revbridge", "__pycache__", "build", "*.egg-info", ".*_cache"
        ),
    )
    build = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["--disable-pip-version-check", "-w", str(tmp / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    [whl] = (tmp / "dist").glob("revbridge-*.whl")
    yield whl


def test_the_wheel_ships_config_policies_and_licence(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "revbridge_data/temporal-dev.yaml" in names
    assert {f"revbridge_data/policies/{n}" for n in POLICY_FILES} <= names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    assert "License-Expression: Apache-2.0" in text
    assert not any(n.startswith(("tests/", "bench/", "policies/")) for n in names)


def test_installed_code_finds_its_config_and_policies_without_a_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    empty = tmp_path / "anywhere"
    empty.mkdir()
    probe = (
        "import cli.config as c, activities.policy as p\n"
        "path, shipped = c.config_path(None)\n"
        "cfg = c.StackConfig.load(path)\n"
        "print(c.__file__, path, shipped, cfg.root, p.DEFAULT_POLICY_DIR, sep='\\n')\n"
        "assert p.load_policy_set(p.DEFAULT_POLICY_DIR).error is None\n"
    )
    run = python("-c", probe, cwd=empty, pythonpath=site)
    assert run.returncode == 0, run.stderr[-2000:]
    module, config, shipped, root, policies = run.stdout.splitlines()
    assert Path(module).is_relative_to(site)  # the wheel's code, not this checkout's
    assert Path(config) == site / "revbridge_data" / "temporal-dev.yaml"
    assert shipped == "True"
    assert Path(root) == empty  # the dev server's files go here, never into site-packages
    assert Path(policies) == site / "revbridge_data" / "policies"

    # `revbridge init` from the installed wheel
    run = python("-m", "cli.main", "init", "team", cwd=empty, pythonpath=site)
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in (empty / "team" / "policies").iterdir()) == POLICY_FILES
    assert run.stdout.splitlines()[-1].startswith(f"next: cd {empty / 'team'} && revbridge dev")


def test_init_writes_a_starter_the_local_stack_decides_with(tmp_path: Path) -> None:
    lines = init(tmp_path / "acme")
    config = tmp_path / "acme" / "temporal-dev.yaml"
    assert lines[0] == f"wrote {config}"
    cfg = StackConfig.load(config)
    assert cfg.root == config.parent
    assert cfg.worker.policy_dir == "policies"
    # the worker of `revbridge dev` reads the team's copy, not the packaged one
    assert cfg.service_env()["REVBRIDGE_POLICY_DIR"] == str(config.parent / "policies")
    assert load_policy_set(config.parent / "policies").error is None
    # the rest is the packaged default
    shipped = yaml.safe_load(revbridge_data.default_config().read_text())
    written = yaml.safe_load(config.read_text())
    assert {**written, "worker": shipped["worker"]} == shipped
    assert config_path(str(config)) == (config, False)


def test_init_never_overwrites_without_force(tmp_path: Path) -> None:
    init(tmp_path)
    (tmp_path / "policies" / "modes.yaml").write_text("default: observe\n")
    with pytest.raises(CliError, match=r"temporal-dev.yaml exists \(\d+ file\(s\) would be"):
        init(tmp_path)
    assert (tmp_path / "policies" / "modes.yaml").read_text() == "default: observe\n"
    init(tmp_path, force=True)
    assert (tmp_path / "policies" / "modes.yaml").read_bytes() == (
        DEFAULT_POLICY_DIR / "modes.yaml"
    ).read_bytes()


def test_checkout_defaults_are_the_top_level_copies() -> None:
    assert DEFAULT_POLICY_DIR == ROOT / "policies"
    assert revbridge_data.default_config() == ROOT / "temporal-dev.yaml"
    assert StackConfig.load(revbridge_data.default_config()).root == ROOT


def test_the_worker_reads_every_policy_file_from_the_teams_policy_dir(tmp_path: Path) -> None:
    """REVBRIDGE_POLICY_DIR (what `revbridge init` + the stack file set) governs every file the
    worker reads from policies/: Cedar, modes and approvers, playbooks, product map, churn weights."""
    from activities.policy import PolicyActivities
    from workers.main import activities_for

    team = tmp_path / "policies"
    init(tmp_path)
    stand_in = SimpleNamespace(name="chargebee")
    paths: dict[str, Path] = {}
    for fn in activities_for(stand_in, stand_in, stand_in, PolicyActivities(team)):  # type: ignore[arg-type]
        for value in vars(getattr(fn, "__self__", SimpleNamespace())).values():
            # policy files and folders (the reconciliation's report folder is output, not policy)
            if isinstance(value, Path) and (value.suffix in {".yaml", ".cedar"} or value == team):
                paths[type(fn.__self__).__name__] = value
    assert paths == {
        "PolicyActivities": team,
        "PlaybookActivities": team / "playbooks.yaml",
        "QuoteActivities": team / "products.yaml",
        "ChurnActivities": team / "churn.yaml",
        "ExpansionActivities": team,
        "RevenueActivities": team / "revenue.yaml",
        "SyncActivities": team / "sync.yaml",
        "ReconcileActivities": team / "products.yaml",
    }


def test_start_by_hand_asks_the_same_policies_as_the_worker(tmp_path: Path) -> None:
    """`revbridge start` checks the caller against REVBRIDGE_POLICY_DIR when it is set."""
    missing = tmp_path / "nowhere"
    run = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "cli.main", "start", "dunning", "--invoice", "in_1"]
        + ["--as", "alice@example.com"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "REVBRIDGE_POLICY_DIR": str(missing)},
    )
    assert run.returncode == 2
    assert f"cannot read policies from {missing}" in run.stderr
