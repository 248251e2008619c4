"""Transformer: CRM records → Quo contact payloads with a content hash.

Pure CPU work; a record that cannot be transformed becomes a `RecordFailed` with a
category (dead-lettered downstream) and the page goes on.

A page is transformed `SLICE` records at a time, with a turn for the rest of the loop
between slices: a record costs ~0.1 ms (phone parsing), so a whole page of 100 held
the loop ~10 ms, and with 200 tenants such pages came several times a second, each
delaying every key's next limiter grant (a key whose grant fires late loses that time
for good).
"""

from __future__ import annotations

import asyncio
import logging

import msgspec

from crmsync import log_context, metrics
from crmsync.actors.base import Actor, EndOfStream
from crmsync.actors.messages import (
    PageEnd,
    RawMessage,
    RecordBatch,
    RecordFailed,
    WriteItem,
    WriteMessage,
    trace_id,
)
from crmsync.adapters.base import CrmAdapter, CrmRecord
from crmsync.domain.contact import TransformError, build_contact

log = logging.getLogger(__name__)

#: records transformed between two turns of the loop (about a millisecond of work)
SLICE = 10


class Transformer(Actor[RawMessage]):
    name = "transformer"

    def __init__(
        self,
        tenant: str,
        *,
        adapter: CrmAdapter,
        inbox: asyncio.Queue[RawMessage],
        out: asyncio.Queue[WriteMessage],
    ) -> None:
        super().__init__(tenant, inbox)
        self._adapter = adapter
        self._out = out
        self.dropped_phones = 0

    def _transform(self, page: int, record: CrmRecord) -> WriteItem | RecordFailed:
        with log_context.trace(trace_id(record.crm_object, record.record_id)):
            return self._transform_traced(page, record)

    def _transform_traced(self, page: int, record: CrmRecord) -> WriteItem | RecordFailed:
        try:
            result = build_contact(self._adapter.to_person(record), self._adapter.name)
        except TransformError as exc:
            category, error = exc.category, str(exc)
        except Exception as exc:  # a CRM quirk we did not foresee must not stop the sync
            log.exception("transform failed")
            category, error = "transform", f"{type(exc).__name__}: {exc}"
        else:
            self.dropped_phones += result.dropped_phones
            if result.dropped_phones:
                metrics.phones_dropped.labels(self.tenant).inc(result.dropped_phones)
                # Which records lose a number is what an operator asks next (`crmsync
                # demo` points here); named in the text, as text logs carry no trace id.
                # Debug: every polling pass transforms every record again.
                log.debug("%s/%s: %d phone number(s) left out: not readable as phone numbers",
                          record.crm_object, record.record_id, result.dropped_phones)
            else:
                log.debug("transformed")
            return WriteItem(
                page, record.crm_object, record.record_id, result.contact, result.content_hash
            )
        return RecordFailed(
            page, record.crm_object, record.record_id, category, error,
            msgspec.json.encode(record.raw).decode(),
        )

    async def run(self) -> None:
        while True:
            message = await self.receive()
            match message:
                case RecordBatch(page=page, records=records):
                    for index, record in enumerate(records):
                        if index and not index % SLICE:
                            await asyncio.sleep(0)  # a turn for other tenants' work
                        await self._out.put(self._transform(page, record))
                case PageEnd():
                    await self._out.put(message)
                case EndOfStream():
                    await self._out.put(message)
                    return
