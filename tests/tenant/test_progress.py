"""`Progress`: records fetched against records settled, pass restarts, and the drain
that holds new fetches."""

from __future__ import annotations

import asyncio

import pytest
from support.paging import PagedAdapter

from crmsync.tenant.progress import Progress


async def test_progress_counts_fetched_against_settled() -> None:
    progress = Progress()
    adapter = progress.watch(PagedAdapter(pages=3))  # type: ignore[arg-type]
    assert adapter.name == "fake"  # everything else is delegated
    assert not progress.busy
    page = await adapter.fetch_page("people", None, 2)
    await adapter.fetch_page("people", page.next_cursor, 2)
    assert progress.in_flight == 4 and progress.busy
    for _ in range(3):
        progress.settled("created")
    assert progress.busy
    quiet = asyncio.create_task(progress.wait_quiet())
    progress.settled("unchanged")
    await asyncio.wait_for(quiet, 5)
    assert not progress.busy


async def test_progress_resets_when_a_pass_restarts_from_its_checkpoint() -> None:
    """A crashed pass loses its in-flight records; a fetch that does not continue where
    the last page ended (back at the committed cursor) starts the count again."""
    progress = Progress()
    adapter = progress.watch(PagedAdapter(pages=5))  # type: ignore[arg-type]
    await adapter.fetch_page("people", None, 2)
    await adapter.fetch_page("people", "2", 2)
    progress.settled("created")
    assert progress.in_flight == 3
    await adapter.fetch_page("people", "2", 2)  # restarted at cursor 2
    assert progress.in_flight == 2
    await adapter.fetch_page("people", "4", 2)  # continues
    assert progress.in_flight == 4
    progress.new_pass()
    assert progress.in_flight == 0


async def test_progress_keeps_counting_across_objects() -> None:
    progress = Progress()
    adapter = progress.watch(PagedAdapter(pages=1))  # type: ignore[arg-type]
    await adapter.fetch_page("people", None, 2)  # last page of people
    await adapter.fetch_page("companies", None, 2)  # next object: a continuation
    assert progress.in_flight == 4
    await adapter.fetch_page("companies", None, 2)  # companies again from the top
    assert progress.in_flight == 2


async def test_drain_holds_new_fetches_but_not_the_one_in_flight() -> None:
    progress = Progress()
    inner = PagedAdapter(pages=5)
    adapter = progress.watch(inner)  # type: ignore[arg-type]
    await adapter.fetch_page("people", None, 2)
    progress.drain()
    held = asyncio.create_task(adapter.fetch_page("people", "2", 2))
    for _ in range(10):
        await asyncio.sleep(0)  # let it run as far as it can
    assert not held.done() and len(inner.calls) == 1
    progress.settled("created")
    progress.settled("created")
    await asyncio.wait_for(progress.wait_quiet(), 5)
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
