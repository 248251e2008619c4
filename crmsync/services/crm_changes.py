"""Live CRM changes: a webhook says a record changed; make Quo match it.

CRM webhooks carry ids, not values, so every change re-fetches the record and writes
what the CRM holds *now*: repeated or reordered events converge on the same state.
A record the CRM no longer has is deleted only when a direct fetch confirms the 404,
and its Quo contact is removed only if crmsync made it (mapped, and its `source` is
ours); the mapping is marked deleted, never dropped.
"""

from __future__ import annotations

import contextlib
import logging
import time

from crmsync import metrics
from crmsync.adapters.base import CrmAdapter, CrmRecord, WebhookEvent
from crmsync.domain.contact import TransformError, build_contact
from crmsync.net.ratelimit import Lane
from crmsync.quo.client import QuoClient
from crmsync.quo.errors import QuoNotFoundError, QuoValidationError
from crmsync.services.contact_writes import RecordWriter, mapping_row
from crmsync.store import Store
from crmsync.store.mappings import SyncMethod

log = logging.getLogger(__name__)


class CrmChangeHandler:
    def __init__(
        self,
        tenant: str,
        *,
        adapter: CrmAdapter,
        store: Store,
        quo: QuoClient,
        records: RecordWriter,
        sync_method: SyncMethod = "webhook",
    ) -> None:
        self.tenant = tenant
        self._adapter = adapter
        self._store = store
        self._quo = quo
        self._records = records
        self._sync_method = sync_method

    async def handle(self, event: WebhookEvent) -> list[str]:
        """Apply every change of the event; returns the actions taken."""
        actions = []
        for change in event.changes:
            if change.merged_from:
                # The duplicate is gone and its data lives on in the surviving record.
                actions.append(await self.apply_deleted(change.crm_object, change.merged_from))
            if change.kind == "deleted":
                actions.append(await self.apply_deleted(change.crm_object, change.record_id))
                continue
            record = await self._adapter.fetch_one(change.crm_object, change.record_id)
            if record is None:
                actions.append(await self.apply_deleted(change.crm_object, change.record_id))
            else:
                actions.append(await self.apply_record(record))
        return actions

    async def apply_record(self, record: CrmRecord) -> str:
        try:
            action, _ = await self.write_record(record)
        except TransformError as exc:
            await self._dead_letter(record, exc.category, str(exc))
            return "failed"
        except QuoValidationError as exc:
            await self._dead_letter(record, "quo_validation", str(exc))
            return "failed"
        return action

    async def write_record(self, record: CrmRecord) -> tuple[str, str]:
        """Write the record to Quo and save its mapping; returns (action, Quo contact id).

        Raises what failed (`TransformError`, the Quo errors): `apply_record` dead-letters
        the record's own failures and lets the others reach the inbox's retries; the
        management API's on-demand sync (`services/on_demand.py`) reports each one.
        """
        result = build_contact(self._adapter.to_person(record), self._adapter.name)
        if result.dropped_phones:
            metrics.phones_dropped.labels(self.tenant).inc(result.dropped_phones)
        action, contact_id = await self._records.write(
            record.crm_object, record.record_id, result.contact, result.content_hash
        )
        await self._store.mappings.save_synced([mapping_row(
            self.tenant, crm_object=record.crm_object,
            record_id=record.record_id, quo_contact_id=contact_id, action=action,
            content_hash=result.content_hash, sync_method=self._sync_method,
        )])
        await self._count(action)
        return action, contact_id

    async def record_failure(
        self, crm_object: str, record_id: str, category: str, error: str
    ) -> None:
        """A record that could not be synced: a dead letter and the `failed` count."""
        await self._store.dead_letters.add(self.tenant, crm_object, record_id, category, "", error)
        await self._count("failed")

    async def apply_deleted(self, crm_object: str, record_id: str) -> str:
        """Delete only after the CRM confirms the record is gone, and only our contact."""
        mapping = await self._store.mappings.get(self.tenant, crm_object, record_id)
        if mapping is None or mapping.deleted_at is not None:
            return "ignored"
        if await self._adapter.fetch_one(crm_object, record_id) is not None:
            return "ignored"  # still there: a stale or misdirected delete event
        try:
            contact = await self._quo.get_contact(mapping.quo_contact_id, lane=Lane.LIVE)
        except QuoNotFoundError:
            contact = None
        if contact is not None and contact.source == self._adapter.name:
            with contextlib.suppress(QuoNotFoundError):  # already gone: the goal
                await self._quo.delete_contact(contact.id, lane=Lane.LIVE)
        elif contact is not None:
            log.info("record %s deleted in the CRM; its Quo contact %s is not ours (source %r),"
                     " left in place", record_id, contact.id, contact.source)
        await self._store.mappings.mark_deleted(self.tenant, crm_object, record_id, time.time())
        await self._count("deleted")
        return "deleted"

    async def _count(self, action: str) -> None:
        metrics.records_synced.labels(self.tenant, action).inc()
        run = await self._store.runs.latest(self.tenant)
        if run is not None and action != "ignored":
            await self._store.runs.add_counts(self.tenant, run.id, **{action: 1})

    async def _dead_letter(self, record: CrmRecord, category: str, error: str) -> None:
        await self.record_failure(record.crm_object, record.record_id, category, error)
