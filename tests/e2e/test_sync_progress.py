"""`crmsync sync`'s progress never shows more records done than its total.

Attio gives no total, so the total is an estimate from the mappings. It once showed
`300/70 records`: a resumed initial sync took the mappings of the interrupted pass (70)
for the size of the CRM.

1. the state holds 7 mappings and no completed initial sync (what an interrupted pass
   leaves); `crmsync sync` (its progress goes to stderr as log lines: not a terminal)
2. the initial sync completes (27 mappings: 20 people and the 7 earlier ones); 10 people
   are added to the CRM; `crmsync sync --full`
3. nothing changes; `crmsync sync --full` again
Result: 1. a count without a total; 2. the estimate (27) is exceeded, so the count again
stands alone (30); 3. `30/~37`, read as an estimate. Never a count above its total.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.e2e import TENANT, e2e_env

from crmsync.store import Mapping, open_store

pytestmark = pytest.mark.slow

PEOPLE = 20
PROGRESS = re.compile(rf"^sync {TENANT}: (\d+)(?:/(~?)(\d+))? records", re.MULTILINE)


def progress_lines(stderr: str) -> list[tuple[int, str, int | None]]:
    """(done, "~" or "", total or None) of every progress line."""
    return [(int(done), tilde, int(total) if total else None)
            for done, tilde, total in PROGRESS.findall(stderr)]


async def test_sync_progress_never_shows_more_done_than_its_total(tmp_path: Path) -> None:
    async with e2e_env(tmp_path, people=PEOPLE) as e2e:
        async with open_store(e2e.state_path) as store:
            await store.tenants.upsert(TENANT, "attio")
            for i in range(7):
                await store.mappings.upsert(Mapping(
                    tenant_id=TENANT, crm_object="people", crm_record_id=f"earlier-{i}",
                    quo_contact_id=f"contact-{i}", entity_type="person",
                    sync_method="initial", action="created", content_hash=None,
                    last_synced_at=0.0,
                ))

        resumed = await e2e.sync()
        assert resumed.code == 0, resumed.describe()
        lines = progress_lines(resumed.err)
        assert lines and lines[-1] == (PEOPLE, "", None), resumed.err

        for i in range(10):
            e2e.attio.add_person(first_name=f"New{i}", emails=[f"new{i}@example.com"],
                                 notify=False)
        grown = await e2e.sync("--full")
        assert grown.code == 0, grown.describe()
        lines = progress_lines(grown.err)
        assert lines and lines[-1] == (PEOPLE + 10, "", None), grown.err

        again = await e2e.sync("--full")
        assert again.code == 0, again.describe()
        lines = progress_lines(again.err)
        assert lines and lines[-1] == (PEOPLE + 10, "~", PEOPLE + 10 + 7), again.err

        for stderr in (resumed.err, grown.err, again.err):
            for done, _, total in progress_lines(stderr):
                assert total is None or done <= total, stderr
