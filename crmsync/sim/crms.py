"""The CRM simulators `crmsync demo` and `crmsync sim` can start: one line per CRM.

Each CRM's simulator package has an `entry` module with an `ENTRY` (`CrmSimEntry`);
`CRM_SIMULATORS` names it, so a CRM's package is imported only when it is used.
Adding a CRM's simulator is its package and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

#: CRM name -> the module holding its simulator's `ENTRY`
CRM_SIMULATORS: dict[str, str] = {
    "attio": "crmsync.sim.attio.entry",
    "pipedrive": "crmsync.sim.pipedrive.entry",
    "hubspot": "crmsync.sim.hubspot.entry",
}


@dataclass(frozen=True)
class SimOptions:
    """What the demo or the CLI asks of a CRM simulator."""

    api_keys: list[str]
    people: int = 0
    seed: int = 1
    #: requests per second per key (None: the simulator's default, the CRM's real limit)
    rate: int | None = None


@dataclass(frozen=True)
class TryLine:
    """A shell line for the demo's `--keep-running` hints, with what it does."""

    comment: str
    line: str


class CrmSimulator(Protocol):
    """What the demo needs of a running CRM simulator."""

    def record_ids(self) -> list[str]:
        """Every person's record id, as the CRM's API spells it."""
        ...

    def person_phones(self, record_id: str) -> list[str]:
        """The person's phone numbers in E.164 (the ones that are valid)."""
        ...

    def point_webhooks(self, url: str) -> None:
        """Where to deliver webhooks configured in the CRM by hand (a HubSpot app's
        target URL); a no-op where crmsync creates its webhooks through the API."""
        ...

    def try_lines(self, crm_url: str, api_key: str, record_id: str) -> dict[str, TryLine]:
        """curl lines about one person: `notes` (list its notes), `change` (edit it "in
        the CRM's app", which sends a webhook) and `person` (read it through the API)."""
        ...

    def requests_answered(self) -> int:
        """API requests answered so far, any status (the benchmarks' CRM cost)."""
        ...

    def rate_limited(self) -> int:
        """429s answered so far."""
        ...


@dataclass(frozen=True)
class CrmSimEntry:
    """One CRM's simulator, as the demo and `crmsync sim` start it."""

    title: str  # "HubSpot": how the demo names it
    default_key: str  # the API key `crmsync sim` accepts when given none
    #: the secret the simulator signs webhooks with when the CRM's webhooks are set up
    #: by hand (the tenant's `crm_webhook_secret`); None where crmsync creates them
    webhook_secret: str | None
    run: Callable[[SimOptions], AbstractAsyncContextManager[tuple[CrmSimulator, str]]]
    serve_forever: Callable[[str, int, SimOptions], Awaitable[None]]


class UnknownCrmSimulatorError(LookupError):
    pass


def crm_simulator(crm: str) -> CrmSimEntry:
    """The simulator of `crm`; `UnknownCrmSimulatorError` names the available ones."""
    module = CRM_SIMULATORS.get(crm)
    if module is None:
        raise UnknownCrmSimulatorError(
            f"no simulator for CRM {crm!r} (available: {', '.join(CRM_SIMULATORS)})"
        )
    entry = importlib.import_module(module).ENTRY
    assert isinstance(entry, CrmSimEntry)
    return entry
