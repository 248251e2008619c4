"""How late the event loop runs what is due: `crmsync_event_loop_lag_seconds`.

Every tenant shares one loop, so a loop that falls behind delays them all: a limiter
grant that fires late leaves its key idle (utilisation lost for good), a webhook is
acknowledged late, the watchdog beat slips. `probe_lag` sleeps `interval` seconds at a
time and observes how much later than asked it woke: a callback that held the loop, or
a queue of ready callbacks longer than the loop can run at once, shows up there.

One probe per process, waking ten times a second: cheap, and enough samples for a p99
over a minute. The series carries `tenant="_daemon"` (every metric has a tenant label;
this one belongs to no tenant).
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

from prometheus_client import Histogram

#: the tenant label of process-wide series
DAEMON_LABEL: Final = "_daemon"
#: seconds between two probes
LAG_PROBE_SECONDS: Final = 0.1

event_loop_lag = Histogram(
    "crmsync_event_loop_lag_seconds",
    "How much later than due the daemon's event loop ran a timer (sampled every"
    f" {LAG_PROBE_SECONDS:g}s)",
    ["tenant"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class Observer(Protocol):
    def observe(self, amount: float) -> None: ...


async def probe_lag(
    interval: float = LAG_PROBE_SECONDS, observer: Observer | None = None
) -> None:
    """Observe the loop's lag every `interval` seconds until cancelled."""
    sink = observer if observer is not None else event_loop_lag.labels(DAEMON_LABEL)
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        sink.observe(max(0.0, loop.time() - due))
