"""Progress for long operations: a rich live display on a TTY, periodic log lines otherwise.

CRMs like Attio give no total, so progress is a running count with a rate, not a bar
that would have to guess its end.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.text import Text

LOG_EVERY_SECONDS = 5.0


class SyncProgress:
    """Counts settled records by action; use as a context manager around the sync."""

    def __init__(self, title: str, *, console: Console | None = None) -> None:
        self.title = title
        self.counts: Counter[str] = Counter()
        self._console = console or Console(stderr=True)
        self._live: Live | None = None
        self._started = time.monotonic()
        self._last_log = self._started

    def __enter__(self) -> SyncProgress:
        if self._console.is_terminal:
            self._live = Live(self._render(), console=self._console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(exc_type, exc, tb)

    def _line(self) -> str:
        elapsed = time.monotonic() - self._started
        done = sum(self.counts.values())
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        return f"{self.title}: {done} records ({rate:.1f}/s, {elapsed:.0f}s) {parts}".rstrip()

    def _render(self) -> Text:
        return Text(self._line())

    def settled(self, action: str) -> None:
        self.counts[action] += 1
        if self._live is not None:
            self._live.update(self._render())
            return
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = now
            print(self._line(), file=sys.stderr, flush=True)
