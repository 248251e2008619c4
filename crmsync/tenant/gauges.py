"""Gauges whose truth lives in the state store, refreshed by the daemon's monitor.

`crmsync_dead_letters{tenant,category}` counts unresolved dead letters. Every known
category is set (0 included), so a dashboard shows zeros rather than no data and the
"growing" alert compares real values.
"""

from __future__ import annotations

import contextlib

from crmsync import metrics
from crmsync.store import Store
from crmsync.store.dead_letters import CATEGORIES


async def refresh_dead_letters(store: Store, tenant: str) -> None:
    counts = await store.dead_letters.counts_by_category(tenant)
    for category in sorted({*CATEGORIES, *counts}):
        metrics.dead_letters.labels(tenant, category).set(counts.get(category, 0))


def forget_tenant(tenant: str) -> None:
    """Drop a removed tenant's series (a reload must not leave stale gauges behind)."""
    for category in CATEGORIES:
        with contextlib.suppress(KeyError):  # never set
            metrics.dead_letters.remove(tenant, category)
