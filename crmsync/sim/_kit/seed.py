"""What the simulators' deterministic seeding shares (`random.Random(seed)` throughout).

- `shape_schedule`: which awkward case ("shape") each seeded person gets, from a mix of
  shares: every share rounded, then raised to at least one once there are 20 people
  (a paired shape, such as two people sharing one phone, to at least one pair, and
  always to whole pairs); the rest "normal"; shuffled.
- `ShapeFacts`: the ids seeded in each shape, so tests can assert on them.
- `gc_paused`: seeding makes millions of small objects, none of them garbage, so
  cyclic GC passes would only double the time.
"""

from __future__ import annotations

import contextlib
import gc
import random
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

NORMAL = "normal"
PAIRED = frozenset({"shared_phone"})


def shape_schedule(
    rng: random.Random, n: int, mix: tuple[tuple[str, float], ...],
    *, paired: Collection[str] = PAIRED,
) -> list[str]:
    """The shapes of `n` people, in seeding order."""
    shapes: list[str] = []
    for shape, share in mix:
        count = round(share * n)
        if n >= 20:
            count = max(count, 2 if shape in paired else 1)
        if shape in paired:
            count -= count % 2
        shapes += [shape] * count
    shapes += [NORMAL] * (n - len(shapes))
    rng.shuffle(shapes)
    return shapes[:n]


@dataclass(slots=True)
class ShapeFacts:
    """Ids (as strings) of the people seeded in each shape; a provider adds its cases."""

    shapes: dict[str, list[str]] = field(default_factory=dict)

    def of(self, shape: str) -> list[str]:
        return self.shapes.get(shape, [])


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Cyclic garbage collection off inside (if it was on), back on after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
