"""`Store`: the repositories of one state database, sharing one connection.

Each table has a small repository class (`store.tenants`, `store.runs`, …) whose
methods take `tenant_id` first and only ever touch that tenant's rows. Create a
`Store` with `open_store()` (`crmsync.store.db`), not directly.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from crmsync.store.activities import Activities
from crmsync.store.checkpoints import Checkpoints
from crmsync.store.database import Database
from crmsync.store.dead_letters import DeadLetters
from crmsync.store.inbox import Inbox
from crmsync.store.intents import Intents
from crmsync.store.mappings import Mappings
from crmsync.store.runs import Runs
from crmsync.store.subscriptions import Subscriptions
from crmsync.store.tenants import Tenants


class Store:
    """All state of all tenants; see the package docstring for the write discipline."""

    def __init__(self, db: Database, *, applied_migrations: tuple[int, ...] = ()) -> None:
        self._db = db
        self.path = db.path
        self.readonly = db.readonly
        #: schema versions this open applied (empty when the file was up to date)
        self.applied_migrations = applied_migrations
        self.tenants = Tenants(db)
        self.runs = Runs(db)
        self.checkpoints = Checkpoints(db)
        self.mappings = Mappings(db)
        self.intents = Intents(db)
        self.inbox = Inbox(db)
        self.dead_letters = DeadLetters(db)
        self.activities = Activities(db)
        self.subscriptions = Subscriptions(db)

    def transaction(self) -> AbstractAsyncContextManager[None]:
        """`async with store.transaction():` — BEGIN IMMEDIATE … COMMIT, or ROLLBACK.

        Nested use (same task) becomes a savepoint: an exception in the inner block
        undoes only the inner block, if the outer block handles it.
        """
        return self._db.transaction()

    def in_transaction(self) -> bool:
        """Whether the current task is inside `transaction()`."""
        return self._db.in_transaction()

    async def close(self) -> None:
        await self._db.close()
