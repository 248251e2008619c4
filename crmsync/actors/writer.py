"""Quo writer: turns each `WriteItem` into exactly one Quo contact.

Per record, in order of preference:
  unchanged content hash     → no Quo request at all;
  mapped, content differs    → PATCH with the full payload (Quo replaces arrays);
  not mapped                 → note the intent ("creating X") in the store, then create;
  409 (duplicate externalId) → look the contact up by externalId, PATCH only if it
                               differs, and link it.
An intent still open from before a crash means a create may have reached Quo: the
record is looked up by externalId first, never blindly created again.

With `bulk_create`, creates are batched into `POST /contacts/bulk` (202, no ids) and
handed to the mapping verifier, which finds them by externalId.
"""

from __future__ import annotations

import asyncio
import logging
import time

from crmsync.actors.base import Actor, EndOfStream
from crmsync.actors.messages import (
    BulkSubmitted,
    Outcome,
    PageEnd,
    RecordFailed,
    VerifyMessage,
    WriteItem,
    WriteMessage,
)
from crmsync.quo.errors import QuoAuthError, QuoError
from crmsync.services.contact_writes import QuoContactSync, RecordWriter, failure_category
from crmsync.store import Store
from crmsync.store.mappings import SyncMethod, WriteAction

log = logging.getLogger(__name__)



class QuoWriter(Actor[WriteMessage]):
    name = "quo_writer"

    def __init__(
        self,
        tenant: str,
        *,
        sync: QuoContactSync,
        store: Store,
        inbox: asyncio.Queue[WriteMessage],
        out: asyncio.Queue[VerifyMessage],
        concurrency: int,
        sync_method: SyncMethod,
        bulk_batch_size: int | None = None,
    ) -> None:
        super().__init__(tenant, inbox)
        self._sync = sync
        self._store = store
        self._records = RecordWriter(tenant, store=store, sync=sync)
        self._out = out
        self._slots = asyncio.Semaphore(concurrency)
        self._sync_method = sync_method
        self._bulk_batch_size = bulk_batch_size
        self._bulk_buffer: list[WriteItem] = []
        self._in_flight: dict[tuple[str, str], asyncio.Event] = {}

    async def _write(self, item: WriteItem) -> Outcome | RecordFailed | None:
        """The outcome, or None when the item went into the bulk buffer."""
        args = (item.crm_object, item.record_id, item.contact, item.content_hash)
        known = await self._records.existing(*args)
        if known is not None:
            return self._outcome(item, *known)
        if self._bulk_batch_size:
            self._bulk_buffer.append(item)
            return None
        return self._outcome(item, *await self._records.create(*args))

    def _outcome(self, item: WriteItem, action: WriteAction, contact_id: str) -> Outcome:
        return Outcome(
            item.page, item.crm_object, item.record_id, action,
            contact_id, item.content_hash, self._sync_method,
        )

    async def _handle(self, item: WriteItem) -> None:
        key = (item.crm_object, item.record_id)
        # Offset paging can hand us the same record twice; never write it concurrently.
        while (busy := self._in_flight.get(key)) is not None:
            await busy.wait()
        done = self._in_flight[key] = asyncio.Event()
        try:
            try:
                result = await self._write(item)
            except QuoAuthError:
                raise  # the whole tenant is misconfigured: let the supervisor park it
            except QuoError as exc:
                result = RecordFailed(
                    item.page, item.crm_object, item.record_id, failure_category(exc), str(exc)
                )
            if result is not None:
                await self._out.put(result)
            if self._bulk_batch_size and len(self._bulk_buffer) >= self._bulk_batch_size:
                await self._flush_bulk()
        finally:
            del self._in_flight[key]
            done.set()
            self._slots.release()

    async def _flush_bulk(self) -> None:
        batch, self._bulk_buffer = self._bulk_buffer, []
        if not batch:
            return
        for item in batch:
            await self._store.intents.begin(
                self.tenant, item.crm_object, item.record_id, "bulk_create", item.content_hash
            )
        try:
            await self._sync.bulk_create([item.contact for item in batch])
        except QuoAuthError:
            raise
        except QuoError as exc:
            for item in batch:
                await self._out.put(RecordFailed(
                    item.page, item.crm_object, item.record_id, failure_category(exc), str(exc)
                ))
            return
        await self._out.put(BulkSubmitted(batch, time.time()))

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            while True:
                message = await self.receive()
                match message:
                    case WriteItem():
                        await self._slots.acquire()
                        tasks.create_task(self._handle(message))
                    case RecordFailed() | PageEnd():
                        await self._out.put(message)
                    case EndOfStream():
                        break
        await self._flush_bulk()
        await self._out.put(EndOfStream())
