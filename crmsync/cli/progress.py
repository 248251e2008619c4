"""Progress for long operations: a rich progress bar on a TTY, log lines otherwise.

CRMs like Attio give no total, so the bar's total is exact when it is known (the demo's
seeded count), an estimate when there is one (`estimated=True`: the mappings of an
earlier complete pass), shown as `120/~500`, and otherwise absent: the bar pulses while
the count and rate go up. A done count never shows above its total: an exact total
grows to the count, an estimate that turns out too low is dropped (the bar pulses on).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

LOG_EVERY_SECONDS = 5.0


class SyncProgress:
    """Counts settled records by action; use as a context manager around the sync."""

    def __init__(
        self,
        title: str,
        *,
        total: int | None = None,
        estimated: bool = False,
        console: Console | None = None,
    ) -> None:
        self.title = title
        self.total = total
        self.estimated = estimated
        self.counts: Counter[str] = Counter()
        self._console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._started = time.monotonic()
        self._last_log = self._started

    def __enter__(self) -> SyncProgress:
        if self._console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[count]}"),
                TextColumn("{task.fields[rate]:.1f}/s"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[breakdown]}"),
                console=self._console,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                self.title, total=self.total, count=self._count(0)[0], rate=0.0, breakdown=""
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._refresh()
            self._progress.__exit__(exc_type, exc, tb)
        else:
            print(self._line(), file=sys.stderr, flush=True)

    def _rate(self) -> float:
        elapsed = time.monotonic() - self._started
        return sum(self.counts.values()) / elapsed if elapsed > 0 else 0.0

    def _breakdown(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))

    def _count(self, done: int) -> tuple[str, int | None]:
        """`done` as shown (`120/500`, `120/~500`, `620`) and the bar's total."""
        total = self.total
        if total and done > total:
            if self.estimated:
                self.total = total = None  # too low: from here on, a count without a total
            else:
                total = done  # the known total was exceeded (a CRM that grew meanwhile)
        if not total:
            return str(done), None
        return f"{done}/{'~' if self.estimated else ''}{total}", total

    def _line(self) -> str:
        elapsed = time.monotonic() - self._started
        count, _ = self._count(sum(self.counts.values()))
        return (f"{self.title}: {count} records ({self._rate():.1f}/s, "
                f"{elapsed:.0f}s) {self._breakdown()}").rstrip()

    def _refresh(self) -> None:
        assert self._progress is not None and self._task is not None
        done = sum(self.counts.values())
        count, total = self._count(done)
        self._progress.update(
            self._task, completed=done, total=total, count=count, rate=self._rate(),
            breakdown=self._breakdown(),
        )

    def settled(self, action: str) -> None:
        self.counts[action] += 1
        if self._progress is not None:
            self._refresh()
            return
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_SECONDS:
            self._last_log = now
            print(self._line(), file=sys.stderr, flush=True)
