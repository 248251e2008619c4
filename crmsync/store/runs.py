"""`sync_runs`: one row per initial, incremental or full sync pass, with its counts.

A run moves pending → running → completed | failed | cancelled (a pending run may also
fail or be cancelled before it starts). `transition` checks the current state in the
same UPDATE that changes it, so the check cannot race another writer.

A sync pass does its bookkeeping in two units of work, each one transaction:
`begin()` (close a run the process died in, forget the cursors of a full pass, open a
running run and say whether it is the initial sync) and `finish()` (close the run,
forget the cursors of a pass that reached the end, and record the run's facts on the
tenant: when the initial sync completed, when a pass last succeeded). The tenant's
lifecycle state (state, phase, last error) is not a run's business: only the tenant
runtime writes it.

Every pass opens a run, and the poller passes every `poll_interval` for the daemon's
whole life, so `begin()` also deletes the tenant's final runs older than its newest
`RUNS_KEPT` (at most `PRUNE_BATCH` per pass): only the latest run is ever read
(status, the CRM change counts), the rest is recent history.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

import msgspec

from crmsync.store.checkpoints import CURSOR
from crmsync.store.database import Database, Row, marks, to_struct
from crmsync.store.errors import IllegalTransitionError

RunKind = Literal["initial", "incremental", "full"]
RunState = Literal["pending", "running", "completed", "failed", "cancelled"]

# The states each state may move to; the three final states lead nowhere.
TRANSITIONS: Final[dict[RunState, frozenset[RunState]]] = {
    "pending": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"completed", "failed", "cancelled"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
FINAL_STATES: Final = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
#: the error of a run whose process stopped before it finished (killed or interrupted):
#: such a run is `failed` with this error, whoever closes it (see `begin`)
INTERRUPTED: Final = "interrupted"
#: the newest runs kept per tenant; older final ones are deleted as a pass begins
RUNS_KEPT: Final = 1000
#: the most runs one `prune` deletes (a state from before pruning drains over passes)
PRUNE_BATCH: Final = 1000


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    """What happened to the records of a run (or of all runs, from `totals`)."""

    fetched: int = 0
    created: int = 0
    updated: int = 0
    linked: int = 0
    unchanged: int = 0
    failed: int = 0
    deleted: int = 0


COUNT_FIELDS: Final = Counts.__struct_fields__
_COUNTS = ", ".join(COUNT_FIELDS)


class SyncRun(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    tenant_id: str
    kind: RunKind
    state: RunState
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    counts: Counts


class RunStart(msgspec.Struct, frozen=True, kw_only=True):
    """What `begin()` opened."""

    run_id: int
    kind: RunKind
    #: no initial sync has completed yet: this pass is (still) the initial sync
    initial: bool


_RUN_COLUMNS = "id, tenant_id, kind, state, created_at, started_at, finished_at, error"
_SELECT = f"SELECT {_RUN_COLUMNS}, {_COUNTS} FROM sync_runs"  # noqa: S608 (fixed names)


def _run(row: Row) -> SyncRun:
    return SyncRun(
        id=row["id"],
        tenant_id=row["tenant_id"],
        kind=row["kind"],
        state=row["state"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        counts=to_struct(Counts, row),
    )


class Runs:
    """Sync runs of each tenant. A run id of another tenant is treated as unknown."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, tenant_id: str, kind: RunKind) -> int:
        """A new pending run; returns its id."""
        run_id = await self._db.insert(
            "INSERT INTO sync_runs (tenant_id, kind, created_at) VALUES (?, ?, ?)",
            (tenant_id, kind, self._db.now()),
        )
        assert run_id is not None  # a plain INSERT always inserts or raises
        return run_id

    async def transition(
        self, tenant_id: str, run_id: int, new_state: RunState, error: str | None = None
    ) -> None:
        """Move a run on; raises `IllegalTransitionError` (or `KeyError` if unknown)."""
        sources = [old for old, targets in TRANSITIONS.items() if new_state in targets]
        stamp = "started_at" if new_state == "running" else "finished_at"
        changed = sources and await self._db.execute(  # no state leads to `pending`
            f"UPDATE sync_runs SET state = ?, {stamp} = ?, error = coalesce(?, error)"  # noqa: S608
            f" WHERE tenant_id = ? AND id = ? AND state IN ({marks(len(sources))})",
            (new_state, self._db.now(), error, tenant_id, run_id, *sources),
        )
        if not changed:
            current = await self.get(tenant_id, run_id)
            if current is None:
                raise KeyError(f"tenant {tenant_id!r} has no sync run {run_id}")
            raise IllegalTransitionError(
                f"sync run {run_id} of tenant {tenant_id!r} cannot go from "
                f"{current.state} to {new_state}"
            )

    async def begin(
        self, tenant_id: str, *, full: bool, crm_objects: Sequence[str]
    ) -> RunStart:
        """Open a pass's run (one transaction); the tenant row must exist.

        A run still pending or running is one the process died in: it is closed as
        failed (`interrupted`); the checkpoints carry its progress. A full pass forgets
        the page cursors of `crm_objects` so it starts from the top.
        """
        async with self._db.transaction():
            latest = await self.latest(tenant_id)
            if latest is not None and latest.state in ("pending", "running"):
                await self.transition(tenant_id, latest.id, "failed", error=INTERRUPTED)
            if full:
                await self._forget_cursors(tenant_id, crm_objects)
            row = await self._db.fetchone(
                "SELECT initial_sync_completed_at FROM tenants WHERE tenant_id = ?",
                (tenant_id,),
            )
            if row is None:
                raise KeyError(f"unknown tenant {tenant_id!r}")
            initial = row["initial_sync_completed_at"] is None
            kind: RunKind = "initial" if initial else ("full" if full else "incremental")
            run_id = await self.create(tenant_id, kind)
            await self.transition(tenant_id, run_id, "running")
            await self.prune(tenant_id)
        return RunStart(run_id=run_id, kind=kind, initial=initial)

    async def prune(
        self, tenant_id: str, keep: int = RUNS_KEPT, limit: int = PRUNE_BATCH
    ) -> int:
        """Delete up to `limit` of the tenant's final runs older than its newest `keep`
        (oldest first); returns how many. An open run is never deleted."""
        cutoff = await self._db.fetchone(
            "SELECT id FROM sync_runs WHERE tenant_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            (tenant_id, keep),
        )
        if cutoff is None:
            return 0
        final = sorted(FINAL_STATES)
        return await self._db.execute(
            "DELETE FROM sync_runs WHERE id IN (SELECT id FROM sync_runs"  # noqa: S608
            f" WHERE tenant_id = ? AND id <= ? AND state IN ({marks(len(final))})"
            " ORDER BY id LIMIT ?)",
            (tenant_id, cutoff["id"], *final, limit),
        )

    async def finish(
        self,
        tenant_id: str,
        run_id: int,
        *,
        ok: bool,
        error: str | None = None,
        crm_objects: Sequence[str] = (),
    ) -> SyncRun:
        """Close a pass's run (one transaction) and return it.

        `crm_objects`: the objects whose pass reached the end; their cursors are
        forgotten, so the next pass starts from the top (failed records were
        dead-lettered, and `crmsync retry` re-queues them). A successful run stamps the
        tenant's last success, and its initial sync as completed if it was not yet.
        """
        async with self._db.transaction():
            await self.transition(
                tenant_id, run_id, "completed" if ok else "failed", error=error
            )
            await self._forget_cursors(tenant_id, crm_objects)
            if ok:
                now = self._db.now()
                await self._db.execute(
                    "UPDATE tenants SET last_success_at = ?, initial_sync_completed_at ="
                    " coalesce(initial_sync_completed_at, ?), updated_at = ?"
                    " WHERE tenant_id = ?",
                    (now, now, now, tenant_id),
                )
            run = await self.get(tenant_id, run_id)
        assert run is not None  # transition() raised if it were unknown
        return run

    async def _forget_cursors(self, tenant_id: str, crm_objects: Sequence[str]) -> None:
        if crm_objects:
            await self._db.execute(
                "DELETE FROM checkpoints WHERE tenant_id = ? AND name = ?"  # noqa: S608
                f" AND crm_object IN ({marks(len(crm_objects))})",
                (tenant_id, CURSOR, *crm_objects),
            )

    async def add_counts(self, tenant_id: str, run_id: int, **deltas: int) -> None:
        """Add to counters atomically, e.g. `add_counts(t, run, created=3, failed=1)`."""
        unknown = sorted(set(deltas) - set(COUNT_FIELDS))
        if unknown:
            raise ValueError(f"unknown sync run counters: {', '.join(unknown)}")
        if not deltas:
            return
        # Column names come from COUNT_FIELDS (checked above), never from input text.
        assignments = ", ".join(f"{name} = {name} + ?" for name in deltas)
        changed = await self._db.execute(
            f"UPDATE sync_runs SET {assignments} WHERE tenant_id = ? AND id = ?",  # noqa: S608
            (*deltas.values(), tenant_id, run_id),
        )
        if not changed:
            raise KeyError(f"tenant {tenant_id!r} has no sync run {run_id}")

    async def get(self, tenant_id: str, run_id: int) -> SyncRun | None:
        row = await self._db.fetchone(
            f"{_SELECT} WHERE tenant_id = ? AND id = ?", (tenant_id, run_id)
        )
        return None if row is None else _run(row)

    async def latest(self, tenant_id: str, kind: RunKind | None = None) -> SyncRun | None:
        """The most recently created run (of `kind`, if given)."""
        if kind is None:
            row = await self._db.fetchone(
                f"{_SELECT} WHERE tenant_id = ? ORDER BY id DESC LIMIT 1", (tenant_id,)
            )
        else:
            row = await self._db.fetchone(
                f"{_SELECT} WHERE tenant_id = ? AND kind = ? ORDER BY id DESC LIMIT 1",
                (tenant_id, kind),
            )
        return None if row is None else _run(row)

    async def totals(self, tenant_id: str) -> Counts:
        """Counts summed over the tenant's runs still kept (the newest `RUNS_KEPT`)."""
        sums = ", ".join(f"coalesce(sum({name}), 0) AS {name}" for name in COUNT_FIELDS)
        row = await self._db.fetchone(
            f"SELECT {sums} FROM sync_runs WHERE tenant_id = ?",  # noqa: S608
            (tenant_id,),
        )
        return Counts() if row is None else to_struct(Counts, row)

