"""`dead_letters`: what could not be synced, kept with why, until it is resolved.

A dead letter is opened with `add` (attempts = 1; a record that fails again while its
letter is open updates that one). Nothing retries dead letters on a timer; what brings
the work back:

* **Sync records** (every category but `webhook_failed`): every sync pass re-reads all
  CRM records and writes those without an up-to-date mapping, so a dead-lettered record
  is tried again by the next pass (the daemon's polling pass, or `crmsync sync`), which
  closes its letter when it succeeds (`resolve_for_record`). `crmsync retry` closes
  letters by hand (`mark_resolved`); a record that fails again opens a new one.
* **Webhook events** (`webhook_failed`): the inbox processor retries a failing event
  with backoff for `daemon.inbox_retry_hours`, then marks the inbox row failed and
  opens this letter (`crm_object` "webhook", `crm_record_id` the provider's event id,
  `payload` the body). `crmsync retry` closes the letter and, in the same transaction,
  re-queues the inbox row (`Inbox.requeue_failed`), which the processor applies again.

`next_retry_at`, `due_for_retry`, `record_attempt` and `retry_now` keep a retry time
per letter for a scheduler to act on; no part of crmsync schedules one today (only
`crmsync errors` shows the time). `prune_payloads` blanks the bodies of old resolved
webhook letters (retention). `category` is free text so a new kind of failure needs no
migration; `CATEGORIES` lists the ones crmsync uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import msgspec

from crmsync.store.database import Database, columns, to_struct

CATEGORIES: Final = (
    "validation",  # the record cannot be a Quo contact (e.g. an over-long record id)
    "empty_person",  # no name, email or phone
    "transform",  # an unexpected error turning the record into a contact
    "quo_validation",  # Quo answered 400 to the payload
    "quo_conflict",
    "quo_notfound",
    "quo_ratelimited",  # retries exhausted
    "quo_server",
    "quo_transport",
    "quo_decode",  # Quo answered 2xx with a body crmsync cannot read
    "webhook_failed",  # a webhook event still failing when its retry window ended
)
#: the category of inbox events; their payload is the webhook body (an SMS text, phones)
WEBHOOK_FAILED: Final = "webhook_failed"


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    tenant_id: str
    crm_object: str
    crm_record_id: str | None
    category: str
    payload: str
    error: str
    attempts: int
    created_at: float
    next_retry_at: float | None
    resolved_at: float | None


_SELECT: Final = f"SELECT {columns(DeadLetter)} FROM dead_letters"  # noqa: S608 (fixed names)


class DeadLetters:
    """Dead letters of each tenant; an id of another tenant's row is unknown here."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self,
        tenant_id: str,
        crm_object: str,
        crm_record_id: str | None,
        category: str,
        payload: str,
        error: str,
        next_retry_at: float | None = None,
    ) -> int:
        """Record a failure; a record with an open dead letter keeps that one (updated,
        attempts + 1) so a record failing on every pass does not pile up letters."""
        if crm_record_id is not None:
            async with self._db.transaction():
                row = await self._db.fetchone(
                    "SELECT id FROM dead_letters WHERE tenant_id = ? AND crm_object = ?"
                    " AND crm_record_id = ? AND resolved_at IS NULL ORDER BY id LIMIT 1",
                    (tenant_id, crm_object, crm_record_id),
                )
                if row is not None:
                    await self._db.execute(
                        "UPDATE dead_letters SET category = ?, payload = ?, error = ?,"
                        " attempts = attempts + 1, next_retry_at = ? WHERE id = ?",
                        (category, payload, error, next_retry_at, row[0]),
                    )
                    return int(row[0])
                return await self._insert(
                    tenant_id, crm_object, crm_record_id, category, payload, error,
                    next_retry_at,
                )
        return await self._insert(
            tenant_id, crm_object, crm_record_id, category, payload, error, next_retry_at
        )

    async def resolve_for_record(
        self, tenant_id: str, crm_object: str, crm_record_id: str
    ) -> int:
        """The record synced after all: close its open dead letters."""
        return await self._db.execute(
            "UPDATE dead_letters SET resolved_at = ?, next_retry_at = NULL"
            " WHERE tenant_id = ? AND crm_object = ? AND crm_record_id = ?"
            " AND resolved_at IS NULL",
            (self._db.now(), tenant_id, crm_object, crm_record_id),
        )

    async def _insert(
        self,
        tenant_id: str,
        crm_object: str,
        crm_record_id: str | None,
        category: str,
        payload: str,
        error: str,
        next_retry_at: float | None,
    ) -> int:
        dead_letter_id = await self._db.insert(
            "INSERT INTO dead_letters (tenant_id, crm_object, crm_record_id, category,"
            " payload, error, created_at, next_retry_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                tenant_id,
                crm_object,
                crm_record_id,
                category,
                payload,
                error,
                self._db.now(),
                next_retry_at,
            ),
        )
        assert dead_letter_id is not None  # a plain INSERT always inserts or raises
        return dead_letter_id

    async def counts_by_category(self, tenant_id: str) -> dict[str, int]:
        """Unresolved dead letters per category."""
        rows = await self._db.fetchall(
            "SELECT category, count(*) FROM dead_letters"
            " WHERE tenant_id = ? AND resolved_at IS NULL GROUP BY category ORDER BY category",
            (tenant_id,),
        )
        return {row[0]: row[1] for row in rows}

    async def get(self, tenant_id: str, dead_letter_id: int) -> DeadLetter | None:
        row = await self._db.fetchone(
            f"{_SELECT} WHERE tenant_id = ? AND id = ?", (tenant_id, dead_letter_id)
        )
        return None if row is None else to_struct(DeadLetter, row)

    async def due_for_retry(self, tenant_id: str, now: float) -> list[DeadLetter]:
        """Unresolved rows whose `next_retry_at` has come, most overdue first."""
        rows = await self._db.fetchall(
            f"{_SELECT} WHERE tenant_id = ? AND resolved_at IS NULL"
            " AND next_retry_at <= ? ORDER BY next_retry_at, id",
            (tenant_id, now),
        )
        return [to_struct(DeadLetter, row) for row in rows]

    async def mark_resolved(self, tenant_id: str, dead_letter_id: int) -> bool:
        changed = await self._db.execute(
            "UPDATE dead_letters SET resolved_at = ?, next_retry_at = NULL"
            " WHERE tenant_id = ? AND id = ? AND resolved_at IS NULL",
            (self._db.now(), tenant_id, dead_letter_id),
        )
        return changed > 0

    async def record_attempt(
        self, tenant_id: str, dead_letter_id: int, error: str, next_retry_at: float | None
    ) -> bool:
        """A retry failed again: count it, keep the new error, schedule (or not) the next."""
        changed = await self._db.execute(
            "UPDATE dead_letters SET attempts = attempts + 1, error = ?, next_retry_at = ?"
            " WHERE tenant_id = ? AND id = ? AND resolved_at IS NULL",
            (error, next_retry_at, tenant_id, dead_letter_id),
        )
        return changed > 0

    async def retry_now(
        self, tenant_id: str, now: float, dead_letter_ids: Iterable[int] | None = None
    ) -> int:
        """Make unresolved rows due at `now` (all of the tenant's, or just these ids)."""
        if dead_letter_ids is None:
            return await self._db.execute(
                "UPDATE dead_letters SET next_retry_at = ?"
                " WHERE tenant_id = ? AND resolved_at IS NULL",
                (now, tenant_id),
            )
        done = 0
        for dead_letter_id in sorted(set(dead_letter_ids)):
            done += await self._db.execute(
                "UPDATE dead_letters SET next_retry_at = ?"
                " WHERE tenant_id = ? AND id = ? AND resolved_at IS NULL",
                (now, tenant_id, dead_letter_id),
            )
        return done

    async def prune_payloads(self, tenant_id: str, before: float, limit: int = 500) -> int:
        """Blank the payload (the webhook body) of up to `limit` resolved `webhook_failed`
        letters created before `before`; returns how many. Call again until it returns
        less than `limit`. Open letters keep theirs: `crmsync errors` shows them."""
        return await self._db.execute(
            "UPDATE dead_letters SET payload = '' WHERE id IN (SELECT id FROM dead_letters"
            " WHERE tenant_id = ? AND category = ? AND resolved_at IS NOT NULL"
            " AND created_at < ? AND payload != '' LIMIT ?)",
            (tenant_id, WEBHOOK_FAILED, before, limit),
        )

    # Last in the class: below it, `list[...]` in annotations would mean this method.
    async def list(self, tenant_id: str, include_resolved: bool = False) -> list[DeadLetter]:
        """By category, then oldest first (what `crmsync errors` prints)."""
        rows = await self._db.fetchall(
            f"{_SELECT} WHERE tenant_id = ? AND (? OR resolved_at IS NULL) ORDER BY category, id",
            (tenant_id, include_resolved),
        )
        return [to_struct(DeadLetter, row) for row in rows]
