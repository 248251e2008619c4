"""`leases`, `lease_members`, `replicas`: which process runs which tenants (INTERFACE §10).

A lease is per Quo-key group (`group_key`: every tenant that uses one Quo API key), so a
key's requests all leave one process and its limiter stays exact. The holder renews it
well before `expires_at`; a holder that dies stops renewing, and once the lease has
expired any replica may take it. Taking it over raises `token` (it only grows: a row is
never deleted, a release only ends the lease), so a fencing check can tell the current
holder from an earlier one that has not noticed yet (`holds`).

Every write is one conditional statement, so two replicas racing for a lease cannot both
win: PostgreSQL re-checks the `WHERE` of an UPDATE against the row the other committed
(READ COMMITTED), SQLite runs one writer at a time.

Times are the database's clock on PostgreSQL (`clock()`), so replicas on machines whose
clocks disagree still agree on when a lease ends; on SQLite (one process) the store's.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from crmsync.store.database import Database, columns, to_struct


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    group_key: str
    holder: str | None
    token: int
    expires_at: float


class Replica(msgspec.Struct, frozen=True, kw_only=True):
    replica_id: str
    host: str
    pid: int
    started_at: float
    seen_at: float
    #: where the others reach its listener (None: it did not say)
    api_url: str | None = None


class Held(msgspec.Struct, frozen=True, kw_only=True):
    """A tenant whose group's lease is current: who holds it, until when."""

    tenant_id: str
    group_key: str
    holder: str
    token: int
    expires_at: float


_LEASE = f"SELECT {columns(Lease)} FROM leases"  # noqa: S608 (column names from the Struct)


class Leases:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def clock(self) -> float:
        """Now, by the clock every replica shares: the database server's on PostgreSQL."""
        if self._db.backend == "postgresql":
            row = await self._db.fetchone("SELECT extract(epoch FROM clock_timestamp())")
            assert row is not None
            return float(row[0])
        return self._db.now()

    # -- replicas ---------------------------------------------------------------------

    async def beat(
        self, replica_id: str, *, host: str, pid: int, now: float, api_url: str | None = None
    ) -> None:
        """Record that `replica_id` is alive at `now` (registering it the first time)
        and where its listener is."""
        await self._db.execute(
            "INSERT INTO replicas (replica_id, host, pid, started_at, seen_at, api_url)"
            " VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (replica_id) DO UPDATE SET seen_at = excluded.seen_at,"
            " api_url = excluded.api_url",
            (replica_id, host, pid, now, now, api_url),
        )

    async def replica(self, replica_id: str) -> Replica | None:
        row = await self._db.fetchone(
            f"SELECT {columns(Replica)} FROM replicas WHERE replica_id = ?",  # noqa: S608
            (replica_id,),
        )
        return None if row is None else to_struct(Replica, row)

    async def live_replicas(self, *, now: float, within: float) -> list[Replica]:
        """Replicas seen in the last `within` seconds, by id."""
        rows = await self._db.fetchall(
            f"SELECT {columns(Replica)} FROM replicas WHERE seen_at > ?"  # noqa: S608
            " ORDER BY replica_id",
            (now - within,),
        )
        return [to_struct(Replica, row) for row in rows]

    async def leave(self, replica_id: str) -> None:
        await self._db.execute("DELETE FROM replicas WHERE replica_id = ?", (replica_id,))

    async def forget_replicas(self, *, before: float) -> int:
        """Delete the rows of replicas not seen since `before` (they died long ago)."""
        return await self._db.execute("DELETE FROM replicas WHERE seen_at < ?", (before,))

    # -- leases -----------------------------------------------------------------------

    async def acquire(
        self,
        group_key: str,
        holder: str,
        tenants: Sequence[str],
        *,
        now: float,
        seconds: float,
        steal: bool = False,
    ) -> int | None:
        """Take the group's lease for `seconds` if it is free or has expired (`steal`:
        whoever holds it; only for a store that one process alone may open). Returns the
        new fencing token, or None when another holder's lease is current."""
        expires = now + seconds
        async with self._db.transaction():
            taken = await self._db.execute(
                "INSERT INTO leases (group_key, holder, token, expires_at, acquired_at,"
                " renewed_at) VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT (group_key) DO NOTHING",
                (group_key, holder, expires, now, now),
            )
            if not taken:
                taken = await self._db.execute(
                    "UPDATE leases SET holder = ?, token = token + 1, expires_at = ?,"
                    " acquired_at = ?, renewed_at = ? WHERE group_key = ?"
                    " AND (expires_at <= ? OR ?)",
                    (holder, expires, now, now, group_key, now, steal),
                )
            if not taken:
                return None
            row = await self._db.fetchone(
                "SELECT token FROM leases WHERE group_key = ?", (group_key,)
            )
            await self.set_members(group_key, tenants)
        assert row is not None
        return int(row[0])

    async def set_members(self, group_key: str, tenants: Sequence[str]) -> None:
        """Which tenants the group holds now (a reload may add or move one)."""
        async with self._db.transaction():
            await self._db.execute(
                "DELETE FROM lease_members WHERE group_key = ?", (group_key,)
            )
            for tenant_id in tenants:
                await self._db.execute(
                    "INSERT INTO lease_members (tenant_id, group_key) VALUES (?, ?)"
                    " ON CONFLICT (tenant_id) DO UPDATE SET group_key = excluded.group_key",
                    (tenant_id, group_key),
                )

    async def renew(
        self, group_key: str, holder: str, token: int, *, now: float, seconds: float
    ) -> bool:
        """Extend a lease this holder still has (same token, not expired): False if lost."""
        changed = await self._db.execute(
            "UPDATE leases SET expires_at = ?, renewed_at = ?"
            " WHERE group_key = ? AND holder = ? AND token = ? AND expires_at > ?",
            (now + seconds, now, group_key, holder, token, now),
        )
        return changed == 1

    async def release(
        self, group_key: str, holder: str, token: int, *, now: float, grace: float
    ) -> bool:
        """End a lease this holder has. The next holder may start `grace` seconds from
        `now`: the rate limiter's window, so the key's last requests from here and the
        first from there never share one window."""
        changed = await self._db.execute(
            "UPDATE leases SET holder = NULL, expires_at = ?"
            " WHERE group_key = ? AND holder = ? AND token = ?",
            (now + grace, group_key, holder, token),
        )
        return changed == 1

    async def holds(self, group_key: str, holder: str, token: int, *, now: float) -> bool:
        """The fencing check: is this still the current, unexpired lease?"""
        row = await self._db.fetchone(
            "SELECT 1 FROM leases WHERE group_key = ? AND holder = ? AND token = ?"
            " AND expires_at > ?",
            (group_key, holder, token, now),
        )
        return row is not None

    async def get(self, group_key: str) -> Lease | None:
        row = await self._db.fetchone(f"{_LEASE} WHERE group_key = ?", (group_key,))
        return None if row is None else to_struct(Lease, row)

    async def current(self, *, now: float) -> dict[str, Held]:
        """Every tenant whose group's lease is current, by tenant id (`crmsync status`)."""
        rows = await self._db.fetchall(
            "SELECT m.tenant_id, l.group_key, l.holder, l.token, l.expires_at"
            " FROM lease_members m JOIN leases l ON l.group_key = m.group_key"
            " WHERE l.holder IS NOT NULL AND l.expires_at > ?",
            (now,),
        )
        return {row["tenant_id"]: to_struct(Held, row) for row in rows}
