"""``revbridge replay``: replay workflow histories against the current workflow code.

The deploy gate for workflow changes: a history that no longer replays means the new code would
break the runs that produced it (a nondeterminism error on their next workflow task). Histories
come from exactly one source per call:

- ``--workflow-id ID [--run-id RUN]``: one execution, fetched from the server;
- ``--query "WorkflowType='DunningWorkflow' AND ExecutionStatus='Running'"``: every execution a
  visibility query matches, fetched and replayed as a stream;
- ``FILE_OR_DIR ...``: JSON exported with ``temporal workflow show -o json`` (or the committed
  ``tests/histories/*.json``); the workflow ID is the file name's stem.

One line per history, a summary line, exit 1 if any history fails, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from temporalio.client import Client, WorkflowHistory
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from cli.config import CliError
from infra.codec import data_converter

PROGRESS_EVERY = 50
CONNECT_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class ReplayResult:
    workflow_id: str
    run_id: str
    workflow_type: str
    events: int
    #: None when the history replayed cleanly; else the SDK's message, first line
    error: str | None = None
    nondeterministic: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def line(self) -> str:
        if self.ok:
            return f"ok  {self.workflow_id} ({self.workflow_type}, {self.events} events)"
        kind = "nondeterministic" if self.nondeterministic else "replay failed"
        return f"FAIL {self.workflow_id}: {kind} — {self.error}"


def default_workflows() -> list[type]:
    """What the worker registers: the code a deploy would ship."""
    from workers.main import WORKFLOWS

    return list(WORKFLOWS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


# The core reports a failed replay as "Workflow activation completion failed: Failure { failure:
# Some(Failure { message: \"[TMPRL1100] Nondeterminism error: ...\", ... }) }"; the message is
# the part worth a line.
_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')


def _reason(exc: BaseException) -> str:
    found = _CORE_MESSAGE.search(str(exc))
    if not found:
        return _first_line(exc)
    message = found.group(1).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
    return _first_line(RuntimeError(message))


@functools.cache
def _replay_runtime() -> Runtime:
    """The core logs every failed workflow task at WARN, to stdout; our result lines say it once."""
    quiet = TelemetryFilter(core_level="ERROR", other_level="ERROR")
    return Runtime(telemetry=TelemetryConfig(logging=LoggingConfig(filter=quiet)))


def _workflow_type(history: WorkflowHistory) -> str:
    start = history.events[0].workflow_execution_started_event_attributes
    return start.workflow_type.name


async def _as_async(histories: Iterable[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for history in histories:
        yield history


async def replay_histories(
    histories: Iterable[WorkflowHistory] | AsyncIterable[WorkflowHistory],
    workflows: Sequence[type],
    on_result: Callable[[ReplayResult], None] | None = None,
) -> list[ReplayResult]:
    """Replay every history against ``workflows``; a failure is a result, never an exception.

    Histories are consumed as a stream (one replayer, one history at a time), so a long visibility
    query never holds more than one history in memory here.
    """
    source: AsyncIterator[WorkflowHistory] = (
        aiter(histories) if isinstance(histories, AsyncIterable) else _as_async(histories)
    )
    replayer = Replayer(
        workflows=list(workflows),
        data_converter=data_converter(),
        runtime=_replay_runtime(),
    )
    results: list[ReplayResult] = []
    # workflow_replay_iterator is what Replayer.replay_workflows(raise_on_replay_failure=False)
    # runs; iterating it ourselves gives a result per history (replay_workflows keeps only the
    # failures, keyed by run ID).
    async with replayer.workflow_replay_iterator(source) as stream:
        async for replayed in stream:
            history, failure = replayed.history, replayed.replay_failure
            result = ReplayResult(
                workflow_id=history.workflow_id,
                run_id=history.run_id,
                workflow_type=_workflow_type(history),
                events=len(history.events),
                error=_reason(failure) if failure else None,
                nondeterministic=isinstance(failure, NondeterminismError),
            )
            results.append(result)
            if on_result:
                on_result(result)
    return results


# --- sources ------------------------------------------------------------------------------------


def _checked(history: WorkflowHistory, where: str) -> WorkflowHistory:
    if not history.events or not history.events[0].HasField(
        "workflow_execution_started_event_attributes"
    ):
        raise CliError(f"{where}: not a workflow history (no WorkflowExecutionStarted event first)")
    return history


def history_paths(args: Sequence[str]) -> list[Path]:
    paths: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = sorted(path.glob("*.json"))
            if not found:
                raise CliError(f"{arg}: no *.json histories in this directory")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            raise CliError(f"{arg}: no such file or directory")
    return paths


def load_history_file(path: Path) -> WorkflowHistory:
    """A history exported with ``temporal workflow show -o json`` (or ``WorkflowHistory.to_json``);
    the workflow ID is the file name's stem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {_first_line(exc)}") from None
    try:
        history = WorkflowHistory.from_json(path.stem, text)
    except Exception as exc:  # noqa: BLE001 - JSON or protobuf parse errors, all "bad input"
        raise CliError(f"{path}: not a workflow history JSON ({_first_line(exc)})") from None
    return _checked(history, str(path))


async def connect(address: str | None, namespace: str | None) -> Client:
    import asyncio

    from infra.connection import client_connect_kwargs

    try:
        kwargs = client_connect_kwargs()
    except Exception as exc:  # noqa: BLE001 - a bad env-config profile
        raise CliError(f"Temporal client configuration: {_first_line(exc)}") from None
    if address:
        kwargs["target_host"] = address
    if namespace:
        kwargs["namespace"] = namespace
    target = kwargs["target_host"]
    try:
        return await asyncio.wait_for(Client.connect(**kwargs), timeout=CONNECT_TIMEOUT_S)
    except TimeoutError:
        raise CliError(f"cannot reach Temporal at {target}: timed out") from None
    except Exception as exc:  # noqa: BLE001 - connection refused, TLS, auth...
        raise CliError(f"cannot reach Temporal at {target}: {_first_line(exc)}") from None


def _rpc_error(what: str, exc: RPCError) -> CliError:
    return CliError(f"{what}: {exc.status.name}: {_first_line(exc)}")


async def fetch_one(client: Client, workflow_id: str, run_id: str | None) -> WorkflowHistory:
    try:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
    except RPCError as exc:
        raise _rpc_error(f"workflow {workflow_id}", exc) from None
    return _checked(history, f"workflow {workflow_id}")


async def count_matching(client: Client, query: str) -> int:
    """Validates the query (and the connection) before anything is printed."""
    try:
        return (await client.count_workflows(query)).count
    except RPCError as exc:
        raise _rpc_error("query", exc) from None


async def fetch_matching(client: Client, query: str) -> AsyncIterator[WorkflowHistory]:
    """``list_workflows(query).map_histories()``, tolerating runs deleted while we go (retention)."""
    try:
        async for execution in client.list_workflows(query):
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            try:
                yield await handle.fetch_history()
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                print(f"skipped {execution.id}: no longer on the server", file=sys.stderr)
    except RPCError as exc:
        raise _rpc_error("query", exc) from None


# --- output -------------------------------------------------------------------------------------


class Progress:
    """``[k/N]`` on stderr when stdout is not a terminal (the result lines are not in view):
    rewritten in place on a terminal stderr, else one line every ``PROGRESS_EVERY`` histories."""

    def __init__(self, total: int | None, out: TextIO, err: TextIO) -> None:
        self.total, self.err, self.done = total, err, 0
        self.enabled = not _isatty(out)
        self.inline = self.enabled and _isatty(err)

    def step(self, result: ReplayResult) -> None:
        self.done += 1
        if not self.enabled:
            return
        counter = f"[{self.done}/{self.total}]" if self.total else f"[{self.done}]"
        if self.inline:
            self.err.write(f"\r\033[K{counter} {result.workflow_id}")
            self.err.flush()
        elif self.done % PROGRESS_EVERY == 0:
            print(f"{counter} replayed", file=self.err, flush=True)

    def close(self) -> None:
        if self.inline and self.done:
            self.err.write("\r\033[K")
            self.err.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def summary(results: Sequence[ReplayResult]) -> str:
    failed = sum(not r.ok for r in results)
    return f"replayed {len(results)}: {len(results) - failed} ok, {failed} failed"


# --- the command --------------------------------------------------------------------------------


def _check_sources(args: argparse.Namespace) -> None:
    given = [
        name
        for name, value in (
            ("FILE_OR_DIR", args.paths),
            ("--workflow-id", args.workflow_id),
            ("--query", args.query),
        )
        if value
    ]
    if not given:
        raise CliError("nothing to replay: give FILE_OR_DIR..., --workflow-id ID or --query QUERY")
    if len(given) > 1:
        raise CliError(f"one source per call, got {' and '.join(given)}")
    if args.run_id and not args.workflow_id:
        raise CliError("--run-id needs --workflow-id")


async def run(
    args: argparse.Namespace,
    workflows: Sequence[type] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """The command: 0 if every history replays, 1 if any fails; usage errors raise CliError."""
    out, err = out or sys.stdout, err or sys.stderr
    _check_sources(args)
    histories: Iterable[WorkflowHistory] | AsyncIterable[WorkflowHistory]
    client: Client | None = None
    if args.paths:
        loaded = [load_history_file(p) for p in history_paths(args.paths)]
        histories, total = loaded, len(loaded)
    else:
        client = await connect(args.address, args.namespace)
        if args.workflow_id:
            histories = [await fetch_one(client, args.workflow_id, args.run_id)]
            total = 1
        else:
            total = await count_matching(client, args.query)
            if total == 0:
                print("no workflow executions match the query", file=err)
            histories = fetch_matching(client, args.query)

    progress = Progress(total if total > 1 else None, out, err)

    def report(result: ReplayResult) -> None:
        progress.step(result)
        if not args.json:
            print(result.line(), file=out, flush=True)

    try:
        results = await replay_histories(
            histories, workflows if workflows is not None else default_workflows(), report
        )
    finally:
        progress.close()
    if args.json:
        doc: dict[str, Any] = {
            "replayed": len(results),
            "ok": sum(r.ok for r in results),
            "failed": sum(not r.ok for r in results),
            "results": [asdict(r) | {"ok": r.ok} for r in results],
        }
        print(json.dumps(doc, indent=2), file=out)
    else:
        print(summary(results), file=out)
    return 0 if all(r.ok for r in results) else 1
