"""A CRM adapter stand-in that pages over numbered records (for progress and stalls)."""

from __future__ import annotations

from crmsync.adapters.base import CrmPage, CrmRecord


def record(i: int) -> CrmRecord:
    return CrmRecord(crm_object="people", record_id=f"r{i}", raw={})


class PagedAdapter:
    """`fetch_page` over `pages` (offset cursors), counting calls."""

    name = "fake"

    def __init__(self, pages: int, per_page: int = 2) -> None:
        self.pages = pages
        self.per_page = per_page
        self.calls: list[tuple[str, str | None]] = []

    async def fetch_page(self, crm_object: str, cursor: str | None, page_size: int) -> CrmPage:
        self.calls.append((crm_object, cursor))
        start = int(cursor or 0)
        end = start + self.per_page
        return CrmPage(
            records=[record(i) for i in range(start, end)],
            next_cursor=str(end) if end < self.pages * self.per_page else None,
        )
