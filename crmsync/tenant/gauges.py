"""Per-tenant gauges the daemon keeps, and forgets when a tenant is removed.

`crmsync_dead_letters{tenant,category}` counts unresolved dead letters, refreshed from
the state store by the daemon's monitor. Every known category is set (0 included), so a
dashboard shows zeros rather than no data and the "growing" alert compares real values.

`crmsync_tenant_quo_key{tenant,key}` is 1 for the fingerprint of the Quo key a launched
tenant uses: Quo limits per key, and tenants may share one, so the dashboard computes
utilisation per key by joining on it.
"""

from __future__ import annotations

import contextlib

from crmsync import metrics
from crmsync.store import Store
from crmsync.store.dead_letters import CATEGORIES

#: tenant -> the key fingerprint its crmsync_tenant_quo_key series carries
_quo_keys: dict[str, str] = {}


def show_quo_key(tenant: str, fingerprint: str) -> None:
    """`tenant` uses the Quo key with this fingerprint (one series per tenant: a key
    rotated by a reload replaces the old one)."""
    previous = _quo_keys.get(tenant)
    if previous is not None and previous != fingerprint:
        with contextlib.suppress(KeyError):
            metrics.tenant_quo_key.remove(tenant, previous)
    _quo_keys[tenant] = fingerprint
    metrics.tenant_quo_key.labels(tenant, fingerprint).set(1)


async def refresh_dead_letters(store: Store, tenant: str) -> None:
    counts = await store.dead_letters.counts_by_category(tenant)
    for category in sorted({*CATEGORIES, *counts}):
        metrics.dead_letters.labels(tenant, category).set(counts.get(category, 0))


def forget_tenant(tenant: str) -> None:
    """Drop a removed tenant's series (a reload must not leave stale gauges behind)."""
    for category in CATEGORIES:
        with contextlib.suppress(KeyError):  # never set
            metrics.dead_letters.remove(tenant, category)
    key = _quo_keys.pop(tenant, None)
    if key is not None:
        with contextlib.suppress(KeyError):
            metrics.tenant_quo_key.remove(tenant, key)
