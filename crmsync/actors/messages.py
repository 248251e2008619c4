"""Messages between the sync pipeline's actors (small, typed, matched with `match`).

fetcher ─RecordBatch/PageEnd─▶ transformer ─WriteItem/RecordFailed/PageEnd─▶ writer
       ─Outcome/RecordFailed/PageEnd─▶ mapping verifier; `EndOfStream` closes each queue.
A page's records all carry its `page`, and its `PageEnd` says how many there were, so
the verifier knows when every record of a page is settled and its cursor may be saved.
"""

from __future__ import annotations

import msgspec

from crmsync.actors.base import EndOfStream
from crmsync.adapters.base import CrmRecord
from crmsync.quo.models import ContactInput
from crmsync.store.mappings import SyncMethod, WriteAction


class RecordBatch(msgspec.Struct, frozen=True, tag=True):
    page: int
    records: list[CrmRecord]


class PageEnd(msgspec.Struct, frozen=True, tag=True):
    page: int
    crm_object: str
    record_count: int
    next_cursor: str | None


class WriteItem(msgspec.Struct, frozen=True, tag=True):
    page: int
    crm_object: str
    record_id: str
    contact: ContactInput
    content_hash: str


class RecordFailed(msgspec.Struct, frozen=True, tag=True):
    page: int
    crm_object: str
    record_id: str
    category: str
    error: str
    payload: str = ""


class Outcome(msgspec.Struct, frozen=True, tag=True):
    page: int
    crm_object: str
    record_id: str
    action: WriteAction
    quo_contact_id: str
    content_hash: str
    sync_method: SyncMethod


class BulkSubmitted(msgspec.Struct, frozen=True, tag=True):
    """Contacts accepted by `POST /contacts/bulk` (202): not yet visible, no ids yet."""

    items: list[WriteItem]
    submitted_at: float


def trace_id(crm_object: str, record_id: str) -> str:
    """Log field that follows one record from fetch to write (grep it, or filter JSON)."""
    return f"{crm_object}/{record_id}"


RawMessage = RecordBatch | PageEnd | EndOfStream
WriteMessage = WriteItem | RecordFailed | PageEnd | EndOfStream
VerifyMessage = Outcome | RecordFailed | PageEnd | BulkSubmitted | EndOfStream
