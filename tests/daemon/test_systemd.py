"""systemd integration units: sd_notify datagrams (path and abstract sockets, failures
logged), the watchdog period, and WATCHDOG=1 withheld while the heartbeat is stale.
The daemon as a whole is in `test_run.py`."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmsync.daemon.systemd import Notifier, keep_watchdog, socket_address, watchdog_period
from crmsync.sim.quo.testing import wait_until


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield sock, path
    finally:
        sock.close()


def test_notify_writes_one_datagram_per_send(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.send("READY=1", "STATUS=2 tenants:\n2 running")
    assert notifier.send("WATCHDOG=1")
    notifier.close()
    assert sock.recv(4096) == b"READY=1\nSTATUS=2 tenants: 2 running"  # one line per field
    assert sock.recv(4096) == b"WATCHDOG=1"


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="abstract sockets are Linux's")
def test_notify_supports_abstract_sockets() -> None:
    name = f"crmsync-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert socket_address("@" + name) == "\0" + name
        notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.send("STOPPING=1")
        notifier.close()
        assert sock.recv(4096) == b"STOPPING=1"


def test_notify_without_a_socket_is_a_no_op() -> None:
    for environ in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}):
        notifier = Notifier.from_env(environ)
        assert not notifier.enabled
        assert not notifier.send("READY=1")


def test_notify_failure_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.WARNING, "crmsync.daemon.systemd"):
        assert not notifier.send("READY=1")
    notifier.close()
    assert "systemd notify (READY) failed" in caplog.text


def test_watchdog_period_is_half_of_watchdog_usec() -> None:
    pid = os.getpid()
    assert watchdog_period({}) is None
    assert watchdog_period({"WATCHDOG_USEC": "1000000"}) == 0.5
    assert watchdog_period({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid)}) == 15.0
    assert watchdog_period({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(pid + 1)}) is None
    assert watchdog_period({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_period({"WATCHDOG_USEC": "soon"}) is None


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        super().__init__("unused")
        self.sent: list[tuple[str, ...]] = []

    def send(self, *fields: str) -> bool:
        self.sent.append(fields)
        return True


async def test_watchdog_pings_only_while_the_heartbeat_is_fresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1. heartbeat fresh: WATCHDOG=1 every period
    2. heartbeat older than twice the period (WATCHDOG_USEC): no ping, one error line
    3. heartbeat fresh again: pings resume
    """
    notifier = RecordingNotifier()
    now = [100.0]
    beat = [100.0]
    ticks = [0]

    def clock() -> float:
        ticks[0] += 1
        return now[0]

    task = asyncio.create_task(
        keep_watchdog(notifier, 0.01, last_beat=lambda: beat[0], clock=clock)
    )
    try:
        with caplog.at_level(logging.WARNING, "crmsync.daemon.systemd"):
            await wait_until(lambda: len(notifier.sent) >= 3, message="pings")
            now[0] += 0.05  # the supervisor stopped beating
            await wait_until(lambda: "withholding WATCHDOG=1" in caplog.text, message="withheld")
            pinged, seen = len(notifier.sent), ticks[0]
            await wait_until(lambda: ticks[0] >= seen + 5, message="more ticks")
            assert len(notifier.sent) == pinged
            assert caplog.text.count("withholding") == 1
            beat[0] = now[0]
            await wait_until(lambda: len(notifier.sent) > pinged, message="pings resumed")
    finally:
        task.cancel()
    assert set(notifier.sent) == {("WATCHDOG=1",)}
