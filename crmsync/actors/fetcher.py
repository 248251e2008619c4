"""Fetcher: pages through the CRM from the saved cursor and feeds the transformer.

Without a saved cursor an object's listing starts at its start cursor (an incremental
pass: the records changed since the watermark) or, without one, at the top.

It never commits a cursor itself: the mapping verifier does, once every record of a
page is written and mapped, so a crash re-fetches at most the unfinished pages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from crmsync import metrics
from crmsync.actors.base import Actor, EndOfStream
from crmsync.actors.messages import PageEnd, RawMessage, RecordBatch
from crmsync.adapters.base import CrmAdapter
from crmsync.store import Store
from crmsync.store.checkpoints import CURSOR, CURSOR_DONE

log = logging.getLogger(__name__)


class Fetcher(Actor[None]):
    name = "fetcher"

    def __init__(
        self,
        tenant: str,
        *,
        adapter: CrmAdapter,
        store: Store,
        crm_objects: list[str],
        page_size: int,
        out: asyncio.Queue[RawMessage],
        start_cursors: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(tenant, None)
        self._adapter = adapter
        self._store = store
        self._crm_objects = crm_objects
        self._page_size = page_size
        self._out = out
        self._start_cursors = dict(start_cursors or {})

    async def run(self) -> None:
        page = 0
        for crm_object in self._crm_objects:
            cursor = await self._store.checkpoints.get(self.tenant, crm_object, CURSOR)
            if cursor == CURSOR_DONE:
                continue
            if cursor:
                log.info("resuming %s from cursor %s", crm_object, cursor)
            else:
                cursor = self._start_cursors.get(crm_object)
            while True:
                result = await self._adapter.fetch_page(crm_object, cursor, self._page_size)
                fetched = len(result.records)
                metrics.records_fetched.labels(self.tenant, crm_object).inc(fetched)
                await self._out.put(RecordBatch(page, result.records))
                await self._out.put(PageEnd(page, crm_object, fetched, result.next_cursor))
                page += 1
                if result.next_cursor is None:
                    break
                cursor = result.next_cursor
        await self._out.put(EndOfStream())
