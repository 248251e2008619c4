"""Running a command's coroutine: uvloop chosen per runner (not as a global policy), and
Ctrl-C that always ends in `KeyboardInterrupt` (exit 130), never in a traceback.

`asyncio.Runner` turns the first Ctrl-C into a cancellation of the main task, and the
resulting `CancelledError` back into `KeyboardInterrupt` only if the task has no other
cancellation pending (`uncancel() == 0`). A cancellation request leaked by a library
(Python 3.11's TaskGroup leaks one per child that crashes while the group exits; see
`tenant.supervisor.one_for_all`) made that check fail: `crmsync sync` then printed a
`CancelledError` traceback and exited 1. Here the interrupt itself is remembered, so a
Ctrl-C ends as an interrupt whatever the task's cancel count says. A second Ctrl-C
raises `KeyboardInterrupt` at once, as with `asyncio.Runner`.

Commands that stop gracefully (`crmsync run`, `sync`, `demo`) install their own TERM
and INT handlers on the loop while they run (`signals.SignalRequests`), which restore
this one when they are removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Coroutine, Iterator
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # e.g. Windows: the default loop works, only slower
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


class _Interrupts:
    """Ctrl-C for one `run_async`: the first cancels the main task, and is remembered."""

    def __init__(self) -> None:
        self.count = 0
        self._task: asyncio.Task[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def watch(self, main: Coroutine[Any, Any, T]) -> T:
        self._task = asyncio.current_task()
        return await main

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        self.count += 1
        task, loop = self._task, self._loop
        if self.count == 1 and task is not None and loop is not None and not task.done():
            task.cancel()
            loop.call_soon_threadsafe(lambda: None)  # wake a loop blocked in select()
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        """Our SIGINT handler for the block, where Python's default one is in place (the
        main thread, Ctrl-C not ignored): elsewhere nothing changes."""
        if (threading.current_thread() is not threading.main_thread()
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
            yield
            return
        self._loop = loop
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def run_async(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Run `main` on a new loop until it returns; Ctrl-C raises `KeyboardInterrupt`."""
    interrupts = _Interrupts()
    with (
        asyncio.Runner(loop_factory=loop_factory(), debug=debug) as runner,
        interrupts.installed(runner.get_loop()),
    ):
        try:
            return runner.run(interrupts.watch(main))
        except asyncio.CancelledError:
            if interrupts.count:
                raise KeyboardInterrupt from None
            raise
