"""`crmsync inbox`: a tenant's received webhook events, and replaying them.

    crmsync inbox --tenant ID [--limit N] [--json]            (same as `inbox list`)
    crmsync inbox replay --tenant ID (--since T | EVENT_ID) [--no-process]

Listing reads the state database read-only (safe while the daemon runs). Replay marks
the chosen events pending again, then applies them in the foreground with the tenant's
own inbox processor (`--no-process` leaves them to `crmsync run`). Replay writes the
state, so it holds the state lock throughout and is refused (exit 2) while the daemon
runs: resetting the event the daemon is applying would apply it twice. Effects stay
exactly once either way: processing consults the mappings and logged activities, not
the inbox state.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import UTC, datetime

import msgspec
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crmsync.cli.common import open_state, require_tenant
from crmsync.config import Config, load_config
from crmsync.daemon.loop import run_async
from crmsync.domain.status import rfc3339
from crmsync.errors import EXIT_OK, UsageError
from crmsync.store import InboxEvent, Store
from crmsync.tenant.resources import open_resources
from crmsync.tenant.runtime import TenantRuntime
from crmsync.web.health import Health

DEFAULT_LIMIT = 50
#: SQLite's LIMIT takes a 64-bit integer; this means "all of them"
NO_LIMIT = 2**62


class InboxRow(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    id: int
    source: str
    event_id: str
    event_type: str
    state: str
    attempts: int
    received_at: str | None
    processed_at: str | None
    last_error: str | None

    @classmethod
    def of(cls, event: InboxEvent) -> InboxRow:
        return cls(
            id=event.id,
            source=event.source,
            event_id=event.event_id,
            event_type=event.event_type,
            state=event.state,
            attempts=event.attempts,
            received_at=rfc3339(event.received_at),
            processed_at=rfc3339(event.processed_at),
            last_error=event.last_error,
        )


class InboxReport(msgspec.Struct, frozen=True, kw_only=True):
    tenant: str
    events: list[InboxRow]  # newest first


# -- arguments --------------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_time(text: str) -> float:
    """Unix seconds, or RFC 3339 (`2026-11-23T10:00:00Z`; no offset means UTC)."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise argparse.ArgumentTypeError(f"not a time: {text!r}")
        return seconds
    iso = text.strip()
    if iso[-1:] in ("z", "Z"):
        iso = iso[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected RFC 3339 (2026-11-23T10:00:00Z) or unix seconds, got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _add_common(parser: argparse.ArgumentParser) -> None:
    """-c/--config and --debug after the action too (`inbox replay ... -c FILE`).

    SUPPRESS defaults: an option given before the action is not overwritten by the
    action parser's default.
    """
    parser.add_argument("-c", "--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="config file (default ./crmsync.toml, then $CRMSYNC_CONFIG)")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks")
    parser.add_argument("--tenant", metavar="ID", default=argparse.SUPPRESS, help="tenant id")


def _add_list_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument("--limit", type=positive_int, metavar="N", default=default,
                        help=f"show the N newest events (default {DEFAULT_LIMIT})")
    parser.add_argument("--json", action="store_true", default=default,
                        help="print the events as JSON")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", metavar="ID", default=None, help="tenant id (required)")
    _add_list_options(parser, default=None)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser(
        "list", help="list received webhook events, newest first (the default)"
    )
    _add_common(listing)
    _add_list_options(listing, default=argparse.SUPPRESS)
    replay = actions.add_parser(
        "replay", help="mark events pending again and process them (effects stay exactly once)"
    )
    _add_common(replay)
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--since", type=parse_time, metavar="T",
                       help="every event received at or after T (RFC 3339 or unix seconds)")
    which.add_argument("event_id", nargs="?", metavar="EVENT_ID",
                       help="one event: the provider's event id or the inbox id")
    replay.add_argument("--no-process", action="store_true",
                        help="only mark them pending; `crmsync run` processes them when it "
                             "starts")


def _tenant_arg(args: argparse.Namespace) -> str:
    tenant: str | None = getattr(args, "tenant", None)
    if not tenant:
        raise UsageError("crmsync inbox: the --tenant ID argument is required")
    return tenant


# -- list -------------------------------------------------------------------------------


async def _load(args: argparse.Namespace) -> InboxReport:
    # Listing reads the state only: the API keys need not be at hand (replay needs them).
    config = load_config(args.config, resolve_secrets=False)
    tenant = require_tenant(config, _tenant_arg(args)).id
    limit: int = args.limit or DEFAULT_LIMIT
    events: list[InboxEvent] = []
    async with open_state(config) as store:
        if store is not None:
            events = await store.inbox.list(tenant, limit=limit)
    return InboxReport(tenant=tenant, events=[InboxRow.of(e) for e in events])


#: event ids longer than this are shown as head…tail (`--json` has them whole; replay
#: takes the inbox id too)
EVENT_ID_WIDTH = 12


def short_event_id(event_id: str, width: int = EVENT_ID_WIDTH) -> str:
    """`event_id` cut in the middle to `width` characters: the head and the tail are
    what tell ids apart (Attio's are hashes, Quo's share an `EV` prefix)."""
    if len(event_id) <= width:
        return event_id
    tail = (width - 1) // 3
    return f"{event_id[:width - 1 - tail]}…{event_id[-tail:]}"


def _print(report: InboxReport, console: Console) -> None:
    """The events as a table that fits 80 columns, then their last errors.

    Columns: the inbox id (what `inbox replay` and the error lines name), the event id
    cut short, the type, the state, the attempts ("tries", so that the longest Quo
    type fits) and when it was received. Each event is one line; the last errors of
    those not processed follow the table, one line each.
    """
    if not report.events:
        console.print(f"{report.tenant}: no webhook events received")
        return
    # No vertical rules and no outer padding: the columns need every one of 80 characters.
    table = Table(
        title=f"{escape(report.tenant)}: webhook inbox, newest first",
        title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("event id", no_wrap=True)
    table.add_column("type", overflow="fold")
    table.add_column("state", no_wrap=True)
    table.add_column("tries", justify="right", no_wrap=True)
    table.add_column("received (UTC)", no_wrap=True)
    for row in report.events:
        table.add_row(
            str(row.id),
            escape(short_event_id(row.event_id)),
            escape(row.event_type),
            f"[{INBOX_STATE_STYLES.get(row.state, '')}]{row.state}[/]",
            str(row.attempts),
            _received(row.received_at),
        )
    console.print(table)
    for row in report.events:
        if row.last_error and row.state != "processed":
            console.print(f"#{row.id} {row.state}: {escape(row.last_error)}", highlight=False)


def _received(moment: str | None) -> str:
    """`2026-11-23T10:01:00.250Z` as `2026-11-23 10:01`: one line, to the minute (the
    seconds cost the type column its room at 80 columns; `--json` has them)."""
    if moment is None:
        return ""
    return moment.replace("T", " ", 1)[:16]


INBOX_STATE_STYLES = {
    "pending": "cyan", "processing": "cyan", "processed": "green", "ignored": "dim",
    "failed": "bold red",
}


# -- replay -----------------------------------------------------------------------------


async def _find(store: Store, tenant: str, ref: str) -> list[InboxEvent]:
    """Events named by `ref`: a provider event id (either source), else an inbox id."""
    found = [
        event
        for source in ("crm", "quo")
        if (event := await store.inbox.get_by_event_id(tenant, source, ref)) is not None
    ]
    if not found and ref.isascii() and ref.isdigit():
        event = await store.inbox.get(tenant, int(ref))
        if event is not None:
            found.append(event)
    return found


async def drain_inbox(config: Config, tenant_id: str, store: Store) -> int:
    """Apply the tenant's pending events now, with its own inbox processor, through
    `store` (open read-write: this process holds the state lock)."""
    tenant = require_tenant(config, tenant_id)
    async with open_resources(config) as resources:
        runtime = TenantRuntime(tenant, resources=resources, store=store, health=Health())
        return await runtime.drain_inbox()


async def _replay(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    tenant = require_tenant(config, _tenant_arg(args)).id
    command = f"crmsync inbox replay --tenant {tenant}"
    # One open (one hold of the state lock) for the reset and the drain alike.
    async with open_state(config, readonly=False, command=command) as store:
        if args.since is not None:
            events = [] if store is None else await store.inbox.list(
                tenant, args.since, limit=NO_LIMIT
            )
        else:
            events = [] if store is None else await _find(store, tenant, args.event_id)
            if not events:
                raise UsageError(
                    f"unknown webhook event '{args.event_id}' for tenant '{tenant}' "
                    f"(see `crmsync inbox --tenant {tenant}`)"
                )
        reset = 0
        if store is not None and events:
            reset = await store.inbox.reset_for_replay(tenant, [e.id for e in events])
        noun = "webhook event" if reset == 1 else "webhook events"
        print(f"{tenant}: {reset} {noun} marked pending for replay")
        if store is None or reset == 0:
            return EXIT_OK
        if args.no_process:
            print("the daemon (`crmsync run`) processes them when it starts")
            return EXIT_OK
        processed = await drain_inbox(config, tenant, store)
    print(f"{tenant}: processed {processed} webhook {'event' if processed == 1 else 'events'}")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.action == "replay":
        return run_async(_replay(args))
    report = run_async(_load(args))
    if args.json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    else:
        _print(report, Console())
    return EXIT_OK
