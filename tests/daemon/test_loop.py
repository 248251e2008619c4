"""`run_async`: Ctrl-C ends a command as an interrupt (exit 130), whatever the main
task's cancel count says.

Run in a child process: the test sends it a real SIGINT, which pytest's own process
must not receive.
"""

from __future__ import annotations

import asyncio
import sys

from support.cli import cli_env

LEAKED_CANCEL_THEN_CTRL_C = """
import asyncio, os, signal
from crmsync.daemon.loop import run_async

async def main() -> None:
    task = asyncio.current_task()
    task.cancel()
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        pass  # swallowed without uncancel(): the request Python 3.11's TaskGroup leaks
    asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
    await asyncio.sleep(30)

try:
    run_async(main())
except KeyboardInterrupt:
    print("KeyboardInterrupt")
"""


async def test_ctrl_c_is_an_interrupt_even_with_a_cancellation_leaked_before() -> None:
    """1. a command's main task has a cancellation request pending that nobody took
       back (what a crashed and restarted Python 3.11 TaskGroup child leaves behind)
    2. Ctrl-C (a real SIGINT)
    Result: `run_async` raises `KeyboardInterrupt` (the CLI's exit 130), not
    `CancelledError` (a traceback and exit 1, as `asyncio.Runner` alone decides)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LEAKED_CANCEL_THEN_CTRL_C, env=cli_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await child.communicate()
    assert child.returncode == 0, err.decode()
    assert out.decode().strip() == "KeyboardInterrupt", err.decode()
    assert b"Traceback" not in err
