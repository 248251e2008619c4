"""`subscriptions`: the webhooks crmsync registered at the CRM and at Quo, per tenant.

The signing secret comes back only when a webhook is created (Attio's `secret`, Quo's
`key`), so it is kept here; the listener verifies deliveries against it. `name` is
ours and stable (`crm`, `quo:messages:0`, …), `remote_id` is the provider's id.
The state file therefore holds signing secrets: keep it readable by crmsync only
(systemd's `StateDirectory=` with `DynamicUser=` does).
"""

from __future__ import annotations

import builtins
from typing import Final, Literal

import msgspec

from crmsync.store.database import Database, columns, to_struct

Source = Literal["crm", "quo"]


#: the `detail` key of a CRM subscription that cannot receive webhooks: why not
POLLING_ONLY = "pollingOnly"


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    source: Source
    name: str
    remote_id: str
    secret: str | None
    url: str
    detail: str  # JSON: events, resource ids
    healthy: bool
    checked_at: float

    def __repr__(self) -> str:  # never print the secret
        return f"Subscription({self.tenant_id}, {self.source}, {self.name}, {self.remote_id})"


_COLUMNS: Final = columns(Subscription)
_SELECT: Final = f"SELECT {_COLUMNS} FROM subscriptions"  # noqa: S608 (fixed names)


class Subscriptions:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def upsert(self, row: Subscription) -> None:
        await self._db.execute(
            f"INSERT INTO subscriptions ({_COLUMNS})"  # noqa: S608 (fixed names)
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, source, name) DO UPDATE SET"
            " remote_id = excluded.remote_id,"
            " secret = COALESCE(excluded.secret, subscriptions.secret),"
            " url = excluded.url, detail = excluded.detail, healthy = excluded.healthy,"
            " checked_at = excluded.checked_at",
            msgspec.structs.astuple(row),
        )

    async def list(self, tenant_id: str, source: Source | None = None) -> list[Subscription]:
        if source is None:
            rows = await self._db.fetchall(
                f"{_SELECT} WHERE tenant_id = ? ORDER BY name", (tenant_id,)
            )
        else:
            rows = await self._db.fetchall(
                f"{_SELECT} WHERE tenant_id = ? AND source = ? ORDER BY name", (tenant_id, source)
            )
        return [to_struct(Subscription, row) for row in rows]

    async def secrets(self, tenant_id: str, source: Source) -> builtins.list[str]:
        rows = await self._db.fetchall(
            "SELECT secret FROM subscriptions"
            " WHERE tenant_id = ? AND source = ? AND secret IS NOT NULL",
            (tenant_id, source),
        )
        return [row[0] for row in rows]

    async def set_health(self, tenant_id: str, source: Source, name: str, healthy: bool) -> None:
        await self._db.execute(
            "UPDATE subscriptions SET healthy = ?, checked_at = ?"
            " WHERE tenant_id = ? AND source = ? AND name = ?",
            (healthy, self._db.now(), tenant_id, source, name),
        )

    async def delete(self, tenant_id: str, source: Source, name: str) -> bool:
        changed = await self._db.execute(
            "DELETE FROM subscriptions WHERE tenant_id = ? AND source = ? AND name = ?",
            (tenant_id, source, name),
        )
        return changed > 0
