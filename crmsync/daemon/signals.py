"""Signals become requests; one coroutine (the daemon's control loop) acts on them.

The handlers only set events (anyio's `open_signal_receiver` idea, STYLE rule 6), so
nothing runs inside a signal handler that could fail or block:

    TERM, INT   → `stop`: stop intake, drain, close, exit 0
    INT again   → `force`: skip the rest of the drain, exit 130
    HUP         → `reload`: re-read the config file and apply the difference
    USR1        → `dump`: log every task's stack (mode's `_on_sigusr1`)

`wake` is set on any of them, so the control loop waits on one event. Foreground
commands that stop the way the daemon does (`crmsync sync`, `crmsync demo`) install
only TERM and INT (`FOREGROUND`) and say `STOPPING` when the first one arrives.
"""

from __future__ import annotations

import asyncio
import io
import signal
from collections.abc import Callable
from typing import Any

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
#: what a foreground command handles: HUP and USR1 keep their default meaning there
FOREGROUND = (signal.SIGTERM, signal.SIGINT)
#: what a foreground command prints when a stop is requested (stderr, at once)
STOPPING = "stopping… (Ctrl-C again to force)"


class SignalRequests:
    """What the operator asked for; installed on a loop with `install`, removed by `remove`."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.force = asyncio.Event()
        self.reload = asyncio.Event()
        self.dump = asyncio.Event()
        self.wake = asyncio.Event()
        self.stop_signal: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[signal.Signals, signal.Handlers | Callable[..., Any] | int | None] = {}

    def install(
        self, loop: asyncio.AbstractEventLoop, signals: tuple[signal.Signals, ...] = HANDLED
    ) -> None:
        self._loop = loop
        for sig in signals:
            self._previous[sig] = signal.getsignal(sig)
            loop.add_signal_handler(sig, self.received, sig)

    def remove(self) -> None:
        """Remove the handlers and put back what was there before (the loop's removal
        alone would leave Python's defaults, not e.g. `loop.run_async`'s Ctrl-C)."""
        if self._loop is not None:
            for sig, previous in self._previous.items():
                self._loop.remove_signal_handler(sig)
                if previous is not None:
                    signal.signal(sig, previous)
            self._previous.clear()
            self._loop = None

    def received(self, sig: signal.Signals) -> None:
        """The handler: record the request, wake the control loop, nothing else."""
        if sig in (signal.SIGTERM, signal.SIGINT):
            if sig == signal.SIGINT and self.stop.is_set():
                self.force.set()
            elif not self.stop.is_set():
                self.stop_signal = sig.name
                self.stop.set()
        elif sig == signal.SIGHUP:
            self.reload.set()
        elif sig == signal.SIGUSR1:
            self.dump.set()
        self.wake.set()


def task_stacks() -> str:
    """Every task of the running loop with its stack, for a USR1 dump."""
    out = io.StringIO()
    tasks = sorted(asyncio.all_tasks(), key=lambda task: task.get_name())
    out.write(f"{len(tasks)} tasks\n")
    for task in tasks:
        out.write(f"--- {task.get_name()} ---\n")
        task.print_stack(file=out)
    return out.getvalue()
