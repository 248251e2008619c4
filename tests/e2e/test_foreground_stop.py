"""End to end: how a foreground `crmsync sync` ends when it cannot, or may not, finish.

* An unreachable CRM: every pass attempt fails after the request timeout, and the
  foreground pass gives up after its restart budget (5 restarts, however long each
  attempt took) with exit 1 and one line saying why.
* Ctrl-C (SIGINT) or SIGTERM: "stopping… (Ctrl-C again to force)" at once; no new
  page is fetched, the fetched records settle and their pages commit, the run is
  closed as interrupted with the counts of what was written, the tenant is `stopped`,
  and the command exits 130 without a traceback.

The CLI runs as a real subprocess against the simulators (or against a loopback
server that accepts connections and never answers: a CRM that does not respond).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.child import Child
from support.e2e import E2E, TENANT, e2e_env

pytestmark = pytest.mark.slow

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
STOPPING = "stopping… (Ctrl-C again to force)"
RESTARTING = "sync_pipeline crashed"


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[str]:
    """A loopback HTTP "CRM" that accepts every connection and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client gives up and closes

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v2"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def point_crm_at(e2e: E2E, url: str) -> None:
    text = e2e.config_path.read_text()
    e2e.config_path.write_text(text.replace(e2e.attio_url, url))


def spawn_sync(e2e: E2E) -> contextlib.AbstractAsyncContextManager[Child]:
    return Child.spawn("sync", "--tenant", TENANT, "-c", str(e2e.config_path),
                       env=e2e.env, cwd=e2e.config_path.parent)


def error_lines(err: str) -> list[str]:
    """stderr without log lines (`2026-… WARNING name: …`) and progress lines."""
    return [line for line in err.splitlines()
            if line and not line[:4].isdigit() and not line.startswith(f"sync {TENANT}:")]


async def test_sync_against_a_crm_that_never_answers_gives_up_after_its_budget(
    tmp_path: Path,
) -> None:
    """1. the tenant's CRM accepts connections and never answers; each request times
       out after 6.5 s and is not retried (`quo.request_timeout = 6.5`,
       `quo.max_retries = 0`), so no 5 restarts ever fall within 30 s
    2. `crmsync sync --tenant acme`
    Result: exit 1 after 6 attempts (about 40 s), never restarting forever; stderr has
    one line that says the sync failed after more than 5 restarts and names the last
    error; `status` shows the tenant `failed` with that reason."""
    async with (
        e2e_env(tmp_path, people=10,
                quo_options={"request_timeout": "6.5", "max_retries": "0"}) as e2e,
        silent_server() as silent,
    ):
        point_crm_at(e2e, silent)
        async with spawn_sync(e2e) as sync:
            code = await sync.exit_code(within=90)
            sync.assert_clean()
        assert code == EXIT_FAILED, sync.describe()
        assert sync.err.count(RESTARTING) == 5, sync.describe()
        (line,) = error_lines(sync.err)
        assert line.startswith(f"{TENANT}: sync failed: sync_pipeline: more than 5 restarts"), line
        assert "CrmTransportError" in line, line
        status = await e2e.status()
        assert status["state"] == "failed", status
        assert "more than 5 restarts" in (status["lastError"] or ""), status


async def test_ctrl_c_while_the_pass_keeps_restarting_exits_130_without_a_traceback(
    tmp_path: Path,
) -> None:
    """1. the tenant's CRM never answers; each request times out after 1 s, no retries
    2. `crmsync sync --tenant acme`; the pass crashes and is restarted twice
    3. Ctrl-C (SIGINT) during the third attempt
    Result: "stopping… (Ctrl-C again to force)" on stderr, then exit 130 within a few
    seconds, with no traceback (`CancelledError`) anywhere."""
    async with (
        e2e_env(tmp_path, people=10,
                quo_options={"request_timeout": "1", "max_retries": "0"}) as e2e,
        silent_server() as silent,
    ):
        point_crm_at(e2e, silent)
        async with spawn_sync(e2e) as sync:
            await sync.wait_for_err(RESTARTING, count=2, within=30)
            sync.signal(signal.SIGINT)
            code = await sync.exit_code(within=10)
            sync.assert_clean()
        assert code == EXIT_INTERRUPTED, sync.describe()
        assert STOPPING in sync.err, sync.describe()
        status = await e2e.status()
        assert status["state"] == "stopped", status


def page_queries(e2e: E2E) -> int:
    """CRM page requests the Attio simulator answered so far."""
    return sum(n for key, n in e2e.attio.stats.requests.items() if "records/query" in key)


def committed_offset(status: dict[str, Any]) -> int:
    cursor = ((status["watermark"] or {}).get("people") or {}).get("cursor")
    return int(cursor) if cursor and cursor.isdigit() else 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_an_interrupted_sync_drains_and_counts_what_it_wrote(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """1. 1000 Attio people, pages of 50, Quo at 40 requests/s (25 s of work)
    2. `crmsync sync --tenant acme`; once Quo holds 70 contacts, SIGINT (or SIGTERM)
    3. `crmsync status --json`, `crmsync mappings`
    Result: "stopping…" at once and exit 130 without a traceback; no page was fetched
    after the signal; the status shows the tenant `stopped` (phase `initial_sync`), the
    run `failed` with error `interrupted`, and counts that match what was written:
    `created` = contacts in Quo = mappings, `fetched` = every settled record, and the
    committed cursor at the last complete page (a multiple of 50, not past `fetched`)."""
    async with e2e_env(tmp_path, people=1000, rps=40, page_size=50) as e2e:
        async with spawn_sync(e2e) as sync:
            await sync.wait_for(lambda: len(e2e.quo.contacts.contacts) >= 70, within=60,
                                message="70 contacts in Quo")
            sync.signal(sig)
            await sync.wait_for_err(STOPPING, within=5)
            pages_at_signal = page_queries(e2e)
            code = await sync.exit_code(within=45)
            sync.assert_clean()
        assert code == EXIT_INTERRUPTED, sync.describe()
        # At most the fetch already in flight when the signal came is answered after it.
        assert page_queries(e2e) <= pages_at_signal + 1

        status = await e2e.status()
        assert (status["state"], status["phase"]) == ("stopped", "initial_sync"), status
        run, counts = status["lastRun"], status["counts"]
        assert (run["state"], run["error"]) == ("failed", "interrupted"), status
        created_in_quo = len(e2e.quo.contacts.contacts)
        mappings = await e2e.mappings()
        assert counts["created"] == created_in_quo == len(mappings), (counts, created_in_quo)
        assert created_in_quo >= 70
        settled = sum(counts[k] for k in ("created", "updated", "linked", "unchanged", "failed"))
        assert counts["fetched"] == settled, counts
        offset = committed_offset(status)
        assert offset % 50 == 0 and 0 < offset <= counts["fetched"], (offset, counts)
