"""What every CRM adapter provides, and the CRM-neutral person it produces.

Adapters know HTTP, not actors: one module per CRM implements `CrmAdapter`, turning
the CRM's records into `Person` values. Everything after that (E.164 phones, the Quo
payload, its content hash) is shared in `crmsync.domain.contact`, so adding a CRM touches
its own module and one registry line.

Writes go the other way with `PersonChanges` (Quo → CRM contact edits, people created
from Quo contacts, other systems feeding the CRM): CRM-neutral fields, each either left
alone or set, which the adapter maps onto its CRM's attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import msgspec


class PersonPhone(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    raw: str
    e164: str | None = None  # when the CRM already normalised it
    country_code: str | None = None  # ISO 3166 alpha-2, for national-format numbers


class PersonEmail(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    value: str


class Person(msgspec.Struct, frozen=True, kw_only=True):
    """A CRM person, reduced to what a Quo contact can hold."""

    crm_object: str
    record_id: str
    first_name: str | None = None
    last_name: str | None = None
    full_name: str | None = None
    emails: tuple[PersonEmail, ...] = ()
    phones: tuple[PersonPhone, ...] = ()
    job_title: str | None = None
    company: str | None = None
    web_url: str | None = None


class PersonChanges(msgspec.Struct, frozen=True, kw_only=True):
    """What to write on a CRM person; a field left `UNSET` is not touched, None clears it.

    `first_name` and `last_name` are written together (set both or neither: CRMs store
    one name value). `company` is a company *name*: the adapter finds the CRM's company
    record of that name or creates it. `emails` and `phones` are the person's complete
    lists after the write (phones in E.164); the adapter replaces the CRM's lists.
    """

    first_name: str | msgspec.UnsetType | None = msgspec.UNSET
    last_name: str | msgspec.UnsetType | None = msgspec.UNSET
    company: str | msgspec.UnsetType | None = msgspec.UNSET
    job_title: str | msgspec.UnsetType | None = msgspec.UNSET
    emails: tuple[str, ...] | msgspec.UnsetType = msgspec.UNSET
    phones: tuple[str, ...] | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if (self.first_name is msgspec.UNSET) != (self.last_name is msgspec.UNSET):
            raise ValueError("first_name and last_name are written together")

    def is_empty(self) -> bool:
        return all(getattr(self, name) is msgspec.UNSET for name in self.__struct_fields__)


class CrmRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One raw record as fetched, with related names (e.g. company) already resolved."""

    crm_object: str
    record_id: str
    raw: dict[str, Any]
    related: dict[str, str] = msgspec.field(default_factory=dict)


class CrmPage(msgspec.Struct, frozen=True, kw_only=True):
    records: list[CrmRecord]
    next_cursor: str | None  # None: this was the last page


class NoteInput(msgspec.Struct, frozen=True, kw_only=True):
    crm_object: str
    person_id: str
    title: str
    markdown: str
    created_at: str | None = None  # RFC 3339; CRMs refuse future times


class CrmChange(msgspec.Struct, frozen=True, kw_only=True):
    """One record change announced by a CRM webhook (payloads carry ids, not values)."""

    crm_object: str
    record_id: str
    kind: str  # created | updated | deleted | merged
    merged_from: str | None = None  # the duplicate that a merge removed


class WebhookEvent(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str  # stable across the CRM's retries: the inbox de-duplicates on it
    event_type: str
    changes: list[CrmChange]


class WebhookFormatError(ValueError):
    """The body is not a webhook payload this CRM sends (answer 400)."""


class WebhookSignatureError(Exception):
    """Missing or wrong signature (answer 401)."""


class CrmAdapter(Protocol):
    """The small surface the pipeline needs from a CRM.

    `webhooks_by_api`: True when `ensure_webhook` creates (or finds) the CRM webhook
    through the CRM's API and returns its secret; False when the CRM's webhooks are set
    up in the CRM by hand (a HubSpot app) and signed with the tenant's
    `crm_webhook_secret`: without one the tenant relies on polling alone.
    `changes_lag`: how far (seconds) a poll from a watermark reaches back before it, for
    CRMs whose change listings lag behind writes (HubSpot's search) and for clock skew.
    """

    name: str
    webhooks_by_api: bool
    changes_lag: float

    async def fetch_page(
        self, crm_object: str, cursor: str | None, page_size: int
    ) -> CrmPage:
        """One page of a listing; `cursor` None starts a full listing (newest records
        first where the CRM can sort), any other is a `next_cursor` this adapter gave,
        possibly before a restart (so it must be a plain string that survives one)."""
        ...

    def changed_since_cursor(self, crm_object: str, since: float) -> str | None:
        """A `fetch_page` cursor that lists only the records changed at or after `since`
        (epoch seconds), or None when the CRM cannot filter by update time: each poll
        then re-scans every record (the content hash skips the unchanged ones)."""
        ...

    async def fetch_by_ids(self, crm_object: str, ids: Sequence[str]) -> list[CrmRecord]: ...

    async def fetch_one(self, crm_object: str, record_id: str) -> CrmRecord | None:
        """The record, or None on a confirmed 404."""
        ...

    def to_person(self, record: CrmRecord) -> Person: ...

    async def find_people_by_phone(self, e164: str) -> list[str]: ...

    async def update_person(
        self, crm_object: str, record_id: str, changes: PersonChanges
    ) -> CrmRecord:
        """Write `changes` on the person; returns the record as the CRM now holds it
        (related names resolved, as `fetch_one`). `CrmNotFoundError` if it is gone,
        `CrmRejectedError` / `CrmConflictError` if the CRM refuses the values."""
        ...

    async def create_person(self, crm_object: str, changes: PersonChanges) -> CrmRecord:
        """Create a person with `changes` (unset fields stay empty); the new record."""
        ...

    async def write_note(self, note: NoteInput) -> str: ...

    async def delete_note(self, note_id: str) -> None: ...

    async def find_note_ids(self, crm_object: str, person_id: str, marker: str) -> list[str]:
        """Ids of the person's notes whose content contains `marker` as a whole word."""
        ...

    async def ensure_webhook(self, target_url: str) -> tuple[str, str | None]: ...

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, secret: str, *, method: str = "POST",
        url: str = "",
    ) -> None:
        """Raise `WebhookSignatureError` unless the delivery was signed with `secret`.

        `method` and `url` are the request line as the CRM sent it (`url` is built on
        `http.public_url` when set, since a reverse proxy changes the host the listener
        sees): HubSpot signs them too."""
        ...

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """Raise `WebhookFormatError` for a body this CRM would not send."""
        ...
