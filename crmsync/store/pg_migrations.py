"""Versioned schema migrations of a PostgreSQL state database, tracked in `crmsync_schema`.

The same versions as the SQLite schema (`migrations.py`), each with the same tables,
columns, keys and indexes, in PostgreSQL's types: REAL → `double precision`, INTEGER →
`bigint`, `INTEGER PRIMARY KEY [AUTOINCREMENT]` → an identity column (never reused),
BLOB → `bytea`, 0/1 flags → `boolean`; no `WITHOUT ROWID`. A CHECK that SQLite could
only change by rebuilding its table (v5) is replaced in place.

`PG_MIGRATIONS[i]` takes the schema from version i to i + 1. Several replicas may start
at once, so each migration runs in its own transaction holding a transaction-scoped
advisory lock (`MIGRATION_LOCK`), reads the version again under it and records the new
one in `crmsync_schema` before it commits: exactly one replica applies each version,
the others wait and find it applied. DDL is transactional in PostgreSQL, so a failed
migration leaves the previous version whole. Never edit a released migration; append a
new one (to both lists: a test compares the two schemas).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from crmsync.store import migrations

if TYPE_CHECKING:
    from crmsync.store.postgres import PostgresDatabase

#: the table of applied versions (one row each, with when it was applied)
VERSION_TABLE: Final = "crmsync_schema"
#: `pg_advisory_xact_lock` key held while migrating: "crmsync" in ASCII
MIGRATION_LOCK: Final = 0x63726D73796E63

_CREATE_VERSION_TABLE: Final = f"""
CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (
    version integer NOT NULL PRIMARY KEY,
    applied_at double precision NOT NULL
)
"""

_V1: Final = """
CREATE TABLE tenants (
    tenant_id text NOT NULL PRIMARY KEY,
    crm text NOT NULL,
    state text NOT NULL DEFAULT 'starting'
        CHECK (state IN ('starting', 'running', 'parked', 'failed', 'stopped')),
    phase text NOT NULL DEFAULT 'setup' CHECK (phase IN ('setup', 'initial_sync', 'live')),
    last_error text,
    last_success_at double precision,
    initial_sync_completed_at double precision,
    updated_at double precision NOT NULL
);

CREATE TABLE sync_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('initial', 'incremental', 'full')),
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    created_at double precision NOT NULL,
    started_at double precision,
    finished_at double precision,
    fetched bigint NOT NULL DEFAULT 0,
    created bigint NOT NULL DEFAULT 0,
    updated bigint NOT NULL DEFAULT 0,
    linked bigint NOT NULL DEFAULT 0,
    unchanged bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    deleted bigint NOT NULL DEFAULT 0,
    error text
);
CREATE INDEX sync_runs_by_tenant ON sync_runs (tenant_id, id);

CREATE TABLE checkpoints (
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object text NOT NULL,
    name text NOT NULL,
    value text NOT NULL,
    updated_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, crm_object, name)
);

CREATE TABLE mappings (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object text NOT NULL,
    crm_record_id text NOT NULL,
    quo_contact_id text NOT NULL,
    entity_type text NOT NULL,
    sync_method text NOT NULL
        CHECK (sync_method IN ('initial', 'webhook', 'poll', 'bulk', 'manual')),
    action text NOT NULL CONSTRAINT mappings_action_check
        CHECK (action IN ('created', 'updated', 'linked', 'unchanged', 'deleted')),
    content_hash text,
    last_synced_at double precision NOT NULL,
    deleted_at double precision,
    UNIQUE (tenant_id, crm_object, crm_record_id)
);
CREATE INDEX mappings_by_quo_contact ON mappings (tenant_id, quo_contact_id);

CREATE TABLE write_intents (
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object text NOT NULL,
    crm_record_id text NOT NULL,
    operation text NOT NULL CHECK (operation IN ('create', 'update', 'delete', 'bulk_create')),
    payload_hash text NOT NULL,
    started_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, crm_object, crm_record_id)
);

CREATE TABLE webhook_inbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    source text NOT NULL CHECK (source IN ('crm', 'quo')),
    event_id text NOT NULL,
    event_type text NOT NULL,
    body bytea NOT NULL,
    headers text NOT NULL,
    received_at double precision NOT NULL,
    processed_at double precision,
    state text NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'processing', 'processed', 'failed', 'ignored')),
    attempts bigint NOT NULL DEFAULT 0,
    last_error text,
    UNIQUE (tenant_id, source, event_id)
);
CREATE INDEX webhook_inbox_by_state ON webhook_inbox (tenant_id, state, id);
CREATE INDEX webhook_inbox_by_time ON webhook_inbox (tenant_id, received_at);

CREATE TABLE dead_letters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object text NOT NULL,
    crm_record_id text,
    category text NOT NULL,
    payload text NOT NULL,
    error text NOT NULL,
    attempts bigint NOT NULL DEFAULT 1,
    created_at double precision NOT NULL,
    next_retry_at double precision,
    resolved_at double precision
);
CREATE INDEX dead_letters_open ON dead_letters (tenant_id, resolved_at, next_retry_at);

CREATE TABLE activities (
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    quo_object_id text NOT NULL,
    crm_person_id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('message', 'call')),
    crm_note_id text,
    has_summary boolean NOT NULL DEFAULT FALSE,
    has_transcript boolean NOT NULL DEFAULT FALSE,
    content_hash text NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, quo_object_id, crm_person_id)
);
"""

_V2: Final = """
CREATE TABLE subscriptions (
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    source text NOT NULL CHECK (source IN ('crm', 'quo')),
    name text NOT NULL,
    remote_id text NOT NULL,
    secret text,
    url text NOT NULL,
    detail text NOT NULL DEFAULT '{}',
    healthy boolean NOT NULL DEFAULT TRUE,
    checked_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, source, name)
);

ALTER TABLE mappings ADD COLUMN missed_scans bigint NOT NULL DEFAULT 0;
ALTER TABLE mappings ADD COLUMN last_seen_at double precision;

ALTER TABLE activities ADD COLUMN pending_hash text;
"""

_V3: Final = """
ALTER TABLE webhook_inbox ADD COLUMN next_attempt_at double precision NOT NULL DEFAULT 0;
ALTER TABLE webhook_inbox ADD COLUMN queued_at double precision NOT NULL DEFAULT 0;
UPDATE webhook_inbox SET next_attempt_at = received_at, queued_at = received_at;
DROP INDEX webhook_inbox_by_state;
CREATE INDEX webhook_inbox_due ON webhook_inbox (tenant_id, state, next_attempt_at, id);
"""

_V4: Final = """
ALTER TABLE webhook_inbox ADD COLUMN delivery_id text;
ALTER TABLE webhook_inbox ADD COLUMN business_key text;
CREATE UNIQUE INDEX webhook_inbox_business_key ON webhook_inbox (tenant_id, source, business_key)
    WHERE business_key IS NOT NULL;

CREATE TABLE webhook_deliveries (
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    source text NOT NULL CHECK (source IN ('crm', 'quo')),
    delivery_id text NOT NULL,
    received_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, source, delivery_id)
);
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (tenant_id, received_at);
"""

_V5: Final = """
ALTER TABLE mappings DROP CONSTRAINT mappings_action_check;
ALTER TABLE mappings ADD CONSTRAINT mappings_action_check
    CHECK (action IN ('created', 'updated', 'linked', 'unchanged', 'deleted', 'unlinked'));

CREATE TABLE contact_snapshots (
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object text NOT NULL,
    crm_record_id text NOT NULL,
    content_hash text NOT NULL,
    fields text NOT NULL,
    quo_updated_at text,
    origin text NOT NULL CHECK (origin IN ('write', 'event')),
    base_fields text,
    base_quo_updated_at text,
    updated_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, crm_object, crm_record_id)
);
"""

_V6: Final = """
CREATE TABLE quo_calls (
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    call_id text NOT NULL,
    facts bytea NOT NULL,
    updated_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, call_id)
);
CREATE INDEX quo_calls_by_time ON quo_calls (tenant_id, updated_at);
"""

_V7: Final = """
CREATE TABLE mk_links (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object text NOT NULL,
    crm_record_id text NOT NULL,
    mk_id text NOT NULL,
    mk_contact_id text,
    mk_address_id text,
    direction text NOT NULL CHECK (direction IN ('to_metakocka', 'from_metakocka')),
    mk_hash text,
    crm_hash text,
    snapshot text,
    last_synced_at double precision NOT NULL,
    last_checked_at double precision,
    UNIQUE (tenant_id, crm_object, crm_record_id)
);
CREATE INDEX mk_links_by_partner ON mk_links (tenant_id, mk_id);
CREATE UNIQUE INDEX mk_links_one_person_per_contact ON mk_links (tenant_id, mk_id, mk_contact_id)
    WHERE mk_contact_id IS NOT NULL;
CREATE INDEX mk_links_by_check ON mk_links (tenant_id, last_checked_at);

CREATE TABLE mk_unsynced (
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    mk_id text NOT NULL,
    name text,
    email text,
    phone text,
    doc_type text,
    discovered_at double precision NOT NULL,
    last_seen_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, mk_id)
);

CREATE TABLE mk_discovery (
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    doc_type text NOT NULL,
    last_change_from text,
    next_offset bigint NOT NULL DEFAULT 0 CHECK (next_offset >= 0),
    updated_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, doc_type)
);

CREATE TABLE mk_intents (
    tenant_id text NOT NULL REFERENCES tenants (tenant_id) ON DELETE CASCADE,
    crm_object text NOT NULL,
    crm_record_id text NOT NULL,
    operation text NOT NULL CHECK (operation IN ('add_partner', 'add_contact', 'update_partner')),
    mk_id text,
    payload_hash text NOT NULL,
    started_at double precision NOT NULL,
    PRIMARY KEY (tenant_id, crm_object, crm_record_id)
);
"""

_V8: Final = """
CREATE TABLE leases (
    group_key text NOT NULL PRIMARY KEY,
    holder text,
    token bigint NOT NULL CHECK (token >= 1),
    expires_at double precision NOT NULL,
    acquired_at double precision NOT NULL,
    renewed_at double precision NOT NULL
);

CREATE TABLE lease_members (
    tenant_id text NOT NULL PRIMARY KEY,
    group_key text NOT NULL REFERENCES leases (group_key) ON DELETE CASCADE
);

CREATE INDEX lease_members_by_group ON lease_members (group_key);

CREATE TABLE replicas (
    replica_id text NOT NULL PRIMARY KEY,
    host text NOT NULL,
    pid bigint NOT NULL,
    started_at double precision NOT NULL,
    seen_at double precision NOT NULL
);
"""

_V9: Final = """
ALTER TABLE replicas ADD COLUMN api_url text;
"""

PG_MIGRATIONS: Final[tuple[str, ...]] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9)
# One version history for both engines: a new SQLite migration needs its twin here.
assert len(PG_MIGRATIONS) == migrations.LATEST_VERSION


async def schema_version(db: PostgresDatabase) -> int:
    """The latest version applied; 0 for a database crmsync never migrated."""
    row = await db.fetchone(f"SELECT to_regclass('{VERSION_TABLE}') IS NOT NULL")
    if row is None or not row[0]:
        return 0
    row = await db.fetchone(f"SELECT coalesce(max(version), 0) FROM {VERSION_TABLE}")  # noqa: S608
    return 0 if row is None else int(row[0])


async def migrate(db: PostgresDatabase) -> tuple[int, ...]:
    """Bring the schema to `LATEST_VERSION`; returns the versions applied (often none)."""
    latest = migrations.LATEST_VERSION
    version = await schema_version(db)
    migrations.check_version(db, version)
    applied: list[int] = []
    while version < latest:
        async with db.transaction():
            # Held until this transaction ends: replicas starting together take turns.
            await db.fetchall("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            await db.execute_script(_CREATE_VERSION_TABLE)
            version = await schema_version(db)  # again, now under the lock
            migrations.check_version(db, version)
            if version == latest:
                break  # another replica migrated it meanwhile
            await db.execute_script(PG_MIGRATIONS[version])
            version += 1
            await db.execute(
                f"INSERT INTO {VERSION_TABLE} (version, applied_at) VALUES (?, ?)",  # noqa: S608
                (version, db.now()),
            )
        applied.append(version)
    return tuple(applied)
