"""`IntakeGuard`: the webhook listener's defences against senders that cannot sign.

Anyone who can reach `/webhooks/…` can make the listener verify a signature, and a
verification costs HMACs over a body of up to 1 MiB. The guard keeps that cost bounded:

* **Failures per source are throttled.** Each source (the client address; an IPv6
  client's /64, which one host usually owns) has an `aiolimiter.AsyncLimiter` leaky
  bucket that fills by one per failed verification (401) and drains at
  `FAILURES_PER_SOURCE` per `FAILURE_PERIOD_SECONDS`. A source whose bucket is full is
  answered 429 with `Retry-After` before its body is read. The bucket is approximate
  and cheap, which is all this needs: a sender that signs correctly never fills it.
  Behind a reverse proxy every sender has the proxy's address, so a flood of bad
  signatures also delays good deliveries; Quo and Attio retry a 429, nothing is lost.
* **Expensive verifications run off the loop, one at a time.** A verification that
  would hash more than a few hundred KiB runs in a worker thread (`asyncio.to_thread`;
  hashlib releases the GIL), at most `VERIFY_THREADS` at once for the whole listener,
  at most as many per source as its bucket has room for failures, and at most
  `MAX_OFFLOADED` running or waiting in all, so a burst from one address, or from many,
  cannot queue up unbounded work (or memory) either.

Buckets exist only for sources that failed, at most `MAX_SOURCES` of them (the oldest is
forgotten first: a forgotten source merely starts again with an empty bucket).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

from aiolimiter import AsyncLimiter

#: failed verifications a source may have in a burst before it is answered 429 ...
FAILURES_PER_SOURCE: Final = 10
#: ... and the time in which the bucket drains that many (one failure a second)
FAILURE_PERIOD_SECONDS: Final = 10.0
#: sources with a bucket remembered at once
MAX_SOURCES: Final = 4096
#: worker threads verifying big deliveries at once, for the whole listener (one: on a
#: small machine the loop and the syncs keep the other cores, whatever a flood costs) ...
VERIFY_THREADS: Final = 1
#: ... and big verifications running or waiting for one (each holds its body): beyond
#: this many, from many sources at once, a new one is answered 429 at once
MAX_OFFLOADED: Final = 16


class ThrottledError(Exception):
    """Not now: answer 429 with `Retry-After` (the message is the answer's text)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IntakeGuard:
    """Per-listener state: one leaky bucket per failing source and the thread bound.

    Built by `build_app` inside no particular loop; the buckets and the semaphore bind
    to the serving loop on first use.
    """

    def __init__(
        self,
        *,
        failures: int = FAILURES_PER_SOURCE,
        period: float = FAILURE_PERIOD_SECONDS,
        max_sources: int = MAX_SOURCES,
        threads: int = VERIFY_THREADS,
        max_offloaded: int = MAX_OFFLOADED,
    ) -> None:
        self._failures = failures
        self._period = period
        self._max_sources = max_sources
        self._buckets: OrderedDict[str, AsyncLimiter] = OrderedDict()
        self._offloaded: dict[str, int] = {}  # source → its verifications in threads
        self._offloaded_total = 0
        self._threads = asyncio.Semaphore(threads)
        self._max_offloaded = max_offloaded
        #: whole seconds until a full bucket has room for one more failure
        self.retry_after_seconds = max(1, math.ceil(period / failures))

    @staticmethod
    def source_of(remote: str | None) -> str:
        """The throttling key of a peer address: the IPv4 address, or the IPv6 /64."""
        try:
            address = ipaddress.ip_address(remote or "")
        except ValueError:
            return remote or "unknown"  # not an IP (a Unix socket): one shared key
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            return str(ipaddress.IPv6Network((address, 64), strict=False))
        return str(address)

    def check(self, source: str) -> None:
        """Raise `ThrottledError` if `source` has no room for one more failure.

        Its verifications running in threads count as failures to come: a burst of
        expensive requests is held to what the bucket allows even before any failed.
        """
        pending = self._offloaded.get(source, 0) + 1
        bucket = self._buckets.get(source)
        room = bucket.has_capacity(pending) if bucket is not None else (
            pending <= self._failures
        )
        if not room:
            raise ThrottledError(
                "too many bad signatures from this address", self.retry_after_seconds
            )

    async def failed(self, source: str) -> None:
        """Count one failed verification of `source` (never waits)."""
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = AsyncLimiter(self._failures, self._period)
            while len(self._buckets) > self._max_sources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
        # A full bucket stays full (acquire would wait): the source is throttled anyway.
        if bucket.has_capacity():
            await bucket.acquire()

    def offloader(self, source: str) -> Callable[[Callable[[], bool]], Awaitable[bool]]:
        """`await offload(work)` for one request of `source`: `work()` in a worker thread,
        or `ThrottledError` at once if the source has no room for another failure."""

        async def offload(work: Callable[[], bool]) -> bool:
            self.check(source)
            if self._offloaded_total >= self._max_offloaded:
                raise ThrottledError("too many verifications in progress", 1)
            # No await between the check and the count: the next request sees this one.
            with self._counted(source):
                async with self._threads:
                    return await asyncio.to_thread(work)

        return offload

    @contextlib.contextmanager
    def _counted(self, source: str) -> Iterator[None]:
        self._offloaded[source] = self._offloaded.get(source, 0) + 1
        self._offloaded_total += 1
        try:
            yield
        finally:
            self._offloaded_total -= 1
            left = self._offloaded[source] - 1
            if left:
                self._offloaded[source] = left
            else:
                del self._offloaded[source]
