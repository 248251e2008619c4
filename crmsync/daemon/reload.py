"""SIGHUP reload: read the file again, validate it, and plan what to change (STYLE rule 7).

Parse and apply are separate. `read_config` decodes and validates in a thread (secret
files are read too); it raises `ConfigError` listing every problem, and the daemon then
keeps its running config. `plan_reload(old, new)` is pure: it diffs the tenants by id
(enabled ones only) and sorts the daemon-level settings into three kinds:

- applied live: log level and format, shutdown timeout, lease time, the management
  API's token;
- shared by every tenant (`[quo]`, `daemon.max_error_rate`, `http.public_url`): a
  change restarts all tenants, which are built from them;
- fixed at start (`daemon.state_path`/`state_url`, `http.host`, `http.port`,
  `http.max_body_bytes`): reported as needing a restart and not applied; `effective`
  keeps the old values, so the next reload reports them again.

A tenant is restarted only if its `TenantConfig` differs (a rotated secret behind the
same reference counts: `Secret` equality includes the value). Only field *names* are
ever reported, never values.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from crmsync.config import Config, TenantConfig, load_config

#: settings bound when the process starts (the listening socket, the database file)
NEEDS_RESTART = frozenset({
    "daemon.state_path", "daemon.state_url", "http.host", "http.port", "http.max_body_bytes",
})
#: settings the running daemon picks up as they are
LIVE = frozenset({
    "daemon.log_level", "daemon.log_format", "daemon.shutdown_timeout",
    "daemon.lease_seconds",  # the lease keeper reads it at every renewal
    "http.admin_token",  # the management API reads the running config on every request
})
SECTIONS = ("daemon", "http", "quo")


async def read_config(path: str | os.PathLike[str] | None) -> Config:
    """The config file decoded and validated off the event loop; `ConfigError` if invalid."""
    return await asyncio.to_thread(load_config, path)


def changed_fields(old: msgspec.Struct, new: msgspec.Struct) -> list[str]:
    """Names of the fields whose values differ (the values themselves are never shown)."""
    return [name for name in old.__struct_fields__ if getattr(old, name) != getattr(new, name)]


@dataclass(frozen=True)
class ReloadPlan:
    start: list[TenantConfig] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    #: tenant id -> the new config, for tenants whose config changed
    restart: dict[str, TenantConfig] = field(default_factory=dict)
    #: tenant id -> why it restarts (changed field names, or the shared settings)
    restart_reasons: dict[str, str] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    shared: list[str] = field(default_factory=list)
    needs_restart: list[str] = field(default_factory=list)
    #: the config the daemon runs after applying: `new`, minus what needs a restart
    effective: Config = field(default_factory=Config)

    @property
    def empty(self) -> bool:
        return not (self.start or self.stop or self.restart or self.live)

    def summary(self) -> str:
        """One line: ids and field names only."""
        parts = [
            f"{len(self.start)} added" + _ids(t.id for t in self.start),
            f"{len(self.stop)} removed" + _ids(self.stop),
            f"{len(self.restart)} restarted" + _ids(
                f"{tid} ({why})" for tid, why in self.restart_reasons.items()
            ),
            f"{len(self.unchanged)} unchanged",
        ]
        if self.live:
            parts.append("applied: " + ", ".join(self.live))
        return ", ".join(parts)


def _ids(items: Iterable[str]) -> str:
    listed = list(items)
    return f" [{', '.join(listed)}]" if listed else ""


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    """What to do to go from the running config `old` to the file's `new`."""
    live: list[str] = []
    shared: list[str] = []
    needs_restart: list[str] = []
    for section in SECTIONS:
        for name in changed_fields(getattr(old, section), getattr(new, section)):
            key = f"{section}.{name}"
            if key in NEEDS_RESTART:
                needs_restart.append(key)
            elif key in LIVE:
                live.append(key)
            else:
                shared.append(key)
    before = {t.id: t for t in old.tenants if t.enabled}
    after = {t.id: t for t in new.tenants if t.enabled}
    restart: dict[str, TenantConfig] = {}
    reasons: dict[str, str] = {}
    unchanged: list[str] = []
    for tenant_id, tenant in after.items():
        previous = before.get(tenant_id)
        if previous is None:
            continue
        if previous != tenant:
            restart[tenant_id] = tenant
            reasons[tenant_id] = ", ".join(changed_fields(previous, tenant)) + " changed"
        elif shared:
            restart[tenant_id] = tenant
            reasons[tenant_id] = ", ".join(shared) + " changed"
        else:
            unchanged.append(tenant_id)
    effective = msgspec.structs.replace(
        new,
        daemon=msgspec.structs.replace(
            new.daemon, state_path=old.daemon.state_path, state_url=old.daemon.state_url
        ),
        http=msgspec.structs.replace(
            new.http, host=old.http.host, port=old.http.port,
            max_body_bytes=old.http.max_body_bytes,
        ),
    )
    return ReloadPlan(
        start=[t for tid, t in after.items() if tid not in before],
        stop=[tid for tid in before if tid not in after],
        restart=restart,
        restart_reasons=reasons,
        unchanged=unchanged,
        live=live,
        shared=shared,
        needs_restart=needs_restart,
        effective=effective,
    )
