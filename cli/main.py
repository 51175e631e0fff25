"""``revbridge``: the command line. Errors are one line on stderr with exit code 2, never a trace."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from cli.churn import add_churn_command
from cli.config import CliError, StackConfig, config_path
from cli.link import add_link_command
from cli.reconcile import add_reconcile_command
from cli.report import add_report_command
from cli.revenue import add_revenue_command
from cli.sync import add_sync_command
from domain.settings import SettingsError
from harness.errors import HarnessError

DEFAULT_CONFIG = "temporal-dev.yaml"


def _load(path: str | None, required: bool = True) -> StackConfig | None:
    if path is None and not required:
        return None
    resolved, shipped = config_path(path)
    if shipped:
        print(
            f"(no {DEFAULT_CONFIG} here: using the packaged default; "
            "`revbridge init .` writes one to edit)",
            file=sys.stderr,
        )
    from cli.channels import with_channels  # Marketing Cloud / Zendesk sandboxes when asked
    from cli.revenue import with_erp  # the NetSuite sandbox when an ERP is asked for

    return with_erp(with_channels(StackConfig.load(resolved)))


def cmd_dev(args: argparse.Namespace) -> None:
    from cli.stack import Stack

    cfg = _load(args.config)
    assert cfg is not None
    cfg = cfg.with_pair(args.billing, args.crm)
    stack = Stack(cfg, config_path(args.config)[0], ui=not args.headless)

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        print("Starting the RevBridge local stack:")
        try:
            await stack.start()
            print(f"Ready. Logs in {stack.log_dir}. Ctrl-C stops everything.")
            while not stop.is_set():
                stack.supervise(print)  # restarts a crashed piece, with back-off
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
            print("Stopping…")
        finally:
            stack.stop()

    asyncio.run(go())


def cmd_demo(args: argparse.Namespace) -> None:
    from cli.demo import run_demo

    if args.desk == "zendesk" and args.scenario not in ("dunning", "support"):  # the default
        raise CliError(
            f"--desk zendesk shows the support scenario, not {args.scenario}: drop one of them"
        )
    if args.channel == "marketing-cloud":  # the stack's pieces inherit it (cli/channels.py)
        os.environ["REVBRIDGE_EMAIL_CHANNEL"] = "marketing-cloud"
    if args.desk == "zendesk":
        os.environ["REVBRIDGE_DESK"] = "zendesk"
    if args.scenario == "revenue":  # the stack runs the NetSuite sandbox (cli/revenue.py)
        os.environ["REVBRIDGE_ERP"] = "netsuite"
    cfg = _load(args.config)
    assert cfg is not None
    cfg = cfg.with_pair(args.billing, args.crm)
    asyncio.run(
        run_demo(
            cfg,
            config_path(args.config)[0],
            as_json=args.json,
            keep=args.keep,
            # --desk zendesk shows a Zendesk ticket getting its billing context
            scenario="support" if args.desk == "zendesk" else args.scenario,
        )
    )


def cmd_worker(args: argparse.Namespace) -> None:
    from cli.services import run_worker

    run_worker(_load(args.config, required=False))


def cmd_webhooks(args: argparse.Namespace) -> None:
    from cli.services import run_webhooks

    run_webhooks(_load(args.config, required=False), args.host, args.port)


def cmd_sandbox(args: argparse.Namespace) -> None:
    from cli.services import run_sandbox

    cfg = _load(args.config)
    assert cfg is not None
    run_sandbox(cfg)


def cmd_codec_server(args: argparse.Namespace) -> None:
    from cli.codec_dev import run_codec_server

    cfg = _load(args.config)
    assert cfg is not None
    run_codec_server(cfg, args.ui_upstream, args.idp_port)


def cmd_replay(args: argparse.Namespace) -> None:
    from cli.replay import run as run_replay
    from cli.services import apply_stack_defaults

    apply_stack_defaults(_load(args.config, required=False))
    code = asyncio.run(run_replay(args))
    if code:
        raise SystemExit(code)  # a history failed to replay: 1, so it can gate a deploy


def cmd_doctor(args: argparse.Namespace) -> None:
    from cli.doctor import doctor
    from cli.services import apply_stack_defaults

    apply_stack_defaults(_load(args.config, required=False))
    code = doctor(strict=args.strict)
    if code:
        raise SystemExit(code)  # a check failed (or, with --strict, warned): 1, for CI


def cmd_setup(args: argparse.Namespace) -> None:
    from cli.services import apply_stack_defaults
    from cli.setup_temporal import run as run_setup

    apply_stack_defaults(_load(args.config, required=False))
    if args.what == "crm":
        from cli.setup_crm import run as run_setup_crm

        run_setup_crm(args)
        return
    asyncio.run(run_setup(args))


def cmd_init(args: argparse.Namespace) -> None:
    from cli.init import init

    for line in init(Path(args.dir), force=args.force):
        print(line)


def cmd_pending(args: argparse.Namespace) -> None:
    from cli.approvals import pending

    asyncio.run(pending(args.json))


def cmd_decide(args: argparse.Namespace) -> None:
    from cli.approvals import decide
    from domain.approvals import Decision

    decision = Decision.APPROVE if args.command == "approve" else Decision.REJECT
    asyncio.run(decide(args.workflow_id, args.action, args.approver, decision, args.note or ""))


def cmd_start(args: argparse.Namespace) -> None:
    from cli.approvals import start_dunning

    if args.what != "dunning":
        raise CliError(f"cannot start {args.what!r} by hand")
    # the worker's policies: --policies, else REVBRIDGE_POLICY_DIR, else the packaged ones
    chosen = args.policies or os.environ.get("REVBRIDGE_POLICY_DIR")
    policy_dir = Path(chosen) if chosen else None
    asyncio.run(start_dunning(args.invoice, args.billing, args.approver, policy_dir))


def _pair_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument(
        "--billing",
        choices=["chargebee", "stripe", "zuora", "recurly"],
        help="billing platform (default: config)",
    )
    sp.add_argument("--crm", choices=["salesforce", "hubspot"], help="CRM (default: config)")


class _OneLineParser(argparse.ArgumentParser):
    """A usage error is one line too (argparse prints the whole usage first); its subcommands'
    parsers are of this class as well (``add_subparsers`` makes them of the parent's)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="revbridge", description="Durable AI agents between billing and CRM.")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn, help: str, config_required: bool = True) -> argparse.ArgumentParser:  # noqa: ANN001
        sp = sub.add_parser(name, help=help)
        sp.add_argument(
            "--config",
            default=None,
            help=f"local stack file (default {DEFAULT_CONFIG})"
            + ("" if config_required else "; without it, settings come from the environment only"),
        )
        sp.set_defaults(fn=fn)
        return sp

    dev = add("dev", cmd_dev, "run the local stack in the foreground")
    dev.add_argument("--headless", action="store_true", help="no Web UI")
    _pair_flags(dev)
    demo = add("demo", cmd_demo, "show a failed payment become a CRM case, end to end")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.add_argument("--keep", action="store_true", help="leave a stack the demo started running")
    demo.add_argument(
        "--scenario",
        choices=(
            "dunning",
            "quote-to-cash",
            "churn",
            "support",
            "revenue",
            "expansion",
            "reconcile",
            "sync",
        ),
        default="dunning",
        help="the use case to show (default: dunning)",
    )
    demo.add_argument(
        "--channel",
        choices=("smtp", "marketing-cloud"),
        help="the email channel reminders go through (default: smtp, the local mail relay)",
    )
    demo.add_argument(
        "--desk",
        choices=("zendesk",),
        help="a support desk beside the CRM's cases (--desk zendesk)",
    )
    _pair_flags(demo)
    add("worker", cmd_worker, "run a worker", config_required=False)
    add_churn_command(add)
    add_report_command(add)
    add_reconcile_command(add)
    add_link_command(add)
    add_sync_command(add)
    add_revenue_command(add)
    wh = add("webhooks", cmd_webhooks, "run the webhook service", config_required=False)
    wh.add_argument("--host", default=None)
    wh.add_argument("--port", type=int, default=None)
    add("sandbox", cmd_sandbox, "run the vendor emulators")
    cs = add("codec-server", cmd_codec_server, "the local Web UI's sign-in and codec server")
    cs.add_argument("--ui-upstream", required=True, help="the dev server's own Web UI URL")
    cs.add_argument("--idp-port", type=int, required=True, help="the local identity provider")
    su = add(
        "setup",
        cmd_setup,
        "make a Temporal namespace (temporal) or the CRM (crm: its fields, objects, properties) "
        "ready",
        config_required=False,
    )
    su.add_argument("what", choices=["temporal", "crm"])
    su.add_argument(
        "--dry-run", action="store_true", help="print what would change, change nothing"
    )
    doc = add(
        "doctor",
        cmd_doctor,
        "check the configured accounts before go-live: one line per check, exit 1 on a FAIL",
        config_required=False,
    )
    doc.add_argument("--strict", action="store_true", help="a WARN fails too (exit 1)")
    ini = sub.add_parser("init", help=f"write a starter {DEFAULT_CONFIG} and policies/ to own")
    ini.add_argument("dir", nargs="?", default=".", help="where (default: here)")
    ini.add_argument("--force", action="store_true", help="overwrite files that exist")
    ini.set_defaults(fn=cmd_init)
    pend = add("pending", cmd_pending, "list the actions waiting for approval", False)
    pend.add_argument("--json", action="store_true")
    for verb in ("approve", "reject"):
        sp = add(verb, cmd_decide, f"{verb} a pending action (immediate answer)", False)
        sp.add_argument("workflow_id")
        sp.add_argument("--action", required=True, help="the action ID `revbridge pending` shows")
        sp.add_argument(
            "--as", dest="approver", required=True, help="your email (checked against policies/)"
        )
        sp.add_argument("--note", default="")
    st = add("start", cmd_start, "start work by hand (checked against policies/)", False)
    st.add_argument("what", choices=["dunning"])
    st.add_argument("--invoice", required=True)
    st.add_argument(
        "--billing", default="chargebee", choices=["chargebee", "stripe", "zuora", "recurly"]
    )
    st.add_argument(
        "--as", dest="approver", required=True, help="your email (checked against policies/)"
    )
    st.add_argument(
        "--policies",
        default=None,
        help="policies folder (default: REVBRIDGE_POLICY_DIR, else the packaged one)",
    )
    rp = add(
        "replay", cmd_replay, "replay workflow histories against this code", config_required=False
    )
    rp.add_argument(
        "paths",
        nargs="*",
        metavar="FILE_OR_DIR",
        help="history JSON from `temporal workflow show -o json` (a directory: its *.json); "
        "the workflow ID is the file name's stem",
    )
    rp.add_argument("--workflow-id", help="replay this execution, fetched from the server")
    rp.add_argument("--run-id", help="with --workflow-id: this run (default: the latest)")
    rp.add_argument(
        "--query",
        help="replay every execution a visibility query matches, e.g. "
        "\"WorkflowType='DunningWorkflow' AND ExecutionStatus='Running'\"",
    )
    rp.add_argument("--json", action="store_true", help="print the results as JSON")
    rp.add_argument("--address", help="Temporal host:port (default: env-config, then local)")
    rp.add_argument("--namespace", help="Temporal namespace (default: env-config, then default)")
    return p


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if argv is None:  # the console script: exit without interpreter finalization, where the
        # Temporal runtime's threads, still unwinding a failed connect, make Python abort now and
        # then ("PyGILState_Release … finalizing", temporalio/sdk-python#300; cli/services.py)
        with contextlib.suppress(OSError):  # a closed pipe
            sys.stdout.flush()
            sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


def _main(argv: list[str] | None) -> int:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parser().parse_args(argv)
    try:
        args.fn(args)
    except (CliError, HarnessError, SettingsError) as exc:
        print(f"revbridge {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug, not bad input: one line, the trace on request
        if os.environ.get("REVBRIDGE_DEBUG") == "1":
            raise
        print(
            f"revbridge {args.command}: unexpected {type(exc).__name__}: {str(exc)[:300]} "
            "(REVBRIDGE_DEBUG=1 shows the trace)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
