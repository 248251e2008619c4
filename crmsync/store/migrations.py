"""Versioned schema migrations, tracked in `PRAGMA user_version`.

`MIGRATIONS[i]` takes the schema from version i to i + 1. Each runs in its own
`BEGIN IMMEDIATE` transaction together with the `user_version` bump, and the version is
read again under that write lock, so two processes opening the same file at once
migrate it once. Never edit a released migration; append a new one, and its twin to
`pg_migrations.py` (the PostgreSQL schema has the same versions; a test compares them).

Conventions: every table carries `tenant_id` (referencing `tenants`, so deleting a
tenant row removes all of its state); times are REAL unix seconds (UTC); ids shown to
users (runs, inbox events, dead letters) are AUTOINCREMENT so a pruned id is never
reused for another row.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from crmsync.store.connection import SqliteDatabase
from crmsync.store.database import Database
from crmsync.store.errors import StoreError

_V1: Final = """
CREATE TABLE tenants (
    tenant_id TEXT NOT NULL PRIMARY KEY,  -- NOT NULL: SQLite allows NULL keys otherwise
    crm TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'starting'
        CHECK (state IN ('starting', 'running', 'parked', 'failed', 'stopped')),
    phase TEXT NOT NULL DEFAULT 'setup' CHECK (phase IN ('setup', 'initial_sync', 'live')),
    last_error TEXT,
    last_success_at REAL,
    initial_sync_completed_at REAL,
    updated_at REAL NOT NULL
);

CREATE TABLE sync_runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    kind TEXT NOT NULL CHECK (kind IN ('initial', 'incremental', 'full')),
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    fetched INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL DEFAULT 0,
    updated INTEGER NOT NULL DEFAULT 0,
    linked INTEGER NOT NULL DEFAULT 0,
    unchanged INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE INDEX sync_runs_by_tenant ON sync_runs (tenant_id, id);

CREATE TABLE checkpoints (
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, crm_object, name)
);

CREATE TABLE mappings (
    id INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object TEXT NOT NULL,
    crm_record_id TEXT NOT NULL,
    quo_contact_id TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    sync_method TEXT NOT NULL
        CHECK (sync_method IN ('initial', 'webhook', 'poll', 'bulk', 'manual')),
    action TEXT NOT NULL
        CHECK (action IN ('created', 'updated', 'linked', 'unchanged', 'deleted')),
    content_hash TEXT,
    last_synced_at REAL NOT NULL,
    deleted_at REAL,
    UNIQUE (tenant_id, crm_object, crm_record_id)
);
CREATE INDEX mappings_by_quo_contact ON mappings (tenant_id, quo_contact_id);

CREATE TABLE write_intents (
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object TEXT NOT NULL,
    crm_record_id TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('create', 'update', 'delete', 'bulk_create')),
    payload_hash TEXT NOT NULL,
    started_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, crm_object, crm_record_id)
);

CREATE TABLE webhook_inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    source TEXT NOT NULL CHECK (source IN ('crm', 'quo')),
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    received_at REAL NOT NULL,
    processed_at REAL,
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'processing', 'processed', 'failed', 'ignored')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    UNIQUE (tenant_id, source, event_id)
);
CREATE INDEX webhook_inbox_by_state ON webhook_inbox (tenant_id, state, id);
CREATE INDEX webhook_inbox_by_time ON webhook_inbox (tenant_id, received_at);

CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object TEXT NOT NULL,
    crm_record_id TEXT,
    category TEXT NOT NULL,
    payload TEXT NOT NULL,
    error TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    next_retry_at REAL,
    resolved_at REAL
);
CREATE INDEX dead_letters_open ON dead_letters (tenant_id, resolved_at, next_retry_at);

CREATE TABLE activities (
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    quo_object_id TEXT NOT NULL,
    crm_person_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('message', 'call')),
    crm_note_id TEXT,
    has_summary INTEGER NOT NULL DEFAULT 0 CHECK (has_summary IN (0, 1)),
    has_transcript INTEGER NOT NULL DEFAULT 0 CHECK (has_transcript IN (0, 1)),
    content_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, quo_object_id, crm_person_id)
);
"""

# v2 (live sync): webhook subscriptions with their signing secrets; scan bookkeeping on
# mappings for safe deletes; a write-ahead marker on activities for exactly-once notes.
_V2: Final = """
CREATE TABLE subscriptions (
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    source TEXT NOT NULL CHECK (source IN ('crm', 'quo')),
    name TEXT NOT NULL,
    remote_id TEXT NOT NULL,
    secret TEXT,
    url TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '{}',
    healthy INTEGER NOT NULL DEFAULT 1 CHECK (healthy IN (0, 1)),
    checked_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, source, name)
);

ALTER TABLE mappings ADD COLUMN missed_scans INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mappings ADD COLUMN last_seen_at REAL;

ALTER TABLE activities ADD COLUMN pending_hash TEXT;
"""

# v3 (inbox hardening): each inbox event carries when it may next be tried and when
# its retry window began (`queued_at`: received, or re-queued by `crmsync retry` /
# replay), so the processor selects due events with one index range instead of skipping
# backing-off ones in memory. Existing rows were due on arrival, as before. The new
# index leads with (tenant_id, state) too, so it also serves every lookup the old one did.
_V3: Final = """
ALTER TABLE webhook_inbox ADD COLUMN next_attempt_at REAL NOT NULL DEFAULT 0;
ALTER TABLE webhook_inbox ADD COLUMN queued_at REAL NOT NULL DEFAULT 0;
UPDATE webhook_inbox SET next_attempt_at = received_at, queued_at = received_at;
DROP INDEX webhook_inbox_by_state;
CREATE INDEX webhook_inbox_due ON webhook_inbox (tenant_id, state, next_attempt_at, id);
"""

# v4 (Quo's 2026-03-30 webhooks): delivery ids and business keys for de-duplication.
# An inbox row keeps the `webhook-id` it came with and its business key (the same Quo
# occurrence through the legacy and the new system, `quo/envelope.py`), unique per
# tenant and source where set. `webhook_deliveries` remembers every verified delivery
# id for 28 h (Quo retries for about 27.6 h), also those of duplicates and also after
# retention pruned their inbox row. Existing rows get no business key: before this
# version only legacy webhooks existed, so none can meet a new-system twin.
_V4: Final = """
ALTER TABLE webhook_inbox ADD COLUMN delivery_id TEXT;
ALTER TABLE webhook_inbox ADD COLUMN business_key TEXT;
CREATE UNIQUE INDEX webhook_inbox_business_key ON webhook_inbox (tenant_id, source, business_key)
    WHERE business_key IS NOT NULL;

CREATE TABLE webhook_deliveries (
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    source TEXT NOT NULL CHECK (source IN ('crm', 'quo')),
    delivery_id TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, source, delivery_id)
) WITHOUT ROWID;
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (tenant_id, received_at);
"""

# v5 (Quo -> CRM contact edits): a mapping may be `unlinked` (its Quo contact was
# deleted in Quo; the CRM person is kept). SQLite cannot change a CHECK constraint, so
# `mappings` is rebuilt with the same columns, row ids, unique key and index. The fields
# last synced between a CRM record and its Quo contact (the base of the three-way merge
# of a Quo edit) live in `contact_snapshots`, written with each Quo write and each Quo
# edit applied (`origin`); a write also keeps the state it overwrote in Quo (`base_*`),
# so an edit made just before it is merged, not lost. A snapshot counts only while its
# `content_hash` equals the mapping's.
_V5: Final = """
CREATE TABLE mappings_v5 (
    id INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object TEXT NOT NULL,
    crm_record_id TEXT NOT NULL,
    quo_contact_id TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    sync_method TEXT NOT NULL
        CHECK (sync_method IN ('initial', 'webhook', 'poll', 'bulk', 'manual')),
    action TEXT NOT NULL
        CHECK (action IN ('created', 'updated', 'linked', 'unchanged', 'deleted', 'unlinked')),
    content_hash TEXT,
    last_synced_at REAL NOT NULL,
    deleted_at REAL,
    missed_scans INTEGER NOT NULL DEFAULT 0,
    last_seen_at REAL,
    UNIQUE (tenant_id, crm_object, crm_record_id)
);
INSERT INTO mappings_v5 (id, tenant_id, crm_object, crm_record_id, quo_contact_id,
    entity_type, sync_method, action, content_hash, last_synced_at, deleted_at,
    missed_scans, last_seen_at)
SELECT id, tenant_id, crm_object, crm_record_id, quo_contact_id, entity_type,
    sync_method, action, content_hash, last_synced_at, deleted_at, missed_scans,
    last_seen_at
FROM mappings;
DROP TABLE mappings;
ALTER TABLE mappings_v5 RENAME TO mappings;
CREATE INDEX mappings_by_quo_contact ON mappings (tenant_id, quo_contact_id);

CREATE TABLE contact_snapshots (
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object TEXT NOT NULL,
    crm_record_id TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    fields TEXT NOT NULL,
    quo_updated_at TEXT,
    origin TEXT NOT NULL CHECK (origin IN ('write', 'event')),
    base_fields TEXT,
    base_quo_updated_at TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, crm_object, crm_record_id)
) WITHOUT ROWID;
"""

# v6 (the call lifecycle in notes): what each Quo call's events said, so its note is
# rendered from all of them in any arrival order, across restarts (`store/quo_calls.py`).
_V6: Final = """
CREATE TABLE quo_calls (
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    call_id TEXT NOT NULL,
    facts BLOB NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, call_id)
) WITHOUT ROWID;
CREATE INDEX quo_calls_by_time ON quo_calls (tenant_id, updated_at);
"""

# v7 (the Metakocka link, issue 12): `mk_links` pairs a CRM person with a Metakocka
# partner and the contact that is that person (a business partner holds one contact
# per person at the company; a private partner one), with the partner's billing
# address, the direction that made the pair, and per side the hash of the partner
# fields as that side held them after the last sync (`domain/partner.py`) plus the
# snapshot both sides agreed on (the base of a three-way merge). One contact is never
# paired with two people (partial unique index). `mk_unsynced` lists partners found in
# documents but not paired; `mk_discovery` is where the search of each document type
# stands; `mk_intents` is the intent log of Metakocka writes that must never be
# repeated blindly (`add_partner`, an `update_partner` that adds a contact), apart
# from `write_intents` so a record may have a Quo and a Metakocka write open at once.
_V7: Final = """
CREATE TABLE mk_links (
    id INTEGER PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object TEXT NOT NULL,
    crm_record_id TEXT NOT NULL,
    mk_id TEXT NOT NULL,
    mk_contact_id TEXT,
    mk_address_id TEXT,
    direction TEXT NOT NULL CHECK (direction IN ('to_metakocka', 'from_metakocka')),
    mk_hash TEXT,
    crm_hash TEXT,
    snapshot TEXT,
    last_synced_at REAL NOT NULL,
    last_checked_at REAL,
    UNIQUE (tenant_id, crm_object, crm_record_id)
);
CREATE INDEX mk_links_by_partner ON mk_links (tenant_id, mk_id);
CREATE UNIQUE INDEX mk_links_one_person_per_contact ON mk_links (tenant_id, mk_id, mk_contact_id)
    WHERE mk_contact_id IS NOT NULL;
CREATE INDEX mk_links_by_check ON mk_links (tenant_id, last_checked_at);

CREATE TABLE mk_unsynced (
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    mk_id TEXT NOT NULL,
    name TEXT,
    email TEXT,
    phone TEXT,
    doc_type TEXT,
    discovered_at REAL NOT NULL,
    last_seen_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, mk_id)
) WITHOUT ROWID;

CREATE TABLE mk_discovery (
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    doc_type TEXT NOT NULL,
    last_change_from TEXT,
    next_offset INTEGER NOT NULL DEFAULT 0 CHECK (next_offset >= 0),
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, doc_type)
) WITHOUT ROWID;

CREATE TABLE mk_intents (
    tenant_id TEXT NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object TEXT NOT NULL,
    crm_record_id TEXT NOT NULL,
    operation TEXT NOT NULL CHECK (operation IN ('add_partner', 'add_contact', 'update_partner')),
    mk_id TEXT,
    payload_hash TEXT NOT NULL,
    started_at REAL NOT NULL,
    PRIMARY KEY (tenant_id, crm_object, crm_record_id)
) WITHOUT ROWID;
"""

# v8: replicas sharing one PostgreSQL state lease tenants (INTERFACE §10). A lease is
# per Quo-key group (every tenant using one Quo API key, named by its fingerprint), so
# that group's requests all leave one process and its limiter stays exact. A lease row
# is never deleted: its `token` only grows (a fencing token: each new holder gets a
# higher one). `lease_members` says which tenants a group holds, for `crmsync status`;
# `replicas` is each running replica's heartbeat (the fair share counts live ones).
_V8: Final = """
CREATE TABLE leases (
    group_key TEXT NOT NULL PRIMARY KEY,
    holder TEXT,
    token INTEGER NOT NULL CHECK (token >= 1),
    expires_at REAL NOT NULL,
    acquired_at REAL NOT NULL,
    renewed_at REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE lease_members (
    tenant_id TEXT NOT NULL PRIMARY KEY,
    group_key TEXT NOT NULL REFERENCES leases (group_key) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE INDEX lease_members_by_group ON lease_members (group_key);

CREATE TABLE replicas (
    replica_id TEXT NOT NULL PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    seen_at REAL NOT NULL
) WITHOUT ROWID;
"""

# v9: where a replica's listener can be reached by the others (`http.advertise_url`):
# a management API request at a replica that does not run the tenant is forwarded there.
_V9: Final = """
ALTER TABLE replicas ADD COLUMN api_url TEXT;
"""

MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9)
LATEST_VERSION: Final = len(MIGRATIONS)


def split_statements(script: str) -> list[str]:
    """Split a script into statements (`executescript` would commit our transaction)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement in migration: {pending.strip()[:60]}")
    return statements


async def schema_version(db: SqliteDatabase) -> int:
    row = await db.fetchone("PRAGMA user_version")
    return int(row[0]) if row is not None else 0


def check_version(db: Database, version: int) -> None:
    """Refuse a file written by a newer crmsync (its schema may mean other things)."""
    if version > LATEST_VERSION:
        raise StoreError(
            f"state database {db.location} is version {version}, this crmsync knows up to "
            f"{LATEST_VERSION}; upgrade crmsync"
        )


async def migrate(db: SqliteDatabase) -> tuple[int, ...]:
    """Bring the schema to `LATEST_VERSION`; returns the versions applied (often none)."""
    version = await schema_version(db)
    check_version(db, version)
    applied: list[int] = []
    while version < LATEST_VERSION:
        async with db.transaction():
            version = await schema_version(db)  # again, now under the write lock
            check_version(db, version)
            if version == LATEST_VERSION:
                break  # another process migrated the file meanwhile
            for statement in split_statements(MIGRATIONS[version]):
                await db.execute(statement)
            version += 1
            # PRAGMA takes no bound parameters; `version` is an int computed here.
            await db.execute(f"PRAGMA user_version = {version:d}")
        applied.append(version)
    return tuple(applied)
