"""`crmsync status` and `crmsync inbox` as a person reads them, in an 80-column terminal.

Each command runs for real (a subprocess with COLUMNS=80) against a state database made
here. What must hold: no line is wider than 80; a tenant's CRM and phase are labelled on
its own line, never on a line of their own that reads like another tenant; each webhook
event is one line, its long event id cut in the middle, its error after the table.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from support.cli import T0, Cli, write_config

from crmsync.store import DAEMON_COMMAND, hold_state_lock, open_store

STATUS_CONFIG = """\
[daemon]
state_path = "{state}"

[[tenants]]
id = "acme"
crm = "attio"
quo_api_key = "env:QUO_KEY"
crm_api_key = "env:CRM_KEY"

[[tenants]]
id = "beta-eu-west"
crm = "pipedrive"
quo_api_key = "env:QUO_KEY"
crm_api_key = "env:CRM_KEY"
"""

NARROW = {"COLUMNS": "80"}


def assert_fits(output: str) -> None:
    wide = [line for line in output.splitlines() if len(line) > 80]
    assert not wide, "wider than 80 columns:\n" + "\n".join(wide)


def line_with(output: str, text: str) -> str:
    (line,) = [line for line in output.splitlines() if text in line]
    return line


def boxed_rows(output: str) -> list[list[str]]:
    """The rows of a boxed rich table (`show_lines`), each cell's lines joined by spaces,
    the header first."""
    rows: list[list[str]] = []
    current: list[list[str]] = []
    for line in output.splitlines():
        if line.startswith(("┃", "│")):
            current.append([cell.strip() for cell in re.split("[┃│]", line)[1:-1]])
        elif current and line.startswith(("┡", "├", "└")):
            rows.append([" ".join(part for part in column if part)
                         for column in zip(*current, strict=True)])
            current = []
    return rows


async def test_status_labels_each_tenants_crm_and_phase_on_its_row(
    cli: Cli, tmp_path: Path
) -> None:
    state = write_config(tmp_path, STATUS_CONFIG)
    async with open_store(state, clock=lambda: T0) as store:
        await store.tenants.upsert("acme", "attio")
        await store.tenants.set_state("acme", "running", phase="live")
        await store.tenants.mark_success("acme", T0 + 3600.25)
        run = await store.runs.create("acme", "initial")
        await store.runs.transition("acme", run, "running")
        await store.runs.add_counts("acme", run, fetched=1200, created=1190, failed=10)
        await store.runs.transition("acme", run, "completed")
        await store.tenants.upsert("beta-eu-west", "pipedrive")
        await store.tenants.set_state("beta-eu-west", "running", phase="initial_sync")
        await store.tenants.upsert("gone", "hubspot")  # in the state only
    async with hold_state_lock(state, command=DAEMON_COMMAND):  # as a live daemon
        result = await cli("status", env=NARROW)
    assert result.code == 0, result.describe()
    out = result.out
    assert_fits(out)
    header, *rows = boxed_rows(out)
    assert header == ["tenant (CRM)", "state · phase", "last run", "dead letters",
                      "last success"]
    cells = {row[0]: row for row in rows}
    assert list(cells) == ["acme (attio)", "beta-eu-west (pipedrive)",
                           "gone (hubspot) not configured"]
    assert cells["acme (attio)"][1] == "running · live"
    # The last run's non-zero counts, and failed always.
    assert cells["acme (attio)"][2] == (
        "initial #1, completed fetched 1200 · created 1190 · failed 10")
    assert cells["acme (attio)"][4] == "2026-11-23 11:00:00Z"
    assert cells["beta-eu-west (pipedrive)"][1] == "running · initial sync"
    assert cells["gone (hubspot) not configured"][1] == "starting · setup"
    # Each tenant's id and CRM share a line; no CRM starts a line of its own (the bug:
    # that second line read like another tenant).
    for name in ("acme (attio)", "beta-eu-west (pipedrive)", "gone (hubspot)"):
        line_with(out, name)
    assert not re.search(r"^│ \(?(attio|pipedrive|hubspot)", out, re.MULTILINE), out


ATTIO_ID = hashlib.sha256(b"delivery").hexdigest()  # Attio's event ids: the body's hash
QUO_ID = "EV" + hashlib.md5(b"transcript").hexdigest()  # Quo: EV + 32 hex digits


async def test_inbox_lists_each_event_on_one_line_with_ids_cut_short(
    cli: Cli, tmp_path: Path
) -> None:
    state = write_config(tmp_path)
    async with open_store(state, clock=lambda: T0) as store:
        await store.tenants.upsert("acme", "attio")
        inbox = store.inbox
        rows = []
        for source, event_id, event_type in (
            ("crm", ATTIO_ID, "record.updated"),
            ("quo", QUO_ID, "call.transcript.completed"),
            ("quo", "EVshort", "message.received"),
        ):
            row = await inbox.insert("acme", source, event_id, event_type, b"{}", {})
            assert row is not None
            await inbox.mark_processing("acme", row)
            rows.append(row)
        await inbox.mark_processed("acme", rows[0])
        await inbox.mark_failed("acme", rows[1], "Attio answered 500 Internal Server Error "
                                "while writing the call note for this transcript")
        await inbox.mark_ignored("acme", rows[2], "event type not used: call.ringing")
    result = await cli("inbox", "--tenant", "acme", env=NARROW)
    assert result.code == 0, result.describe()
    out = result.out
    assert_fits(out)
    assert ATTIO_ID not in out and QUO_ID not in out  # whole in --json only
    for row, shown, event_type, state in (
        (rows[0], f"{ATTIO_ID[:8]}…{ATTIO_ID[-3:]}", "record.updated", "processed"),
        (rows[1], f"{QUO_ID[:8]}…{QUO_ID[-3:]}", "call.transcript.completed", "failed"),
        (rows[2], "EVshort", "message.received", "ignored"),
    ):
        line = line_with(out, shown)
        assert re.match(rf"\s*{row}\s", line), line
        for text in (event_type, state, "2026-11-23 10:00"):
            assert text in line, line
    # The errors come after the table, one per event not processed, newest first.
    lines = out.splitlines()
    first_error = next(i for i, line in enumerate(lines) if line.startswith("#"))
    assert "Attio answered" not in "\n".join(lines[:first_error])
    assert lines[first_error] == f"#{rows[2]} ignored: event type not used: call.ringing"
    assert lines[first_error + 1].startswith(f"#{rows[1]} failed: Attio answered 500")
    assert f"#{rows[0]}" not in out  # processed: no error line
