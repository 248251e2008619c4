"""`Transport`: one API account over HTTP, for Quo and every CRM alike.

    http = Transport(session, api="attio", base_url=..., headers={...},
                     limiters=registry.for_account("attio", key, LIMITS), errors=CRM_ERRORS)
    people = await http.call("POST", "/objects/people/records/query", json=body, read=True)

Every request waits for its limiter (reads and writes may have separate budgets), carries
a timeout, and is classified once:

- 2xx: the body, decoded (`call_as`: to the type asked for); a body that does not
  decode is a `DecodeError` of the API, never a raw `msgspec` error.
- 429: always retried (nothing was processed). The whole key is paused for
  `Retry-After`, capped at `max_pause` (an API asking for a day must not park a key
  that long), or a jittered backoff when it sent none.
- 5xx and transport errors: retried with jittered backoff only when a repeat is safe
  (`idempotent`: reads, PUT and DELETE by default; a caller that can make a write safe,
  e.g. Quo's create keyed by `externalId`, says so). Otherwise the error is raised:
  the write may have happened, and the caller reconciles (intent log + lookup).
- any other status: raised at once as the API's error of that kind.
- a 2xx that the API's `ErrorKinds.check_ok` reads as an error (Metakocka answers its
  errors with 200 and an `opr_code`): that error, classified and retried as above.

The limiter slot learns when the request left (the session's trace hook) and when its
answer came back (a 429 there also widens an adaptive limiter's margin), and is
released in a `finally`: a call cancelled mid-flight (shutdown, a supervisor restart)
never keeps a slot occupied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final, NamedTuple, Protocol, TypeVar

import aiohttp
import msgspec

from crmsync.net.errors import ApiError, ErrorKinds, RateLimitedError, ServerError, TransportError
from crmsync.net.ratelimit import Lane, Limiters
from crmsync.net.retry import RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

T = TypeVar("T")
Params = list[tuple[str, str]]

#: the longest a `Retry-After` may pause a key, unless the caller sets its own cap
DEFAULT_MAX_PAUSE: Final = 120.0
#: methods whose repetition has the same effect as one call
IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class Response(NamedTuple):
    status: int
    body: bytes


class Observer(Protocol):
    """What the transport reports, for metrics (Quo's client counts per tenant)."""

    def waited(self, lane: Lane, seconds: float) -> None: ...

    def answered(self, method: str, route: str, status: int | None, seconds: float) -> None:
        """`status` None: no answer (a transport error)."""
        ...

    def rate_limited(self) -> None: ...


class _Unobserved:
    def waited(self, lane: Lane, seconds: float) -> None:
        pass

    def answered(self, method: str, route: str, status: int | None, seconds: float) -> None:
        pass

    def rate_limited(self) -> None:
        pass


class Transport:
    """HTTP access to one API account: limits, timeout, retries, typed errors."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api: str,
        base_url: str,
        headers: dict[str, str],
        limiters: Limiters,
        errors: ErrorKinds,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        max_pause: float = DEFAULT_MAX_PAUSE,
        observer: Observer | None = None,
    ) -> None:
        self.api = api
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._headers = headers
        self._limiters = limiters
        self.errors = errors
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._retry = retry or RetryPolicy()
        self._max_pause = max_pause
        self._observer: Observer = observer or _Unobserved()

    def __repr__(self) -> str:  # the headers hold the key: never show them
        return f"Transport({self.api!r}, {self._base_url!r})"

    async def request(
        self,
        method: str,
        path: str,
        *,
        route: str | None = None,
        params: Params | None = None,
        json: Any = None,
        lane: Lane = Lane.BACKFILL,
        read: bool | None = None,
        idempotent: bool | None = None,
    ) -> Response:
        """Send (retrying as the module docstring says) and return a 2xx answer.

        `route` is the path template for logs and metrics (`/contacts/{id}`); `read`
        picks the read budget (default: GET and HEAD); `json` is encoded with msgspec.
        """
        route = route or path
        is_read = method in ("GET", "HEAD") if read is None else read
        safe = (is_read or method in IDEMPOTENT_METHODS) if idempotent is None else idempotent
        body = None if json is None else msgspec.json.encode(json)
        attempt = 0
        while True:
            try:
                return await self._attempt(method, route, path, params, body, lane, is_read)
            except ApiError as error:
                delay = self._retry_delay(error, attempt, safe, is_read)
                if delay is None:
                    raise
                log.warning("%s %s %s failed (%s), retry %d/%d in %.2fs", self.api, method,
                            route, error, attempt + 1, self._retry.max_retries, delay)
                attempt += 1
                if delay:
                    await asyncio.sleep(delay)

    async def call(self, method: str, path: str, **options: Any) -> Any:
        """`request()`, then the body as plain JSON values (None for an empty body)."""
        response = await self.request(method, path, **options)
        if not response.body:
            return None
        return self._decode(response.body, Any, method, options.get("route") or path)

    async def call_as(self, kind: type[T], method: str, path: str, **options: Any) -> T:
        """`request()`, then the body decoded as `kind` (an empty body is a decode error)."""
        response = await self.request(method, path, **options)
        decoded: T = self._decode(response.body, kind, method, options.get("route") or path)
        return decoded

    def _decode(self, payload: bytes, kind: Any, method: str, route: str) -> Any:
        """The body as `kind`, or this API's `DecodeError` naming what did not fit."""
        try:
            return msgspec.json.decode(payload, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise self.errors.decode(
                f"unexpected response: {exc}", method=method, route=route
            ) from exc

    async def _attempt(
        self,
        method: str,
        route: str,
        path: str,
        params: Params | None,
        body: bytes | None,
        lane: Lane,
        is_read: bool,
    ) -> Response:
        limiter = self._limiters.read if is_read else self._limiters.write
        headers = self._headers if body is None else {
            **self._headers, "Content-Type": "application/json",
        }
        slot = await limiter.acquire(lane)
        if slot.waited:
            self._observer.waited(lane, slot.waited)
        started = time.perf_counter()
        try:
            async with self._session.request(
                method, self._base_url + path, params=params, data=body, headers=headers,
                timeout=self._timeout, trace_request_ctx=slot,
            ) as response:
                # Before the body: the adaptive basis times the round trip to the headers.
                slot.answered(response.status)
                payload = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._observer.answered(method, route, None, time.perf_counter() - started)
            # str() of aiohttp's errors names the URL, never the request headers.
            raise self.errors.transport(
                f"{type(exc).__name__}: {exc}", method=method, route=route
            ) from exc
        finally:
            slot.done()  # also when cancelled: the window starts, the slot frees
        self._observer.answered(method, route, status, time.perf_counter() - started)
        if status < 300:
            if self.errors.check_ok is not None:
                error = self.errors.check_ok(payload, method, route)
                if error is not None:
                    raise error
            return Response(status, payload)
        raise self.errors.for_status(
            status, payload, method=method, route=route,
            retry_after=parse_retry_after(retry_after),
        )

    def _retry_delay(
        self, error: ApiError, attempt: int, safe: bool, is_read: bool
    ) -> float | None:
        """Seconds to wait before the next attempt, or None: raise the error."""
        if isinstance(error, RateLimitedError):
            self._observer.rate_limited()  # every 429, the one that ends the retries too
        if attempt >= self._retry.max_retries:
            return None
        if isinstance(error, RateLimitedError):
            wait = error.retry_after
            if wait is None:
                wait = self._retry.backoff(attempt)
            # Everyone on this key would get a 429 now: hold them all, then go at once.
            limiter = self._limiters.read if is_read else self._limiters.write
            limiter.pause(min(wait, self._max_pause))
            return 0.0
        if isinstance(error, ServerError | TransportError) and safe:
            return self._retry.backoff(attempt)
        return None
