"""`crmsync run`: the daemon in the foreground (what systemd starts)."""

from __future__ import annotations

import argparse

from crmsync.config import load_config
from crmsync.daemon.loop import run_async


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options beyond -c/--config and --debug


def run(args: argparse.Namespace) -> int:
    from crmsync.daemon.app import run_daemon

    config = load_config(args.config)
    return run_async(run_daemon(config, args.config))  # SIGHUP re-reads the same path
