"""The actor base class: one `run()` over one typed inbox.

Lifecycle (pykka's setup → running → teardown, drawn once here):

    created ──start()──▶ setup() ──▶ running: run() takes messages from the inbox
                                      │  until it sees `EndOfStream` (normal stop)
                                      │  or is cancelled (shutdown, supervisor restart)
                                      ▼
                                  teardown()   (always, even on error or cancel)

An actor talks to other actors only through the queues it was given; it forwards
`EndOfStream` downstream when it is done, so a pipeline drains front to back.
Exceptions escape `run()` to the supervisor, which decides whether to restart.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

import msgspec

T = TypeVar("T")


class EndOfStream(msgspec.Struct, frozen=True, tag=True):
    """The upstream is done: finish what is in flight, pass it on, stop."""


class Actor(Generic[T]):
    """Subclasses implement `run()`; `name` labels logs and metrics."""

    name = "actor"

    def __init__(self, tenant: str, inbox: asyncio.Queue[T] | None) -> None:
        self.tenant = tenant
        self.inbox = inbox

    async def setup(self) -> None:
        """Acquire what `run()` needs; undone by `teardown()`."""

    async def run(self) -> None:
        raise NotImplementedError

    async def teardown(self) -> None:
        """Release what `setup()` acquired."""

    async def start(self) -> None:
        await self.setup()
        try:
            await self.run()
        finally:
            await self.teardown()

    async def receive(self) -> T:
        assert self.inbox is not None, f"{self.name} has no inbox"
        return await self.inbox.get()
