"""Bounded caches of what the adapters resolve once per listing (company and
organization names by id, company ids by name): the newest entry last, the oldest
dropped past the bound, so a long-running tenant's cache cannot grow without end."""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(cache: OrderedDict[K, V], key: K, value: V, size: int) -> list[K]:
    """Store `key → value` as the newest entry; the keys dropped to keep `size`."""
    cache[key] = value
    cache.move_to_end(key)
    dropped = []
    while len(cache) > size:
        dropped.append(cache.popitem(last=False)[0])
    return dropped
