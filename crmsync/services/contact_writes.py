"""Writing one CRM record to Quo: create/update/link without a duplicate, then map it.

Shared by the initial-sync writer, the bulk verifier and the live (webhook) path; the
lane says whether these calls go before backfill in the key's limiter. `save_mapping`
stores the outcome: the mapping row and the settled intent, atomically (one unit of
work, `Mappings.save_synced`; the sync pipeline's verifier saves several at once). Every write
also stores the contact's snapshot (`RecordWriter.snapshot`): the base against which a
later edit of the contact in Quo is merged (`services/contact_edits.py`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from crmsync.domain import contact_fields
from crmsync.domain.contact import content_hash
from crmsync.net.ratelimit import Lane
from crmsync.quo.client import QuoClient
from crmsync.quo.envelope import normalise_time
from crmsync.quo.errors import (
    QuoConflictError,
    QuoError,
    QuoNotFoundError,
    QuoValidationError,
)
from crmsync.quo.models import Contact, ContactInput, DefaultFields, LabeledValue
from crmsync.store import Store
from crmsync.store.mappings import ContactSnapshot, Mapping, SyncMethod, WriteAction


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
        updated = await self.update_contact(contact_id, contact)
        return None if updated is None else updated.id

    async def update_contact(self, contact_id: str, contact: ContactInput) -> Contact | None:
        """`update`, answering the contact as Quo now holds it."""
        try:
            return await self._quo.update_contact(contact_id, contact, lane=self._lane)
        except QuoNotFoundError:
            return None

    async def link_existing(self, external_id: str, contact: ContactInput) -> str | None:
        """The id of the contact already carrying `external_id`, brought up to date."""
        existing = await self._quo.find_contact_by_external_id(external_id, lane=self._lane)
        if existing is None:
            return None
        if content_hash(as_input(existing)) != content_hash(contact):
            await self._quo.update_contact(existing.id, contact, lane=self._lane)
        return existing.id

    async def create(self, external_id: str, contact: ContactInput) -> tuple[WriteAction, str]:
        action, contact_id, _ = await self.create_contact(external_id, contact)
        return action, contact_id

    async def create_contact(
        self, external_id: str, contact: ContactInput
    ) -> tuple[WriteAction, str, str | None]:
        """`create`, with the new contact's `updatedAt` (None when it was linked)."""
        try:
            created = await self._quo.create_contact(contact, lane=self._lane)
        except QuoConflictError:
            # Quo's 409 does not say which field conflicts; externalId is the one we own.
            linked = await self.link_existing(external_id, contact)
            if linked is None:
                raise
            return "linked", linked, None
        return "created", created.id, created.updated_at

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
        # One query for both: the mapping and whether an intent is open.
        mapping, intent_open = await self._store.mappings.lookup(
            self.tenant, crm_object, record_id
        )
        if mapping is not None and mapping.deleted_at is None:
            if mapping.content_hash == content_hash:
                return "unchanged", mapping.quo_contact_id
            updated = await self.sync.update_contact(mapping.quo_contact_id, contact)
            if updated is not None:
                await self.snapshot(crm_object, record_id, contact, content_hash,
                                    quo_updated_at=updated.updated_at)
                return "updated", updated.id
            # The contact was deleted in Quo: it is created again. The intent is read
            # afresh, as before the lookup's change: the update took a while.
            intent_open = await self._store.intents.get(
                self.tenant, crm_object, record_id
            ) is not None
        if intent_open:
            found = await self.sync.link_existing(record_id, contact)
            if found is not None:
                await self.snapshot(crm_object, record_id, contact, content_hash)
                return "linked", found
        return None

    async def create(
        self, crm_object: str, record_id: str, contact: ContactInput, content_hash: str
    ) -> tuple[WriteAction, str]:
        await self._store.intents.begin(self.tenant, crm_object, record_id, "create", content_hash)
        try:
            action, contact_id, updated_at = await self.sync.create_contact(record_id, contact)
        except (QuoValidationError, QuoConflictError):
            # Definitive: Quo refused it, nothing was created, no lookup is owed later.
            await self._store.intents.settle(self.tenant, crm_object, record_id)
            raise
        await self.snapshot(crm_object, record_id, contact, content_hash,
                            quo_updated_at=updated_at)
        return action, contact_id

    async def snapshot(
        self,
        crm_object: str,
        record_id: str,
        contact: ContactInput,
        content_hash: str,
        *,
        quo_updated_at: str | None = None,
        seen: tuple[str, str | None] | None = None,
    ) -> None:
        """Quo now holds `contact` (written by crmsync): the base of the next Quo edit's
        merge, once the mapping carries `content_hash` (saved by the caller).

        It keeps what the write overwrote in Quo: the latest Quo state known, from the
        previous snapshot or `seen` (encoded fields and Quo's `updatedAt` of an edit
        just applied), so an edit made in Quo just before this write is merged when it
        arrives late instead of being lost (`services/contact_edits.py`)."""
        fields = contact_fields.encode(contact_fields.from_input(contact))
        if seen is None:
            # The base is the previous snapshot's state: one statement reads and
            # writes it (the initial sync's path, once per created contact).
            await self._store.mappings.save_written(
                self.tenant, crm_object, record_id, content_hash=content_hash,
                fields=fields, quo_updated_at=quo_updated_at,
            )
            return
        old = await self._store.mappings.snapshot(self.tenant, crm_object, record_id)
        base = None if old is None else (old.fields, old.quo_updated_at)
        if base is None or not updated_before(seen[1], base[1]):
            base = seen
        await self._store.mappings.save_snapshot(
            self.tenant, crm_object, record_id, ContactSnapshot(
                content_hash=content_hash,
                fields=fields,
                quo_updated_at=quo_updated_at, origin="write",
                base_fields=None if base is None else base[0],
                base_quo_updated_at=None if base is None else base[1],
            ),
        )

    async def write(
        self, crm_object: str, record_id: str, contact: ContactInput, content_hash: str
    ) -> tuple[WriteAction, str]:
        return await self.existing(crm_object, record_id, contact, content_hash) or \
            await self.create(crm_object, record_id, contact, content_hash)


def mapping_row(
    tenant: str,
    *,
    crm_object: str,
    record_id: str,
    quo_contact_id: str,
    action: WriteAction,
    content_hash: str,
    sync_method: SyncMethod,
    entity_type: str = "person",
) -> Mapping:
    """The mapping of a written record, as `Mappings.save_synced` stores it."""
    return Mapping(
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


def updated_before(updated_at: str | None, than: str | None) -> bool:
    """Whether Quo's `updatedAt` is before `than` (False when either is unknown)."""
    mine, other = normalise_time(updated_at), normalise_time(than)
    return mine is not None and other is not None and mine < other


def failure_category(exc: QuoError) -> str:
    """The dead-letter category of a failed Quo call (`quo_validation`, `quo_server`, …)."""
    if isinstance(exc, QuoValidationError):
        return "quo_validation"
    return "quo_" + type(exc).__name__.removeprefix("Quo").removesuffix("Error").lower()
