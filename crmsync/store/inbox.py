"""`webhook_inbox`: every received webhook, stored durably before it is acknowledged.

The HTTP handler calls `insert` and answers 2xx only after it returned: the row is
committed by then, with `synchronous = FULL` (it survives power loss, not only a crash).
Duplicates are refused race-free (exactly one insert wins, the others get None) on
three keys, in one transaction: the delivery id (Quo's `webhook-id`, remembered in
`webhook_deliveries` for `DELIVERY_ID_RETENTION_SECONDS` whatever happens to the row,
also for deliveries that were duplicates), `UNIQUE (tenant_id, source, event_id)`, and
the business key (one Quo occurrence through the legacy and the new webhook system;
unique where set), the last two with `ON CONFLICT DO NOTHING`.

An event goes pending → processing → processed | failed | ignored. `attempts` counts the
times processing started (so an event that crashes the processor shows it); after a
crash, `requeue_interrupted` puts events left in `processing` back to pending.
`next_attempt_at` is when a pending event is due (its arrival, or after a failure the
backoff the processor chose: `retry_later`); `next_pending` returns only due events, so
events backing off never hold up newer ones. `queued_at` starts the event's retry
window (the processor dead-letters it when that window is over): its arrival, or when
`crmsync retry` (`requeue_failed`) or a replay (`reset_for_replay`) queued it again.
Replay puts chosen events back to pending; effects stay exactly-once because processing
consults mappings and activities, not the inbox state. `prune` deletes settled events
after the retention period and delivery ids after 28 h, in small batches.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

import msgspec

from crmsync.store.database import Database, Row, marks

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
    next_attempt_at: float  # when a pending event is due
    queued_at: float  # when its retry window began: received, or queued again
    delivery_id: str | None = None  # Quo's `webhook-id` (2026-03-30 system only)
    business_key: str | None = None  # `crmsync.quo.envelope.business_key`


_SELECT: Final = (
    "SELECT id, tenant_id, source, event_id, event_type, body, headers, received_at,"
    " processed_at, state, attempts, last_error, next_attempt_at, queued_at,"
    " delivery_id, business_key"
    " FROM webhook_inbox"
)
#: how many rows one `prune` statement deletes: short enough that the writer lock is
#: never held for long, whatever the backlog
PRUNE_BATCH: Final = 500
#: how long a delivery id is remembered: Quo retries a delivery for about 27 h 35 min
#: (research quo-api-2026-03-30.md §2.7), possibly after retention pruned its event
DELIVERY_ID_RETENTION_SECONDS: Final = 28 * 3600.0
_headers = msgspec.json.Decoder(dict[str, str])


def _event(row: Row) -> InboxEvent:
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
        next_attempt_at=row["next_attempt_at"],
        queued_at=row["queued_at"],
        delivery_id=row["delivery_id"],
        business_key=row["business_key"],
    )


#: any uniqueness conflict (event id, business key) means a duplicate: nothing inserted
_INSERT: Final = (
    "INSERT INTO webhook_inbox (tenant_id, source, event_id, event_type, body, headers,"
    " received_at, next_attempt_at, queued_at, delivery_id, business_key)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
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
        *,
        delivery_id: str | None = None,
        business_key: str | None = None,
    ) -> int | None:
        """Store an event, durably committed on return; None if it is a duplicate: its
        `delivery_id` was seen within `DELIVERY_ID_RETENTION_SECONDS`, or an event with
        this (source, event_id) or (source, business_key) is stored. The event is due at
        once. A new delivery id is remembered even when the event is a duplicate."""
        if self._db.in_transaction():
            raise RuntimeError(
                "inbox.insert must commit before returning: call it outside store.transaction()"
            )
        now = self._db.now()
        row = (
            tenant_id, source, event_id, event_type, body,
            msgspec.json.encode(headers).decode(), now, now, now, delivery_id, business_key,
        )
        if delivery_id is None:  # one statement: no transaction needed
            return await self._db.insert(_INSERT, row, durable=True)
        async with self._db.transaction(durable=True):
            first = await self._db.execute(
                "INSERT INTO webhook_deliveries (tenant_id, source, delivery_id, received_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (tenant_id, source, delivery_id, now),
            )
            if not first:
                return None
            return await self._db.insert(_INSERT, row)

    async def has_delivery(self, tenant_id: str, source: Source, delivery_id: str) -> bool:
        """Whether this delivery id arrived within `DELIVERY_ID_RETENTION_SECONDS`."""
        row = await self._db.fetchone(
            "SELECT 1 FROM webhook_deliveries"
            " WHERE tenant_id = ? AND source = ? AND delivery_id = ?",
            (tenant_id, source, delivery_id),
        )
        return row is not None

    async def next_pending(self, tenant_id: str, limit: int = 100) -> list[InboxEvent]:
        """Pending events that are due now, earliest due first (arrival order for events
        that never failed). Events still backing off are not returned."""
        rows = await self._db.fetchall(
            f"{_SELECT} WHERE tenant_id = ? AND state = 'pending' AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at, id LIMIT ?",
            (tenant_id, self._db.now(), limit),
        )
        return [_event(row) for row in rows]

    async def unsettled(self, tenant_id: str) -> int:
        """Events not yet applied: pending (due or backing off) or being applied."""
        row = await self._db.fetchone(
            "SELECT count(*) FROM webhook_inbox"
            " WHERE tenant_id = ? AND state IN ('pending', 'processing')",
            (tenant_id,),
        )
        return 0 if row is None else int(row[0])

    async def next_attempt_time(self, tenant_id: str) -> float | None:
        """When the earliest pending event is due (maybe already); None if none is pending."""
        row = await self._db.fetchone(
            "SELECT min(next_attempt_at) FROM webhook_inbox"
            " WHERE tenant_id = ? AND state = 'pending'",
            (tenant_id,),
        )
        return None if row is None or row[0] is None else float(row[0])

    async def claim(self, tenant_id: str, id: int) -> bool:
        """pending → processing, only if still pending: two processes never both win."""
        changed = await self._db.execute(
            "UPDATE webhook_inbox SET state = 'processing', attempts = attempts + 1"
            " WHERE tenant_id = ? AND id = ? AND state = 'pending'",
            (tenant_id, id),
        )
        return changed > 0

    async def retry_later(
        self, tenant_id: str, id: int, error: str, *, next_attempt_at: float
    ) -> bool:
        """processing → pending again after a retryable failure, due at
        `next_attempt_at`, keeping the error."""
        return await self._set(
            tenant_id, id, "state = 'pending', last_error = ?, next_attempt_at = ?",
            error, next_attempt_at,
        )

    async def requeue_failed(self, tenant_id: str, event_id: str) -> int:
        """failed → pending, due now with a fresh retry window and attempt count, for the
        events with this provider event id (`crmsync retry` of a `webhook_failed` dead
        letter, which names the event by it). Returns how many it re-queued."""
        now = self._db.now()
        return await self._db.execute(
            "UPDATE webhook_inbox SET state = 'pending', attempts = 0, processed_at = NULL,"
            " next_attempt_at = ?, queued_at = ?"
            " WHERE tenant_id = ? AND event_id = ? AND state = 'failed'",
            (now, now, tenant_id, event_id),
        )

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
            now = self._db.now()
            reset += await self._db.execute(
                "UPDATE webhook_inbox SET state = 'pending', processed_at = NULL,"  # noqa: S608
                " last_error = NULL, next_attempt_at = ?, queued_at = ?"
                f" WHERE tenant_id = ? AND id IN ({marks(len(chunk))})",
                (now, now, tenant_id, *chunk),
            )
        return reset

    async def prune(self, tenant_id: str, before: float, limit: int = PRUNE_BATCH) -> int:
        """Delete up to `limit` processed and ignored events received before `before`
        (retention), and up to `limit` delivery ids older than
        `DELIVERY_ID_RETENTION_SECONDS` (whatever `before` is); returns how many rows of
        both. Call again until it returns less than `limit`: each statement is short,
        so other writers wait at most that long. Pending, processing and failed events
        are kept whatever their age."""
        events = await self._db.execute(
            "DELETE FROM webhook_inbox WHERE id IN (SELECT id FROM webhook_inbox"
            " WHERE tenant_id = ? AND received_at < ? AND state IN ('processed', 'ignored')"
            " LIMIT ?)",
            (tenant_id, before, limit),
        )
        deliveries = await self._db.execute(
            "DELETE FROM webhook_deliveries WHERE (tenant_id, source, delivery_id) IN"
            " (SELECT tenant_id, source, delivery_id FROM webhook_deliveries"
            " WHERE tenant_id = ? AND received_at < ? LIMIT ?)",
            (tenant_id, self._db.now() - DELIVERY_ID_RETENTION_SECONDS, limit),
        )
        return events + deliveries

    async def newest_received_at(
        self, tenant_id: str, source: Source, before: float | None = None
    ) -> float | None:
        """When the newest event of `source` arrived (only those received before
        `before` when given); None if there is none. For Quo's delivery catch-up
        (`services/catch_up.py`): what failed after it was never received."""
        sql = "SELECT max(received_at) FROM webhook_inbox WHERE tenant_id = ? AND source = ?"
        if before is None:
            row = await self._db.fetchone(sql, (tenant_id, source))
        else:
            row = await self._db.fetchone(f"{sql} AND received_at < ?", (tenant_id, source, before))
        return None if row is None or row[0] is None else float(row[0])

    # Last in the class: below it, `list[...]` in annotations would mean this method.
    async def list(
        self, tenant_id: str, since: float | None = None, limit: int = 100
    ) -> list[InboxEvent]:
        """Newest first; only events received at or after `since` when given."""
        if since is None:
            rows = await self._db.fetchall(
                f"{_SELECT} WHERE tenant_id = ? ORDER BY id DESC LIMIT ?", (tenant_id, limit)
            )
        else:
            rows = await self._db.fetchall(
                f"{_SELECT} WHERE tenant_id = ? AND received_at >= ? ORDER BY id DESC LIMIT ?",
                (tenant_id, since, limit),
            )
        return [_event(row) for row in rows]
