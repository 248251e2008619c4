"""Mapping verifier: the one place where sync results become durable.

For every record it stores the mapping (CRM id ↔ Quo contact id) and settles the
write intent in one transaction, or dead-letters a failure. It knows how many records
each page had (`PageEnd`), so it commits a page's cursor only when all of them are
settled and every earlier page is committed too: a restart resumes with no gap.

Bulk creates (`BulkSubmitted`) come without ids: the verifier lists them by
`externalId` (≤20 per request) after a short delay, retrying with backoff until all
are found or the deadline passes; every found contact gets its mapping, and one that
never shows up is created singly and reported.

The outcomes waiting in its inbox are saved together, in one transaction (a unit of
work run in one hop to SQLite's thread): with 200 tenants syncing, a transaction per
record bounded the whole process at ~300 contacts/s.

Each of its store writes is timed into `crmsync_store_write_seconds{tenant, write}`
(`mapping`: a record's mapping and settled intent, the unit it was saved in;
`checkpoint`: a page's cursor and counts; `dead_letter`): what the pipeline waits for
the store, its lock included, since every tenant's writes go through the one state
database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import Histogram

from crmsync import log_context, metrics
from crmsync.actors.base import Actor, EndOfStream
from crmsync.actors.messages import (
    BulkSubmitted,
    Outcome,
    PageEnd,
    RecordFailed,
    VerifyMessage,
    WriteItem,
    trace_id,
)
from crmsync.net.retry import RetryPolicy
from crmsync.quo.errors import QuoAuthError, QuoError
from crmsync.services.contact_writes import QuoContactSync, failure_category, mapping_row
from crmsync.store import Store
from crmsync.store.checkpoints import CURSOR_DONE

log = logging.getLogger(__name__)

#: outcomes saved in one unit of work at most (3 statements each, one commit)
OUTCOME_BATCH = 100

store_write_seconds = Histogram(
    "crmsync_store_write_seconds",
    "Time a sync pass waited for one write to the state store (mapping | checkpoint |"
    " dead_letter), the store's lock and the commit included",
    ["tenant", "write"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


@contextlib.contextmanager
def _timed(histogram: Histogram) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        histogram.observe(time.perf_counter() - started)


@dataclass
class _Page:
    crm_object: str = ""
    expected: int | None = None
    settled: int = 0
    next_cursor: str | None = None
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def complete(self) -> bool:
        return self.expected is not None and self.settled >= self.expected


@dataclass
class BulkOptions:
    first_check_after: float = 1.0
    deadline: float = 60.0
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(base_delay=0.5, max_delay=5))


class MappingVerifier(Actor[VerifyMessage]):
    name = "mapping_verifier"

    def __init__(
        self,
        tenant: str,
        *,
        store: Store,
        sync: QuoContactSync,
        inbox: asyncio.Queue[VerifyMessage],
        run_id: int,
        entity_type: str = "person",
        bulk: BulkOptions | None = None,
        on_settled: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(tenant, inbox)
        self._store = store
        self._sync = sync
        self._run_id = run_id
        self._entity_type = entity_type
        self._bulk = bulk or BulkOptions()
        self._on_settled = on_settled
        self._pages: dict[int, _Page] = {}
        self._next_page_to_commit = 0
        # Bulk checks settle records from their own tasks: one committer at a time, or
        # two would commit the same page and the second would drop the next one.
        self._committing = asyncio.Lock()
        self.bulk_missing: list[str] = []
        self._write_seconds = {
            write: store_write_seconds.labels(tenant, write)
            for write in ("mapping", "checkpoint", "dead_letter")
        }

    def _count_settled(self, page: int, action: str) -> None:
        state = self._pages.setdefault(page, _Page())
        state.settled += 1
        state.counts[action] += 1
        if self._on_settled:
            self._on_settled(action)

    async def _settle(self, page: int, action: str) -> None:
        self._count_settled(page, action)
        await self._commit_finished_pages()

    async def _record_outcome(self, outcome: Outcome) -> None:
        await self._record_outcomes([outcome])

    async def _record_outcomes(self, outcomes: list[Outcome]) -> None:
        """Save the outcomes' mappings in one unit of work, then settle each.

        Once sent, the save is seen through before a cancellation goes on, and its
        records are counted as settled: their mappings are stored, so an interrupted
        run counts them (`uncommitted_counts`), like any settled record.
        """
        started = time.perf_counter()
        save = asyncio.ensure_future(self._store.mappings.save_synced([
            mapping_row(
                self.tenant, crm_object=outcome.crm_object, record_id=outcome.record_id,
                quo_contact_id=outcome.quo_contact_id, action=outcome.action,
                content_hash=outcome.content_hash, sync_method=outcome.sync_method,
                entity_type=self._entity_type,
            )
            for outcome in outcomes
        ]))
        try:
            await asyncio.shield(save)
        except asyncio.CancelledError:
            await asyncio.wait({save})
            if not save.cancelled() and save.exception() is None:
                for outcome in outcomes:
                    self._count_settled(outcome.page, outcome.action)
            raise
        # Each record waited for the whole unit: that is its mapping write's time.
        elapsed = time.perf_counter() - started
        for outcome in outcomes:
            self._write_seconds["mapping"].observe(elapsed)
            with log_context.trace(trace_id(outcome.crm_object, outcome.record_id)):
                log.debug("%s as Quo contact %s (%s)", outcome.action,
                          outcome.quo_contact_id, outcome.sync_method)
            self._count_settled(outcome.page, outcome.action)
        await self._commit_finished_pages()

    def _more_outcomes(self, first: Outcome) -> tuple[list[Outcome], VerifyMessage | None]:
        """`first` and the outcomes queued right behind it (up to `OUTCOME_BATCH`), and
        the message that stopped the run of outcomes, if any: saved as one unit, they
        cost one commit (and one hop to SQLite's thread) instead of one each."""
        assert self.inbox is not None
        outcomes = [first]
        while len(outcomes) < OUTCOME_BATCH and not self.inbox.empty():
            queued = self.inbox.get_nowait()
            if not isinstance(queued, Outcome):
                return outcomes, queued
            outcomes.append(queued)
        return outcomes, None

    async def _record_failure(self, failed: RecordFailed) -> None:
        with _timed(self._write_seconds["dead_letter"]):
            await self._store.dead_letters.add(
                self.tenant, failed.crm_object, failed.record_id, failed.category,
                failed.payload, failed.error,
            )
        with log_context.trace(trace_id(failed.crm_object, failed.record_id)):
            log.warning("record %s failed (%s): %s", failed.record_id, failed.category,
                        failed.error)
        await self._settle(failed.page, "failed")

    async def _commit_finished_pages(self) -> None:
        async with self._committing:
            await self._commit_in_order()

    async def _commit_in_order(self) -> None:
        while (page := self._pages.get(self._next_page_to_commit)) and page.complete:
            # A commit that started is seen through before a cancellation goes on, so
            # `_pages` holds exactly the uncommitted pages (`uncommitted_counts`). A
            # cancelled COMMIT would otherwise still land on the connection's thread
            # while its page stayed here, and an interrupted run would count it twice.
            commit = asyncio.ensure_future(self._commit_page(page))
            try:
                await asyncio.shield(commit)
            except asyncio.CancelledError:
                await asyncio.wait({commit})
                raise

    async def _commit_page(self, page: _Page) -> None:
        # Counts go in with the cursor: a pass restarted after a crash redoes only
        # uncommitted pages, and counts each record once.
        with _timed(self._write_seconds["checkpoint"]):
            await self._commit_page_rows(page)
        for action, count in page.counts.items():
            metrics.records_synced.labels(self.tenant, action).inc(count)
        del self._pages[self._next_page_to_commit]
        self._next_page_to_commit += 1

    async def _commit_page_rows(self, page: _Page) -> None:
        await self._store.checkpoints.commit_page(
            self.tenant, page.crm_object, page.next_cursor or CURSOR_DONE,
            run_id=self._run_id, counts={"fetched": page.expected or 0, **page.counts},
        )

    def uncommitted_counts(self) -> Counter[str]:
        """What the records settled in pages not committed yet came to, by action.

        For a pass that is stopped for good: its run still counts them (their mappings
        are stored). A pass restarted after a crash must not: it redoes those pages.
        """
        total: Counter[str] = Counter()
        for page in self._pages.values():
            total.update(page.counts)
        return total

    async def _verify_bulk(self, submitted: BulkSubmitted) -> None:
        pending: dict[str, WriteItem] = {item.record_id: item for item in submitted.items}
        deadline = submitted.submitted_at + self._bulk.deadline
        await asyncio.sleep(
            max(0.0, submitted.submitted_at + self._bulk.first_check_after - time.time())
        )
        attempt = 0
        while pending:
            found = await self._sync.find_many(list(pending))
            for record_id, contact_id in found.items():
                item = pending.pop(record_id)
                await self._record_outcome(Outcome(
                    item.page, item.crm_object, item.record_id, "created", contact_id,
                    item.content_hash, "bulk",
                ))
            remaining = deadline - time.time()
            if not pending or remaining <= 0:
                break
            await asyncio.sleep(min(remaining, 0.25 + self._bulk.retry.backoff(attempt)))
            attempt += 1
        for item in pending.values():
            await self._create_missing(item)

    async def _create_missing(self, item: WriteItem) -> None:
        log.warning("bulk-created contact %s never appeared by the deadline; creating it"
                    " singly", item.record_id)
        self.bulk_missing.append(item.record_id)
        try:
            action, contact_id = await self._sync.create(item.record_id, item.contact)
        except QuoAuthError:
            raise
        except QuoError as exc:
            await self._record_failure(RecordFailed(
                item.page, item.crm_object, item.record_id, failure_category(exc), str(exc)
            ))
            return
        await self._record_outcome(Outcome(
            item.page, item.crm_object, item.record_id, action, contact_id,
            item.content_hash, "initial",
        ))

    async def run(self) -> None:
        held: VerifyMessage | None = None  # taken from the inbox, not handled yet
        async with asyncio.TaskGroup() as bulk_checks:
            while True:
                if held is None:
                    message = await self.receive()
                else:
                    message, held = held, None
                match message:
                    case Outcome():
                        outcomes, held = self._more_outcomes(message)
                        await self._record_outcomes(outcomes)
                    case RecordFailed():
                        await self._record_failure(message)
                    case PageEnd(page=page, crm_object=crm_object):
                        state = self._pages.setdefault(page, _Page())
                        state.crm_object = crm_object
                        state.expected = message.record_count
                        state.next_cursor = message.next_cursor
                        await self._commit_finished_pages()
                    case BulkSubmitted():
                        bulk_checks.create_task(self._verify_bulk(message))
                    case EndOfStream():
                        break
