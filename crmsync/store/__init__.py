"""crmsync.store: the state database of every tenant: SQLite (aiosqlite, WAL; the
embedded default) or PostgreSQL (asyncpg; `daemon.state_url`, shared by replicas).

    async with open_store(config.daemon.state_location) as store:
        await store.tenants.upsert("acme", "attio")
        async with store.transaction():
            await store.mappings.upsert(mapping)
            await store.intents.settle("acme", "people", mapping.crm_record_id)

Write discipline
----------------
The repositories' SQL is shared by both engines (`database.py` says how); what differs
lives in `connection.py` / `migrations.py` (SQLite) and `postgres.py` /
`pg_migrations.py` (PostgreSQL).

* **One writer process** (SQLite; PostgreSQL's replicas share the database). A
  read-write `open_store` holds the state lock (`<state_path>.lock`, `lock.py`) while
  it is open: the daemon for its whole life,
  `crmsync sync` / `retry` / `inbox replay` while they run; any other writer is refused
  (`StateLockedError`, exit 2). `lock_holder()` tells readers whether one is alive.
* **One writer connection.** The daemon opens the file once, read-write, and shares that
  `Store` between all tenants and actors. aiosqlite runs each connection on its own
  thread, so its statements are serialised; a lock keeps other tasks' statements out
  of an open transaction (see `connection.py`). PostgreSQL: a pool, reads concurrent,
  writes serialised the same way within the process (`postgres.py`).
* **Writes commit immediately** (autocommit) unless made inside
  `async with store.transaction():`, which is `BEGIN [IMMEDIATE] … COMMIT`, or `ROLLBACK`
  if the block raises. Use it for every multi-statement write that must be atomic. A
  nested `transaction()` in the same task is a savepoint.
* **Transactions are short.** Never await network I/O (Quo, a CRM, a queue that may
  block) inside one: it holds the database's write lock and this connection's lock.
  The order is: record the intent (commit) → call Quo → save mapping + settle intent
  (one transaction).
* **Readers open their own read-only connection** (`open_store(path, readonly=True)`,
  e.g. `crmsync status` while the daemon runs). WAL lets them read a consistent snapshot
  while the daemon writes; they never block the writer, and `busy_timeout` covers the
  brief moments (checkpoints) where they could.
* **Every method is scoped by tenant**: it takes `tenant_id` first (row-based upserts
  take it from the row) and filters on it. The one exception is `tenants.list_all()`:
  `status` reports all tenants. An id of another tenant's row behaves as unknown.
* **Times** are stored as REAL (PostgreSQL: double precision) unix seconds (UTC) and
  returned as `float`.
* **A refused write** (unique key, foreign key, CHECK) raises `IntegrityError` on either
  engine (a `sqlite3.IntegrityError`).
"""

from crmsync.store.activities import Activity, ActivityKind
from crmsync.store.checkpoints import Checkpoint
from crmsync.store.dead_letters import CATEGORIES, DeadLetter
from crmsync.store.errors import IllegalTransitionError, IntegrityError, StoreError
from crmsync.store.inbox import InboxEvent, InboxState, Source
from crmsync.store.intents import Operation, WriteIntent
from crmsync.store.location import is_database_url, redact
from crmsync.store.lock import (
    DAEMON_COMMAND,
    SHARED_STATE,
    LockHolder,
    StateLockedError,
    hold_state_lock,
    lock_holder,
    lock_path,
)
from crmsync.store.mappings import Action, Mapping, SyncMethod
from crmsync.store.migrations import LATEST_VERSION
from crmsync.store.runs import INTERRUPTED, Counts, RunKind, RunState, SyncRun
from crmsync.store.store import Store, open_store, state_exists
from crmsync.store.tenants import Tenant, TenantPhase, TenantState

__all__ = [
    "CATEGORIES",
    "DAEMON_COMMAND",
    "INTERRUPTED",
    "LATEST_VERSION",
    "SHARED_STATE",
    "Action",
    "Activity",
    "ActivityKind",
    "Checkpoint",
    "Counts",
    "DeadLetter",
    "IllegalTransitionError",
    "InboxEvent",
    "InboxState",
    "IntegrityError",
    "LockHolder",
    "Mapping",
    "Operation",
    "RunKind",
    "RunState",
    "Source",
    "StateLockedError",
    "Store",
    "StoreError",
    "SyncMethod",
    "SyncRun",
    "Tenant",
    "TenantPhase",
    "TenantState",
    "WriteIntent",
    "hold_state_lock",
    "is_database_url",
    "lock_holder",
    "lock_path",
    "open_store",
    "redact",
    "state_exists",
]
