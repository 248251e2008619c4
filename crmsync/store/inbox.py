"""`webhook_inbox`: every received webhook, stored durably before it is acknowledged.

The HTTP handler calls `insert` and answers 2xx only after it returned: the row is
committed by then. `UNIQUE (tenant_id, source, event_id)` with `ON CONFLICT DO NOTHING`
makes duplicate deliveries race-free: exactly one insert wins, the others get None.

An event goes pending → processing → processed | failed | ignored. `attempts` counts the
times processing started (so an event that crashes the processor shows it); after a
crash, `requeue_interrupted` puts events left in `processing` back to pending. Replay
(`reset_for_replay`) puts chosen events back to pending; effects stay exactly-once
because processing consults mappings and activities, not the inbox state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Final, Literal

import msgspec

from crmsync.store.connection import Database

Source = Literal["crm", "quo"]
InboxState = Literal["pending", "processing", "processed", "failed", "ignored"]


class InboxEvent(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    tenant_id: str
    source: Source
    event_id: str
    event_type: str
    body: bytes
    headers: dict[str, str]
    received_at: float
    processed_at: float | None
    state: InboxState
    attempts: int
    last_error: str | None  # why it failed, or why it was ignored


_SELECT: Final = (
    "SELECT id, tenant_id, source, event_id, event_type, body, headers, received_at,"
    " processed_at, state, attempts, last_error FROM webhook_inbox"
)
_headers = msgspec.json.Decoder(dict[str, str])


def _event(row: sqlite3.Row) -> InboxEvent:
    return InboxEvent(
        id=row["id"],
        tenant_id=row["tenant_id"],
        source=row["source"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        body=bytes(row["body"]),
        headers=_headers.decode(row["headers"]),
        received_at=row["received_at"],
        processed_at=row["processed_at"],
        state=row["state"],
        attempts=row["attempts"],
        last_error=row["last_error"],
    )


class Inbox:
    """Webhook events of each tenant; an id of another tenant's event is unknown here."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(
        self,
        tenant_id: str,
        source: Source,
        event_id: str,
        event_type: str,
        body: bytes,
        headers: dict[str, str],
    ) -> int | None:
        """Store an event, committed on return; None if (source, event_id) was seen."""
        if self._db.in_transaction():
            raise RuntimeError(
                "inbox.insert must commit before returning: call it outside store.transaction()"
            )
        return await self._db.insert(
            "INSERT INTO webhook_inbox (tenant_id, source, event_id, event_type, body,"
            " headers, received_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, source, event_id) DO NOTHING",
            (
                tenant_id,
                source,
                event_id,
                event_type,
                body,
                msgspec.json.encode(headers).decode(),
                self._db.now(),
            ),
        )

    async def next_pending(self, tenant_id: str, limit: int = 100) -> list[InboxEvent]:
        """The oldest pending events, in arrival order."""
        rows = await self._db.fetchall(
            f"{_SELECT} WHERE tenant_id = ? AND state = 'pending' ORDER BY id LIMIT ?",
            (tenant_id, limit),
        )
        return [_event(row) for row in rows]

    async def claim(self, tenant_id: str, id: int) -> bool:
        """pending → processing, only if still pending: two processes never both win."""
        changed = await self._db.execute(
            "UPDATE webhook_inbox SET state = 'processing', attempts = attempts + 1"
            " WHERE tenant_id = ? AND id = ? AND state = 'pending'",
            (tenant_id, id),
        )
        return changed > 0

    async def retry_later(self, tenant_id: str, id: int, error: str) -> bool:
        """processing → pending again after a retryable failure, keeping the error."""
        return await self._set(tenant_id, id, "state = 'pending', last_error = ?", error)

    async def mark_processing(self, tenant_id: str, id: int) -> bool:
        return await self._set(tenant_id, id, "state = 'processing', attempts = attempts + 1")

    async def mark_processed(self, tenant_id: str, id: int) -> bool:
        return await self._set(
            tenant_id,
            id,
            "state = 'processed', processed_at = ?, last_error = NULL",
            self._db.now(),
        )

    async def mark_failed(self, tenant_id: str, id: int, error: str) -> bool:
        return await self._set(tenant_id, id, "state = 'failed', last_error = ?", error)

    async def mark_ignored(self, tenant_id: str, id: int, reason: str) -> bool:
        """Nothing to do for this event (e.g. an event type crmsync does not use)."""
        return await self._set(
            tenant_id,
            id,
            "state = 'ignored', processed_at = ?, last_error = ?",
            self._db.now(),
            reason,
        )

    async def _set(self, tenant_id: str, id: int, assignments: str, *params: object) -> bool:
        changed = await self._db.execute(
            f"UPDATE webhook_inbox SET {assignments} WHERE tenant_id = ? AND id = ?",  # noqa: S608
            (*params, tenant_id, id),
        )
        return changed > 0

    async def requeue_interrupted(self, tenant_id: str) -> int:
        """At start-up: events a crash left in `processing` become pending again."""
        return await self._db.execute(
            "UPDATE webhook_inbox SET state = 'pending'"
            " WHERE tenant_id = ? AND state = 'processing'",
            (tenant_id,),
        )

    async def get(self, tenant_id: str, id: int) -> InboxEvent | None:
        row = await self._db.fetchone(f"{_SELECT} WHERE tenant_id = ? AND id = ?", (tenant_id, id))
        return None if row is None else _event(row)

    async def get_by_event_id(
        self, tenant_id: str, source: Source, event_id: str
    ) -> InboxEvent | None:
        row = await self._db.fetchone(
            f"{_SELECT} WHERE tenant_id = ? AND source = ? AND event_id = ?",
            (tenant_id, source, event_id),
        )
        return None if row is None else _event(row)

    async def reset_for_replay(self, tenant_id: str, ids: Iterable[int]) -> int:
        """Make these events pending again; returns how many of the tenant's it reset."""
        wanted = sorted(set(ids))
        reset = 0
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            reset += await self._db.execute(
                "UPDATE webhook_inbox SET state = 'pending', processed_at = NULL,"  # noqa: S608
                f" last_error = NULL WHERE tenant_id = ? AND id IN ({', '.join('?' * len(chunk))})",
                (tenant_id, *chunk),
            )
        return reset

    async def prune(self, tenant_id: str, before: float) -> int:
        """Delete processed and ignored events received before `before` (retention)."""
        return await self._db.execute(
            "DELETE FROM webhook_inbox WHERE tenant_id = ? AND received_at < ?"
            " AND state IN ('processed', 'ignored')",
            (tenant_id, before),
        )

    # Last in the class: below it, `list[...]` in annotations would mean this method.
    async def list(
        self, tenant_id: str, since: float | None = None, limit: int = 100
    ) -> list[InboxEvent]:
        """Newest first; only events received at or after `since` when given."""
        rows = await self._db.fetchall(
            f"{_SELECT} WHERE tenant_id = ? AND (? IS NULL OR received_at >= ?)"
            " ORDER BY id DESC LIMIT ?",
            (tenant_id, since, since, limit),
        )
        return [_event(row) for row in rows]
