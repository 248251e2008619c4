"""Signal requests (reload, dump, stop, force) and the SIGUSR1 task-stack dump."""

from __future__ import annotations

import asyncio
import signal

from crmsync.daemon.signals import SignalRequests, task_stacks


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
