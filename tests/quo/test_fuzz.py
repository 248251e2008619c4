"""`QuoClient` against answers of any shape: a typed value or a `QuoError`, nothing else.

One scripted server on 127.0.0.1 serves the whole module; each example sets the
answer(s) the next call gets. Answers are built from the client's own models (Quo's
documented shapes) with fields missing, extra and wrongly typed, plus JSON of any
shape, bodies that are not JSON, error statuses and odd headers (`Retry-After`). The
properties, for every route the client calls:

* a 2xx whose body decodes as the route's documented shape returns exactly that value;
* any other 2xx is a `QuoDecodeError`; a 4xx/5xx is the `QuoError` of its status;
* nothing else escapes: no raw `msgspec`, `KeyError`, `TypeError` or `AttributeError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import msgspec.inspect as mi
import pytest
import pytest_asyncio
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from support.fuzz import Answer, ScriptedApi, answers, from_type

from crmsync.net.ratelimit import SlidingWindowLimiter
from crmsync.net.retry import RetryPolicy
from crmsync.quo.client import Data, QuoClient
from crmsync.quo.errors import (
    QuoAuthError,
    QuoConflictError,
    QuoDecodeError,
    QuoError,
    QuoNotFoundError,
    QuoRateLimitedError,
    QuoServerError,
    QuoValidationError,
)
from crmsync.quo.models import (
    Call,
    CallSummary,
    CallTranscript,
    Contact,
    ContactInput,
    ContactPage,
    DefaultFields,
    Message,
    PhoneNumber,
    Webhook,
    WebhookInput,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

SETTINGS = settings(max_examples=150, deadline=None)
CONTACT = ContactInput(default_fields=DefaultFields(first_name="Ada"), external_id="r1",
                       source="attio")


@dataclass
class Env:
    api: ScriptedApi
    client: QuoClient


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    async with ScriptedApi() as api, aiohttp.ClientSession() as session:
        client = QuoClient(
            session, base_url=api.url, api_key="fuzz-key", limiter=SlidingWindowLimiter(10_000),
            tenant="fuzz", timeout=5, retry=RetryPolicy(max_retries=0),
        )
        yield Env(api, client)


@dataclass(frozen=True)
class Route:
    """One client call: how to make it, the body type it decodes, and how the decoded
    body becomes its result (None: it returns None whatever the body)."""

    name: str
    call: Callable[[QuoClient], Awaitable[Any]]
    decodes: Any
    result: Callable[[Any], Any] | None


async def _listed(client: QuoClient) -> list[Contact]:
    return [c for page in [p async for p in client.iter_contacts()] for c in page]


ROUTES = [
    Route("create_contact", lambda c: c.create_contact(CONTACT), Data[Contact],
          lambda d: d.data),
    Route("get_contact", lambda c: c.get_contact("CT1"), Data[Contact], lambda d: d.data),
    Route("update_contact", lambda c: c.update_contact("CT1", CONTACT), Data[Contact],
          lambda d: d.data),
    Route("list_contacts_by_external_ids",
          lambda c: c.list_contacts_by_external_ids(["r1", "r2"]), ContactPage,
          lambda p: p.data),
    Route("find_contact_by_external_id", lambda c: c.find_contact_by_external_id("r1"),
          ContactPage,
          lambda p: next((x for x in p.data if x.external_id == "r1"), None)),
    Route("iter_contacts", _listed, ContactPage, lambda p: p.data),
    Route("list_phone_numbers", lambda c: c.list_phone_numbers(), Data[list[PhoneNumber]],
          lambda d: d.data),
    Route("get_call", lambda c: c.get_call("AC1"), Data[Call], lambda d: d.data),
    Route("get_message", lambda c: c.get_message("AM1"), Data[Message], lambda d: d.data),
    Route("get_call_summary", lambda c: c.get_call_summary("AC1"), Data[CallSummary],
          lambda d: d.data),
    Route("get_call_transcript", lambda c: c.get_call_transcript("AC1"),
          Data[CallTranscript], lambda d: d.data),
    Route("list_webhooks", lambda c: c.list_webhooks(), Data[list[Webhook]], lambda d: d.data),
    Route("create_webhook",
          lambda c: c.create_webhook("messages", WebhookInput(url="https://x", events=["a"])),
          Data[Webhook], lambda d: d.data),
    Route("delete_contact", lambda c: c.delete_contact("CT1"), None, None),
    Route("delete_webhook", lambda c: c.delete_webhook("WH1"), None, None),
    Route("bulk_create_contacts", lambda c: c.bulk_create_contacts([CONTACT]), None, None),
]

ERROR_KINDS: dict[int, type[QuoError]] = {
    400: QuoValidationError, 401: QuoAuthError, 403: QuoAuthError, 404: QuoNotFoundError,
    409: QuoConflictError, 422: QuoValidationError, 429: QuoRateLimitedError,
}


def expected_error(status: int) -> type[QuoError]:
    return QuoServerError if status >= 500 else ERROR_KINDS[status]


def bodies(route: Route) -> st.SearchStrategy[Answer]:
    """Answers for `route`: its documented shape, tame and wild, and everything else."""
    if route.decodes is None:
        return answers(st.none())
    info = mi.type_info(route.decodes)
    return answers(st.one_of(from_type(info, wild=False), from_type(info, wild=True)))


async def outcome(env: Env, route: Route, answer: Answer) -> Any:
    """What the call returned, or the `QuoError` it raised (anything else propagates)."""
    env.api.play(answer)
    try:
        return await route.call(env.client)
    except QuoError as error:
        return error


def check(route: Route, answer: Answer, got: Any) -> None:
    if answer.status >= 300:
        if route.name == "delete_webhook" and answer.status == 404:
            assert got is None  # already gone is what deleting wanted
            return
        assert isinstance(got, expected_error(answer.status)), got
        return
    if route.decodes is None:
        assert got is None
        return
    try:
        decoded = msgspec.json.decode(answer.body, type=route.decodes)
    except (msgspec.DecodeError, msgspec.ValidationError):
        assert isinstance(got, QuoDecodeError), got
        assert "unexpected response" in str(got)
        return
    assert route.result is not None
    assert got == route.result(decoded)


BY_NAME = {route.name: route for route in ROUTES}
CONTACT_ROUTES = [r for r in ROUTES if "contact" in r.name]
OTHER_ROUTES = [r for r in ROUTES if "contact" not in r.name]


def calls(routes: list[Route]) -> st.SearchStrategy[tuple[Route, Answer]]:
    return st.sampled_from(routes).flatmap(lambda r: st.tuples(st.just(r), bodies(r)))


async def prove(env: Env, call: tuple[Route, Answer]) -> None:
    route, answer = call
    got = await outcome(env, route, answer)
    event(f"{route.name}: {type(got).__name__ if isinstance(got, QuoError) else 'value'}")
    check(route, answer, got)


@settings(SETTINGS, max_examples=100)  # the biggest bodies: contacts and their pages
@given(call=calls(CONTACT_ROUTES))
# A Retry-After date past year 9999 on an error answer: parsing it raised OverflowError.
@example(call=(BY_NAME["get_contact"], Answer(status=503, body=b"", headers=(
    ("Retry-After", "1 Jan 10000000000 00:00:00"),))))
# Pinned, not regressions: a 2xx that is not UTF-8, and one with data of the wrong type.
@example(call=(BY_NAME["get_contact"], Answer(status=200, body=b"\xff\xfe{}")))
async def test_contact_calls_return_typed_values_or_quo_errors(
    call: tuple[Route, Answer], env: Env
) -> None:
    await prove(env, call)


@SETTINGS
@given(call=calls(OTHER_ROUTES))
@example(call=(BY_NAME["list_phone_numbers"], Answer(status=200, body=b'{"data": {"id": 5}}')))
async def test_activity_and_webhook_calls_return_typed_values_or_quo_errors(
    call: tuple[Route, Answer], env: Env
) -> None:
    await prove(env, call)
