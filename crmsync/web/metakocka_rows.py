"""The Metakocka answers of the management API (INTERFACE §9), as JSON rows.

The one serialiser of the `/api/tenants/{t}/metakocka/…` answers: the API's handlers
and `crmsync metakocka …` (which either asks the daemon or runs the same operation
in-process) give the same documents, field for field:

* push and pull: the §9 aggregate `{"total", "succeeded", "failed", "results": [...]}`,
  each result `{"crmRecordId", "mkId", "ok", "action", "error": {"category",
  "message"}}`; a pulled partner paired with several CRM people (a company's partner
  with several contacts) also lists them all in `crmRecordIds`;
* unsynced: `{"partners": [{"mkId", "name", "email", "phone", "discoveredAt", …}]}`;
* mappings: `{"mappings": [{"crmRecordId", "mkId", "mkContactId", "direction",
  "lastSyncedAt", "contentHash", …}]}`; `contentHash` is the CRM side's (what the
  person gave at the last sync), `mkContentHash` Metakocka's.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from crmsync.domain.status import rfc3339
from crmsync.services.metakocka_pull import PullResult
from crmsync.services.metakocka_push import PushResult
from crmsync.services.on_demand import ResultError
from crmsync.store import Store
from crmsync.store.metakocka import MkLink, UnsyncedPartner


class MkResult(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    """One id's outcome of a push or a pull."""

    crm_record_id: str | None
    mk_id: str | None
    ok: bool
    action: str
    crm_record_ids: list[str] | None = None  # pull only
    error: ResultError | None = None

    @classmethod
    def of_push(cls, result: PushResult) -> MkResult:
        return cls(crm_record_id=result.crm_record_id, mk_id=result.mk_id, ok=result.ok,
                   action=result.action, error=_error(result.error_category, result.error))

    @classmethod
    def of_pull(cls, result: PullResult) -> MkResult:
        ids = list(result.crm_record_ids)
        return cls(crm_record_id=ids[0] if ids else None, mk_id=result.mk_id, ok=result.ok,
                   action=result.action, crm_record_ids=ids,
                   error=_error(result.error_category, result.error))


def _error(category: str | None, message: str | None) -> ResultError | None:
    if category is None and message is None:
        return None
    return ResultError(category=category or "remote", message=message or "")


class MkReport(msgspec.Struct, frozen=True, kw_only=True):
    """The aggregate answer of a push or a pull (INTERFACE §9)."""

    total: int
    succeeded: int
    failed: int
    results: list[MkResult]

    @classmethod
    def of(cls, results: Sequence[MkResult]) -> MkReport:
        succeeded = sum(result.ok for result in results)
        return cls(total=len(results), succeeded=succeeded,
                   failed=len(results) - succeeded, results=list(results))

    @classmethod
    def of_push(cls, results: Sequence[PushResult]) -> MkReport:
        return cls.of([MkResult.of_push(r) for r in results])

    @classmethod
    def of_pull(cls, results: Sequence[PullResult]) -> MkReport:
        return cls.of([MkResult.of_pull(r) for r in results])


class UnsyncedRow(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    mk_id: str
    name: str | None
    email: str | None
    phone: str | None
    discovered_at: str | None
    last_seen_at: str | None
    doc_type: str | None

    @classmethod
    def of(cls, partner: UnsyncedPartner) -> UnsyncedRow:
        return cls(mk_id=partner.mk_id, name=partner.name, email=partner.email,
                   phone=partner.phone, discovered_at=rfc3339(partner.discovered_at),
                   last_seen_at=rfc3339(partner.last_seen_at), doc_type=partner.doc_type)


class MkMappingRow(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    crm_record_id: str
    mk_id: str
    mk_contact_id: str | None
    direction: str
    last_synced_at: str | None
    content_hash: str | None
    mk_content_hash: str | None
    crm_object: str
    mk_address_id: str | None
    last_checked_at: str | None

    @classmethod
    def of(cls, link: MkLink) -> MkMappingRow:
        return cls(crm_record_id=link.crm_record_id, mk_id=link.mk_id,
                   mk_contact_id=link.mk_contact_id, direction=link.direction,
                   last_synced_at=rfc3339(link.last_synced_at), content_hash=link.crm_hash,
                   mk_content_hash=link.mk_hash, crm_object=link.crm_object,
                   mk_address_id=link.mk_address_id,
                   last_checked_at=rfc3339(link.last_checked_at))


class UnsyncedAnswer(msgspec.Struct, frozen=True, kw_only=True):
    partners: list[UnsyncedRow]

    @classmethod
    def of(cls, partners: Sequence[UnsyncedPartner]) -> UnsyncedAnswer:
        return cls(partners=[UnsyncedRow.of(p) for p in partners])


class MappingsAnswer(msgspec.Struct, frozen=True, kw_only=True):
    mappings: list[MkMappingRow]

    @classmethod
    def of(cls, links: Sequence[MkLink]) -> MappingsAnswer:
        return cls(mappings=[MkMappingRow.of(link) for link in links])


async def read_mappings(
    store: Store, tenant_id: str, crm_object: str, *,
    crm_record_id: str | None = None, mk_id: str | None = None,
) -> list[MkLink]:
    """The tenant's pairs (all, one CRM record's, or one partner's) straight from the
    store: what the running link's `mappings` answers, for a reader without it."""
    if crm_record_id is not None:
        link = await store.mk_links.get(tenant_id, crm_object, crm_record_id)
        return [] if link is None or (mk_id is not None and link.mk_id != mk_id) else [link]
    if mk_id is not None:
        return await store.mk_links.by_mk_id(tenant_id, mk_id)
    return [link async for link in store.mk_links.iter_all(tenant_id)]
