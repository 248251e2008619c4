"""`WebhookTarget`: what the HTTP listener needs from one running tenant.

The listener looks a tenant's target up by the id in the URL, has it verify and parse a
delivery, stores the event in the inbox, then calls `notify()`: the tenant's inbox
processor waits on `wake` and drains the inbox. Nothing here calls the CRM or Quo.

Signing secrets live in the state database (`subscriptions`, written when crmsync
creates a webhook) and, for CRMs whose secret is set by hand, in the config
(`crm_webhook_secret`). They are cached for a few seconds and re-read at once when a
signature matches none of them, so a webhook created a moment ago already verifies; such
a re-read happens at most once per cache lifetime, so a flood of bad signatures is not a
flood of database reads.

Quo has two webhook systems (INTERFACE §7), both on `/webhooks/{tenant}/quo`: a request
with a `webhook-id` header is a 2026-03-30 delivery, verified the Standard Webhooks way
(`quo/standard_signature.py`) with the tenant's `whsec_` keys; any other is verified
with `openphone-signature` and the other (legacy, base64) keys. Both kinds of key are
the `quo` subscriptions' secrets.

Verifying is HMAC work over a body of up to 1 MiB, asked for by anyone: a verification
that may hash more than `INLINE_WORK_BYTES` runs through the caller's `offload` (the
listener's `IntakeGuard`: a worker thread, one at a time), so a request holds the
event loop for a millisecond or so at most, whatever its signature header says.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final, Protocol, Self

from crmsync.adapters.base import (
    CrmAdapter,
    WebhookEvent,
    WebhookFormatError,
    WebhookSignatureError,
)
from crmsync.config import Config, TenantConfig
from crmsync.quo import envelope, signature, standard_signature
from crmsync.store import Source, Store

SECRETS_TTL_SECONDS = 5.0
#: a verification that may hash more bytes than this runs off the event loop (SHA-256
#: hashes roughly 0.3-2 GB/s: this is well under a millisecond of loop time)
INLINE_WORK_BYTES: Final = 256 * 1024

class QuoDelivery(Protocol):
    """A parsed Quo delivery of either system, checked against candidate keys."""

    def matching_key(self, keys: Iterable[str]) -> str | None: ...

    def work_bytes(self, keys: int) -> int: ...


#: runs `work()` somewhere other than the event loop and returns its result
Offload = Callable[[Callable[[], bool]], Awaitable[bool]]


class SecretCache:
    """The secrets of one tenant and source, cached for `ttl` seconds.

    `refresh()` coalesces: callers that missed while another refresh was running
    reuse its result instead of each reading the database again. `refresh_after_miss()`
    (a signature matched no cached secret) re-reads at most once per `ttl`.
    """

    def __init__(
        self,
        store: Store,
        tenant: str,
        source: Source,
        *,
        extra: tuple[str, ...] = (),
        ttl: float = SECRETS_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._tenant = tenant
        self._source: Source = source
        self._extra = extra
        self._ttl = ttl
        self._clock = clock
        self._secrets: tuple[str, ...] = ()
        self._loaded_at: float | None = None
        self._generation = 0
        self._missed_at: float | None = None  # when a miss last caused a read
        self._lock = asyncio.Lock()

    @property
    def generation(self) -> int:
        """Increases on every database read; tells a caller whether it saw the newest."""
        return self._generation

    async def get(self) -> tuple[int, tuple[str, ...]]:
        """`(generation, secrets)`, read from the database if the cache is stale."""
        loaded = self._loaded_at
        if loaded is None or self._clock() - loaded >= self._ttl:
            return await self.refresh(self._generation)
        return self._generation, self._secrets

    async def refresh(self, seen: int) -> tuple[int, tuple[str, ...]]:
        """Re-read, unless someone already did since generation `seen`."""
        async with self._lock:
            if self._generation == seen:
                await self._read()
            return self._generation, self._secrets

    async def refresh_after_miss(self, seen: int) -> tuple[int, tuple[str, ...]]:
        """Re-read after a signature matched none of generation `seen`'s secrets.

        A secret stored a moment ago is found at once, unless another miss already
        re-read within the last `ttl` (then the next regular read finds it): anyone can
        send a bad signature, and each must not cost a database read.
        """
        async with self._lock:
            missed_at = self._missed_at
            recent = missed_at is not None and self._clock() - missed_at < self._ttl
            if self._generation == seen and not recent:
                self._missed_at = self._clock()
                await self._read()
            return self._generation, self._secrets

    async def _read(self) -> None:
        stored = await self._store.subscriptions.secrets(self._tenant, self._source)
        # dict.fromkeys: de-duplicate, keep order (stored first, then config).
        self._secrets = tuple(dict.fromkeys([*stored, *self._extra]))
        self._loaded_at = self._clock()
        self._generation += 1


class WebhookTarget:
    """The webhook side of one running tenant (built by the daemon, one per tenant)."""

    def __init__(
        self,
        tenant: TenantConfig,
        *,
        adapter: CrmAdapter,
        store: Store,
        quo_tolerance: float = signature.DEFAULT_TOLERANCE_SECONDS,
        secrets_ttl: float = SECRETS_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        public_url: str | None = None,
    ) -> None:
        self.tenant: str = tenant.id
        self.adapter = adapter
        self.quo_tolerance = quo_tolerance
        #: the base URL the CRM delivers to (`http.public_url`), for CRMs that sign it
        self.public_url = public_url.rstrip("/") if public_url else None
        #: set by `notify()` after an event was stored; the inbox processor clears it
        self.wake = asyncio.Event()
        configured = tenant.crm_webhook_secret
        crm_extra = () if configured is None else (configured.reveal(),)
        self._crm = SecretCache(
            store, tenant.id, "crm", extra=crm_extra, ttl=secrets_ttl, clock=clock
        )
        self._quo = SecretCache(store, tenant.id, "quo", ttl=secrets_ttl, clock=clock)

    @classmethod
    def for_tenant(
        cls, config: Config, tenant: TenantConfig, *, adapter: CrmAdapter, store: Store
    ) -> Self:
        """A target using the config's Quo signature tolerance."""
        return cls(
            tenant,
            adapter=adapter,
            store=store,
            quo_tolerance=config.quo.webhook_signature_tolerance,
            public_url=config.http.public_url,
        )

    def __repr__(self) -> str:  # never show secrets
        return f"WebhookTarget({self.tenant!r})"

    # -- CRM ----------------------------------------------------------------------------

    def delivered_url(self, path_qs: str, request_url: str) -> str:
        """The URL the CRM delivered to: behind a reverse proxy the listener sees another
        host (and scheme) than the one the CRM signed, so it is `http.public_url` plus
        the path when that is set."""
        return self.public_url + path_qs if self.public_url else request_url

    async def verify_crm(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        offload: Offload | None = None,
        method: str = "POST",
        url: str = "",
    ) -> None:
        """Raise `WebhookSignatureError` unless one of the CRM secrets signed `body`
        (and, for CRMs that sign them, `method` and `url`: see `delivered_url`).

        A big body is checked through `offload` (default: `asyncio.to_thread`).
        """

        def matches(secrets: tuple[str, ...]) -> bool:
            for secret in secrets:
                try:
                    self.adapter.verify_webhook(headers, body, secret, method=method, url=url)
                except WebhookSignatureError:
                    continue
                return True
            return False

        def heavy(secrets: int) -> bool:
            return secrets * len(body) > INLINE_WORK_BYTES

        await self._verify(self._crm, matches, heavy, offload, "CRM")

    def parse_crm(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """The CRM's event (its id de-duplicates); `WebhookFormatError` if malformed."""
        return self.adapter.parse_webhook(headers, body)

    # -- Quo ----------------------------------------------------------------------------

    async def verify_quo(
        self, headers: Mapping[str, str], body: bytes, *, offload: Offload | None = None
    ) -> str | None:
        """Raise `WebhookSignatureError` unless a Quo webhook key signed `body`.

        Returns the delivery id (`webhook-id`) of a 2026-03-30 delivery, None for a
        legacy one. The headers are parsed (and refused if missing, malformed, stale or
        over their entry caps) before any secret is read; a big verification runs
        through `offload` (default: `asyncio.to_thread`).
        """
        if standard_signature.is_standard_delivery(headers):
            return await self._verify_standard(headers, body, offload)
        await self._verify_legacy(headers, body, offload)
        return None

    async def _verify_standard(
        self, headers: Mapping[str, str], body: bytes, offload: Offload | None
    ) -> str:
        try:
            delivery = standard_signature.StandardDelivery(headers, body)
        except signature.SignatureError as exc:
            raise WebhookSignatureError(str(exc)) from exc

        await self._verify_quo_delivery(
            delivery, offload, "Quo 2026-03-30", pick=standard_signature.is_standard_key
        )
        return delivery.delivery_id

    async def _verify_legacy(
        self, headers: Mapping[str, str], body: bytes, offload: Offload | None
    ) -> None:
        try:
            delivery = signature.SignedDelivery(
                _header(headers, signature.HEADER), body, tolerance_seconds=self.quo_tolerance
            )
        except signature.SignatureError as exc:
            raise WebhookSignatureError(str(exc)) from exc

        await self._verify_quo_delivery(
            delivery, offload, "Quo legacy",
            pick=lambda key: not standard_signature.is_standard_key(key),
        )

    async def _verify_quo_delivery(
        self,
        delivery: QuoDelivery,
        offload: Offload | None,
        what: str,
        *,
        pick: Callable[[str], bool],
    ) -> None:
        """Check a parsed delivery against the tenant's Quo keys that `pick` selects."""

        def matches(keys: tuple[str, ...]) -> bool:
            return delivery.matching_key(keys) is not None

        def heavy(keys: int) -> bool:
            return delivery.work_bytes(keys) > INLINE_WORK_BYTES

        await self._verify(self._quo, matches, heavy, offload, what, pick=pick)

    @staticmethod
    def parse_quo(body: bytes) -> envelope.QuoEnvelope:
        """The envelope of either system (`quo/envelope.py`); `WebhookFormatError` if
        the body is not JSON or has no `id` or `type`."""
        try:
            return envelope.decode(body)
        except envelope.EnvelopeError as exc:
            raise WebhookFormatError(str(exc)) from exc

    # -- both ---------------------------------------------------------------------------

    def notify(self) -> None:
        """Wake the tenant's inbox processor: a new event was committed."""
        self.wake.set()

    @staticmethod
    async def _verify(
        cache: SecretCache,
        matches: Callable[[tuple[str, ...]], bool],
        heavy: Callable[[int], bool],
        offload: Offload | None,
        what: str,
        *,
        pick: Callable[[str], bool] = lambda _: True,
    ) -> None:
        """Check the cached secrets that `pick` accepts, then (after a miss) the new
        ones a re-read found; `WebhookSignatureError` if none signed the delivery."""

        async def check(candidates: tuple[str, ...]) -> bool:
            secrets = tuple(s for s in candidates if pick(s))
            if not secrets:
                return False
            if not heavy(len(secrets)):
                return matches(secrets)
            work = functools.partial(matches, secrets)
            return await (asyncio.to_thread(work) if offload is None else offload(work))

        generation, secrets = await cache.get()
        if await check(secrets):
            return
        # A miss may mean a webhook (and its secret) was created after the last read.
        _, fresh = await cache.refresh_after_miss(generation)
        if await check(tuple(s for s in fresh if s not in secrets)):
            return  # only the new secrets: the others were just tried
        if not any(pick(s) for s in fresh):
            raise WebhookSignatureError(f"no {what} webhook secret is known for this tenant")
        raise WebhookSignatureError(f"the {what} webhook signature matches no known secret")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively even when `headers` is a plain dict."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value
