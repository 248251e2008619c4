"""`crmsync demo` through the real CLI: the daemon against the built-in simulators.

The demo is README command 1, so it is tested the way a new user runs it: a subprocess,
no config file, no network beyond loopback.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
from pathlib import Path

import aiohttp
import pytest
from support.cli import Cli, cli_env, spawn_cli, summary_value

from crmsync.cli.demo import QUO_KEY
from crmsync.net.ratelimit import key_fingerprint
from crmsync.sim.quo.testing import wait_until

pytestmark = pytest.mark.slow

CONTACTS = 25
CURL = re.compile(r"^  curl (?P<args>.*)$", re.MULTILINE)


async def test_demo_syncs_every_seeded_person_and_stops(cli: Cli) -> None:
    """1. `crmsync demo --contacts 25` (no config, fresh temp state)
    Result: exit 0; the summary says 25 created, 0 failed, 0 Quo 429s, and names the
    daemon's /metrics URL."""
    result = await cli("demo", "--contacts", str(CONTACTS), config=None,
                       env={"COLUMNS": "120"}, within=90)
    assert result.code == 0, result.describe()
    out = result.out
    assert summary_value(out, "created") == str(CONTACTS), out
    assert summary_value(out, "failed (dead-lettered)") == "0", out
    assert summary_value(out, "Quo 429s") == "0", out
    assert re.search(r"Prometheus metrics: http://127\.0\.0\.1:\d+/metrics", out), out


async def test_demo_keep_running_answers_the_printed_webhook_lines(tmp_path: Path) -> None:
    """1. `crmsync demo --contacts 25 --keep-running --dir DIR`; wait for "Running until
       Ctrl-C."
    2. do what the first printed curl line does (the Quo simulator sends a signed
       `message.received` for a CRM person's phone)
    3. read the notes with the printed notes line until one is there
    4. /status answers 200; /metrics agrees with the summary (phone numbers left out)
       and has the tenant up, its dead-letter gauges at 0 and its Quo key's fingerprint
    5. Ctrl-C (SIGINT)
    Result: one SMS note on the person, and the demo exits 0 after draining."""
    process = await spawn_cli("demo", "--contacts", str(CONTACTS), "--keep-running",
                              "--dir", str(tmp_path / "demo"), env=cli_env({"COLUMNS": "120"}))
    output = bytearray()
    assert process.stdout is not None

    async def read_until(marker: bytes) -> None:
        assert process.stdout is not None
        while marker not in output:
            chunk = await process.stdout.read(65536)
            assert chunk, f"demo ended early:\n{output.decode()}"
            output.extend(chunk)

    try:
        async with asyncio.timeout(90):
            await read_until(b"Running until Ctrl-C.")
        text = output.decode()
        lines = [m.group("args") for m in CURL.finditer(text)]
        message_line, _, notes_line = lines[:3]
        message = re.fullmatch(r".*-d '(?P<body>.+)' (?P<url>http\S+)", message_line)
        notes = re.fullmatch(r"-s -H 'authorization: (?P<auth>[^']+)' '(?P<url>http\S+)'",
                             notes_line)
        status = re.search(r"curl -s (?P<url>http\S+/status)", text)
        assert message and notes and status, text
        body, url = message["body"], message["url"]
        auth, notes_url, status_url = notes["auth"], notes["url"], status["url"]
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.post(url, json=json.loads(body)) as response:
                assert response.status == 200, await response.text()
                deliveries = (await response.json())["deliveries"]
                assert [d["status"] for d in deliveries] == [200], deliveries

            async def one_note() -> bool:
                async with http.get(notes_url, headers={"authorization": auth}) as response:
                    return len((await response.json())["data"]) == 1

            await wait_until(one_note, within=15, interval=0.1, message="the SMS note")
            async with http.get(notes_url, headers={"authorization": auth}) as response:
                (note,) = (await response.json())["data"]
            assert json.loads(body)["text"] in note["content_markdown"]
            async with http.get(status_url) as response:
                assert response.status == 200, await response.text()
            async with http.get(status_url.removesuffix("/status") + "/metrics") as response:
                assert response.status == 200
                metrics = await response.text()
        dropped = summary_value(text, "phone numbers left out")
        assert f'crmsync_phones_dropped_total{{tenant="demo"}} {float(dropped)}' in metrics
        assert 'crmsync_dead_letters{category="quo_validation",tenant="demo"} 0.0' in metrics
        assert 'crmsync_tenant_up{tenant="demo"} 1.0' in metrics
        fingerprint = key_fingerprint(QUO_KEY)
        assert f'crmsync_tenant_quo_key{{key="{fingerprint}",tenant="demo"}} 1.0' in metrics
        assert QUO_KEY not in metrics
        # The state can be inspected while the demo runs, with the printed commands.
        assert f"  crmsync status -c {tmp_path / 'demo' / 'crmsync.toml'}" in text
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            rest, _ = await process.communicate()
        assert process.returncode == 0, (output + rest).decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


INSPECT = re.compile(r"^  (crmsync (?:status|mappings|errors|inbox) .*)$", re.MULTILINE)


async def test_the_demo_leaves_a_directory_its_printed_commands_inspect(cli: Cli) -> None:
    """1. `crmsync demo --contacts 5 --dir ./inspect-me`, twice (a second demo starts
       its directory over: new simulators, so the old state would be meaningless)
    2. run the commands the demo printed at its end, as printed, from the same
       directory, with none of the demo's keys in the environment
    Result: the demo exits 0 both times and ends with the four commands; `status` shows
    the demo tenant's completed initial sync (run #1: the state is the second demo's),
    `mappings` its 5 contacts, `errors` answers, `inbox` lists Quo's `contact.updated`
    echoes of the 5 creates, every one applied (none pending or failed)."""
    for _ in range(2):
        demo = await cli("demo", "--contacts", "5", "--dir", "./inspect-me", config=None,
                         env={"COLUMNS": "80"}, within=90)
        assert demo.code == 0, demo.describe()
    commands = INSPECT.findall(demo.out)
    assert [shlex.split(c)[1] for c in commands] == ["status", "mappings", "errors", "inbox"]
    assert commands[0] == "crmsync status -c ./inspect-me/crmsync.toml"
    assert demo.out.rstrip().endswith(
        "(`crmsync demo` again starts ./inspect-me/ over; --dir PATH keeps another)")

    outputs = {}
    for command in commands:
        result = await cli(*shlex.split(command)[1:], config=None, env={"COLUMNS": "80"})
        assert result.code == 0, result.describe()
        outputs[shlex.split(command)[1]] = result.out
    assert "demo (attio)" in outputs["status"]
    assert "initial #1, completed" in outputs["status"]
    assert len(outputs["mappings"].splitlines()) == 5
    assert outputs["errors"].strip() == "demo: no unresolved dead letters"
    inbox_rows = [line for line in outputs["inbox"].splitlines() if "contact.updated" in line]
    assert len(inbox_rows) == 5, outputs["inbox"]
    assert all("processed" in row for row in inbox_rows), outputs["inbox"]
    status = await cli("status", "--json", "-c", "./inspect-me/crmsync.toml", config=None)
    (tenant,) = json.loads(status.out)["tenants"]
    assert (tenant["lastRun"]["id"], tenant["counts"]["created"]) == (1, 5)
