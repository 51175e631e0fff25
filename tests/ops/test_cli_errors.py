"""A new user from an empty directory, no Temporal running, no credentials: every wrong, missing
or bad argument of the new use cases' commands (sync, reconcile, revenue, report, setup crm,
demo's scenarios and pairs) is one line on stderr with a non-zero exit status — never a trace,
never a stack started for a demo that cannot run on the pair asked for.

Run through ``cli.main.main`` in-process (fast), and a few through the installed console script
as a subprocess (its own exit path, cli/main.py: no abort at interpreter finalization)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main

#: the variables a developer's shell may hold that would change what the commands do
_PREFIXES = (
    "REVBRIDGE_", "TEMPORAL_", "CHARGEBEE_", "STRIPE_", "ZUORA_", "RECURLY_", "SALESFORCE_",
    "HUBSPOT_", "NETSUITE_", "ZENDESK_", "MARKETING_CLOUD_", "SMTP_", "ANTHROPIC_",
)  # fmt: skip

#: the note a command prints when it falls back on the packaged stack file (not an error)
_NOTE = "(no temporal-dev.yaml here"

NO_TEMPORAL = "cannot reach Temporal"
RESOLVE = ["sync", "resolve", "cus_1", "--field", "billing_contact", "--take", "crm"]

CASES: list[tuple[list[str], dict[str, str], str]] = [
    # sync
    (["sync"], {}, "required: sync_command"),
    (["sync", "bogus"], {}, "invalid choice: 'bogus'"),
    (["sync", "resolve"], {}, "required: customer, --field, --take, --as"),
    (["sync", "resolve", "cus_1"], {}, "required: --field, --take, --as"),
    ([*RESOLVE[:-1], "maybe", "--as", "a@example.com"], {}, "invalid choice: 'maybe'"),
    (["sync", "resolve", "bad id!", *RESOLVE[3:], "--as", "a@example.com"], {}, "provider ID"),
    (["sync", "status"], {}, "required: customer"),
    (["sync", "status", "../../etc"], {}, "not a provider ID"),
    (["sync", "status", "cus_1", "--config", "x.yaml"], {}, "unrecognized arguments"),
    (["sync", "--config", "missing.yaml", "status", "cus_1"], {}, "config file not found"),
    (["sync", "conflicts"], {}, NO_TEMPORAL),
    (["sync", "backfill", "--dry-run"], {}, NO_TEMPORAL),
    (["sync", "backfill"], {}, NO_TEMPORAL),
    (["sync", "status", "cus_1"], {}, NO_TEMPORAL),
    ([*RESOLVE, "--as", "a@example.com"], {}, NO_TEMPORAL),
    (["sync", "status", "cus_1"], {"REVBRIDGE_BILLING": "paypal"}, "REVBRIDGE_BILLING must be"),
    (["sync", "backfill"], {"REVBRIDGE_CRM": "pipedrive"}, "REVBRIDGE_CRM must be"),
    (["sync", "status", "cus_1"], {"REVBRIDGE_ACCOUNT_SYNC": "maybe"}, "account_sync"),
    (["sync", "status", "cus_1"], {"REVBRIDGE_DESK": "freshdesk"}, "REVBRIDGE_DESK must be"),
    (["demo"], {"REVBRIDGE_ERP": "sap"}, "REVBRIDGE_ERP must be netsuite"),
    # reconcile
    (["reconcile", "--since", "bad"], {}, "--since wants a date"),
    (["reconcile", "--since", "2026-13-45", "--open", "--dry-run"], {}, "--since wants a date"),
    (["reconcile", "--since", ""], {}, "--since wants a date"),
    (["reconcile", "--open", "--dry-run"], {}, "--open lists the open exceptions"),
    (["reconcile", "--open"], {}, "needs SALESFORCE_TOKEN_URL"),
    (["reconcile", "--dry-run"], {}, NO_TEMPORAL),
    (["reconcile", "--since", "2026-01-01"], {}, NO_TEMPORAL),
    (["reconcile", "--bogus"], {}, "unrecognized arguments: --bogus"),
    # revenue
    (["revenue"], {}, "required: revenue_command"),
    (["revenue", "close", "2026-13"], {}, "unrecognized arguments: 2026-13"),
    (["revenue", "close", "--month", "bad"], {}, "--month wants YYYY-MM"),
    (["revenue", "close", "--month", "2026-00"], {}, "--month wants YYYY-MM"),
    (["revenue", "close", "--month"], {}, "expected one argument"),
    (["revenue", "close", "--month", "2999-01"], {}, "--month 2999-01 has not begun"),
    (["revenue", "close", "--month", "2026-01", "--dry-run"], {}, NO_TEMPORAL),
    (["revenue", "entries"], {}, "no ERP is configured"),
    (["revenue", "entries", "--month", "2026-13"], {}, "--month wants YYYY-MM"),
    (["revenue", "entries"], {"NETSUITE_ACCOUNT_ID": "123"}, "NetSuite needs"),
    # report
    (["report"], {}, "required: report_command"),
    (["report", "recovery", "--since", "bad"], {}, "unrecognized arguments"),
    (["report", "recovery"], {}, NO_TEMPORAL),
    # setup crm without credentials
    (["setup", "crm", "--dry-run"], {}, "needs SALESFORCE_TOKEN_URL and SALESFORCE_CLIENT_ID"),
    (["setup", "crm", "--dry-run"], {"REVBRIDGE_CRM": "hubspot"}, "needs HUBSPOT_ACCESS_TOKEN"),
    (["setup", "crm"], {}, "needs SALESFORCE_TOKEN_URL"),
    (["setup", "erp"], {}, "invalid choice: 'erp'"),
    # demo: argument errors, and pairs a scenario is not built on (refused before a stack starts)
    (["demo", "--scenario", "nope"], {}, "invalid choice: 'nope'"),
    (["demo", "--billing", "paypal"], {}, "invalid choice: 'paypal'"),
    (["demo", "--crm", "pipedrive"], {}, "invalid choice: 'pipedrive'"),
    (["demo", "--channel", "fax"], {}, "invalid choice: 'fax'"),
    (["demo", "--desk", "freshdesk"], {}, "invalid choice: 'freshdesk'"),
    (["demo", "--config", "missing.yaml"], {}, "config file not found"),
    (["demo", "--desk", "zendesk", "--scenario", "sync"], {}, "--desk zendesk shows the support"),
    (["demo", "--desk", "zendesk", "--scenario", "churn"], {}, "--desk zendesk shows the support"),
]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on return: nothing listens there


@pytest.fixture()
def newcomer(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An empty directory and a clean environment whose Temporal address answers nothing (the
    local default, 127.0.0.1:7233, may be another test's or a developer's running stack)."""
    saved, cwd = dict(os.environ), os.getcwd()
    for key in list(os.environ):
        if key.startswith(_PREFIXES):
            del os.environ[key]
    os.environ["TEMPORAL_ADDRESS"] = f"127.0.0.1:{_closed_port()}"
    os.environ["TEMPORAL_CONFIG_FILE"] = str(tmp_path / "no-such-temporal.toml")
    os.chdir(tmp_path)
    try:
        yield dict(os.environ)
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip() and not line.startswith(_NOTE)]


def _assert_one_line(code: int | str | None, out: str, err: str, expect: str) -> None:
    assert code not in (0, None), (out, err)
    assert "Traceback" not in out + err and 'File "' not in err, err
    lines = _error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("revbridge"), lines[0]
    assert expect in lines[0], lines[0]
    assert not out.strip(), out  # nothing half-done on stdout (no stack started, no progress)


@pytest.mark.parametrize(
    ("argv", "env", "expect"),
    CASES,
    ids=[" ".join(a) + ("|" + ",".join(e) if e else "") for a, e, _ in CASES],
)
def test_bad_input_is_one_line(
    argv: list[str],
    env: dict[str, str],
    expect: str,
    newcomer: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    os.environ.update(env)
    _no_stack(monkeypatch)
    try:
        code: int | str | None = main(argv)
    except SystemExit as exc:  # argparse's own exit (usage errors)
        code = exc.code
    out, err = capsys.readouterr()
    _assert_one_line(code, out, err, expect)


def _no_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    """A demo that got past its checks would start the embedded stack (on the default ports):
    here it stops with one line instead, so a case that stops being refused fails, not starts."""
    import cli.demo

    async def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a stack would start here")

    monkeypatch.setattr(cli.demo, "stack_health", refuse)


def _refused_pairs() -> list[tuple[str, str, str, str]]:
    """Every scenario x billing x CRM its module refuses (``check_pair``), with the reason: the
    table follows the scenarios as they grow to more pairs."""
    from cli.config import CliError
    from cli.demo import SCENARIOS, _scenario_for

    refused = []
    for scenario in SCENARIOS:
        run, _ = _scenario_for(scenario)
        check = getattr(sys.modules[run.__module__], "check_pair", None)
        for billing in ("chargebee", "stripe", "zuora", "recurly"):
            for crm in ("salesforce", "hubspot"):
                try:
                    if check is not None:
                        check(billing, crm)
                except CliError as exc:
                    refused.append((scenario, billing, crm, str(exc)))
    return refused


REFUSED = _refused_pairs()


@pytest.mark.parametrize(
    ("scenario", "billing", "crm", "reason"),
    REFUSED,
    ids=[f"{s}-{b}-{c}" for s, b, c, _ in REFUSED],
)
def test_demo_refuses_a_pair_before_any_stack_starts(
    scenario: str,
    billing: str,
    crm: str,
    reason: str,
    newcomer: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_stack(monkeypatch)
    code = main(["demo", "--scenario", scenario, "--billing", billing, "--crm", crm])
    out, err = capsys.readouterr()
    _assert_one_line(code, out, err, reason)


def test_some_pairs_are_refused() -> None:
    assert len(REFUSED) >= 5  # (sync, reconcile, revenue and expansion are not on every pair)


SUBPROCESS_CASES = [
    (["sync", "conflicts"], NO_TEMPORAL),
    (["revenue", "close", "2026-13"], "unrecognized arguments"),
    (["demo", "--scenario", "nope"], "invalid choice: 'nope'"),
]


@pytest.mark.parametrize(
    ("argv", "expect"), SUBPROCESS_CASES, ids=[a[-1] for a, _ in SUBPROCESS_CASES]
)
def test_console_script_is_one_line(argv: list[str], expect: str, newcomer: dict[str, str]) -> None:
    """Through the console script's own exit (``main()`` without argv), three times each: a
    Temporal connect that failed must not abort the interpreter at exit (it did now and then)."""
    script = Path(sys.executable).with_name("revbridge")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "cli.main"]
    for _ in range(3):
        done = subprocess.run(  # noqa: S603 (our own console script)
            [*cmd, *argv], env=newcomer, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 2, done.stderr
        _assert_one_line(done.returncode, done.stdout, done.stderr, expect)
