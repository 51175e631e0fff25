"""``revbridge doctor``: check the configured accounts before go-live, one line per check.

It reads the settings the worker reads (the environment; with ``--config`` the local stack's
sandbox endpoints are defaults) and runs, side by side:

- **temporal**: the namespace answers (address, namespace, credentials), each custom search
  attribute of ``domain.temporal.SEARCH_ATTRIBUTES`` is registered with its type, and the
  retention outlasts what a closed run must (``domain.redelivery``: the longest vendor
  redelivery window plus margin; approvals expire well inside it);
- **each configured connector** (the billing platform, the CRM, the SMTP relay): its own
  ``preflight() -> list[domain.preflight.Check]`` when it has one, else one SKIP line saying so;
- **llm**: when an LLM reasoner is configured, ``connectors.llm_preflight`` (the model exists).
- **netsuite**: when NETSUITE_* is set, the ERP connector's preflight (credentials, subsidiary,
  the accounts of ``policies/revenue.yaml``).
- **expansion**: usage-based expansion's setup (``cli/doctor_expansion.py``): the billing
  platform's upgrade target and the CRM's expansion records — FAIL while missing with the
  expansion switched on (mode assist/auto and its intake Schedule running), else WARN.

Exit status: 0 when nothing failed, 1 when a check FAILed (``--strict``: a WARN too). A check
that raises becomes one FAIL line naming it, never a trace; a check that hangs is cut off after
``CHECK_TIMEOUT_S``. Every configured secret is masked in the output, whatever a check printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import inspect
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, TextIO, TypeVar

from pydantic import BaseModel, SecretStr

from domain.approvals import ApprovalTiming
from domain.preflight import Check, CheckStatus
from domain.redelivery import LONGEST_WINDOW, MARGIN, REQUIRED_RETENTION
from domain.settings import Settings, SettingsError
from domain.temporal import SEARCH_ATTRIBUTES

T = TypeVar("T")

#: a whole group of checks (one connector's, Temporal's) answers within this, or is one FAIL
CHECK_TIMEOUT_S = 60.0
#: connecting to Temporal: an address that never answers is a FAIL, not a hang
CONNECT_TIMEOUT_S = 10.0
#: closed runs must outlive every vendor's redelivery window (with margin) and any approval a
#: person may still answer; `revbridge setup temporal` sets REQUIRED_RETENTION
NEEDED_RETENTION = max(REQUIRED_RETENTION, ApprovalTiming().expire_after)

SETUP_FIX = "run `revbridge setup temporal` with the same TEMPORAL_* settings"


def _days(td: timedelta) -> str:
    from infra.temporal_setup import days

    return days(td)


def _reason(exc: BaseException) -> str:
    """One short line for an exception: its type and the first line of its text."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:240] if text else type(exc).__name__


def _crashed(system: str, name: str, exc: BaseException) -> Check:
    return Check(
        system=system,
        name=name,
        status=CheckStatus.FAIL,
        detail=f"the check itself failed ({_reason(exc)})",
        fix="rerun with REVBRIDGE_DEBUG=1 for the trace, and report it if it persists",
    )


# --- Temporal ----------------------------------------------------------------------------------


async def temporal_checks() -> list[Check]:
    """The namespace, its search attributes and its retention, with the worker's env-config."""
    from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.service import RPCError, RPCStatusCode

    from infra.temporal_setup import CALL_TIMEOUT, SetupError, Target, _type_name

    def skipped(why: str, namespace: bool = False) -> list[Check]:
        return [
            *(
                [Check(system="temporal", name="namespace", status=CheckStatus.SKIP, detail=why)]
                if namespace
                else []
            ),
            *(
                Check(
                    system="temporal",
                    name=f"search-attribute:{n}",
                    status=CheckStatus.SKIP,
                    detail=why,
                )
                for n in SEARCH_ATTRIBUTES
            ),
            Check(system="temporal", name="retention", status=CheckStatus.SKIP, detail=why),
        ]

    try:
        target = Target.from_env()
    except Exception as exc:  # a malformed profile or TLS option
        return [
            Check(
                system="temporal",
                name="connection",
                status=CheckStatus.FAIL,
                detail=f"the Temporal client configuration cannot be used ({_reason(exc)})",
                fix="check TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS*, TEMPORAL_PROFILE",
            ),
            *skipped("no connection", namespace=True),
        ]
    ns, where = target.namespace, f"{target.address} ({target.auth})"
    try:
        client = await asyncio.wait_for(target.connect(), CONNECT_TIMEOUT_S)
    except (SetupError, TimeoutError) as exc:
        detail = (
            str(exc)
            if isinstance(exc, SetupError)
            else (f"no answer from Temporal at {where} within {CONNECT_TIMEOUT_S:g} s")
        )
        return [
            Check(
                system="temporal",
                name="connection",
                status=CheckStatus.FAIL,
                detail=detail,
                fix="start the server or correct TEMPORAL_ADDRESS / TEMPORAL_API_KEY / "
                "TEMPORAL_TLS*",
            ),
            *skipped("no connection", namespace=True),
        ]
    checks = [Check(system="temporal", name="connection", status=CheckStatus.OK, detail=where)]
    try:
        try:
            desc = await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=ns), timeout=CALL_TIMEOUT
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                checks.append(
                    Check(
                        system="temporal",
                        name="namespace",
                        status=CheckStatus.FAIL,
                        detail=f"namespace {ns!r} does not exist at {target.address}",
                        fix="set TEMPORAL_NAMESPACE to the namespace RevBridge runs in, or create "
                        f"it: temporal operator namespace create --namespace {ns} --retention "
                        f"{NEEDED_RETENTION // timedelta(days=1)}d",
                    )
                )
            else:
                checks.append(
                    Check(
                        system="temporal",
                        name="namespace",
                        status=CheckStatus.FAIL,
                        detail=f"namespace {ns!r}: {exc.status.name} {exc.message}"[:240],
                        fix="check the credentials (TEMPORAL_API_KEY / TEMPORAL_TLS*) are for "
                        "this namespace",
                    )
                )
            return checks + skipped(f"namespace {ns!r} not readable")
        checks.append(Check(system="temporal", name="namespace", status=CheckStatus.OK, detail=ns))
        checks += await _search_attribute_checks(
            client, ns, ListSearchAttributesRequest, RPCError, RPCStatusCode, _type_name
        )
        checks.append(_retention_check(ns, desc.config.workflow_execution_retention_ttl))
        return checks
    finally:
        # temporalio 1.35: let go of the client while the loop runs (infra/temporal_setup.py)
        del client
        gc.collect()
        await asyncio.sleep(0.05)


async def _search_attribute_checks(
    client: Any, ns: str, request: Any, rpc_error: Any, codes: Any, type_name: Callable
) -> list[Check]:
    from infra.temporal_setup import CALL_TIMEOUT

    try:
        listed = await client.operator_service.list_search_attributes(
            request(namespace=ns), timeout=CALL_TIMEOUT
        )
    except rpc_error as exc:
        if exc.status in (codes.PERMISSION_DENIED, codes.UNIMPLEMENTED):
            return [
                Check(
                    system="temporal",
                    name="search-attributes",
                    status=CheckStatus.WARN,
                    detail=f"these credentials cannot list search attributes ({exc.status.name})",
                    fix="check them with an admin key (on Temporal Cloud: tcld namespace "
                    f"search-attributes list --namespace {ns})",
                )
            ]
        raise
    existing = {name: type_name(v) for name, v in listed.custom_attributes.items()}
    out = []
    for name, kind in SEARCH_ATTRIBUTES.items():
        have = existing.get(name)
        if have == kind:
            out.append(
                Check(
                    system="temporal",
                    name=f"search-attribute:{name}",
                    status=CheckStatus.OK,
                    detail=kind,
                )
            )
        elif have is None:
            out.append(
                Check(
                    system="temporal",
                    name=f"search-attribute:{name}",
                    status=CheckStatus.FAIL,
                    detail=f"not registered in namespace {ns} (every workflow start would fail)",
                    fix=SETUP_FIX,
                )
            )
        else:
            out.append(
                Check(
                    system="temporal",
                    name=f"search-attribute:{name}",
                    status=CheckStatus.FAIL,
                    detail=f"registered as {have}, RevBridge needs {kind}",
                    fix=f"remove it (temporal operator search-attribute remove --name {name}), "
                    "then run `revbridge setup temporal`",
                )
            )
    return out


def _retention_check(ns: str, ttl: Any) -> Check:
    retention = ttl.ToTimedelta()
    why = (
        f"longest vendor redelivery window {_days(LONGEST_WINDOW)} + {_days(MARGIN)} margin; "
        f"approvals expire after {_days(ApprovalTiming().expire_after)}"
    )
    if retention >= NEEDED_RETENTION:
        return Check(
            system="temporal",
            name="retention",
            status=CheckStatus.OK,
            detail=f"{_days(retention)} ≥ {_days(NEEDED_RETENTION)} needed ({why})",
        )
    return Check(
        system="temporal",
        name="retention",
        status=CheckStatus.FAIL,
        detail=f"{_days(retention)} < {_days(NEEDED_RETENTION)} needed ({why}): a late "
        "redelivery would start a finished run again",
        fix=SETUP_FIX,
    )


# --- connectors --------------------------------------------------------------------------------


def _validated(system: str, found: Any) -> list[Check]:
    if not isinstance(found, list | tuple) or not all(isinstance(c, Check) for c in found):
        return [
            Check(
                system=system,
                name="preflight",
                status=CheckStatus.FAIL,
                detail=f"preflight() returned {type(found).__name__}, not a list of Check",
                fix="a bug in the connector's preflight: report it",
            )
        ]
    if not found:
        return [Check(system=system, name="preflight", status=CheckStatus.SKIP, detail="no checks")]
    return list(found)


def connector_checks(system: str, build: Callable[[], Any]) -> list[Check]:
    """Build the connector as the worker does and run its ``preflight()`` if it has one."""
    try:
        connector = build()
    except SettingsError as exc:
        return [
            Check(
                system=system,
                name="configuration",
                status=CheckStatus.FAIL,
                detail=str(exc),
                fix="set them where the worker runs (README: the pieces against real systems)",
            )
        ]
    except Exception as exc:
        return [_crashed(system, "connector", exc)]
    if connector is None:
        return []
    try:
        preflight = getattr(connector, "preflight", None)
        if preflight is None:
            return [
                Check(
                    system=system,
                    name="preflight",
                    status=CheckStatus.SKIP,
                    detail=f"no preflight yet for {type(connector).__name__}",
                )
            ]
        try:
            found = preflight()
            if inspect.isawaitable(found):
                found = asyncio.run(found)  # in its own worker thread: a loop of its own
        except Exception as exc:
            return [_crashed(system, "preflight", exc)]
        return _validated(system, found)
    finally:
        close = getattr(connector, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):  # best effort, once the checks ran
                close()


def email_checks(settings: Settings) -> list[Check]:
    if settings.email_channel == "marketing-cloud":
        from cli.doctor_marketing_cloud import checks

        return checks(settings, connector_checks)
    if settings.smtp is None:
        return [
            Check(
                system="smtp",
                name="relay",
                status=CheckStatus.OK,
                detail="no relay configured (SMTP_HOST): reminder drafts go to the CRM as tasks",
            )
        ]
    from connectors.registry import build_mailer

    return connector_checks("smtp", lambda: build_mailer(settings))


def desk_checks(settings: Settings) -> list[Check]:
    """The support desk beside the CRM (REVBRIDGE_DESK=zendesk): credentials, role, scopes."""
    from connectors.registry import build_desk

    return connector_checks(settings.desk or "desk", lambda: build_desk(settings))


def erp_checks(settings: Settings) -> list[Check]:
    """NetSuite, when configured: its preflight, with the accounts of policies/revenue.yaml."""
    from pathlib import Path

    import revbridge_data
    from connectors.registry import build_erp
    from domain.revenue import RevenueConfigError, load_accounts

    folder = (
        Path(settings.policy_dir) if settings.policy_dir else revbridge_data.default_policy_dir()
    )
    try:
        accounts = load_accounts(folder / "revenue.yaml")
    except RevenueConfigError as exc:
        return [
            Check(
                system="netsuite",
                name="accounts",
                status=CheckStatus.FAIL,
                detail=str(exc),
                fix="correct policies/revenue.yaml",
            )
        ]
    return connector_checks("netsuite", lambda: build_erp(settings, accounts))


def llm_checks(settings: Settings) -> list[Check]:
    if settings.reasoner == "rules" and settings.anthropic is None:
        return [
            Check(
                system="llm",
                name="reasoner",
                status=CheckStatus.OK,
                detail="rules reasoner: no LLM configured (REVBRIDGE_REASONER)",
            )
        ]
    if settings.anthropic is None:
        return [
            Check(
                system="llm",
                name="configuration",
                status=CheckStatus.FAIL,
                detail=f"REVBRIDGE_REASONER={settings.reasoner} needs ANTHROPIC_API_KEY",
                fix="set ANTHROPIC_API_KEY, or REVBRIDGE_REASONER=rules",
            )
        ]
    try:
        module = importlib.import_module("connectors.llm_preflight")
    except ModuleNotFoundError as exc:
        if exc.name != "connectors.llm_preflight":
            return [_crashed("llm", "preflight", exc)]
        return [
            Check(
                system="llm",
                name="preflight",
                status=CheckStatus.SKIP,
                detail=f"no preflight yet for the model {settings.anthropic.model}",
            )
        ]
    except Exception as exc:
        return [_crashed("llm", "preflight", exc)]
    fn = getattr(module, "preflight", None)
    if fn is None:
        return [
            Check(
                system="llm",
                name="preflight",
                status=CheckStatus.SKIP,
                detail="connectors.llm_preflight has no preflight() yet",
            )
        ]
    first = next(iter(inspect.signature(fn).parameters), "settings")
    arg = settings if first == "settings" else settings.anthropic
    try:
        found = fn(arg)
        if inspect.isawaitable(found):
            found = asyncio.run(found)
    except Exception as exc:
        return [_crashed("llm", "preflight", exc)]
    return _validated("llm", found)


# --- running them ------------------------------------------------------------------------------


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.done():  # timed out meanwhile
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


async def _in_thread(fn: Callable[[], T], timeout_s: float) -> T:
    """``fn`` in a daemon thread: a check that never returns cannot keep doctor from exiting."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the loop, which reports it as one line
            outcome: tuple[Any, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        with contextlib.suppress(RuntimeError):  # the loop is gone: it was cut off already
            loop.call_soon_threadsafe(_settle, done, *outcome)

    threading.Thread(target=run, name="revbridge-doctor-check", daemon=True).start()
    return await asyncio.wait_for(done, timeout_s)


async def _group(
    system: str, work: Callable[[], Awaitable[list[Check]]], timeout_s: float
) -> list[Check]:
    try:
        return await asyncio.wait_for(work(), timeout_s)
    except TimeoutError:
        return [
            Check(
                system=system,
                name="checks",
                status=CheckStatus.FAIL,
                detail=f"no answer within {timeout_s:g} s",
                fix="check the service is reachable from here (network, proxy, firewall)",
            )
        ]
    except Exception as exc:
        return [_crashed(system, "checks", exc)]


async def run_checks(
    env: Mapping[str, str], timeout_s: float = CHECK_TIMEOUT_S
) -> tuple[list[Check], Settings | None]:
    """Every check, Temporal first, then billing, CRM, SMTP and the LLM (run side by side)."""
    from cli.crm_use_cases import use_case_checks  # the use cases' own CRM properties
    from cli.doctor_expansion import expansion_group  # usage-based expansion's setup
    from connectors.registry import build_billing, build_crm

    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        settings = None
        bad = Check(
            system="revbridge",
            name="settings",
            status=CheckStatus.FAIL,
            detail=str(exc),
            fix="correct the variable it names",
        )
    groups: list[tuple[str, Callable[[], Awaitable[list[Check]]]]] = [("temporal", temporal_checks)]
    if settings is not None:
        s = settings
        groups += [
            (
                s.billing,
                lambda: _in_thread(
                    lambda: connector_checks(s.billing, lambda: build_billing(s)), timeout_s
                ),
            ),
            (
                s.crm,
                lambda: _in_thread(
                    lambda: connector_checks(s.crm, lambda: build_crm(s)), timeout_s
                ),
            ),
            ("smtp", lambda: _in_thread(lambda: email_checks(s), timeout_s)),
            ("llm", lambda: _in_thread(lambda: llm_checks(s), timeout_s)),
            ("use cases", lambda: _in_thread(lambda: use_case_checks(s), timeout_s)),
            ("expansion", lambda: expansion_group(s, lambda fn: _in_thread(fn, timeout_s))),
        ]
        if s.netsuite is not None:
            groups.append(("netsuite", lambda: _in_thread(lambda: erp_checks(s), timeout_s)))
        if s.desk and s.desk != s.crm:
            groups.append(("desk", lambda: _in_thread(lambda: desk_checks(s), timeout_s)))
    results = await asyncio.gather(*(_group(name, work, timeout_s) for name, work in groups))
    checks = [c for group in results for c in group]
    if settings is None:
        checks.insert(0, bad)
    return checks, settings


def secrets_of(settings: Settings | None, env: Mapping[str, str]) -> set[str]:
    """Every secret value the configuration holds: SecretStr fields, and the environment's
    *_KEY, *_SECRET(S), *_TOKEN, *_PASSWORD variables (TEMPORAL_API_KEY among them)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.add(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(settings)
    for key, value in env.items():
        if key.endswith(("_KEY", "_SECRET", "_SECRETS", "_TOKEN", "_PASSWORD", "_KEYS")):
            found.update(v.strip() for v in value.split(","))
    return {s for s in found if len(s) >= 4}


def masked(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def exit_code(checks: Iterable[Check], strict: bool = False) -> int:
    bad = {CheckStatus.FAIL, CheckStatus.WARN} if strict else {CheckStatus.FAIL}
    return 1 if any(c.status in bad for c in checks) else 0


_STYLE = {
    CheckStatus.OK: "green",
    CheckStatus.WARN: "yellow",
    CheckStatus.FAIL: "bold red",
    CheckStatus.SKIP: "dim",
}


def render(checks: list[Check], secrets: set[str], out: TextIO, colour: bool) -> None:
    counts = {s: sum(c.status is s for c in checks) for s in CheckStatus}
    summary = ", ".join(f"{n} {s.value}" for s, n in counts.items())
    if colour:
        from rich.console import Console
        from rich.text import Text

        console = Console(file=out, highlight=False, soft_wrap=True, force_terminal=True)
        for c in checks:
            line = Text(masked(c.line(), secrets))
            line.stylize(_STYLE[c.status], 0, 4)
            console.print(line)
        console.print(Text(f"doctor: {summary}", style="bold"))
        return
    for c in checks:
        print(masked(c.line(), secrets), file=out)
    print(f"doctor: {summary}", file=out)


def doctor(
    *,
    strict: bool = False,
    out: TextIO | None = None,
    colour: bool | None = None,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> int:
    """Run every check, print one line each and a summary; the exit status. Everything comes from
    the process environment, as for the worker (Temporal's env-config included)."""
    env = os.environ
    out = out or sys.stdout
    checks, settings = asyncio.run(run_checks(env, timeout_s))
    if colour is None:
        colour = out.isatty() and "NO_COLOR" not in env
    render(checks, secrets_of(settings, env), out, colour)
    return exit_code(checks, strict)
