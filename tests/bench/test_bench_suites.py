"""The benchmarks that are also pass/fail suites, run as their scripts are run by hand
(`python bench/...`, a subprocess each): reduced here, at full size in a full run.

    CRMSYNC_FULL=1 pytest -m slow tests/bench    # 200 tenants x 300 people; 30-min soak

* `bench/multi_tenant.py`: every tenant's initial sync completes in one `crmsync run`,
  no Quo key sees a 429 or more than its limit in any sliding second; at full size
  (200 tenants) every key must also hold >= 0.9 of its limit (issue 14's goal).
* `bench/soak.py`: the script fails (exit 1) when RSS, fds, tasks, the database or the
  WAL keep growing. Reduced (a few tenants for 2 minutes) it checks what so short a
  run can: bytes per event, a deletion rule for every growing table, every webhook
  acknowledged, a clean SIGTERM; the slopes of RSS, fds and tasks need the full run.

The figures these print are BENCHMARKS.md's; `pytest -s` shows them.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest
from support.cli import REPO_ROOT, cli_env
from support.sizes import full_run

pytestmark = pytest.mark.slow

BENCH = REPO_ROOT / "bench"
#: issue 14: every key at >= 90 % of its limit with 200 tenants in one process
UTILISATION_GOAL = 0.9


async def run_bench(
    script: str, *args: str, within: float, ok_codes: tuple[int, ...] = (0,)
) -> str:
    """`python bench/SCRIPT ARGS` to completion; its output, or a failure with it."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(BENCH / script), *args, env=cli_env(), cwd=REPO_ROOT,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"bench/{script} did not finish within {within:g}s")
    text = output.decode(errors="replace")
    print(text)
    assert process.returncode in ok_codes, (
        f"bench/{script} exited {process.returncode}:\n{text[-4000:]}")
    return text


def figures(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


@pytest.mark.timeout(3600)
async def test_multi_tenant_initial_syncs_share_one_process() -> None:
    tenants, people = (200, 300) if full_run() else (12, 30)
    text = await run_bench(
        "multi_tenant.py", "--tenants", str(tenants), "--people", str(people),
        "--page-size", "100" if full_run() else "10", "--idle", "2", "--no-calibrate",
        within=3000 if full_run() else 240,
    )
    line = next(line for line in text.splitlines() if line.startswith("tenants="))
    got = figures(line)
    assert int(got["mapped"]) == tenants * people
    assert got["quo_429"] == "0"
    assert float(got["max_window"]) <= 1.0
    if full_run():
        assert float(got["util_min"]) >= UTILISATION_GOAL, line
        assert float(got["util_median"]) >= UTILISATION_GOAL, line


#: what a few minutes cannot judge (the warm-up outlasts them; keep-alive pools settle
#: on their own timers): a reduced soak may report these, a full one may not
SHORT_RUN_NOISE = re.compile(r"(rss_mib|fds|tasks|conns)\b.*(grows|after the load)")


@pytest.mark.timeout(3600)
async def test_soak_grows_nothing(tmp_path: Path) -> None:
    args = (["--minutes", "30"] if full_run() else
            ["--minutes", "2", "--warmup-minutes", "0.5", "--sample-seconds", "10",
             "--tenants", "3", "--people", "10", "--rate", "3", "--scrape-seconds", "5",
             "--idle-seconds", "10"])
    text = await run_bench("soak.py", *args, "--state-dir", str(tmp_path / "soak"),
                           within=3000 if full_run() else 600, ok_codes=(0,) if full_run()
                           else (0, 1))
    verdict = text.strip().splitlines()[-1]
    assert "daemon exit code after SIGTERM: 0; tracebacks logged: 0" in text
    if verdict != "PASS":
        assert verdict.startswith("FAIL: ") and not full_run(), verdict
        reasons = verdict.removeprefix("FAIL: ").split("; ")
        judged = [r for r in reasons if not SHORT_RUN_NOISE.match(r)]
        assert not judged, verdict
