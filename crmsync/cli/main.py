"""The `crmsync` command line: argument parsing, dispatch, and exit codes (INTERFACE §2).

Each command lives in its own module under `crmsync.cli` and exposes
`run(args) -> int`. Errors meant for the user (`CrmsyncError`) are printed as one
line per problem on stderr; a traceback is only shown with `--debug`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from crmsync import __version__
from crmsync.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, CrmsyncError

# command name -> (module under crmsync.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check-config": ("check_config", "validate the config and print it with secrets masked"),
    "demo": ("demo", "sync 500 simulated people into a simulated Quo, no account needed"),
    "run": ("run", "the daemon in the foreground (what systemd starts)"),
    "sync": ("sync", "run one tenant's sync in the foreground until its backlog is drained"),
    "sim": ("sim", "run one built-in API simulator alone (quo, attio)"),
    "status": ("status", "show every tenant's state, phase, counts and dead letters"),
    "mappings": ("mappings", "export a tenant's CRM record <-> Quo contact mappings"),
    "errors": ("errors_cmd", "list a tenant's dead-lettered records by category"),
    "retry": ("retry", "re-queue dead-lettered records for the next sync pass"),
    "inbox": ("inbox", "list a tenant's received webhook events; replay them"),
    "quo": ("quo_cmd", "Quo webhooks: `quo migrate-webhooks --tenant ID` moves a tenant's "
            "webhooks from legacy to 2026-03-30 without a gap"),
    "metakocka": ("metakocka_cmd", "Metakocka partners: `metakocka push|pull --tenant ID "
                  "ID...` now, `metakocka unsynced|mappings --tenant ID`"),
    "deploy-files": ("deploy_files", "write the systemd unit, Prometheus rules and Grafana "
                     "dashboard into a directory"),
}


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (default ./crmsync.toml, then $CRMSYNC_CONFIG)",
    )
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="crmsync",
        description="Keep a CRM and a Quo (formerly OpenPhone) workspace in sync.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"crmsync {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"crmsync.cli.{module_name}")
        command_parser = sub.add_parser(name, help=help_text, parents=[common])
        module.add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    args.config = getattr(args, "config", None)
    args.debug = getattr(args, "debug", False)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    module_name = COMMANDS[args.command][0]
    module = importlib.import_module(f"crmsync.cli.{module_name}")
    try:
        return int(module.run(args))
    except CrmsyncError as exc:
        if args.debug:
            raise
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: say what, keep the traceback for --debug
        if args.debug:
            raise
        print(f"crmsync: internal error: {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILED
