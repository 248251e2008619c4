"""The cyclic garbage collector, tuned for one process carrying many tenants.

CPython collects its youngest generation after every 700 net allocations of container
objects, the middle one every 10 of those, and everything every 10 middle ones once the
heap grew by a quarter. A daemon that syncs 200 tenants allocates a few hundred
thousand containers a second (requests, answers, records, futures), nearly all freed
by reference counting within a callback or two, and holds a large long-lived heap
(modules, the config, every tenant's runtime, clients and limiters). With the default
thresholds the collector ran 2,477 young, 225 middle and 18 full collections during a
115-second initial sync of 200 tenants of 200 people each, 6.4 s of the loop's time and up to
304 ms at once (`bench/multi_tenant.py`): every tenant's limiter grant and every
webhook waited behind them.

`tune_collector()` runs once the tenants are built: it collects what startup left,
freezes the survivors (`gc.freeze()`: they live as long as the process, so no
collection walks them again) and makes the young generation `YOUNG_THRESHOLD` objects
deep. Short-lived objects then die by reference counting before any collection sees
them, so far fewer survive into the older generations and their collections become
rare; the older thresholds stay CPython's, so cyclic garbage is still reclaimed. Same
run: 87 young, 7 middle, 1 full collection, 0.5 s in all, the longest 62 ms (loop lag
p99 112 → 16 ms). A young generation of 50,000 collected even less often but let one
middle collection grow to 200 ms.
"""

from __future__ import annotations

import gc
from typing import Final

#: container allocations (net of frees) between two young collections; CPython's is 700
YOUNG_THRESHOLD: Final = 10_000


def tune_collector() -> None:
    """Collect, freeze what survived startup, and deepen the young generation."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
