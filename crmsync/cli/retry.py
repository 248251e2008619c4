"""`crmsync retry --tenant ID (--all | ERROR_ID)`: re-queue dead-lettered work.

Sync records: every sync pass re-reads all CRM records and skips the unchanged ones by
content hash; a record that was dead-lettered has no mapping (or an outdated hash), so
the next pass writes it again. Re-queueing therefore only has to close the dead letter:
it is marked resolved, and if the record fails again that pass opens a new one.

Webhook events (`webhook_failed`): no pass would ever see them again, so the event's
inbox row goes back to pending, due now with a fresh retry window, in the same
transaction that resolves the letter (never one without the other). The daemon's inbox
processor applies it (`crmsync run`, once started), or
`crmsync inbox replay` does in the foreground.

The database is opened read-write, which takes the state lock (one writer per state
file): beside a running daemon this is refused with one line (exit 2); stop the daemon
first.
"""

from __future__ import annotations

import argparse
from collections import Counter

from crmsync.cli.common import add_tenant_argument, open_state, require_tenant
from crmsync.config import load_config
from crmsync.daemon.loop import run_async
from crmsync.errors import EXIT_OK, UsageError
from crmsync.store import DeadLetter, Store
from crmsync.store.dead_letters import WEBHOOK_FAILED


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
    async with open_state(
        config, readonly=False, command=f"crmsync retry --tenant {tenant}"
    ) as store:
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
        requeued, events = ([], 0) if store is None else await _requeue(store, tenant, letters)
    if not requeued:
        print(f"{tenant}: no unresolved dead letters; nothing re-queued")
        return EXIT_OK
    by_category = Counter(letter.category for letter in requeued)
    detail = ", ".join(f"{name}: {n}" for name, n in sorted(by_category.items()))
    noun = "dead letter" if len(requeued) == 1 else "dead letters"
    print(f"{tenant}: re-queued {len(requeued)} {noun} ({detail})")
    if len(requeued) > by_category[WEBHOOK_FAILED]:
        print(
            f"the next `crmsync sync --tenant {tenant}` (or the daemon's next pass) "
            "processes the records again"
        )
    if by_category[WEBHOOK_FAILED]:
        print(
            f"{events} webhook {'event is' if events == 1 else 'events are'} pending again: "
            f"the daemon (`crmsync run`) applies them, or "
            f"`crmsync inbox replay --tenant {tenant} EVENT_ID` does now"
        )
    return EXIT_OK


async def _requeue(
    store: Store, tenant: str, letters: list[DeadLetter]
) -> tuple[list[DeadLetter], int]:
    """Close them in one transaction, re-queueing the inbox event of each webhook letter
    in it; returns the letters this call closed (not a racing one) and the events it
    re-queued."""
    done = []
    events = 0
    async with store.transaction():
        for letter in letters:
            if not await store.dead_letters.mark_resolved(tenant, letter.id):
                continue
            done.append(letter)
            if letter.category == WEBHOOK_FAILED and letter.crm_record_id is not None:
                events += await store.inbox.requeue_failed(tenant, letter.crm_record_id)
    return done, events


def run(args: argparse.Namespace) -> int:
    return run_async(_retry(args))
