"""`crmsync status [--json]`: every tenant's state, phase, counts and health.

Reads the state database read-only, so it is safe while the daemon runs; before the
first run there is no database and every tenant shows as stopped.
"""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crmsync.cli.common import open_state
from crmsync.config import load_config
from crmsync.daemon.loop import run_async
from crmsync.domain.status import StatusReport, TenantStatus, build_status, encode_status
from crmsync.errors import EXIT_OK
from crmsync.store import Counts

STATE_STYLES = {
    "starting": "cyan",
    "running": "green",
    "parked": "yellow",
    "failed": "bold red",
    "stopped": "dim",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the status as JSON")


async def _status(args: argparse.Namespace) -> StatusReport:
    config = load_config(args.config)
    async with open_state(config) as store:
        return await build_status(config, store)


def run(args: argparse.Namespace) -> int:
    report = run_async(_status(args))
    if args.json:
        sys.stdout.write(encode_status(report).decode() + "\n")
        return EXIT_OK
    console = Console()
    console.print(render_table(report))
    for t in report.tenants:
        if t.last_error:
            console.print(f"[bold]{escape(t.id)}[/] last error: {escape(t.last_error)}")
    return EXIT_OK


def render_table(report: StatusReport) -> Table:
    """Narrow enough for 80 columns: two-line cells, counts wrap inside their column."""
    table = Table(title="crmsync status", title_justify="left", show_lines=True)
    table.add_column("tenant", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("last run", ratio=1, min_width=20)
    table.add_column("dead\nletters", justify="right")
    table.add_column("last success", no_wrap=True)
    for t in report.tenants:
        crm = t.crm if t.configured else f"{t.crm}\nnot configured"
        table.add_row(
            f"{escape(t.id)}\n[dim]{escape(crm)}[/]",
            f"[{STATE_STYLES[t.state]}]{t.state}[/]\n[dim]{t.phase}[/]",
            _counts(t),
            f"[yellow]{t.dead_letters}[/]" if t.dead_letters else "0",
            (t.last_success_at or "never").replace("T", "\n", 1),
        )
    if not report.tenants:
        table.caption = "no tenants configured"
    return table


def _counts(t: TenantStatus) -> str:
    parts = []
    for name in Counts.__struct_fields__:
        n = getattr(t.counts, name)
        style = "red" if name == "failed" and n else ("dim" if not n else "")
        parts.append(f"[{style}]{name} {n}[/]" if style else f"{name} {n}")
    run = t.last_run
    if run is None:
        return "[dim]no sync run yet[/]"
    return f"{run.kind} #{run.id}, {run.state}\n" + " · ".join(parts)
