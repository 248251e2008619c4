"""`MappingRow`: one CRM record ↔ Quo contact pair as crmsync exports it.

The one serialiser of a mapping for the outside: `crmsync mappings` (jsonl and csv)
and the management API's `GET /api/tenants/{t}/mappings` (INTERFACE §2, §9) give the
same rows, field for field.
"""

from __future__ import annotations

import msgspec

from crmsync.domain.status import rfc3339
from crmsync.store import Mapping


class MappingRow(msgspec.Struct, rename="camel", frozen=True, kw_only=True):
    """One exported line (INTERFACE §2); csv uses the same names as its header."""

    tenant: str
    crm_object: str
    crm_record_id: str
    quo_contact_id: str
    entity_type: str
    sync_method: str
    action: str
    last_synced_at: str | None
    content_hash: str | None

    @classmethod
    def of(cls, mapping: Mapping) -> MappingRow:
        return cls(
            tenant=mapping.tenant_id,
            crm_object=mapping.crm_object,
            crm_record_id=mapping.crm_record_id,
            quo_contact_id=mapping.quo_contact_id,
            entity_type=mapping.entity_type,
            sync_method=mapping.sync_method,
            action=mapping.action,
            last_synced_at=rfc3339(mapping.last_synced_at),
            content_hash=mapping.content_hash,
        )


COLUMNS = [field.encode_name for field in msgspec.structs.fields(MappingRow)]
