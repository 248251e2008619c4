"""`crmsync mappings --tenant ID [--format jsonl|csv]`: export CRM record ↔ Quo contact pairs.

Rows are streamed from the store a chunk at a time (keyset paging), so exporting a
large tenant neither loads it whole nor holds a read transaction open for long.
Deleted records keep their mapping (action `deleted`) and are exported too.

Nothing to export is said on stderr, and only when stdout is a terminal: a person
looking at an empty screen wants to know why, while `> file` and pipes must stay valid
jsonl (empty) or csv (the header alone).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from typing import TextIO

import msgspec

from crmsync.cli.common import add_tenant_argument, open_state, require_tenant
from crmsync.config import load_config
from crmsync.daemon.loop import run_async
from crmsync.domain.mapping_rows import COLUMNS, MappingRow
from crmsync.errors import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tenant_argument(parser)
    parser.add_argument(
        "--format", choices=("jsonl", "csv"), default="jsonl", help="output format (jsonl)"
    )


async def _export(args: argparse.Namespace, out: TextIO) -> int:
    """Write the tenant's mappings to `out`; returns how many."""
    # Reads the state only: the API keys need not be at hand.
    config = load_config(args.config, resolve_secrets=False)
    tenant = require_tenant(config, args.tenant)
    writer = None
    if args.format == "csv":
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
    encoder = msgspec.json.Encoder()
    written = 0
    async with open_state(config) as store:
        if store is None:
            return 0
        async for mapping in store.mappings.iter_all(tenant.id, include_deleted=True):
            row = MappingRow.of(mapping)
            if writer is None:
                out.write(encoder.encode(row).decode() + "\n")
            else:
                writer.writerow(["" if v is None else v for v in msgspec.structs.astuple(row)])
            written += 1
    return written


def run(args: argparse.Namespace) -> int:
    try:
        written = run_async(_export(args, sys.stdout))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): that ends the export, it is not an error.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    if written == 0 and sys.stdout.isatty():
        print(f"{args.tenant}: no mappings yet (a sync pass makes them: `crmsync sync "
              f"--tenant {args.tenant}` or the daemon)", file=sys.stderr)
    return EXIT_OK
