"""What the drivers of simulators that list their own live people share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class ListsPeople(Protocol):
    def record_ids(self) -> list[str]: ...

    def newest_first(self) -> list[str]: ...


Sim = TypeVar("Sim", bound=ListsPeople)


@dataclass
class SimDriver(Generic[Sim]):
    """A driver's simulator and the URL it serves on; its people as the simulator
    lists them."""

    sim: Sim
    base_url: str

    def record_ids(self) -> list[str]:
        return self.sim.record_ids()

    def newest_first(self) -> list[str]:
        return self.sim.newest_first()
