"""On-demand CRM → Quo sync of chosen records (the management API's `POST …/sync`).

The same path as a CRM webhook (`CrmChangeHandler.write_record` after
`adapter.fetch_one`), on the live lane, recorded as sync method `manual`. Each id is
its own outcome: a record the CRM does not have is a `not_found` failure (never a
delete: the caller asked to sync it, not to remove it), and every failure is a dead
letter with its INTERFACE §9 category (`crmsync errors`) and a `failed` count in
`crmsync_records_synced_total`. A record synced here closes its open dead letters.

Ids are handled by `concurrency` workers at a time; their Quo calls go through the
tenant's one limiter like every other call, so a thousand ids finish at the Quo rate
limit and never above it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Final

import msgspec

from crmsync.adapters.base import CrmAdapter, CrmRecord
from crmsync.domain.contact import TransformError
from crmsync.net.errors import ApiError
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.store import Store

log = logging.getLogger(__name__)

#: the error categories of INTERFACE §9 (results and dead letters)
CATEGORIES: Final = (
    "validation", "auth", "not_found", "conflict", "rate_limited", "transport", "remote",
)
#: ids handled at the same time: enough to keep the tenant's Quo limiter busy
DEFAULT_CONCURRENCY: Final = 8


class ResultError(msgspec.Struct, frozen=True, kw_only=True):
    category: str
    message: str


class RecordResult(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    """One id's outcome; `action` is the write's (`created`, `updated`, `linked`,
    `unchanged`) or `failed`."""

    crm_record_id: str
    ok: bool
    quo_contact_id: str | None = None
    action: str = "failed"
    error: ResultError | None = None


class SyncReport(msgspec.Struct, frozen=True, kw_only=True):
    """The aggregate answer of a bulk call (INTERFACE §9)."""

    total: int
    succeeded: int
    failed: int
    results: list[RecordResult]

    @classmethod
    def of(cls, results: list[RecordResult]) -> SyncReport:
        succeeded = sum(result.ok for result in results)
        return cls(total=len(results), succeeded=succeeded,
                   failed=len(results) - succeeded, results=results)


def error_category(exc: Exception) -> str:
    """The §9 category of a failure of one record."""
    if isinstance(exc, TransformError):
        return "validation"  # the record itself cannot be a Quo contact
    if isinstance(exc, ApiError):
        return exc.category if exc.category in CATEGORIES else "remote"
    raise TypeError(f"no error category for {type(exc).__name__}")  # a bug: not a result


class OnDemandSync:
    def __init__(
        self,
        tenant: str,
        *,
        adapter: CrmAdapter,
        store: Store,
        handler: CrmChangeHandler,
        crm_objects: Sequence[str],
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.tenant = tenant
        self._adapter = adapter
        self._store = store
        self._handler = handler  # its sync method is `manual`
        self._crm_objects = tuple(crm_objects)
        self._concurrency = max(1, concurrency)

    async def sync(self, record_ids: Sequence[str]) -> SyncReport:
        """Sync every id (a repeated id once), in the order given."""
        ids = list(dict.fromkeys(record_ids))
        results: dict[str, RecordResult] = {}
        pending = iter(ids)

        async def worker() -> None:
            for record_id in pending:  # shared: each id is taken by one worker
                results[record_id] = await self.sync_one(record_id)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self._concurrency, len(ids))):
                group.create_task(worker())
        return SyncReport.of([results[record_id] for record_id in ids])

    async def sync_one(self, record_id: str) -> RecordResult:
        crm_object = self._crm_objects[0]
        try:
            record = await self._fetch(record_id)
            if record is None:
                return await self._failed(
                    crm_object, record_id, "not_found", f"the CRM has no record {record_id}"
                )
            crm_object = record.crm_object
            action, contact_id = await self._handler.write_record(record)
        except (TransformError, ApiError) as exc:
            return await self._failed(crm_object, record_id, error_category(exc), str(exc))
        await self._store.dead_letters.resolve_for_record(self.tenant, crm_object, record_id)
        return RecordResult(
            crm_record_id=record_id, ok=True, quo_contact_id=contact_id, action=action
        )

    async def _fetch(self, record_id: str) -> CrmRecord | None:
        """The record from the first of the tenant's CRM objects that has it."""
        for crm_object in self._crm_objects:
            record = await self._adapter.fetch_one(crm_object, record_id)
            if record is not None:
                return record
        return None

    async def _failed(
        self, crm_object: str, record_id: str, category: str, message: str
    ) -> RecordResult:
        log.warning("on-demand sync of %s failed (%s): %s", record_id, category, message)
        await self._handler.record_failure(crm_object, record_id, category, message)
        return RecordResult(
            crm_record_id=record_id, ok=False,
            error=ResultError(category=category, message=message),
        )
