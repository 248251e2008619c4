"""Unit tests of the daemon's parts: systemd notify, reload planning, progress and stalls,
signal requests. The daemon as a whole is in `test_daemon_run.py`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from crmsync.adapters.base import CrmPage, CrmRecord
from crmsync.config import Config, parse_config
from crmsync.daemon.reload import plan_reload
from crmsync.daemon.signals import SignalRequests, task_stacks
from crmsync.daemon.systemd import Notifier, keep_watchdog, socket_address, watchdog_period
from crmsync.sim.quo.testing import wait_until
from crmsync.store import open_store
from crmsync.tenant.progress import Progress
from crmsync.tenant.stall import StallDetector
from crmsync.web.health import Health

# -- systemd notify ----------------------------------------------------------------------


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


# -- reload planning ------------------------------------------------------------------------

ENV = {"A_QUO": "qa", "A_CRM": "ca", "B_QUO": "qb", "B_CRM": "cb", "C_QUO": "qc", "C_CRM": "cc"}


def config(*tenants: str, head: str = "", environ: dict[str, str] | None = None,
           disabled: tuple[str, ...] = ()) -> Config:
    text = head
    for tenant in tenants:
        upper = tenant.upper()
        text += (
            f'\n[[tenants]]\nid = "{tenant}"\ncrm = "attio"\n'
            f'quo_api_key = "env:{upper}_QUO"\ncrm_api_key = "env:{upper}_CRM"\n'
            f"enabled = {'false' if tenant in disabled else 'true'}\n"
        )
    return parse_config(text, "test.toml", environ or ENV)


def test_plan_adds_removes_restarts_and_keeps() -> None:
    old = config("a", "b", "c")
    new = parse_config(
        "[[tenants]]\nid = 'a'\ncrm = 'attio'\nquo_api_key = 'env:A_QUO'\n"
        "crm_api_key = 'env:A_CRM'\n"
        "[[tenants]]\nid = 'b'\ncrm = 'attio'\nquo_api_key = 'env:B_QUO'\n"
        "crm_api_key = 'env:B_CRM'\npage_size = 50\n"
        "[[tenants]]\nid = 'd'\ncrm = 'attio'\nquo_api_key = 'env:C_QUO'\n"
        "crm_api_key = 'env:C_CRM'\n",
        "test.toml", ENV,
    )
    plan = plan_reload(old, new)
    assert [t.id for t in plan.start] == ["d"]
    assert plan.stop == ["c"]
    assert list(plan.restart) == ["b"]
    assert plan.restart_reasons == {"b": "page_size changed"}
    assert plan.unchanged == ["a"]
    assert not (plan.live or plan.shared or plan.needs_restart)
    assert plan.summary() == (
        "1 added [d], 1 removed [c], 1 restarted [b (page_size changed)], 1 unchanged"
    )
    assert plan.effective == new


def test_plan_restarts_a_tenant_whose_secret_rotated_and_never_shows_it() -> None:
    old = config("a", "b")
    new = config("a", "b", environ={**ENV, "B_QUO": "rotated-SECRET"})
    plan = plan_reload(old, new)
    assert list(plan.restart) == ["b"]
    assert plan.restart_reasons["b"] == "quo_api_key changed"
    assert "rotated-SECRET" not in plan.summary()
    assert plan.unchanged == ["a"]


def test_plan_treats_disabled_tenants_as_absent() -> None:
    plan = plan_reload(config("a", "b"), config("a", "b", disabled=("b",)))
    assert plan.stop == ["b"] and not plan.start and not plan.restart
    plan = plan_reload(config("a", "b", disabled=("b",)), config("a", "b"))
    assert [t.id for t in plan.start] == ["b"] and not plan.stop


def test_plan_sorts_daemon_settings() -> None:
    old = config("a", "b", head='[daemon]\nstate_path = "one.db"\n[http]\nport = 8000\n')
    new = config("a", "b", head=(
        '[daemon]\nstate_path = "two.db"\nlog_level = "debug"\nshutdown_timeout = 5\n'
        '[http]\nport = 9000\n[quo]\nrequests_per_second = 20\n'
    ))
    plan = plan_reload(old, new)
    assert plan.needs_restart == ["daemon.state_path", "http.port"]
    assert plan.live == ["daemon.log_level", "daemon.shutdown_timeout"]
    assert plan.shared == ["quo.requests_per_second"]
    # Every tenant is built from [quo]: all restart; nothing bound at start changes.
    assert list(plan.restart) == ["a", "b"]
    assert plan.restart_reasons["a"] == "quo.requests_per_second changed"
    assert plan.effective.daemon.state_path == "one.db"
    assert plan.effective.http.port == 8000
    assert plan.effective.daemon.log_level == "debug"
    assert plan.effective.quo.requests_per_second == 20
    # The next reload of the same file reports the fixed settings again, nothing else.
    again = plan_reload(plan.effective, new)
    assert again.needs_restart == ["daemon.state_path", "http.port"]
    assert again.empty and again.unchanged == ["a", "b"]


# -- progress and stalls ------------------------------------------------------------------


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


async def test_progress_counts_fetched_against_settled() -> None:
    progress = Progress()
    adapter = progress.watch(PagedAdapter(pages=3))  # type: ignore[arg-type]
    assert adapter.name == "fake"  # everything else is delegated
    assert not progress.busy
    page = await adapter.fetch_page("people", None, 2)
    await adapter.fetch_page("people", page.next_cursor, 2)
    assert progress.in_flight == 4 and progress.busy
    for _ in range(3):
        progress.settled("created")
    assert progress.busy
    quiet = asyncio.create_task(progress.wait_quiet())
    progress.settled("unchanged")
    await asyncio.wait_for(quiet, 5)
    assert not progress.busy


async def test_progress_resets_when_a_pass_restarts_from_its_checkpoint() -> None:
    """A crashed pass loses its in-flight records; a fetch that does not continue where
    the last page ended (back at the committed cursor) starts the count again."""
    progress = Progress()
    adapter = progress.watch(PagedAdapter(pages=5))  # type: ignore[arg-type]
    await adapter.fetch_page("people", None, 2)
    await adapter.fetch_page("people", "2", 2)
    progress.settled("created")
    assert progress.in_flight == 3
    await adapter.fetch_page("people", "2", 2)  # restarted at cursor 2
    assert progress.in_flight == 2
    await adapter.fetch_page("people", "4", 2)  # continues
    assert progress.in_flight == 4
    progress.new_pass()
    assert progress.in_flight == 0


async def test_progress_keeps_counting_across_objects() -> None:
    progress = Progress()
    adapter = progress.watch(PagedAdapter(pages=1))  # type: ignore[arg-type]
    await adapter.fetch_page("people", None, 2)  # last page of people
    await adapter.fetch_page("companies", None, 2)  # next object: a continuation
    assert progress.in_flight == 4
    await adapter.fetch_page("companies", None, 2)  # companies again from the top
    assert progress.in_flight == 2


async def test_drain_holds_new_fetches_but_not_the_one_in_flight() -> None:
    progress = Progress()
    inner = PagedAdapter(pages=5)
    adapter = progress.watch(inner)  # type: ignore[arg-type]
    await adapter.fetch_page("people", None, 2)
    progress.drain()
    held = asyncio.create_task(adapter.fetch_page("people", "2", 2))
    for _ in range(10):
        await asyncio.sleep(0)  # let it run as far as it can
    assert not held.done() and len(inner.calls) == 1
    progress.settled("created")
    progress.settled("created")
    await asyncio.wait_for(progress.wait_quiet(), 5)
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held


def stall_value(tenant: str, stage: str) -> float | None:
    return REGISTRY.get_sample_value("crmsync_stalled", {"tenant": tenant, "stage": stage})


async def test_stall_detector_flags_and_clears_each_stage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """1. a sync pass with records in flight and no settle for > 300 s: `sync` stalled
    2. a settle: cleared
    3. a pending webhook event, tenant live, the same oldest event for > 300 s: `inbox`
       stalled; while not live (initial sync) the same wait is no stall
    4. close(): the gauge series and readiness reasons are gone
    """
    now = [1000.0]
    progress = Progress(clock=lambda: now[0])
    health = Health()
    live = [True]
    async with open_store(tmp_path / "state.db") as store:
        await store.tenants.upsert("acme", "attio")
        detector = StallDetector(
            "acme", progress=progress, store=store, health=health,
            inbox_active=lambda: live[0], after=300, clock=lambda: now[0],
        )
        adapter = progress.watch(PagedAdapter(pages=3))  # type: ignore[arg-type]
        await adapter.fetch_page("people", None, 2)
        with caplog.at_level(logging.INFO, "crmsync.tenant.stall"):
            await detector.check()
            assert stall_value("acme", "sync") == 0 and health.ready()
            now[0] += 301
            await detector.check()
            await detector.check()
            assert stall_value("acme", "sync") == 1
            assert detector.stalled == {"sync"}
            (reason,) = health.not_ready_reasons()
            assert reason.startswith("acme/sync: stalled: sync pass made no progress for 301s")
            assert caplog.text.count("sync stalled") == 1
            progress.settled("created")
            await detector.check()
            assert stall_value("acme", "sync") == 0 and health.ready()
            assert "sync progressing again" in caplog.text

            await store.inbox.insert("acme", "crm", "ev-1", "record.updated", b"{}", {})
            await detector.check()
            now[0] += 301
            live[0] = False
            await detector.check()
            assert stall_value("acme", "inbox") == 0
            live[0] = True
            await detector.check()
            assert stall_value("acme", "inbox") == 1
            assert health.not_ready_reasons()[0].startswith("acme/inbox: stalled")
        detector.close()
        assert stall_value("acme", "inbox") is None and stall_value("acme", "sync") is None
        assert health.ready()


# -- signals -------------------------------------------------------------------------------


async def test_signal_requests_only_record_what_was_asked() -> None:
    requests = SignalRequests()
    requests.received(signal.SIGHUP)
    assert requests.reload.is_set() and requests.wake.is_set()
    requests.received(signal.SIGUSR1)
    assert requests.dump.is_set()
    assert not requests.stop.is_set()
    requests.received(signal.SIGTERM)
    assert requests.stop.is_set() and requests.stop_signal == "SIGTERM"
    assert not requests.force.is_set()
    requests.received(signal.SIGTERM)  # systemd repeating itself is not a force
    assert not requests.force.is_set()
    requests.received(signal.SIGINT)  # Ctrl-C while stopping: force
    assert requests.force.is_set()

    first_int = SignalRequests()
    first_int.received(signal.SIGINT)
    assert first_int.stop.is_set() and not first_int.force.is_set()
    assert first_int.stop_signal == "SIGINT"


async def test_task_stacks_name_every_task() -> None:
    async def parked() -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(parked(), name="tenant:acme")
    await asyncio.sleep(0)
    try:
        dump = task_stacks()
    finally:
        task.cancel()
    assert "--- tenant:acme ---" in dump
    assert "in parked" in dump
