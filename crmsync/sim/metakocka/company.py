"""One simulated Metakocka company: its partners, documents, ids and its two limits.

Ids are 12-digit strings from one counter per company (partners, addresses, contacts
and documents alike, as Metakocka's grow), each company in its own range, so an id
used against the wrong company finds nothing. `count_code`s are `WE0000001`, ...

The limits: every authenticated call takes a slot of the company's sliding window
(`calls_per_window` per `rate_window_seconds`; a rejected call takes none: nothing was
processed), and `search` runs one at a time per company (`search_slot`): a second
concurrent search waits for the first, as Metakocka queues them, and is counted as an
overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime

from crmsync.sim._kit.window import RateWindow
from crmsync.sim.metakocka.config import CompanyConfig
from crmsync.sim.metakocka.model import Document, Partner

ID_BASE, ID_RANGE = 228_000_000_000, 1_000_000_000


class Company:
    """State of one company; everything a route changes goes through here."""

    def __init__(self, config: CompanyConfig, index: int, rate_window_seconds: float) -> None:
        self.config = config
        self.company_id = config.company_id
        self.secret_key = config.secret_key
        self.partners: dict[str, Partner] = {}  # mk_id -> partner, in creation order
        self.documents: list[Document] = []
        self.window = RateWindow(
            config.calls_per_window, rate_window_seconds, count_rejected=False
        )
        self._next_id = ID_BASE + index * ID_RANGE
        self._next_count_code = 1
        self._search_lock = asyncio.Lock()
        self.searches_in_flight = 0
        self.max_concurrent_searches = 0
        self.search_overlaps = 0

    def new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    def new_count_code(self) -> str:
        code = f"WE{self._next_count_code:07d}"
        self._next_count_code += 1
        return code

    def add(self, partner: Partner) -> Partner:
        self.partners[partner.mk_id] = partner
        return partner

    def add_document(
        self, doc_type: str, partner_mk_id: str, doc_date: datetime, last_change: datetime
    ) -> Document:
        if partner_mk_id not in self.partners:
            raise KeyError(partner_mk_id)
        number = sum(1 for d in self.documents if d.doc_type == doc_type) + 1
        prefix = "".join(part[0] for part in doc_type.split("_")).upper()
        document = Document(self.new_id(), doc_type, f"{prefix}-{number:05d}", doc_date,
                            last_change, partner_mk_id)
        self.documents.append(document)
        return document

    def by_count_code(self, count_code: str) -> Partner | None:
        return next((p for p in self.partners.values() if p.count_code == count_code), None)

    def find(
        self,
        *,
        mk_id: str | None = None,
        name: str | None = None,
        tax_number: str | None = None,
        email: str | None = None,
        phone: str | None = None,
    ) -> list[Partner]:
        """`get_partner`'s lookup: every given filter must match, oldest partner first.

        The name matches as a case-insensitive substring ("janez" finds "BAJEC
        JANEZ"); tax number, email and phone match whole values (case and spaces
        ignored), the last two on any contact of the partner.
        """
        found = list(self.partners.values())
        if mk_id is not None:
            found = [p for p in found if p.mk_id == mk_id]
        if name is not None:
            wanted = name.casefold()
            found = [p for p in found if wanted in p.customer.casefold()]
        if tax_number is not None:
            wanted = _bare(tax_number)
            found = [p for p in found if p.tax_id_number and _bare(p.tax_id_number) == wanted]
        if email is not None:
            wanted = email.strip().casefold()
            found = [p for p in found if any(c.email.casefold() == wanted for c in p.contacts)]
        if phone is not None:
            wanted = _bare(phone)
            found = [
                p for p in found
                if any(wanted in (_bare(c.gsm), _bare(c.phone)) for c in p.contacts)
            ]
        return found

    @contextlib.asynccontextmanager
    async def search_slot(self) -> AsyncIterator[None]:
        """Hold the company's one search slot; wait (counted as an overlap) if taken."""
        self.searches_in_flight += 1
        self.max_concurrent_searches = max(self.max_concurrent_searches,
                                           self.searches_in_flight)
        if self.searches_in_flight > 1:
            self.search_overlaps += 1
        try:
            async with self._search_lock:
                yield
        finally:
            self.searches_in_flight -= 1


def _bare(value: str) -> str:
    return "".join(value.split()).casefold()
