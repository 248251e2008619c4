"""The persons of one company, with sorted views for keyset paging.

A listing sorts by `id`, `add_time` or `update_time` with the id as tie-breaker (times
are whole seconds, so many persons share one). The sorted view of each key is cached
until the next mutation (`changed()`), so paging 10k persons does not re-sort per page.
A page starts strictly after the cursor's key, which keeps paging stable while persons
are added; a person updated mid-listing moves in `update_time` order, as in Pipedrive.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Literal

from crmsync.sim.pipedrive.model import Person

SortBy = Literal["id", "update_time", "add_time"]
SortKey = tuple[int, ...]


def sort_key(person: Person, sort_by: SortBy) -> SortKey:
    if sort_by == "id":
        return (person.id,)
    moment = person.add_time if sort_by == "add_time" else person.update_time
    return (int(moment.timestamp()), person.id)


class PersonStore:
    """Every person ever stored, deleted ones included (flagged, never served)."""

    def __init__(self) -> None:
        self._by_id: dict[int, Person] = {}
        self._views: dict[SortBy, tuple[list[SortKey], list[Person]]] = {}

    def add(self, person: Person) -> None:
        self._by_id[person.id] = person
        self.changed()

    def changed(self) -> None:
        """A person was added or changed: the sorted views are stale."""
        self._views.clear()

    def get(self, person_id: int) -> Person | None:
        return self._by_id.get(person_id)

    def live(self, person_id: int) -> Person | None:
        person = self._by_id.get(person_id)
        return None if person is None or person.is_deleted else person

    def __iter__(self) -> Iterator[Person]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, person_id: object) -> bool:
        return person_id in self._by_id

    def all_live(self) -> list[Person]:
        return [p for p in self._by_id.values() if not p.is_deleted]

    def page(
        self,
        sort_by: SortBy,
        descending: bool,
        after: SortKey | None,
        limit: int,
        keep: Callable[[Person], bool],
    ) -> tuple[list[Person], bool]:
        """Up to `limit` kept persons strictly after `after` in the order; and whether
        more follow."""
        keys, persons = self._view(sort_by)
        if descending:
            end = len(keys) if after is None else bisect.bisect_left(keys, after)
            indexes: range = range(end - 1, -1, -1)
        else:
            start = 0 if after is None else bisect.bisect_right(keys, after)
            indexes = range(start, len(keys))
        found: list[Person] = []
        for index in indexes:
            person = persons[index]
            if person.is_deleted or not keep(person):
                continue
            if len(found) == limit:
                return found, True
            found.append(person)
        return found, False

    def _view(self, sort_by: SortBy) -> tuple[list[SortKey], list[Person]]:
        view = self._views.get(sort_by)
        if view is None:
            ordered = sorted(self._by_id.values(), key=lambda p: sort_key(p, sort_by))
            view = self._views[sort_by] = ([sort_key(p, sort_by) for p in ordered], ordered)
        return view
