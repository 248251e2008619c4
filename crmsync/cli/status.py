"""`crmsync status [--json]`: every tenant's state, phase, counts and health.

Reads the state database read-only, so it is safe while the daemon runs; before the
first run there is no database and every tenant shows as stopped. Whether a stored
`running` is live is the state lock's to say: when no process holds it for a tenant
(the daemon, or `crmsync sync` for that tenant), the tenant shows as `stopped` and a
run it left open as interrupted (`domain/status.py`).
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
from crmsync.store import INTERRUPTED, Counts, lock_holder

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
    # Reads the state only: the API keys need not be at hand.
    config = load_config(args.config, resolve_secrets=False)
    async with open_state(config) as store:
        holder = None if store is None else await lock_holder(config.daemon.state_location)
        return await build_status(
            config, store, live=lambda tenant: holder is not None and holder.runs(tenant)
        )


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


#: how a phase reads in the table (`--json` keeps the identifiers)
PHASE_NAMES = {"setup": "setup", "initial_sync": "initial sync", "live": "live"}


def render_table(report: StatusReport) -> Table:
    """One row per tenant, readable at 80 columns.

    Every cell says what it is: the CRM in parentheses after the tenant id, the phase
    after the state with a `·` (the header says `state · phase`). A second line of its
    own would read like a second tenant. The counts wrap inside their column.
    """
    table = Table(title="crmsync status", title_justify="left", show_lines=True)
    # "acme (attio)" stays on one line (up to 24 characters; longer ids fold): a CRM
    # wrapped onto a line of its own is what looked like a second tenant.
    longest = max((len(f"{t.id} ({t.crm})") for t in report.tenants), default=0)
    table.add_column("tenant (CRM)", overflow="fold", no_wrap=longest <= 24)
    # At most "stopped · live" wide: "running · initial sync" wraps after its "·".
    table.add_column("state · phase", min_width=9, max_width=14)
    table.add_column("last run", ratio=1)
    table.add_column("dead\nletters", justify="right")
    table.add_column("last\nsuccess", no_wrap=True)
    for t in report.tenants:
        tenant = f"{escape(t.id)} [dim]({escape(t.crm)})[/]"
        if not t.configured:
            tenant += "\n[yellow]not configured[/]"
        # A tenant whose CRM webhooks cannot be verified (`--json` says why); not the
        # config-wide "no http.public_url", which every tenant would repeat.
        if t.crm_changes.startswith("polling only") and "public_url" not in t.crm_changes:
            tenant += "\n[yellow]polling only[/]"
        if t.replica is not None:
            tenant += f"\n[dim]on {escape(t.replica)}[/]"
        table.add_row(
            tenant,
            f"[{STATE_STYLES[t.state]}]{t.state}[/] · {PHASE_NAMES.get(t.phase, t.phase)}",
            _counts(t),
            f"[yellow]{t.dead_letters}[/]" if t.dead_letters else "0",
            _when(t.last_success_at),
        )
    if not report.tenants:
        table.caption = "no tenants configured"
    return table


def _when(moment: str | None) -> str:
    """An RFC 3339 time as date, then time to the second on a second line."""
    if moment is None:
        return "never"
    date, _, time = moment.partition("T")
    return f"{date}\n{time.split('.')[0].removesuffix('Z')}Z"


def _counts(t: TenantStatus) -> str:
    """The last run and its non-zero counts (failed always: 0 there is news too), so a
    narrow column stays short; `--json` has every count."""
    parts = []
    for name in Counts.__struct_fields__:
        n = getattr(t.counts, name)
        if name == "failed":
            parts.append(f"[red]failed {n}[/]" if n else "[dim]failed 0[/]")
        elif n:
            parts.append(f"{name} {n}")
    run = t.last_run
    if run is None:
        return "[dim]no sync run yet[/]"
    state = "interrupted" if run.error == INTERRUPTED else run.state
    return f"{run.kind} #{run.id}, {state}\n" + " · ".join(parts)
