"""The Metakocka client against a scripted aiohttp server answering the research file's
bodies (`metakocka-api.md` §5): decoding and normalisation, `opr_code` mapping, which
calls are repeated, credentials in the body and nowhere else, searches one at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from crmsync.metakocka.client import MetakockaClient, SearchLocks, company_key
from crmsync.metakocka.errors import (
    MetakockaAuthError,
    MetakockaConflictError,
    MetakockaDecodeError,
    MetakockaEndpointError,
    MetakockaError,
    MetakockaNotFoundError,
    MetakockaRateLimitedError,
    MetakockaRemoteError,
    MetakockaServerError,
    MetakockaTransportError,
    MetakockaValidationError,
    check_ok_body,
)
from crmsync.metakocka.models import (
    BILLING,
    PartnerAddress,
    PartnerContact,
    PartnerInput,
    PartnerUpdate,
)
from crmsync.net.errors import NotFoundError
from crmsync.net.ratelimit import SlidingWindowLimiter
from crmsync.net.retry import RetryPolicy

SECRET = "s3cr3t-8899-key"
FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.02)

# -- the research file's bodies -------------------------------------------------------------

GET_PARTNER = {
    "opr_code": "0", "partner_list_count": "1",
    "partner_list": [{
        "mk_id": "228000009447", "business_entity": "false", "foreign_county": "false",
        "customer": "BAJEC JANEZ", "count_code": "WE0003085",
        # one element, sent as the bare object
        "partner_contact_list": {
            "mk_id": "228000009449", "mk_address_id": "228000009448",
            "contact_address": "Tehnološki park 24", "gsm": "051123456",
            "email": "test@test.si",
        },
        "partner_delivery_address_list": [{
            "mk_id": "228000009448", "address_type": "Račun",
            "street": "Tehnološki park 24", "post_number": "1000", "city": "Ljubljana",
            "payment_due_days": "15", "language": "Slovenski",
        }],
    }],
}
ADD_PARTNER = {
    "mk_id": "228000046627", "mk_contact_id": "228000046630",
    "mk_address_id_list": [
        {"mk_id": "228000046628", "street": "Test, 4"},
        {"mk_id": "228000046629", "street": "Tehnološki park 24"},
    ],
}
UPDATE_PARTNER = {
    "partner_list_count": "1",
    "partner_list": {  # a single partner as the bare object
        "mk_id": "228000046627", "count_code": "32156793", "customer": "Test Uporabnik",
        "business_entity": "true", "tax_id_number": "SI20000001",
        "partner_contact_list": [
            {"mk_id": "228000046630", "mk_address_id": "228000046628", "name": "Test Kontakt"},
            {"mk_id": "228000046631", "mk_address_id": "228000046629", "name": "Novi",
             "gsm": "031111222", "email": "test123@test.com"},
        ],
        "partner_delivery_address_list": [
            {"mk_id": "228000046628", "address_type": "Račun", "street": "Test 1234"},
            {"mk_id": "228000046629", "address_type": "Poslovna enota",
             "street": "Tehnološki park 21", "post_number": "1000", "city": "Ljubljana",
             "country": "Slovenija"},
        ],
    },
}
SEARCH = {
    "opr_code": "0", "opr_time_ms": "62", "result_all_records": "3", "result_count": "2",
    "offset": "0", "limit": "2",
    "result": [
        {"mk_id": "160008942974", "doc_type": "sales_order", "opr_code": "0",
         "count_code": "2064269", "last_change_ts": "2026-08-01T10:00:00+02:00",
         "partner": {"mk_id": "190008942971", "mk_address_id": "190008942972",
                     "customer": "Janez Kljajic", "partner_contact": {"gsm": "0811120408"}}},
        {"mk_id": "160008942975", "doc_type": "sales_order", "opr_code": "0",
         "last_change_ts": "2026-08-02T10:00:00+02:00",
         "partner": {"mk_id": "190008942971"}},
    ],
}
NO_PARTNER = {"opr_code": "2", "opr_desc": "No partner with such properties."}
HTML_404 = "<!doctype html><html><head><title>HTTP Status 404 - Not Found</title></head></html>"



@dataclass
class FakeMk:
    """A Metakocka stand-in: `answers[endpoint]` in turn (the last one repeats)."""

    answers: dict[str, list[Any]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    hold: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    url: str = ""

    def bodies(self, endpoint: str) -> list[dict[str, Any]]:
        return [body for path, body, _ in self.requests if path == endpoint]


def reply(answer: Any) -> web.StreamResponse:
    if isinstance(answer, web.StreamResponse):
        return answer
    return web.json_response(answer)


@contextlib.asynccontextmanager
async def fake_mk(**answers: list[Any]) -> AsyncIterator[FakeMk]:
    mk = FakeMk(answers=dict(answers))

    async def handle(request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        if endpoint not in mk.answers:
            return web.Response(status=404, text=HTML_404, content_type="text/html")
        body = await request.json()
        mk.requests.append((endpoint, body, dict(request.headers)))
        script = mk.answers[endpoint]
        answer = script[min(len(mk.bodies(endpoint)), len(script)) - 1]
        mk.in_flight += 1
        mk.max_in_flight = max(mk.max_in_flight, mk.in_flight)
        try:
            if mk.hold:
                await asyncio.sleep(mk.hold)
        finally:
            mk.in_flight -= 1
        if answer == "drop":  # the connection is lost after the request arrived
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        return reply(answer)

    app = web.Application()
    app.router.add_post("/rest/eshop/v1/{endpoint}", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    mk.url = f"http://127.0.0.1:{runner.addresses[0][1]}/rest/eshop/v1"
    try:
        yield mk
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def client_for(
    mk: FakeMk, *, company_id: str = "16", secret: str = SECRET,
    locks: SearchLocks | None = None, session: aiohttp.ClientSession | None = None,
) -> AsyncIterator[MetakockaClient]:
    async with contextlib.AsyncExitStack() as stack:
        if session is None:
            session = await stack.enter_async_context(aiohttp.ClientSession())
        yield MetakockaClient(
            session, base_url=mk.url, company_id=company_id, secret_key=secret,
            limiter=SlidingWindowLimiter(1000), timeout=5, retry=FAST,
            search_locks=locks or SearchLocks(),
        )


def new_partner() -> PartnerInput:
    return PartnerInput(
        customer="Test Uporabnik", business_entity=False, street="Test, 4",
        post_number="54375", city="Test", country="Slovenija",
        contact=PartnerContact(name="Test Kontakt", gsm="54367865463", email="test@test.com"),
    )


# -- reading partners -------------------------------------------------------------------------


async def test_get_partner_decodes_string_scalars_and_single_objects() -> None:
    """1. get_partner answers the research example, its one contact as a bare object
    Result: a typed partner; "false" is False; the contact is a list of one; the
    request carried `partner_id` and the credentials in the body, no auth header."""
    async with fake_mk(get_partner=[GET_PARTNER]) as mk, client_for(mk) as client:
        partner = await client.get_partner("228000009447")
    assert partner is not None
    assert partner.mk_id == "228000009447"
    assert partner.count_code == "WE0003085"
    assert partner.customer == "BAJEC JANEZ"
    assert partner.business_entity is False
    assert [c.email for c in partner.contacts] == ["test@test.si"]
    assert partner.contacts[0].mk_address_id == "228000009448"
    assert partner.contacts[0].gsm == "051123456"
    assert partner.addresses[0].address_type == BILLING
    assert partner.addresses[0].city == "Ljubljana"
    ((_, body, headers),) = mk.requests
    assert body == {"secret_key": SECRET, "company_id": "16", "partner_id": "228000009447"}
    assert "Authorization" not in headers


async def test_no_partner_with_such_properties_is_none_and_empty() -> None:
    """Result: `opr_code 2` "No partner with such properties." is None for an id and []
    for a search, not an error; and it is not repeated (one call each)."""
    async with fake_mk(get_partner=[NO_PARTNER]) as mk, client_for(mk) as client:
        assert await client.get_partner("1") is None
        assert await client.find_partners(email="nobody@example.com") == []
    assert len(mk.requests) == 2


async def test_find_partners_sends_the_filters_metakocka_names() -> None:
    """Result: the filters go out as `partner_name`, `partner_tax_number`,
    `partner_email`, `partner_phone_number`, blanks left out; none at all is refused
    before any call."""
    async with fake_mk(get_partner=[GET_PARTNER]) as mk, client_for(mk) as client:
        found = await client.find_partners(name=" Janez ", tax_number="SI20000001",
                                           email="", phone="051123456")
        with pytest.raises(ValueError, match="at least one filter"):
            await client.find_partners(name="  ")
    assert [p.mk_id for p in found] == ["228000009447"]
    ((_, body, _),) = mk.requests
    assert body == {"secret_key": SECRET, "company_id": "16", "partner_name": "Janez",
                    "partner_tax_number": "SI20000001", "partner_phone_number": "051123456"}


async def test_a_read_is_repeated_after_an_internal_error() -> None:
    """1. get_partner answers `opr_code 1` (internal error), then the partner
    Result: the read is repeated and returns the partner."""
    internal = {"opr_code": "1", "opr_desc": "Unknown internal server error"}
    async with fake_mk(get_partner=[internal, GET_PARTNER]) as mk, client_for(mk) as client:
        partner = await client.get_partner("228000009447")
    assert partner is not None
    assert len(mk.requests) == 2


# -- writing partners -------------------------------------------------------------------------


async def test_add_partner_without_opr_code_is_a_success() -> None:
    """1. add_partner answers the research example: ids and no `opr_code`
    Result: the new ids, the billing address first; the body is add_partner's shape
    (`place` for the city, one `partner_contact`, string booleans)."""
    async with fake_mk(add_partner=[ADD_PARTNER]) as mk, client_for(mk) as client:
        added = await client.add_partner(new_partner())
    assert added.mk_id == "228000046627"
    assert added.mk_contact_id == "228000046630"
    assert added.address_ids == ("228000046628", "228000046629")
    assert added.billing_address_id == "228000046628"
    ((_, body, _),) = mk.requests
    assert body == {
        "secret_key": SECRET, "company_id": "16",
        "partner": {
            "business_entity": "false", "buyer": "true", "customer": "Test Uporabnik",
            "street": "Test, 4", "post_number": "54375", "place": "Test",
            "country": "Slovenija",
            "partner_contact": {"name": "Test Kontakt", "email": "test@test.com",
                                "gsm": "54367865463"},
        },
    }


@pytest.mark.parametrize("failure", [
    {"opr_code": "1", "opr_desc": "Unknown internal server error"},
    web.Response(status=502, text="bad gateway"),
    "drop",
])
async def test_add_partner_is_never_repeated_after_an_unsure_failure(failure: Any) -> None:
    """1. add_partner fails in a way that may have created the partner (internal
    error, a 5xx, the connection lost after the request arrived)
    Result: the error is raised after exactly one call: a repeat could make a
    duplicate partner (the caller reconciles with its intent and a lookup)."""
    async with fake_mk(add_partner=[failure, ADD_PARTNER]) as mk, client_for(mk) as client:
        with pytest.raises((MetakockaServerError, MetakockaTransportError)):
            await client.add_partner(new_partner())
    assert len(mk.requests) == 1


async def test_quote_exceeds_is_retried_even_for_add_partner() -> None:
    """1. add_partner answers `opr_code 5` "Quote exceeds" twice, then the ids
    Result: repeated (Metakocka processed nothing) and created once."""
    quote = {"opr_code": "5", "opr_desc": "Quote exceeds"}
    async with fake_mk(add_partner=[quote, quote, ADD_PARTNER]) as mk, \
            client_for(mk) as client:
        added = await client.add_partner(new_partner())
    assert added.mk_id == "228000046627"
    assert len(mk.requests) == 3


async def test_update_partner_returns_the_snapshot_and_sends_only_what_is_set() -> None:
    """Result: the answer's partner (a bare object) as the post-write snapshot; the
    body has `mk_id`, the changed fields, and contact/address lists with their ids."""
    update = PartnerUpdate(
        mk_id="228000046627", customer="Test Uporabnik",
        contacts=[PartnerContact(mk_id="228000046630", name="Test Kontakt", email="a@b.si")],
        addresses=[PartnerAddress(mk_id="228000046629", street="Tehnološki park 21")],
    )
    assert not update.adds_something
    async with fake_mk(update_partner=[UPDATE_PARTNER]) as mk, client_for(mk) as client:
        partner = await client.update_partner(update)
    assert partner.count_code == "32156793"
    assert partner.business_entity is True
    assert len(partner.contacts) == 2
    assert partner.addresses[1].country == "Slovenija"
    ((_, body, _),) = mk.requests
    assert body["partner"] == {
        "mk_id": "228000046627", "customer": "Test Uporabnik",
        "partner_contact_list": [{"mk_id": "228000046630", "name": "Test Kontakt",
                                  "email": "a@b.si"}],
        "partner_delivery_address_list": [{"mk_id": "228000046629",
                                           "street": "Tehnološki park 21"}],
    }


async def test_update_partner_is_repeated_only_when_it_adds_nothing() -> None:
    """1. update_partner answers `opr_code 1` first, then the partner
    Result: an update of existing fields is repeated and succeeds; one that adds a
    contact (no `mk_id`) is raised after one call (a repeat would add it twice)."""
    internal = {"opr_code": "1", "opr_desc": "Unknown internal server error"}
    fields_only = PartnerUpdate(mk_id="228000046627", customer="Novo ime")
    adds_contact = PartnerUpdate(mk_id="228000046627", contacts=[
        PartnerContact(mk_address_id="228000046629", name="Novi", gsm="031111222"),
    ])
    assert adds_contact.adds_something
    async with fake_mk(update_partner=[internal, UPDATE_PARTNER]) as mk, \
            client_for(mk) as client:
        assert (await client.update_partner(fields_only)).mk_id == "228000046627"
    assert len(mk.requests) == 2
    async with fake_mk(update_partner=[internal, UPDATE_PARTNER]) as mk, \
            client_for(mk) as client:
        with pytest.raises(MetakockaServerError):
            await client.update_partner(adds_contact)
    assert len(mk.requests) == 1
    assert mk.requests[0][1]["partner"]["partner_contact_list"] == [
        {"mk_address_id": "228000046629", "name": "Novi", "gsm": "031111222"}
    ]


# -- documents --------------------------------------------------------------------------------


async def test_search_documents_pages_with_last_change_from() -> None:
    """Result: the request is a `result_type` "doc" search of the type with the window
    and a `last_change_from` filter; the page has the documents' partner ids (distinct),
    the total and the newest `last_change_ts`."""
    async with fake_mk(search=[SEARCH]) as mk, client_for(mk) as client:
        page = await client.search_documents(
            "sales_order", last_change_from="2026-08-01T00:00:00+02:00", offset=0, limit=2
        )
        with pytest.raises(ValueError):
            await client.search_documents("sales_order", limit=101)
    assert page.partner_ids == ["190008942971"]
    assert page.total == 3
    assert page.has_more
    assert page.last_change_ts == "2026-08-02T10:00:00+02:00"
    ((_, body, _),) = mk.requests
    assert body == {
        "secret_key": SECRET, "company_id": "16", "doc_type": "sales_order",
        "result_type": "doc", "offset": "0", "limit": "2",
        "query_advance": [{"type": "last_change_from", "value": "2026-08-01T00:00:00+02:00"}],
    }


async def test_a_search_with_one_result_as_a_bare_object_and_an_empty_one() -> None:
    """Result: `result` as a single object is a page of one; no `result` is empty."""
    single = {**SEARCH, "result": SEARCH["result"][0], "result_all_records": "1"}
    empty = {"opr_code": "0", "result_all_records": "0", "result_count": "0",
             "offset": "0", "limit": "100"}
    async with fake_mk(search=[single, empty]) as mk, client_for(mk) as client:
        one = await client.search_documents("sales_order")
        none = await client.search_documents("sales_order", offset=100)
    assert [d.mk_id for d in one.documents] == ["160008942974"]
    assert not one.has_more
    assert none.documents == [] and not none.has_more


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "kind", "category"), [
    ({"opr_code": "3", "opr_desc": "Invalid value for secret_key and company_id"},
     MetakockaAuthError, "auth"),
    ({"opr_code": "4", "opr_desc": "IP address '1.2.3.4' is not allowed for company_id = 16"},
     MetakockaAuthError, "auth"),
    ({"opr_code": "2", "opr_desc": "Partner data are missing"},
     MetakockaValidationError, "validation"),
    ({"opr_code": "6", "opr_desc": "Profit center 'X' doesn't exist."},
     MetakockaValidationError, "validation"),
    ({"opr_code": "6", "opr_desc": "Partner already exists."},
     MetakockaConflictError, "conflict"),
    ({"opr_code": "5", "opr_desc": "Quote exceeds"}, MetakockaRateLimitedError, "rate_limited"),
    ({"opr_code": "42", "opr_desc": "Something new"}, MetakockaRemoteError, "remote"),
    ({"opr_code": "2", "error_desc": "Cannot find document type"},
     MetakockaValidationError, "validation"),
])
async def test_opr_codes_map_to_the_error_categories(
    answer: dict[str, str], kind: type[MetakockaError], category: str
) -> None:
    """Result: each `opr_code` / `opr_desc` (HTTP 200) is its typed error and §9
    category, with Metakocka's text and code."""
    async with fake_mk(add_partner=[answer]) as mk, client_for(mk) as client:
        with pytest.raises(kind) as raised:
            await client.add_partner(new_partner())
    assert raised.value.category == category
    assert raised.value.code == answer["opr_code"]
    assert (answer.get("opr_desc") or answer["error_desc"]) in str(raised.value)


async def test_an_html_404_is_an_endpoint_fault_not_a_missing_partner() -> None:
    """1. the base URL points at the wrong endpoint family: an HTML 404 page
    Result: `MetakockaEndpointError` (category remote), not a `NotFoundError`, so a
    misconfiguration never reads as "the partner is gone"; not repeated."""
    async with fake_mk() as mk, client_for(mk) as client:
        with pytest.raises(MetakockaEndpointError) as raised:
            await client.get_partner("228000009447")
    assert not isinstance(raised.value, NotFoundError)
    assert raised.value.category == "remote"
    assert raised.value.status == 404
    assert "HTML page" in str(raised.value)


async def test_a_body_that_is_not_metakockas_shape_is_a_decode_error() -> None:
    """Result: a partner without `mk_id`, or an answer that is not a JSON object, is a
    `MetakockaDecodeError`, never a raw KeyError or msgspec error."""
    broken = {"opr_code": "0", "partner_list": [{"customer": "No Id"}]}
    async with fake_mk(get_partner=[broken], add_partner=[["not", "an", "object"]]) as mk, \
            client_for(mk) as client:
        with pytest.raises(MetakockaDecodeError):
            await client.find_partners(name="x")
        with pytest.raises(MetakockaDecodeError):
            await client.add_partner(new_partner())


def test_not_found_text_wins_over_the_code() -> None:
    """Result: the text decides ("No partner with such properties." is not found
    whatever the code); "0" and no code at all are successes."""
    error = check_ok_body(b'{"opr_code":"2","opr_desc":"No partner with such properties."}',
                          "POST", "/get_partner")
    assert isinstance(error, MetakockaNotFoundError)
    assert error.category == "not_found"
    assert check_ok_body(b'{"opr_code":"0"}', "POST", "/x") is None
    assert check_ok_body(b'{"mk_id":"1"}', "POST", "/x") is None
    assert check_ok_body(b"<html>", "POST", "/x") is None  # the decoder reports it


# -- secrets ----------------------------------------------------------------------------------


async def test_the_secret_key_is_in_no_repr_error_or_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1. Metakocka echoes the key in its error texts: an internal error (retried and
    logged), then an auth error; a 5xx page echoing it too
    Result: the key appears in no repr, no exception text and no log line."""
    echo = {"opr_code": "1", "opr_desc": f"internal error for key {SECRET}"}
    auth = {"opr_code": "3", "opr_desc": f"Invalid value for secret_key {SECRET}"}
    page = web.Response(status=500, text=f"crash {SECRET}")
    caplog.set_level(logging.DEBUG)
    async with fake_mk(get_partner=[echo, auth], add_partner=[page]) as mk, \
            client_for(mk) as client:
        with pytest.raises(MetakockaAuthError) as auth_error:
            await client.get_partner("1")
        with pytest.raises(MetakockaServerError) as server_error:
            await client.add_partner(new_partner())
        texts = [repr(client), str(auth_error.value), repr(auth_error.value),
                 str(server_error.value), repr(client._http), caplog.text]
    assert "[redacted]" in str(auth_error.value)
    assert "[redacted]" in str(server_error.value)
    assert "retry" in caplog.text  # the internal error was retried and logged
    for text in texts:
        assert SECRET not in text
    assert mk.requests[0][1]["secret_key"] == SECRET  # it did travel, in the body


# -- one search at a time per company ---------------------------------------------------------


async def test_searches_run_one_at_a_time_per_company() -> None:
    """1. two clients (two tenants) of one company, and one of another company
    2. each starts 3 searches at once (find_partners and search_documents); the
       server holds each answer 50 ms and counts searches in flight
    Result: never more than one search of the company in flight at once; the other
    company's searches are not held behind them; reads by id are not serialised."""
    locks = SearchLocks()
    async with fake_mk(get_partner=[GET_PARTNER], search=[SEARCH]) as mk, \
            aiohttp.ClientSession() as session, \
            client_for(mk, locks=locks, session=session) as one, \
            client_for(mk, locks=locks, session=session) as two:
        mk.hold = 0.05
        calls = [one.find_partners(name="a"), two.find_partners(email="b@c.si"),
                 one.search_documents("sales_order"), two.search_documents("complaint"),
                 one.find_partners(phone="1"), two.search_documents("sales_order")]
        await asyncio.gather(*calls)
        assert mk.max_in_flight == 1
        assert len(mk.requests) == 6

        mk.max_in_flight = 0
        async with client_for(mk, company_id="17", secret="other", locks=locks,
                              session=session) as other:
            await asyncio.gather(one.find_partners(name="a"), other.find_partners(name="a"))
            assert mk.max_in_flight == 2
            mk.max_in_flight = 0
            await asyncio.gather(*(one.get_partner("228000009447") for _ in range(3)))
            assert mk.max_in_flight == 3


def test_a_company_is_its_id_on_its_host() -> None:
    """Result: the same company id on two installations is two companies."""
    assert company_key("https://main.metakocka.si/rest/eshop/v1", "16") == \
        "main.metakocka.si/16"
    assert company_key("https://devmainsi.metakocka.si/rest/eshop/v1", "16") != \
        company_key("https://main.metakocka.si/rest/eshop/v1", "16")
