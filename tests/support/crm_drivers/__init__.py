"""One test driver per CRM simulator, so one suite runs against every CRM.

A driver starts its CRM's simulator (`start(people, seed)`, an async context) and
acts on it the way a person in the CRM's app would (add, edit, delete a person: the
CRM then sends its webhooks), and reads what the CRM holds, computed from the
simulator's own records, never through the product's adapter. There is one driver
module per CRM in the product's registry (`ADAPTERS`), named after it: adding a CRM
adds its driver module here, and the suite fails until it does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from crmsync.adapters.registry import ADAPTERS
from support.e2e import ExpectedContact

#: CRM name -> module with `start(people: int, seed: int)` -> async context of a driver
DRIVERS: dict[str, str] = {crm: f"{__name__}.{crm}" for crm in ADAPTERS}


@dataclass(frozen=True)
class PersonView:
    """A person as the CRM holds it now, in crmsync's terms (phones in E.164)."""

    first_name: str | None
    last_name: str | None
    emails: tuple[str, ...]
    phones: tuple[str, ...]
    job_title: str | None
    company: str | None


class CrmDriver(Protocol):
    name: str  # the config's `crm`
    api_key: str  # what the simulator accepts (the tenant's crm_api_key)
    base_url: str  # the tenant's crm_base_url
    #: the tenant's crm_webhook_secret, where the CRM's webhooks are set up by hand
    webhook_secret: str | None
    #: whether the CRM can list the records changed since a time (a poll from a
    #: watermark reads only those)
    lists_changes: bool

    def record_ids(self) -> list[str]:
        """Every live person."""
        ...

    def newest_first(self) -> list[str]:
        """Every live person, most recently created first."""
        ...

    def add_person(
        self, *, first_name: str, last_name: str, emails: list[str], phones: list[str],
        job_title: str | None = None,
    ) -> str:
        """Create a person "in the app" (a webhook follows); its record id."""
        ...

    def update_job_title(self, record_id: str, job_title: str) -> None:
        """Edit the person "in the app" (a webhook follows)."""
        ...

    def delete_person(self, record_id: str) -> None:
        """Delete the person "in the app" (a webhook follows)."""
        ...

    def expected_contact(self, record_id: str) -> ExpectedContact:
        """The Quo contact INTERFACE §5 asks for, from the simulator's record."""
        ...

    def person(self, record_id: str) -> PersonView:
        ...

    def notes_of(self, record_id: str) -> list[str]:
        """The text of the person's notes (HTML or markdown as the CRM stores it)."""
        ...

    def point_webhooks(self, url: str) -> None:
        """Where hand-configured webhooks go (HubSpot); a no-op elsewhere."""
        ...

    def forged_webhook(self, url: str) -> tuple[dict[str, str], bytes]:
        """Headers and body of a well-formed person webhook for `url` whose signature
        (or credentials) are wrong: the daemon must answer 401."""
        ...

    def requests_made(self) -> int:
        """API requests the simulator answered so far (any status)."""
        ...

    def rate_limited(self) -> int:
        """429s the simulator answered so far."""
        ...


Start = Callable[[int, int], AbstractAsyncContextManager[CrmDriver]]


def driver_start(crm: str) -> Start:
    """`start(people, seed)` of the CRM's driver."""
    start = importlib.import_module(DRIVERS[crm]).start
    assert callable(start)
    return start  # type: ignore[no-any-return]
