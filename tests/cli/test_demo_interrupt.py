"""`crmsync demo` interrupted by Ctrl-C during its initial sync, as a user does it.

The demo runs the daemon in-process; its initial sync of 1000 seeded people at Quo's
10 requests/s takes minutes. Ctrl-C must be acknowledged at once and stop the demo
within a few seconds (the drain of a throwaway demo is short), exiting 130.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import aiohttp
import pytest
from support.child import Child
from support.cli import cli_env

pytestmark = pytest.mark.slow

STOPPING = "stopping… (Ctrl-C again to force)"
DAEMON_URL = re.compile(r"crmsync daemon\s+(?P<url>http://127\.0\.0\.1:\d+)")


async def test_ctrl_c_during_the_initial_sync_stops_the_demo_at_once(tmp_path: Path) -> None:
    """1. `crmsync demo --contacts 1000` (no config), from an empty directory
    2. wait until the daemon's /status shows the initial sync running
    3. Ctrl-C (SIGINT)
    Result: "stopping… (Ctrl-C again to force)" within 2 s of the signal; the demo
    exits 130 within 6 s, with no traceback, and says how to inspect what it synced
    (kept in ./crmsync-demo/)."""
    async with (
        Child.spawn("demo", "--contacts", "1000", env=cli_env({"COLUMNS": "120"}),
                    cwd=tmp_path) as demo,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http,
    ):
        await demo.wait_for(lambda: DAEMON_URL.search(demo.out) is not None, within=60,
                            message="the daemon's URL")
        match = DAEMON_URL.search(demo.out)
        assert match is not None
        status_url = f"{match['url']}/status"

        async def syncing() -> bool:
            try:
                async with http.get(status_url) as response:
                    if response.status != 200:
                        return False
                    (tenant,) = (await response.json())["tenants"]
            except aiohttp.ClientError:
                return False  # not listening yet
            return bool(tenant["state"] == "running" and tenant["phase"] == "initial_sync")

        await demo.wait_for(syncing, within=60, message="the initial sync running")
        demo.signal(signal.SIGINT)
        signalled = time.monotonic()
        await demo.wait_for(lambda: STOPPING in demo.out + demo.err, within=2,
                            message="the stopping message")
        code = await demo.exit_code(within=6)
        elapsed = time.monotonic() - signalled
        demo.assert_clean()
    assert code == 130, demo.describe()
    assert elapsed < 6, elapsed
    assert "  crmsync status -c ./crmsync-demo/crmsync.toml" in demo.out
    assert (tmp_path / "crmsync-demo" / "crmsync.db").is_file()
