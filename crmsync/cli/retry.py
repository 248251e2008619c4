"""`crmsync retry --tenant ID (--all | ERROR_ID)`: re-queue dead-lettered records.

Every sync pass re-reads all CRM records and skips the unchanged ones by content hash;
a record that was dead-lettered has no mapping (or an outdated hash), so the next pass
writes it again. Re-queueing therefore only has to close the dead letter: it is marked
resolved, and if the record fails again that pass opens a new one with the new error.
The database is opened read-write; its busy timeout lets this share it with a running
daemon.
"""

from __future__ import annotations

import argparse
from collections import Counter

from crmsync.cli.common import add_tenant_argument, open_state, require_tenant
from crmsync.config import load_config
from crmsync.daemon.loop import run_async
from crmsync.errors import EXIT_OK, UsageError
from crmsync.store import DeadLetter, Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_tenant_argument(parser)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="re-queue every unresolved one")
    which.add_argument(
        "error_id", nargs="?", type=int, metavar="ERROR_ID", help="a dead letter id (see errors)"
    )


async def _retry(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    tenant = require_tenant(config, args.tenant).id
    async with open_state(config, readonly=False) as store:
        if args.all:
            letters = [] if store is None else await store.dead_letters.list(tenant)
        else:
            letter = None if store is None else await store.dead_letters.get(tenant, args.error_id)
            if letter is None:
                raise UsageError(
                    f"unknown dead letter {args.error_id} for tenant '{tenant}' "
                    f"(see `crmsync errors --tenant {tenant}`)"
                )
            if letter.resolved_at is not None:
                print(f"{tenant}: dead letter {letter.id} is already resolved; nothing re-queued")
                return EXIT_OK
            letters = [letter]
        requeued = [] if store is None else await _requeue(store, tenant, letters)
    if not requeued:
        print(f"{tenant}: no unresolved dead letters; nothing re-queued")
        return EXIT_OK
    by_category = Counter(letter.category for letter in requeued)
    detail = ", ".join(f"{name}: {n}" for name, n in sorted(by_category.items()))
    noun = "dead letter" if len(requeued) == 1 else "dead letters"
    print(f"{tenant}: re-queued {len(requeued)} {noun} ({detail})")
    print(
        f"the next `crmsync sync --tenant {tenant}` (or the daemon's next pass) "
        "processes them again"
    )
    return EXIT_OK


async def _requeue(store: Store, tenant: str, letters: list[DeadLetter]) -> list[DeadLetter]:
    """Close them in one transaction; returns those this call closed (not a racing one)."""
    done = []
    async with store.transaction():
        for letter in letters:
            if await store.dead_letters.mark_resolved(tenant, letter.id):
                done.append(letter)
    return done


def run(args: argparse.Namespace) -> int:
    return run_async(_retry(args))
