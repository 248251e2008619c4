"""Objects of one type in id order, with the search index's eventual consistency.

Ids only grow, so insertion order is id order and a listing's `after` cursor is a
bisection. Every mutation goes through `changing(obj)`: with a search lag it first
freezes what the search index still shows (`CrmObject.stale`) and hides the change for
`lag` seconds; either way it bumps `version`, which keys the search result cache.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from collections.abc import Callable, Iterator

from crmsync.sim.hubspot.model import CrmObject, Schema


class ObjectStore:
    """All objects of one type, archived ones included (HubSpot keeps them 90 days)."""

    def __init__(
        self, schema: Schema, first_id: int, *, lag: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.schema = schema
        self.lag = lag
        self.clock = clock
        self.version = 0
        #: monotonic time until which some object's change is still hidden from search
        self.pending_until = 0.0
        self._objects: dict[int, CrmObject] = {}
        self._order: list[int] = []
        self._next_id = first_id

    def __len__(self) -> int:
        return len(self._objects)

    def __iter__(self) -> Iterator[CrmObject]:
        return iter(self._objects.values())

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._objects

    def new_id(self, gap: int = 1) -> int:
        """The next id; `gap` > 1 skips ids, as ids of other portals' objects do."""
        self._next_id += max(1, gap) - 1
        object_id = self._next_id
        self._next_id += 1
        return object_id

    def add(self, obj: CrmObject, *, indexed: bool = False) -> None:
        """Store a new object (its id from `new_id`, so the order stays sorted);
        `indexed`: visible to search at once (seeded data), else after the lag."""
        if self._order and obj.id <= self._order[-1]:
            raise ValueError(f"ids must grow: {obj.id} after {self._order[-1]}")
        self._objects[obj.id] = obj
        self._order.append(obj.id)
        if indexed:
            self.version += 1
        else:
            self._hide_from_search(obj, stale=None)

    @property
    def last(self) -> CrmObject | None:
        """The object added last (the highest id)."""
        return self._objects[self._order[-1]] if self._order else None

    def get(self, object_id: int) -> CrmObject | None:
        """The object, archived or not."""
        return self._objects.get(object_id)

    def live(self, object_id: int) -> CrmObject | None:
        obj = self._objects.get(object_id)
        return None if obj is None or obj.archived else obj

    def from_id(self, first: int) -> Iterator[CrmObject]:
        """Objects with id >= `first`, in id order (a listing page's cursor)."""
        objects = self._objects
        for object_id in self._order[bisect.bisect_left(self._order, first):]:
            yield objects[object_id]

    @contextlib.contextmanager
    def changing(self, obj: CrmObject) -> Iterator[None]:
        """Wrap a mutation of `obj`: search keeps showing what it indexed before."""
        if self.lag > 0 and self.clock() >= obj.visible_at:
            stale: CrmObject | None = obj.search_copy()
        else:  # no lag, or an earlier change is still pending: keep that snapshot
            stale = obj.stale
        yield
        self._hide_from_search(obj, stale)

    def searchable(self) -> Iterator[CrmObject]:
        """What the search index holds now: each object, or its stale copy, or nothing."""
        now = self.clock()
        if now >= self.pending_until:
            yield from self._objects.values()
            return
        for obj in self._objects.values():
            if now >= obj.visible_at:
                yield obj
            elif obj.stale is not None:
                yield obj.stale

    def _hide_from_search(self, obj: CrmObject, stale: CrmObject | None) -> None:
        self.version += 1
        if self.lag > 0:
            obj.stale = stale
            obj.visible_at = self.clock() + self.lag
            self.pending_until = max(self.pending_until, obj.visible_at)
