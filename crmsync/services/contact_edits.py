"""Quo → CRM contact edits: `contact.updated` and `contact.deleted` (INTERFACE §7).

A `contact.updated` of a mapped contact (found by its Quo id, or by its `externalId`
when the contact is ours) is merged three ways (`domain/contact_merge.py`): the base is
the snapshot of what was last synced (written with every Quo write, and here), Quo's
side is the event's contact, the CRM's side is the person fetched now and transformed
as for Quo. Fields changed only in Quo are written to the CRM person
(`CrmAdapter.update_person`); fields changed only in the CRM are left to the CRM → Quo
path; fields changed on both follow the tenant's `conflict`.

No echoes, no loops:

* the daemon's own Quo writes fire `contact.updated` too: an event whose fields equal
  the snapshot is "unchanged", without a single CRM request;
* after writing the CRM, the mapping's content hash and snapshot become the CRM's new
  state whenever Quo already holds it, so the CRM's webhook about that write finds the
  record unchanged and writes nothing to Quo;
* when the CRM holds what Quo lacks (a CRM-side change, the CRM's side of a conflict,
  a value the CRM normalises), the payload is written to Quo once (the CRM → Quo
  path's write), and its own `contact.updated` then equals the snapshot.

An event older than the contact's last seen `updatedAt` is stale and skipped, unless
crmsync's own last write to Quo overwrote it (the edit was made in Quo after the state
that write replaced, and delivered after the write): then it is merged against that
replaced state, so the edit is not lost. (Two crmsync writes between an edit and its
delivery still lose it: the snapshot remembers one step back.)
Without a valid snapshot (mappings from before v0.7.0, bulk creates) the base is the
CRM's current state when its content hash shows it unchanged since the last Quo write;
otherwise the CRM's value stands wherever the two differ, whatever `conflict` says: the
event may be the echo of an old write, and must not undo a CRM change.

`contact.deleted` never deletes the CRM person: the mapping becomes `unlinked` and the
person gets a note saying so (once: a marker in the note is looked for first). A later
change of the person in the CRM creates the Quo contact again.

A contact made in Quo (no `externalId`, no mapping) becomes a CRM person only with
`quo_to_crm = "update_and_create"`: unless the CRM already has an unsynced (or
unlinked) person with one of its numbers (then that person is linked, differences
settled by `conflict`; a number of an already synced person creates nothing), a
person is created, mapped, and the Quo contact gets the person's payload (its
`externalId`, `source`, `sourceUrl`). A write intent keyed by the Quo contact id guards
the create; a person created before a crash is found again by phone. `quo_to_crm =
"off"` ignores contact events.

A CRM that refuses a write (4xx, e.g. an email another person already has) ends the
event as `rejected` with a dead letter (`crm_rejected`); other failures raise, and the
inbox retries the event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Final, Literal

import msgspec

from crmsync import metrics
from crmsync.adapters.base import CrmAdapter, CrmRecord, NoteInput
from crmsync.adapters.errors import CrmConflictError, CrmNotFoundError, CrmRejectedError
from crmsync.domain import contact_fields
from crmsync.domain.contact import Transformed, TransformError, build_contact
from crmsync.domain.contact_fields import ContactFields, QuoContact, quo_contact
from crmsync.domain.contact_merge import Conflict, merge, new_person, person_changes
from crmsync.quo.envelope import EnvelopeError, decode
from crmsync.services.contact_writes import RecordWriter, mapping_row, updated_before
from crmsync.store import Store
from crmsync.store.mappings import ContactSnapshot, Mapping, WriteAction

log = logging.getLogger(__name__)

QuoToCrm = Literal["off", "update", "update_and_create"]
CONTACT_EVENTS: Final = frozenset({"contact.updated", "contact.deleted"})
#: the write-intent "object" of a CRM person being created from a Quo contact
NEW_FROM_QUO: Final = "quo:contacts"
CRM_REJECTED: Final = "crm_rejected"


def deleted_marker(contact_id: str) -> str:
    """The line that identifies the "Quo contact deleted" note of one contact."""
    return f"quo-contact-deleted:{contact_id}"


class ContactEditHandler:
    """Applies one tenant's Quo contact events to its CRM (see the module docstring)."""

    def __init__(
        self,
        tenant: str,
        *,
        adapter: CrmAdapter,
        store: Store,
        records: RecordWriter,
        mode: QuoToCrm = "update",
        conflict: Conflict = "crm_wins",
        crm_objects: Sequence[str] = ("people",),
    ) -> None:
        self.tenant = tenant
        self._adapter = adapter
        self._store = store
        self._records = records
        self._mode = mode
        self._conflict = conflict
        self._crm_objects = tuple(crm_objects) or ("people",)

    async def handle(self, event_type: str, body: bytes) -> str:
        """Apply one event; returns what it did. Raises on CRM/Quo failures (retry)."""
        outcome = await self._handle(event_type, body)
        metrics.quo_contact_events.labels(self.tenant, outcome.split(":", 1)[0]).inc()
        return outcome

    async def _handle(self, event_type: str, body: bytes) -> str:
        if self._mode == "off":
            return "ignored: quo_to_crm is off"
        try:
            envelope = decode(body)
        except EnvelopeError as exc:
            return f"ignored: {exc}"
        kind = envelope.event_type if envelope.event_type in CONTACT_EVENTS else event_type
        contact = quo_contact(envelope.resource)
        if kind not in CONTACT_EVENTS or contact is None:
            return "ignored: not a contact event"
        mapping = await self._mapping_of(contact)
        try:
            if kind == "contact.deleted":
                return await self._deleted(contact, mapping)
            if mapping is None:
                return await self._unmatched(contact)
            return await self._edited(contact, mapping)
        except (CrmRejectedError, CrmConflictError) as exc:
            where = mapping.crm_record_id if mapping is not None else contact.id
            log.warning("Quo contact %s: the CRM refused the write for %s: %s",
                        contact.id, where, exc)
            await self._store.dead_letters.add(
                self.tenant, "webhook", envelope.event_id, CRM_REJECTED,
                body.decode(errors="replace"), str(exc),
            )
            return f"rejected: {exc}"

    async def _mapping_of(self, contact: QuoContact) -> Mapping | None:
        """The live mapping of the contact: by its Quo id, else by its `externalId` when
        the contact is ours (its `source` is our CRM) — then repointed to this contact."""
        for mapping in await self._store.mappings.by_quo_contact(self.tenant, contact.id):
            if mapping.deleted_at is None and mapping.action != "unlinked":
                return mapping
        if contact.external_id is None or contact.source != self._adapter.name:
            return None
        for crm_object in self._crm_objects:
            row = await self._store.mappings.get(self.tenant, crm_object, contact.external_id)
            if row is not None and row.deleted_at is None:
                moved = msgspec.structs.replace(row, quo_contact_id=contact.id)
                await self._store.mappings.upsert(moved)
                return moved
        return None

    # -- edits of synced contacts -------------------------------------------------------

    async def _edited(self, contact: QuoContact, mapping: Mapping) -> str:
        crm_object, record_id = mapping.crm_object, mapping.crm_record_id
        snapshot = await self._store.mappings.snapshot(self.tenant, crm_object, record_id)
        base: ContactFields | None = None
        if snapshot is not None and snapshot.content_hash == mapping.content_hash:
            base = contact_fields.decode(snapshot.fields)
            if updated_before(contact.updated_at, snapshot.quo_updated_at):
                base = self._overwritten(contact, snapshot, base)
                if base is None:
                    return "stale"
            elif base == contact.fields and contact.external_id == record_id:
                return "unchanged"  # our own write's echo, or an edit that changed nothing
        record = await self._adapter.fetch_one(crm_object, record_id)
        if record is None:
            return "ignored: the CRM record is gone"
        before = self._transform(record)
        if before is None:
            return "ignored: the CRM record cannot become a contact"
        crm = contact_fields.from_input(before.contact)
        if base is None and before.content_hash == mapping.content_hash:
            base = crm  # the CRM is unchanged since Quo was last written
        # No base at all: the event may be an old state of Quo's; the CRM keeps its values.
        rule = self._conflict if base is not None else "crm_wins"
        merged = merge(base, contact.fields, crm, rule)
        for name in merged.conflicts:
            log.info("contact %s / record %s: %s changed in Quo and in the CRM; %s",
                     contact.id, record_id, name, rule.replace("_", " "))
            metrics.contact_conflicts.labels(self.tenant, rule).inc()
        after, outcome = before, "unchanged"
        if merged.result != crm:
            fields = before.contact.default_fields
            record = await self._adapter.update_person(crm_object, record_id, person_changes(
                crm, merged.result,
                emails_order=[e.value.lower() for e in fields.emails if e.value],
                phones_order=[p.value for p in fields.phone_numbers if p.value],
            ))
            after = self._transform(record) or before
            outcome = "crm_updated"
        now_fields = contact_fields.from_input(after.contact)
        if now_fields == contact.fields and contact.external_id == record_id:
            # Both sides hold it: in sync, nothing to write to Quo. The CRM's webhook
            # about the write above finds this hash and leaves Quo alone.
            async with self._store.transaction():
                await self._store.mappings.set_content_hash(
                    self.tenant, crm_object, record_id, after.content_hash, time.time())
                await self._store.mappings.save_snapshot(
                    self.tenant, crm_object, record_id, ContactSnapshot(
                        content_hash=after.content_hash,
                        fields=contact_fields.encode(now_fields),
                        quo_updated_at=contact.updated_at, origin="event",
                    ))
            return outcome
        # The CRM holds what Quo lacks: the CRM → Quo write, now.
        pushed = await self._push(record, after, contact, "updated")
        return outcome if pushed else f"{outcome}: the Quo contact is gone"

    @staticmethod
    def _overwritten(
        contact: QuoContact, snapshot: ContactSnapshot, current: ContactFields | None
    ) -> ContactFields | None:
        """For an event older than the snapshot: the base to merge it against if it is
        an edit that crmsync's last write to Quo overwrote (made after the Quo state
        that write replaced, and not equal to either), else None (stale: Quo's later
        state, which crmsync has applied, already includes it)."""
        if snapshot.origin != "write" or snapshot.base_fields is None:
            return None
        base = contact_fields.decode(snapshot.base_fields)
        if base is None or contact.fields in (base, current):
            return None
        replaced_at = snapshot.base_quo_updated_at
        if replaced_at is not None and not updated_before(replaced_at, contact.updated_at):
            return None  # not made after the replaced state: older news
        return base

    def _transform(self, record: CrmRecord) -> Transformed | None:
        try:
            return build_contact(self._adapter.to_person(record), self._adapter.name)
        except TransformError:
            return None

    async def _push(
        self, record: CrmRecord, result: Transformed, contact: QuoContact, action: WriteAction
    ) -> bool:
        """Write the record's payload to its Quo contact and save the mapping and the
        snapshot; False if the contact no longer exists (its `contact.deleted` follows)."""
        updated = await self._records.sync.update_contact(contact.id, result.contact)
        if updated is None:
            return False
        await self._records.snapshot(
            record.crm_object, record.record_id, result.contact, result.content_hash,
            quo_updated_at=updated.updated_at,
            seen=(contact_fields.encode(contact.fields), contact.updated_at),
        )
        await self._store.mappings.save_synced([mapping_row(
            self.tenant, crm_object=record.crm_object, record_id=record.record_id,
            quo_contact_id=contact.id, action=action, content_hash=result.content_hash,
            sync_method="webhook",
        )])
        metrics.records_synced.labels(self.tenant, action).inc()
        return True

    # -- deletes ---------------------------------------------------------------------------

    async def _deleted(self, contact: QuoContact, mapping: Mapping | None) -> str:
        if mapping is None:
            return "ignored: not mapped"  # e.g. crmsync deleted it, after its CRM record
        crm_object, record_id = mapping.crm_object, mapping.crm_record_id
        marker = deleted_marker(contact.id)
        try:
            if not await self._adapter.find_note_ids(crm_object, record_id, marker):
                await self._adapter.write_note(NoteInput(
                    crm_object=crm_object, person_id=record_id, title="Quo contact deleted",
                    markdown=(
                        f"The Quo contact **{contact.fields.display_name()}** was deleted in"
                        " Quo. crmsync unlinked it from this person and kept the person."
                        " If the person changes here, crmsync creates the Quo contact"
                        f" again.\n\n{marker}"
                    ),
                ))
        except CrmNotFoundError:
            pass  # the person is gone as well: nothing to tell
        await self._store.mappings.unlink(self.tenant, crm_object, record_id, time.time())
        log.info("Quo contact %s was deleted in Quo: record %s unlinked", contact.id, record_id)
        return "unlinked"

    # -- contacts made in Quo ----------------------------------------------------------

    async def _unmatched(self, contact: QuoContact) -> str:
        if contact.external_id is not None:
            # Made by crmsync (mapping not saved yet) or by another tool: not for us.
            return "ignored: its externalId is not mapped"
        if self._mode != "update_and_create":
            return "ignored: not synced (quo_to_crm = update)"
        if contact.fields.is_empty():
            return "ignored: no name, email or phone"
        crm_object = self._crm_objects[0]
        resuming = await self._store.intents.get(self.tenant, NEW_FROM_QUO, contact.id)
        found: set[str] = set()
        for phone in contact.fields.phones:
            found.update(await self._adapter.find_people_by_phone(phone))
        mapped = await self._store.mappings.get_many(self.tenant, crm_object, found)
        free = sorted(i for i in found if i not in mapped or mapped[i].deleted_at is not None
                      or mapped[i].action == "unlinked")
        if found and not free:
            log.info("Quo contact %s: its number belongs to CRM person(s) %s, already synced"
                     " with Quo: not created", contact.id, ", ".join(sorted(found)))
            return "ignored: the CRM already has this person"
        record = await self._adapter.fetch_one(crm_object, free[0]) if free else None
        if record is not None:
            outcome = "linked"
            record = await self._settle_unknown_base(contact, record)
        else:
            if resuming is None:
                await self._store.intents.begin(self.tenant, NEW_FROM_QUO, contact.id, "create",
                                                contact_fields.fingerprint(contact.fields))
            record = await self._adapter.create_person(crm_object, new_person(contact.fields))
            outcome = "crm_created"
        result = self._transform(record)
        if result is None:
            return "ignored: the CRM person cannot become a contact"
        async with self._store.transaction():
            # Mapped first (no hash: Quo does not hold the payload yet), so a retry after
            # a failure below finds the person instead of creating another.
            await self._store.mappings.upsert(Mapping(
                tenant_id=self.tenant, crm_object=crm_object, crm_record_id=record.record_id,
                quo_contact_id=contact.id, entity_type="person", sync_method="webhook",
                action="linked", content_hash=None, last_synced_at=time.time(),
            ))
            await self._store.intents.settle(self.tenant, NEW_FROM_QUO, contact.id)
        pushed = await self._push(record, result, contact, "linked")
        log.info("Quo contact %s made in Quo: CRM person %s %s", contact.id, record.record_id,
                 "created and linked" if outcome == "crm_created" else "linked")
        return outcome if pushed else f"{outcome}: the Quo contact is gone"

    async def _settle_unknown_base(self, contact: QuoContact, record: CrmRecord) -> CrmRecord:
        """Linking an existing person: differences have no base, so `conflict` decides."""
        before = self._transform(record)
        if before is None:
            return record
        crm = contact_fields.from_input(before.contact)
        merged = merge(None, contact.fields, crm, self._conflict)
        if merged.result == crm:
            return record
        return await self._adapter.update_person(
            record.crm_object, record.record_id, person_changes(crm, merged.result))
