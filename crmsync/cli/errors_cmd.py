"""`crmsync errors --tenant ID [--all] [--json]`: dead-lettered records, by category.

Unresolved ones only unless `--all`. Each line names the dead letter's id, which
`crmsync retry --tenant ID ERROR_ID` takes.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from itertools import groupby

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crmsync.cli.common import add_tenant_argument, open_state, require_tenant
from crmsync.config import load_config
from crmsync.daemon.loop import run_async
from crmsync.domain.status import rfc3339
from crmsync.errors import EXIT_OK
from crmsync.store import DeadLetter


class DeadLetterRow(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    id: int
    crm_object: str
    crm_record_id: str | None
    category: str
    attempts: int
    error: str
    created_at: str | None
    next_retry_at: str | None
    resolved_at: str | None

    @classmethod
    def of(cls, letter: DeadLetter) -> DeadLetterRow:
        return cls(
            id=letter.id,
            crm_object=letter.crm_object,
            crm_record_id=letter.crm_record_id,
            category=letter.category,
            attempts=letter.attempts,
            error=letter.error,
            created_at=rfc3339(letter.created_at),
            next_retry_at=rfc3339(letter.next_retry_at),
            resolved_at=rfc3339(letter.resolved_at),
        )


class ErrorsReport(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    tenant: str
    include_resolved: bool
    dead_letters: list[DeadLetterRow]
    #: dead letters listed, per category
    counts: dict[str, int]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tenant_argument(parser)
    parser.add_argument("--all", action="store_true", help="include resolved dead letters")
    parser.add_argument("--json", action="store_true", help="print them as JSON")


async def _load(args: argparse.Namespace) -> ErrorsReport:
    # Reads the state only: the API keys need not be at hand.
    config = load_config(args.config, resolve_secrets=False)
    tenant = require_tenant(config, args.tenant)
    letters: list[DeadLetter] = []
    async with open_state(config) as store:
        if store is not None:
            letters = await store.dead_letters.list(tenant.id, include_resolved=args.all)
    rows = [DeadLetterRow.of(letter) for letter in letters]
    counts = Counter(row.category for row in rows)
    return ErrorsReport(
        tenant=tenant.id,
        include_resolved=args.all,
        dead_letters=rows,
        counts=dict(sorted(counts.items())),
    )


def run(args: argparse.Namespace) -> int:
    report = run_async(_load(args))
    if args.json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    else:
        _print(report, Console())
    return EXIT_OK


def _print(report: ErrorsReport, console: Console) -> None:
    kind = "dead letters" if report.include_resolved else "unresolved dead letters"
    if not report.dead_letters:
        console.print(f"{report.tenant}: no {kind}")
        return
    # The store lists them by category, then oldest first.
    for category, group in groupby(report.dead_letters, key=lambda row: row.category):
        table = Table(title=escape(category), title_justify="left")
        for name in ("id", "record", "attempts", "created at"):
            table.add_column(name, no_wrap=True, justify="right" if name == "id" else "left")
        if report.include_resolved:
            table.add_column("resolved at", no_wrap=True)
        table.add_column("error", overflow="fold")
        for row in group:
            cells = [
                str(row.id),
                escape(f"{row.crm_object}/{row.crm_record_id or '-'}"),
                str(row.attempts),
                row.created_at or "",
            ]
            if report.include_resolved:
                cells.append(row.resolved_at or "unresolved")
            table.add_row(*cells, escape(row.error))
        console.print(table)
    total = sum(report.counts.values())
    console.print(f"{report.tenant}: {total} {kind}")
    for category, count in report.counts.items():
        console.print(f"  {category}: {count}")
