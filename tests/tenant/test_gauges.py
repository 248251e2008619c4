"""Per-tenant gauges: `crmsync_dead_letters` follows the store (every category present,
zeros included); `crmsync_tenant_quo_key` names the key a tenant uses, one at a time."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from crmsync.store import CATEGORIES, open_store
from crmsync.tenant.gauges import forget_tenant, refresh_dead_letters, show_quo_key


def gauge(tenant: str, category: str) -> float | None:
    return REGISTRY.get_sample_value(
        "crmsync_dead_letters", {"tenant": tenant, "category": category}
    )


async def test_dead_letter_gauge_counts_open_letters_per_category(tmp_path: Path) -> None:
    async with open_store(tmp_path / "state.db") as store:
        for tenant in ("gauge-a", "gauge-b"):
            await store.tenants.upsert(tenant, "attio")
        await store.dead_letters.add("gauge-a", "people", "r1", "quo_validation", "{}", "400")
        await store.dead_letters.add("gauge-a", "people", "r2", "quo_validation", "{}", "400")
        resolved = await store.dead_letters.add("gauge-a", "people", "r3", "empty_person", "{}",
                                                "no name")
        await store.dead_letters.add("gauge-b", "people", "r4", "quo_server", "{}", "500")
        await store.dead_letters.mark_resolved("gauge-a", resolved)

        await refresh_dead_letters(store, "gauge-a")

    assert gauge("gauge-a", "quo_validation") == 2
    assert gauge("gauge-a", "empty_person") == 0  # resolved letters do not count
    assert gauge("gauge-a", "quo_server") == 0  # gauge-b's letter is not gauge-a's
    assert {c for c in CATEGORIES if gauge("gauge-a", c) is not None} == set(CATEGORIES)
    assert gauge("gauge-b", "quo_server") is None  # not refreshed: no series yet

    forget_tenant("gauge-a")
    assert gauge("gauge-a", "quo_validation") is None


def key_series(tenant: str) -> dict[str, float]:
    """The crmsync_tenant_quo_key series of `tenant`: key fingerprint -> value."""
    return {
        sample.labels["key"]: sample.value
        for family in REGISTRY.collect() if family.name == "crmsync_tenant_quo_key"
        for sample in family.samples if sample.labels["tenant"] == tenant
    }


def test_quo_key_gauge_names_one_key_per_tenant_and_goes_with_the_tenant() -> None:
    show_quo_key("gauge-k1", "aaaa1111")
    show_quo_key("gauge-k2", "aaaa1111")  # sharing a key: the same label value
    assert key_series("gauge-k1") == {"aaaa1111": 1.0}
    assert key_series("gauge-k2") == {"aaaa1111": 1.0}

    show_quo_key("gauge-k1", "bbbb2222")  # a rotated key replaces the old series
    assert key_series("gauge-k1") == {"bbbb2222": 1.0}

    forget_tenant("gauge-k1")
    assert key_series("gauge-k1") == {}
    assert key_series("gauge-k2") == {"aaaa1111": 1.0}  # the other tenant keeps its own
    forget_tenant("gauge-k2")
    forget_tenant("gauge-k2")  # twice is harmless (a stop after a failed start)
    assert key_series("gauge-k2") == {}
