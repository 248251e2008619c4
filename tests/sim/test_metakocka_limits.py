"""The Metakocka simulator's search, limits and faults over real sockets: document
search with paging and `last_change_from`, one search at a time per company (overlaps
counted), the per-company call limit (`opr_code 5` "Quote exceeds"), Metakocka's IP
restriction, and injected faults (5xx pages, drops before and after applying)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import aiohttp
import pytest
from sim.metakocka_support import COMPANY, KEY, OTHER_COMPANY, OTHER_KEY, as_list, call, new_partner

from crmsync.sim.metakocka import (
    CompanyConfig,
    MetakockaSim,
    MetakockaSimConfig,
    run_metakocka_simulator,
)
from crmsync.sim.metakocka.seed import LJUBLJANA

Running = tuple[MetakockaSim, str, aiohttp.ClientSession]
SEARCH_LATENCY = 0.15


@pytest.fixture
async def mk() -> AsyncIterator[Running]:
    config = MetakockaSimConfig(
        companies=[CompanyConfig(COMPANY, KEY, partners=40, documents=250,
                                 calls_per_window=1000),
                   CompanyConfig(OTHER_COMPANY, OTHER_KEY, partners=5, documents=3,
                                 calls_per_window=1000)],
        seed=5,
    )
    async with run_metakocka_simulator(config=config) as (sim, base), \
            aiohttp.ClientSession() as http:
        yield sim, base, http


def search_body(doc_type: str = "sales_order", **extra: object) -> dict[str, object]:
    return {"doc_type": doc_type, "result_type": "doc", **extra}


# -- search --------------------------------------------------------------------------


async def test_search_pages_at_most_100_and_counts_every_match(mk: Running) -> None:
    sim, base, http = mk
    expected = [d.mk_id for d in sim.companies[COMPANY].documents if d.doc_type == "sales_order"]
    seen: list[str] = []
    offset = 0
    while True:
        answer = await call(http, base, "search",
                            search_body(limit="500", offset=str(offset)))
        assert answer["opr_code"] == "0" and answer["limit"] == "100"
        assert answer["result_all_records"] == str(len(expected))
        page = as_list(answer.get("result"))
        assert answer["result_count"] == str(len(page))
        seen += [d["mk_id"] for d in page]
        if len(page) < 100:
            break
        offset += 100
    assert seen == expected
    first = as_list((await call(http, base, "search", search_body(limit=1)))["result"])[0]
    partner = sim.companies[COMPANY].partners[first["partner"]["mk_id"]]
    assert first["partner"]["mk_address_id"] == partner.main_address.mk_id
    assert first["last_change_ts"].endswith("+01:00")


async def test_last_change_from_is_inclusive_and_sales_order_only(mk: Running) -> None:
    sim, base, http = mk
    orders = [d for d in sim.companies[COMPANY].documents if d.doc_type == "sales_order"]
    cut = sorted(d.last_change for d in orders)[len(orders) // 2]
    wanted = [d.mk_id for d in orders if d.last_change >= cut]
    answer = await call(http, base, "search", search_body(
        query_advance=[{"type": "last_change_from", "value": cut.isoformat()}]))
    assert [d["mk_id"] for d in as_list(answer["result"])] == wanted
    answer = await call(http, base, "search", search_body(
        "sales_bill_domestic",
        query_advance=[{"type": "last_change_from", "value": cut.isoformat()}]))
    assert answer["opr_code"] == "2"
    for value in ("yesterday", "2026-01-05T10:00:00"):
        answer = await call(http, base, "search", search_body(
            query_advance=[{"type": "last_change_from", "value": value}]))
        assert answer == {"opr_code": "2", "opr_desc": "Not valid date for last_change_from"}


async def test_a_new_document_is_found_after_the_watermark(mk: Running) -> None:
    sim, base, http = mk
    mk_id = sim.add_partner(COMPANY, "Nov Kupec", email="nov@kupec.si").mk_id
    later = datetime(2027, 1, 1, 9, 0, tzinfo=LJUBLJANA)
    sim.add_document(COMPANY, mk_id, at=later)
    answer = await call(http, base, "search", search_body(
        query_advance=[{"type": "last_change_from",
                        "value": (later - timedelta(seconds=1)).isoformat()}]))
    [found] = as_list(answer["result"])
    assert found["partner"]["mk_id"] == mk_id
    ids_only = await call(http, base, "search", {"doc_type": "sales_order", "limit": "1"})
    assert set(as_list(ids_only["result"])[0]) == {"mk_id", "opr_code", "count_code"}


async def test_search_errors(mk: Running) -> None:
    _, base, http = mk
    assert (await call(http, base, "search", {}))["opr_code"] == "2"
    assert (await call(http, base, "search", {"doc_type": "partner"}))["opr_code"] == "2"
    bad_limit = await call(http, base, "search", {"doc_type": "sales_order", "limit": "-1"})
    assert bad_limit["opr_code"] == "2"


async def test_concurrent_searches_of_one_company_queue_and_are_counted(mk: Running) -> None:
    """1. three searches of company 16 and one of company 27 are sent at once
    2. each search holds its company's slot for SEARCH_LATENCY
    Result: 16's run one after another (>= 3 x latency in all) and count 2 overlaps,
    max 3 in flight; 27's single search overlaps nothing."""
    sim, base, http = mk
    sim.config.search_latency = SEARCH_LATENCY
    started = time.monotonic()
    ours = [call(http, base, "search", search_body(limit=1)) for _ in range(3)]
    theirs = call(http, base, "search", search_body(limit=1), company=OTHER_COMPANY,
                  key=OTHER_KEY)
    answers = await asyncio.gather(*ours, theirs)
    assert all(a["opr_code"] == "0" for a in answers)
    assert time.monotonic() - started >= 3 * SEARCH_LATENCY
    ours_company, theirs_company = sim.companies[COMPANY], sim.companies[OTHER_COMPANY]
    assert (ours_company.max_concurrent_searches, ours_company.search_overlaps) == (3, 2)
    assert (theirs_company.max_concurrent_searches, theirs_company.search_overlaps) == (1, 0)
    assert sim.max_concurrent_searches == 3 and sim.search_overlaps == 2


async def test_serialised_searches_never_overlap(mk: Running) -> None:
    sim, base, http = mk
    sim.config.search_latency = 0.01
    for _ in range(3):
        await call(http, base, "search", search_body(limit=1))
    assert sim.max_concurrent_searches == 1 and sim.search_overlaps == 0


# -- call limit, IP restriction -----------------------------------------------------------


async def test_the_call_limit_is_per_company_and_answers_quote_exceeds() -> None:
    config = MetakockaSimConfig(
        companies=[CompanyConfig(COMPANY, KEY, partners=3, calls_per_window=5),
                   CompanyConfig(OTHER_COMPANY, OTHER_KEY, partners=3, calls_per_window=5)],
        rate_window_seconds=2.0,  # 7 calls surely fit in it
    )
    async with run_metakocka_simulator(config=config) as (sim, base), \
            aiohttp.ClientSession() as http:
        body = {"partner_name": "a"}
        answers = [await call(http, base, "get_partner", body) for _ in range(7)]
        assert "5" not in [a["opr_code"] for a in answers[:5]]
        assert answers[5:] == [{"opr_code": "5", "opr_desc": "Quote exceeds"}] * 2
        other = await call(http, base, "get_partner", body, company=OTHER_COMPANY,
                           key=OTHER_KEY)
        assert other["opr_code"] != "5"  # the other company has its own window
        assert sim.stats.count(company_id=COMPANY, outcome="5") == 2
        async with asyncio.timeout(10):  # poll until the window has room again
            while True:
                if (await call(http, base, "get_partner", body))["opr_code"] != "5":
                    break
                await asyncio.sleep(0.05)


async def test_an_ip_restriction_is_opr_code_4() -> None:
    config = MetakockaSimConfig(companies=[
        CompanyConfig(COMPANY, KEY, partners=2, allowed_ips=["10.0.0.1"])])
    async with run_metakocka_simulator(config=config) as (_, base), \
            aiohttp.ClientSession() as http:
        answer = await call(http, base, "get_partner", {"partner_name": "a"})
    assert answer["opr_code"] == "4"
    assert "is not allowed for company_id = 16" in answer["opr_desc"]


# -- faults ------------------------------------------------------------------------------


async def test_a_connection_dropped_after_add_partner_still_created_it(mk: Running) -> None:
    """1. the next add_partner is applied, then its connection is cut
    2. the client cannot know; a lookup by name finds the partner
    Result: exactly one partner, the drop counted, the call counted as answered."""
    sim, base, http = mk
    sim.faults.drop_after(1, route="/rest/eshop/v1/add_partner")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(http, base, "add_partner", new_partner("Izgubljen Odgovor d.o.o."))
    found = await call(http, base, "get_partner", {"partner_name": "Izgubljen Odgovor"})
    assert len(as_list(found["partner_list"])) == 1
    assert sim.faults.dropped_after_apply == 1
    assert sim.stats.count("add_partner", company_id=COMPANY, outcome="0") == 1


async def test_injected_failures_are_html_pages_and_apply_nothing(mk: Running) -> None:
    sim, base, http = mk
    before = len(sim.companies[COMPANY].partners)
    sim.faults.fail(1, status=503, route="POST /rest/eshop/v1/add_partner")
    payload = {"secret_key": KEY, "company_id": COMPANY, **new_partner()}
    async with http.post(f"{base}/add_partner", json=payload) as response:
        assert response.status == 503 and response.content_type == "text/html"
    assert len(sim.companies[COMPANY].partners) == before
    assert sim.stats.count("add_partner", outcome="http 503") == 1
    sim.faults.drop(1)
    with pytest.raises(aiohttp.ClientError):
        await call(http, base, "get_partner", {"partner_name": "a"})
    assert sim.faults.dropped_connections == 1


async def test_faults_set_from_another_process(mk: Running) -> None:
    sim, base, http = mk
    root = base.removesuffix("/rest/eshop/v1")
    async with http.post(f"{root}/_sim/faults", json={"force_429_next": 2}) as r:
        assert r.status == 200 and (await r.json())["force_429_next"] == 2
    codes = [(await call(http, base, "get_partner", {"partner_name": "a"}))["opr_code"]
             for _ in range(3)]
    assert codes == ["5", "5", "0"]
    assert sim.faults.forced_429s == 2
    async with http.post(f"{root}/_sim/faults", json={"nope": 1}) as r:
        assert r.status == 400
    async with http.post(f"{root}/_sim/stats/reset") as r:
        assert r.status == 200
    assert sim.stats.total == 0
