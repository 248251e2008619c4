"""Storing a record's outcome: its mapping row and the settled intent, atomically."""

from __future__ import annotations

import time

from crmsync.store import Store
from crmsync.store.mappings import Action, Mapping, SyncMethod


async def save_mapping(
    store: Store,
    tenant: str,
    *,
    crm_object: str,
    record_id: str,
    quo_contact_id: str,
    action: Action,
    content_hash: str,
    sync_method: SyncMethod,
    entity_type: str = "person",
) -> None:
    row = Mapping(
        tenant_id=tenant,
        crm_object=crm_object,
        crm_record_id=record_id,
        quo_contact_id=quo_contact_id,
        entity_type=entity_type,
        sync_method=sync_method,
        action=action,
        content_hash=content_hash,
        last_synced_at=time.time(),
    )
    async with store.transaction():
        # Unchanged keeps the row's action and sync method: they say how it was made.
        if action != "unchanged" or not await store.mappings.touch(
            tenant, crm_object, record_id, row.last_synced_at
        ):
            await store.mappings.upsert(row)
        await store.intents.settle(tenant, crm_object, record_id)
        await store.dead_letters.resolve_for_record(tenant, crm_object, record_id)
