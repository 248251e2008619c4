"""Asynchronous bulk contact creation (`POST /v1/contacts/bulk`), as Quo does it.

Quo answers 202 with an empty body and creates the contacts a few seconds later.
Each accepted contact is scheduled with `loop.call_later` after a seeded random
delay; when it fires, a duplicate `externalId` or one listed in `never_visible`
vanishes silently (invalid contacts were already dropped by the route). Only the
counters know what was lost; the API itself reports nothing.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

from crmsync.sim.quo.contact_store import ContactStore, ExternalIdConflictError
from crmsync.sim.quo.wire import JsonObject


@dataclass(slots=True)
class BulkCounters:
    """What happened to bulk-submitted contacts."""

    accepted: int = 0
    dropped_invalid: int = 0
    dropped_duplicate: int = 0
    never_visible: int = 0
    materialised: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_invalid + self.dropped_duplicate + self.never_visible


class BulkQueue:
    """Bulk contacts accepted but not yet visible, each on its own timer."""

    def __init__(
        self, store: ContactStore, rng: random.Random, delay: tuple[float, float]
    ) -> None:
        self._store = store
        self._rng = rng
        self._delay = delay
        self._pending: dict[int, tuple[asyncio.TimerHandle, JsonObject]] = {}
        self._next_token = 0
        self.counters = BulkCounters()
        self.never_visible: set[str] = set()
        self.on_create: Callable[[JsonObject], None] | None = None  # a contact appeared

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def submit(self, bodies: list[JsonObject]) -> None:
        """Schedule validated create bodies to appear after a random delay each."""
        loop = asyncio.get_running_loop()
        low, high = self._delay
        for body in bodies:
            self.counters.accepted += 1
            token = self._next_token
            self._next_token += 1
            handle = loop.call_later(self._rng.uniform(low, high), self._materialise, token)
            self._pending[token] = (handle, body)

    def _materialise(self, token: int) -> None:
        _, body = self._pending.pop(token)
        external_id = body.get("externalId")
        if external_id is not None and external_id in self.never_visible:
            self.counters.never_visible += 1
            return
        try:
            contact = self._store.create(body)
        except ExternalIdConflictError:
            self.counters.dropped_duplicate += 1
            return
        self.counters.materialised += 1
        if self.on_create is not None:
            self.on_create(contact)

    def flush(self) -> int:
        """Make every pending contact visible now (test helper); how many ran."""
        tokens = list(self._pending)
        for token in tokens:
            self._pending[token][0].cancel()
            self._materialise(token)
        return len(tokens)

    def close(self) -> None:
        """Cancel pending timers (the app is shutting down)."""
        for handle, _ in self._pending.values():
            handle.cancel()
        self._pending.clear()
