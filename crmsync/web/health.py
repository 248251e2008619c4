"""`Health`: what `/healthz` and `/readyz` report, fed by the daemon.

Liveness is one flag: the daemon clears it when its supervisor is gone (the event loop
being alive is proven by the listener answering at all). Readiness is the absence of
reasons: the daemon sets one per tenant that is not running (`"acme": "starting"`,
`"acme": "parked: 5 restarts in 30 s"`) and clears it once the tenant runs; it may use
any other key (e.g. `"daemon"`) for process-wide reasons such as shutting down.
"""

from __future__ import annotations


class Health:
    """Liveness flag and per-key not-ready reasons; plain state, no I/O."""

    def __init__(self, *, alive: bool = True) -> None:
        self._alive = alive
        self._reasons: dict[str, str] = {}

    def alive(self) -> bool:
        return self._alive

    def mark_alive(self, alive: bool = True) -> None:
        self._alive = alive

    def set_reason(self, key: str, reason: str | None) -> None:
        """Record why `key` (a tenant id) is not ready; None: it is ready now."""
        if reason is None:
            self._reasons.pop(key, None)
        else:
            self._reasons[key] = reason

    def forget(self, key: str) -> None:
        """Drop a removed tenant (same as `set_reason(key, None)`)."""
        self._reasons.pop(key, None)

    def ready(self) -> bool:
        return self._alive and not self._reasons

    def not_ready_reasons(self) -> list[str]:
        """`"key: reason"` lines, sorted by key; empty when ready."""
        reasons = [f"{key}: {reason}" for key, reason in sorted(self._reasons.items())]
        if not self._alive:
            reasons.insert(0, "daemon: not alive")
        return reasons
