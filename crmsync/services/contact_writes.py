"""Writing one CRM record to Quo: create/update/link without a duplicate, then map it.

Shared by the initial-sync writer, the bulk verifier and the live (webhook) path; the
lane says whether these calls go before backfill in the key's limiter. `save_mapping`
stores the outcome: the mapping row and the settled intent, atomically.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from crmsync.domain.contact import content_hash
from crmsync.net.ratelimit import Lane
from crmsync.quo.client import QuoClient
from crmsync.quo.errors import (
    QuoConflictError,
    QuoError,
    QuoNotFoundError,
    QuoValidationError,
)
from crmsync.quo.models import Contact, ContactInput, DefaultFields, LabeledValue
from crmsync.store import Store
from crmsync.store.mappings import Mapping, SyncMethod, WriteAction


def as_input(contact: Contact) -> ContactInput:
    """What we would have sent to produce `contact` (ids of emails/phones dropped)."""
    fields = contact.default_fields
    return ContactInput(
        default_fields=DefaultFields(
            first_name=fields.first_name,
            last_name=fields.last_name,
            company=fields.company,
            role=fields.role,
            emails=[LabeledValue(name=e.name, value=e.value) for e in fields.emails],
            phone_numbers=[LabeledValue(name=p.name, value=p.value) for p in fields.phone_numbers],
        ),
        external_id=contact.external_id,
        source=contact.source,
        source_url=contact.source_url,
    )


class QuoContactSync:
    def __init__(self, quo: QuoClient, *, lane: Lane = Lane.BACKFILL) -> None:
        self._quo = quo
        self._lane = lane

    async def update(self, contact_id: str, contact: ContactInput) -> str | None:
        """PATCH the full payload; None if the contact no longer exists in Quo."""
        try:
            updated = await self._quo.update_contact(contact_id, contact, lane=self._lane)
        except QuoNotFoundError:
            return None
        return updated.id

    async def link_existing(self, external_id: str, contact: ContactInput) -> str | None:
        """The id of the contact already carrying `external_id`, brought up to date."""
        existing = await self._quo.find_contact_by_external_id(external_id, lane=self._lane)
        if existing is None:
            return None
        if content_hash(as_input(existing)) != content_hash(contact):
            await self._quo.update_contact(existing.id, contact, lane=self._lane)
        return existing.id

    async def create(self, external_id: str, contact: ContactInput) -> tuple[WriteAction, str]:
        try:
            created = await self._quo.create_contact(contact, lane=self._lane)
        except QuoConflictError:
            # Quo's 409 does not say which field conflicts; externalId is the one we own.
            linked = await self.link_existing(external_id, contact)
            if linked is None:
                raise
            return "linked", linked
        return "created", created.id

    async def bulk_create(self, contacts: Sequence[ContactInput]) -> None:
        await self._quo.bulk_create_contacts(contacts, lane=self._lane)

    async def find_many(self, external_ids: Sequence[str]) -> dict[str, str]:
        """externalId → Quo contact id for those that exist (≤20 ids per request)."""
        found = await self._quo.list_contacts_by_external_ids(external_ids, lane=self._lane)
        wanted = set(external_ids)
        return {c.external_id: c.id for c in found if c.external_id in wanted}


class RecordWriter:
    """The per-record decision shared by the initial-sync writer and live changes.

    unchanged hash → nothing; mapped → PATCH; an open intent from a crash → look up
    before creating; otherwise intent, create, (409 → link). Mappings are not written
    here: the caller stores them with the outcome.
    """

    def __init__(self, tenant: str, *, store: Store, sync: QuoContactSync) -> None:
        self.tenant = tenant
        self._store = store
        self.sync = sync

    async def existing(
        self, crm_object: str, record_id: str, contact: ContactInput, content_hash: str
    ) -> tuple[WriteAction, str] | None:
        """The outcome when the record needs no create, else None."""
        mapping = await self._store.mappings.get(self.tenant, crm_object, record_id)
        if mapping is not None and mapping.deleted_at is None:
            if mapping.content_hash == content_hash:
                return "unchanged", mapping.quo_contact_id
            updated = await self.sync.update(mapping.quo_contact_id, contact)
            if updated is not None:
                return "updated", updated
            # The contact was deleted in Quo: it is created again.
        if await self._store.intents.get(self.tenant, crm_object, record_id) is not None:
            found = await self.sync.link_existing(record_id, contact)
            if found is not None:
                return "linked", found
        return None

    async def create(
        self, crm_object: str, record_id: str, contact: ContactInput, content_hash: str
    ) -> tuple[WriteAction, str]:
        await self._store.intents.begin(self.tenant, crm_object, record_id, "create", content_hash)
        try:
            return await self.sync.create(record_id, contact)
        except (QuoValidationError, QuoConflictError):
            # Definitive: Quo refused it, nothing was created, no lookup is owed later.
            await self._store.intents.settle(self.tenant, crm_object, record_id)
            raise

    async def write(
        self, crm_object: str, record_id: str, contact: ContactInput, content_hash: str
    ) -> tuple[WriteAction, str]:
        return await self.existing(crm_object, record_id, contact, content_hash) or \
            await self.create(crm_object, record_id, contact, content_hash)


async def save_mapping(
    store: Store,
    tenant: str,
    *,
    crm_object: str,
    record_id: str,
    quo_contact_id: str,
    action: WriteAction,
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


def failure_category(exc: QuoError) -> str:
    """The dead-letter category of a failed Quo call (`quo_validation`, `quo_server`, …)."""
    if isinstance(exc, QuoValidationError):
        return "quo_validation"
    return "quo_" + type(exc).__name__.removeprefix("Quo").removesuffix("Error").lower()
