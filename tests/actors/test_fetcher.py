"""`Fetcher` alone, against the Attio simulator and a real state database.

The fetcher pages each CRM object from its saved cursor and puts one `RecordBatch` and
one `PageEnd` per page on its output (page numbers run on across objects, so the
verifier can commit every page of the pass in order), skips an object whose pages were
all committed (`CURSOR_DONE`), ends with `EndOfStream`, and never commits a cursor
itself. Five people with pages of two: offsets 0, 2, 4, 5 → pages of 2, 2 and 1, then
an empty one: only an empty page ends an Attio listing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from actors.harness import TENANT, Attio, attio_env, drain, run_actor, state_store

from crmsync.actors.base import EndOfStream
from crmsync.actors.fetcher import Fetcher
from crmsync.actors.messages import PageEnd, RawMessage, RecordBatch
from crmsync.adapters.base import CrmPage
from crmsync.store import Store
from crmsync.store.checkpoints import CURSOR, CURSOR_DONE

PEOPLE = 5
PAGE = 2


@dataclass
class Env:
    attio: Attio
    store: Store
    out: asyncio.Queue[RawMessage]
    fetched: list[tuple[str, str | None]]  # (object, cursor) of every fetch_page

    def fetcher(self, crm_objects: list[str]) -> Fetcher:
        return Fetcher(TENANT, adapter=self.attio.adapter, store=self.store,
                       crm_objects=crm_objects, page_size=PAGE, out=self.out)


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    async with attio_env(people=PEOPLE) as attio, state_store(tmp_path) as store:
        fetched: list[tuple[str, str | None]] = []
        real = attio.adapter.fetch_page

        async def fetch_page(crm_object: str, cursor: str | None, page_size: int) -> CrmPage:
            fetched.append((crm_object, cursor))
            return await real(crm_object, cursor, page_size)

        monkeypatch.setattr(attio.adapter, "fetch_page", fetch_page)
        yield Env(attio, store, asyncio.Queue(), fetched)


def summary(messages: list[RawMessage]) -> list[tuple[object, ...]]:
    """Each message as a short tuple: ("batch", page, ids) / ("end", page, obj, n, cursor)."""
    shown: list[tuple[object, ...]] = []
    for message in messages:
        match message:
            case RecordBatch(page=page, records=records):
                shown.append(("batch", page, [r.record_id for r in records]))
            case PageEnd(page=page, crm_object=obj, record_count=n, next_cursor=cursor):
                shown.append(("end", page, obj, n, cursor))
            case EndOfStream():
                shown.append(("eos",))
    return shown


async def test_a_fresh_object_is_paged_from_the_top_one_batch_and_page_end_per_page(
    env: Env,
) -> None:
    """1. no cursor is saved for `people`
    2. the fetcher runs to its end.
    Result: three pages in CRM order and an empty fourth, each a batch then its
    `PageEnd` with the record count and the cursor of the next page (None on the
    last), then `EndOfStream`."""
    ids = env.attio.people_ids()

    async with run_actor(env.fetcher(["people"])):
        pass

    assert summary(drain(env.out)) == [
        ("batch", 0, ids[0:2]), ("end", 0, "people", 2, "2"),
        ("batch", 1, ids[2:4]), ("end", 1, "people", 2, "4"),
        ("batch", 2, ids[4:5]), ("end", 2, "people", 1, "5"),
        ("batch", 3, []), ("end", 3, "people", 0, None),
        ("eos",),
    ]
    assert env.fetched == [("people", None), ("people", "2"), ("people", "4"), ("people", "5")]


async def test_paging_resumes_from_the_saved_cursor_and_the_cursor_is_left_alone(
    env: Env,
) -> None:
    """1. a previous pass committed the cursor "2" (pages before it are done)
    2. the fetcher runs.
    Result: it asks for offset 2 first, never for the top; the first page it sends is
    page 0 of this pass; the saved cursor is unchanged (only the verifier commits)."""
    await env.store.checkpoints.set(TENANT, "people", CURSOR, "2")
    ids = env.attio.people_ids()

    async with run_actor(env.fetcher(["people"])):
        pass

    assert env.fetched == [("people", "2"), ("people", "4"), ("people", "5")]
    assert summary(drain(env.out)) == [
        ("batch", 0, ids[2:4]), ("end", 0, "people", 2, "4"),
        ("batch", 1, ids[4:5]), ("end", 1, "people", 1, "5"),
        ("batch", 2, []), ("end", 2, "people", 0, None),
        ("eos",),
    ]
    assert await env.store.checkpoints.get(TENANT, "people", CURSOR) == "2"


async def test_an_object_whose_cursor_is_done_is_skipped(env: Env) -> None:
    """1. `people` was finished in the pass under way (cursor `CURSOR_DONE`)
    2. the fetcher runs for `people` and `companies`.
    Result: no page of `people` is fetched or sent; `companies` is paged from the top
    starting at page 0 (one short page, then the empty one that ends it); the stream
    still ends with `EndOfStream`."""
    await env.store.checkpoints.set(TENANT, "people", CURSOR, CURSOR_DONE)
    companies = [r.record_id for r in env.attio.sim.companies.ordered()]
    assert 0 < len(companies) < PAGE  # one short page

    async with run_actor(env.fetcher(["people", "companies"])):
        pass

    end = str(len(companies))
    assert env.fetched == [("companies", None), ("companies", end)]
    assert summary(drain(env.out)) == [
        ("batch", 0, companies), ("end", 0, "companies", len(companies), end),
        ("batch", 1, []), ("end", 1, "companies", 0, None),
        ("eos",),
    ]


async def test_page_numbers_run_on_across_objects(env: Env) -> None:
    """Two objects in one pass: the second object's pages continue the numbering, so
    no two pages of the pass share a number; `EndOfStream` comes once, at the end."""
    ids = env.attio.people_ids()

    async with run_actor(env.fetcher(["companies", "people"])):
        pass

    shown = summary(drain(env.out))
    assert [m[:3] for m in shown if m[0] == "end"] == [
        ("end", 0, "companies"), ("end", 1, "companies"), ("end", 2, "people"),
        ("end", 3, "people"), ("end", 4, "people"), ("end", 5, "people"),
    ]
    assert [m for m in shown if m[0] == "batch"][2:] == [
        ("batch", 2, ids[0:2]), ("batch", 3, ids[2:4]), ("batch", 4, ids[4:5]),
        ("batch", 5, []),
    ]
    assert shown[-1] == ("eos",)
    assert shown.count(("eos",)) == 1


async def test_an_empty_last_page_is_still_sent_with_its_page_end(env: Env) -> None:
    """1. the saved cursor points exactly at the end of the people (offset 5)
    2. the fetcher runs.
    Result: one empty batch and a `PageEnd` of 0 records with no next cursor, so the
    verifier can still commit that page (and mark the object done)."""
    await env.store.checkpoints.set(TENANT, "people", CURSOR, str(PEOPLE))

    async with run_actor(env.fetcher(["people"])):
        pass

    assert summary(drain(env.out)) == [
        ("batch", 0, []), ("end", 0, "people", 0, None), ("eos",),
    ]


async def test_without_a_saved_cursor_an_object_starts_at_its_start_cursor(env: Env) -> None:
    """An incremental pass: `people` starts at the start cursor it was given (the
    changes since the watermark), `companies`, without one, at the top."""
    fetcher = Fetcher(TENANT, adapter=env.attio.adapter, store=env.store,
                      crm_objects=["people", "companies"], page_size=PAGE, out=env.out,
                      start_cursors={"people": "4"})

    async with run_actor(fetcher):
        pass

    assert [f for f in env.fetched if f[0] == "people"] == [("people", "4"), ("people", "5")]
    assert ("companies", None) in env.fetched


async def test_a_saved_cursor_wins_over_the_start_cursor(env: Env) -> None:
    """A pass that crashed resumes where its committed pages end, not at the start."""
    await env.store.checkpoints.set(TENANT, "people", CURSOR, "2")
    fetcher = Fetcher(TENANT, adapter=env.attio.adapter, store=env.store,
                      crm_objects=["people"], page_size=PAGE, out=env.out,
                      start_cursors={"people": "4"})

    async with run_actor(fetcher):
        pass

    assert env.fetched[0] == ("people", "2")
