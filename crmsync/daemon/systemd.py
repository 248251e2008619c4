"""systemd's notify protocol, spoken directly (no library): READY, RELOADING, STOPPING,
STATUS and WATCHDOG datagrams to `$NOTIFY_SOCKET`.

    notifier = Notifier.from_env()          # a no-op when not started by systemd
    notifier.send("READY=1", "STATUS=2 tenants: 2 running")

The socket is a Unix datagram socket; a name starting with `@` is in the abstract
namespace (a leading NUL byte). Sends never block the event loop: the socket is
non-blocking and a datagram the receiver has no room for is dropped with a log line
(systemd reads promptly; a lost STATUS is repaired by the next one).

The watchdog (`WATCHDOG_USEC`, addressed to us when `WATCHDOG_PID` is unset or our pid)
wants `WATCHDOG=1` at least every WATCHDOG_USEC; `watchdog_period` says how often to
send: half of it, as sd_watchdog_enabled(3) recommends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as `MONOTONIC_USEC=` with `RELOADING=1` wants it."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def socket_address(name: str) -> str:
    """`$NOTIFY_SOCKET` as a `sendto` address: `@name` is the abstract name `\\0name`."""
    return "\0" + name[1:] if name.startswith("@") else name


def watchdog_period(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds between `WATCHDOG=1` pings (half of WATCHDOG_USEC), or None: no watchdog."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    target = env.get("WATCHDOG_PID", "")
    if target and target != str(os.getpid() if pid is None else pid):
        return None  # meant for another process (e.g. our parent)
    return int(usec) / 1e6 / 2


class Notifier:
    """Sends notify datagrams; without an address every `send` is a no-op returning False."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        name = env.get("NOTIFY_SOCKET", "")
        # Only Unix sockets: systemd also allows vsock:CID:PORT (VMs), which we do not use.
        if not name.startswith(("/", "@")):
            return cls(None)
        return cls(socket_address(name))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """One datagram of `KEY=value` lines; True if it was handed to the socket."""
        if self.address is None:
            return False
        message = "\n".join(field.replace("\n", " ") for field in fields).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.setblocking(False)
            self._sock.sendto(message, self.address)
        except OSError as exc:  # BlockingIOError included: systemd is busy, do not wait
            log.warning("systemd notify (%s) failed: %s", fields[0].split("=", 1)[0], exc)
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


async def keep_watchdog(
    notifier: Notifier,
    period: float,
    *,
    last_beat: Callable[[], float],
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Send `WATCHDOG=1` every `period` while the supervisor's heartbeat is fresh.

    Two things stop the pings, and then systemd restarts the process after
    WATCHDOG_USEC (twice the period): a stuck event loop (this is a loop task, so it
    simply stops running), and a stuck supervisor — `last_beat()` (the daemon's
    monitor tick) older than WATCHDOG_USEC.
    """
    withheld = False
    while True:
        age = clock() - last_beat()
        if age <= 2 * period:
            if withheld:
                log.warning("supervisor heartbeat is back; WATCHDOG=1 resumed")
                withheld = False
            notifier.send("WATCHDOG=1")
        elif not withheld:
            log.error("supervisor heartbeat is %.1fs old: withholding WATCHDOG=1, so systemd"
                      " will restart the daemon", age)
            withheld = True
        await asyncio.sleep(period)
