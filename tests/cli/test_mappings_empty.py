"""An empty `crmsync mappings` says so on a terminal and stays empty in a pipe.

1. a config for acme and beta; a state database in which only beta has mappings (or
   none at all)
2. `crmsync mappings --tenant acme` with stdout a terminal (a pty), then a pipe, as jsonl
   and as csv
Result: on the terminal one line on stderr says there are no mappings yet and how they
come; in a pipe stderr is silent. Stdout is the export either way: nothing for jsonl,
the header alone for csv (so `> file` stays a valid file).
"""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from pathlib import Path

import pytest
from support.cli import CLI_KEYS, T0, Cli, cli_env, write_config

from crmsync.store import Mapping, open_store

NOTE = ("acme: no mappings yet (a sync pass makes them: `crmsync sync --tenant acme` "
        "or the daemon)")
CSV_HEADER = ("tenant,crmObject,crmRecordId,quoContactId,entityType,syncMethod,action,"
              "lastSyncedAt,contentHash")


async def with_a_terminal(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """`crmsync ARGS -c crmsync.toml` with stdout on a pty: (exit, stdout, stderr)."""
    controller, terminal = pty.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crmsync", *args, "-c", "crmsync.toml",
            env=cli_env(CLI_KEYS), cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
            stdout=terminal, stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(terminal)  # the child has its copy: its exit closes the terminal
    _, err = await process.communicate()
    out = await asyncio.to_thread(_read_all, controller)
    assert process.returncode is not None
    return process.returncode, out.decode().replace("\r\n", "\n"), err.decode()


def _read_all(controller: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(controller, 65536):
            chunks.append(chunk)
    except OSError:  # EIO: every writer closed the terminal, and it is drained
        pass
    finally:
        os.close(controller)
    return b"".join(chunks)


@pytest.fixture
async def state(tmp_path: Path) -> Path:
    path = write_config(tmp_path)
    async with open_store(path) as store:
        await store.tenants.upsert("beta", "attio")
        await store.mappings.upsert(Mapping(
            tenant_id="beta", crm_object="people", crm_record_id="rec-1",
            quo_contact_id="contact-1", entity_type="person", sync_method="initial",
            action="created", content_hash="hash-1", last_synced_at=T0,
        ))
    return path


async def test_empty_mappings_say_so_on_stderr_when_stdout_is_a_terminal(
    tmp_path: Path, state: Path
) -> None:
    code, out, err = await with_a_terminal(tmp_path, "mappings", "--tenant", "acme")
    assert (code, out, err.splitlines()) == (0, "", [NOTE])
    code, out, err = await with_a_terminal(
        tmp_path, "mappings", "--tenant", "acme", "--format", "csv")
    assert (code, out.splitlines(), err.splitlines()) == (0, [CSV_HEADER], [NOTE])
    # Mappings to show: no note.
    code, out, err = await with_a_terminal(tmp_path, "mappings", "--tenant", "beta")
    assert (code, err) == (0, "")
    assert '"quoContactId":"contact-1"' in out


async def test_empty_mappings_in_a_pipe_are_an_empty_export(
    cli: Cli, tmp_path: Path, state: Path
) -> None:
    jsonl = await cli("mappings", "--tenant", "acme")
    assert (jsonl.code, jsonl.out, jsonl.err) == (0, "", "")
    as_csv = await cli("mappings", "--tenant", "acme", "--format", "csv")
    assert (as_csv.code, as_csv.out.splitlines(), as_csv.err) == (0, [CSV_HEADER], "")


async def test_no_state_database_yet_says_so_on_a_terminal_too(tmp_path: Path) -> None:
    write_config(tmp_path)
    code, out, err = await with_a_terminal(tmp_path, "mappings", "--tenant", "acme")
    assert (code, out, err.splitlines()) == (0, "", [NOTE])
