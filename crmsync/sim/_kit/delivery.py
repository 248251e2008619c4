"""The outgoing HTTP side of a simulator's webhook delivery, and what deliverers share.

`WebhookClient` owns what every simulated provider needs to POST signed bodies to
receivers: one `ClientSession`, created on first use with a total timeout per request;
the background tasks delivering on its behalf; and a `close()` that gives those tasks a
grace period, cancels whatever is still running and closes the session.

`DeliveryFaults` is the webhook side of `/_sim/faults` every deliverer honours (lose
every message, or the next N). `QueuedDeliverer` is the lifecycle of a deliverer that
sends each message on its own: `submit()` starts a tracked background task (or queues
the message when auto-delivery is off) → `send_pending()` starts what is queued and
waits for every delivery → `close()`. Signatures, retries and bookkeeping of attempts
stay with each provider's deliverer.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import aiohttp

CLOSE_GRACE_SECONDS = 2.0
D = TypeVar("D")
A = TypeVar("A")


def is_success(status: int | None) -> bool:
    """A 2xx answer; None (no answer at all) is a failure too."""
    return status is not None and 200 <= status < 300


@dataclass(frozen=True, slots=True)
class PostOutcome:
    """The receiver's status and body, or the transport error (connection error, timeout)."""

    status: int | None
    error: str | None = None
    body: str | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return is_success(self.status)


class WebhookClient:
    """POSTs bodies with one lazily created session; owns its background tasks."""

    def __init__(self, timeout: float, *, grace: float = CLOSE_GRACE_SECONDS) -> None:
        self.timeout = timeout
        self.grace = grace
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()

    @property
    def closing(self) -> bool:
        """`close()` has begun: start nothing new, stop retrying."""
        return self._closing.is_set()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> PostOutcome:
        """One POST; a receiver that cannot be reached is an outcome, not an exception."""
        try:
            async with self._client().post(url, data=body, headers=headers) as response:
                answer = await response.read()
                return PostOutcome(response.status, body=answer.decode(errors="replace"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            return PostOutcome(None, f"{type(exc).__name__}: {exc}")

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        """Run `work` in the background; `close()` waits for it, then cancels it."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait until every background task, including ones started meanwhile, is done."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def pause(self, seconds: float) -> None:
        """Sleep `seconds`, but wake as soon as `close()` begins (a retry backoff)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def close(self) -> None:
        """Give running tasks `grace` seconds, cancel the rest, close the session."""
        self._closing.set()
        if self._tasks:
            _, still_running = await asyncio.wait(self._tasks, timeout=self.grace)
            for task in still_running:
                task.cancel()
            await asyncio.gather(*still_running, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._session


class DeliveryFaults:
    """Webhook faults: lose every message (`mode` "drop"), or the next `drop_next`."""

    def __init__(self) -> None:
        self.mode: Literal["send", "drop"] = "send"
        self.drop_next = 0

    def take_drop(self) -> bool:
        """Whether to lose the next message on purpose (counting down `drop_next`)."""
        if self.mode == "drop" or self.drop_next > 0:
            self.drop_next = max(0, self.drop_next - 1)
            return True
        return False

    def fault_settings(self) -> dict[str, object]:
        """These settings as `/_sim/faults` shows them."""
        return {"drop_webhooks": self.drop_next, "webhook_mode": self.mode}


class QueuedDeliverer(DeliveryFaults, ABC, Generic[D, A]):
    """Sends messages `D` one background task each; keeps every message and attempt `A`."""

    def __init__(self, *, auto: bool, timeout: float) -> None:
        super().__init__()
        self.auto = auto
        self.pending: list[D] = []
        self.dropped: list[D] = []
        self.sent: list[D] = []
        self.attempts: list[A] = []
        self._http = WebhookClient(timeout, grace=CLOSE_GRACE_SECONDS)

    def submit(self, delivery: D) -> None:
        """Start (or queue) one delivery; lost on purpose when dropping is switched on."""
        if self.take_drop():
            self.dropped.append(delivery)
        elif self.auto and not self._http.closing:
            self._start(delivery)
        else:
            self.pending.append(delivery)

    async def send_pending(self) -> None:
        """Send everything queued and wait until every delivery (with retries) is done."""
        pending, self.pending = self.pending, []
        for delivery in pending:
            self._start(delivery)
        await self._http.drain()

    async def close(self) -> None:
        await self._http.close()

    def _start(self, delivery: D) -> None:
        self._http.spawn(self._deliver(delivery), name=self._task_name(delivery))

    @abstractmethod
    def _task_name(self, delivery: D) -> str:
        """The name of the background task delivering `delivery` (for task dumps)."""

    @abstractmethod
    async def _deliver(self, delivery: D) -> None:
        """Every attempt of one delivery, with the provider's retries."""
