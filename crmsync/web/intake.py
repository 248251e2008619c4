"""Webhook intake (INTERFACE §4): `POST /webhooks/{tenant}/crm` and `/webhooks/{tenant}/quo`.

A webhook is answered 2xx only after its inbox row is committed, and the handler never
calls the CRM or Quo: the order is throttle (429) → size cap (413) → signature (401) →
parse (400) → insert (committed, shielded) → 200 → `target.notify()`. Everything else
happens in the tenant's inbox processor. The throttle and the off-loop verification of
big bodies are the `IntakeGuard`'s (`guard.py`): a source whose signatures keep failing
is answered 429 before its body is read.

Quo deliveries of both webhook systems arrive on `/webhooks/{tenant}/quo` (INTERFACE
§7): the target verifies a `webhook-id` request the Standard Webhooks way and any other
with `openphone-signature`. Either envelope is stored as received, with its event id,
its type, its business key (`quo/envelope.py`: one Quo occurrence through either
system) and, from the new system, its delivery id; the inbox refuses a duplicate on any
of the three (200 `{"status": "duplicate"}`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar

from aiohttp import web

from crmsync import log_context, metrics
from crmsync.adapters.base import WebhookFormatError, WebhookSignatureError
from crmsync.store import Source
from crmsync.web.guard import IntakeGuard, ThrottledError
from crmsync.web.keys import (
    GUARD_KEY,
    MAX_BODY_KEY,
    PENDING_COMMITS_KEY,
    STORE_KEY,
    TARGETS_KEY,
    error_response,
    json_response,
)
from crmsync.web.targets import WebhookTarget

log = logging.getLogger(__name__)

T = TypeVar("T")
Outcome = Literal[
    "accepted", "duplicate", "bad_signature", "throttled", "malformed", "too_large",
    "unknown_tenant", "error",
]

#: the metric's tenant label for ids no target answers to (bounded label values)
UNKNOWN_TENANT_LABEL: Final = "_unknown"
#: how long a cancelled handler still waits for its inbox commit to finish
COMMIT_GRACE_SECONDS: Final = 5.0
#: never stored: credentials a proxy or sender might add (signatures are kept)
SENSITIVE_HEADERS: Final = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
    "x-auth-token", "x-amz-security-token",
})


async def crm_webhook(request: web.Request) -> web.Response:
    return await _intake(request, "crm")


async def quo_webhook(request: web.Request) -> web.Response:
    return await _intake(request, "quo")


async def _intake(request: web.Request, source: Source) -> web.Response:
    target = request.app[TARGETS_KEY](request.match_info["tenant"])
    if target is None:
        _count(UNKNOWN_TENANT_LABEL, source, "unknown_tenant")
        return error_response(404, "unknown tenant")
    with log_context.tenant(target.tenant):
        return await _intake_for(request, source, target)


async def _intake_for(
    request: web.Request, source: Source, target: WebhookTarget
) -> web.Response:
    tenant = target.tenant
    guard = request.app[GUARD_KEY]
    sender = IntakeGuard.source_of(request.remote)
    try:
        guard.check(sender)  # before the body is read: a throttled source costs nothing
    except ThrottledError as exc:
        return _throttled(tenant, source, exc)
    limit = request.app[MAX_BODY_KEY]
    body = await _read_capped(request, limit)
    if body is None:
        _count(tenant, source, "too_large")
        return error_response(413, f"body larger than {limit} bytes")
    headers = request.headers
    offload = guard.offloader(sender)
    delivery_id: str | None = None  # Quo's `webhook-id` (2026-03-30 system)
    try:
        if source == "crm":
            await target.verify_crm(
                headers, body, offload=offload, method=request.method,
                # The raw path: what the CRM signed, before any percent-decoding.
                url=target.delivered_url(
                    request.raw_path, f"{request.scheme}://{request.host}{request.raw_path}"),
            )
        else:
            delivery_id = await target.verify_quo(headers, body, offload=offload)
    except ThrottledError as exc:
        return _throttled(tenant, source, exc)
    except WebhookSignatureError as exc:
        log.debug("%s webhook rejected: %s", source, exc)
        await guard.failed(sender)
        _count(tenant, source, "bad_signature")
        return error_response(401, "bad or missing signature")
    try:
        event = _parse(target, source, headers, body)
    except WebhookFormatError as exc:
        _count(tenant, source, "malformed")
        return error_response(400, f"malformed webhook: {exc}")
    try:
        row = await _committed(
            request.app,
            request.app[STORE_KEY].inbox.insert(
                tenant, source, event.event_id, event.event_type, body, _storable(headers),
                delivery_id=delivery_id, business_key=event.business_key,
            ),
        )
    except Exception:
        _count(tenant, source, "error")
        raise  # the middleware answers 500: the sender retries later
    if row is None:
        _count(tenant, source, "duplicate")
        return json_response({"status": "duplicate"})
    _count(tenant, source, "accepted")
    target.notify()
    return json_response({"status": "accepted"})


@dataclass(frozen=True, slots=True)
class _Parsed:
    event_id: str
    event_type: str
    business_key: str | None = None


def _parse(
    target: WebhookTarget, source: Source, headers: Mapping[str, str], body: bytes
) -> _Parsed:
    """The keys of a verified delivery; `WebhookFormatError` if malformed."""
    if source == "crm":
        crm_event = target.parse_crm(headers, body)
        event = _Parsed(crm_event.event_id, crm_event.event_type)
    else:
        envelope = target.parse_quo(body)
        event = _Parsed(envelope.event_id, envelope.type, envelope.business_key)
    # JSON may spell lone surrogates ("\ud800"), which no UTF-8 column can store.
    if not (_utf8(event.event_id) and _utf8(event.event_type)):
        raise WebhookFormatError("the event id or type is not valid Unicode")
    return event


def _throttled(tenant: str, source: Source, exc: ThrottledError) -> web.Response:
    _count(tenant, source, "throttled")
    response = error_response(429, str(exc))
    response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _count(tenant: str, source: Source, outcome: Outcome) -> None:
    metrics.webhook_events.labels(tenant=tenant, source=source, outcome=outcome).inc()


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is over `limit` bytes (never buffers more than limit+1)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None
    body = bytearray()
    while True:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            return None


def _storable(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers worth keeping with the event: signatures and ids yes, credentials no.

    A value that is not valid Unicode (aiohttp keeps undecodable bytes as surrogates)
    is kept with those characters replaced: the record must still be storable.
    """
    return {_clean(name): _clean(value) for name, value in headers.items()
            if name.lower() not in SENSITIVE_HEADERS}


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _clean(text: str) -> str:
    return text if _utf8(text) else text.encode(errors="replace").decode()


async def _committed(app: web.Application, commit: Coroutine[Any, Any, T]) -> T:
    """Await a durable write that a cancelled request must not abandon halfway.

    Shielded, but bounded: if the handler is cancelled (shutdown), the write still gets
    `COMMIT_GRACE_SECONDS` to finish before the cancellation goes on. The sender was not
    answered, so it retries; the inbox's unique key makes that retry a duplicate.
    """
    task = asyncio.ensure_future(commit)
    pending = app[PENDING_COMMITS_KEY]  # a strong reference while it runs
    pending.add(task)
    task.add_done_callback(pending.discard)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task}, timeout=COMMIT_GRACE_SECONDS)
        raise
