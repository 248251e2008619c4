"""A CLI child process that keeps running while the test acts on it.

    async with Child.spawn("sync", "--tenant", "acme", "-c", str(config), env=env) as sync:
        await sync.wait_for_err("restarting", count=2)
        sync.signal(signal.SIGINT)
        assert await sync.exit_code(within=10) == 130

`support.cli.spawn_cli` starts the process; this drains its stdout and stderr
continuously (a full pipe would stall the child), waits on its output or on any
condition with a deadline (failing early, with the output, if the child exits), and
always reaps it. `assert_clean()` is what `support.cli.run_cli` checks of every run:
no traceback, nothing never awaited.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from crmsync.sim.quo.testing import wait_until
from support.cli import spawn_cli


class Child:
    """One running `python -m crmsync ARGS`: its output so far, signals, its exit."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._out = bytearray()
        self._err = bytearray()
        assert process.stdout is not None and process.stderr is not None
        self._drains = [
            asyncio.create_task(self._drain(process.stdout, self._out)),
            asyncio.create_task(self._drain(process.stderr, self._err)),
        ]

    @classmethod
    @asynccontextmanager
    async def spawn(
        cls, *args: str, env: Mapping[str, str], cwd: Path | None = None
    ) -> AsyncIterator[Child]:
        child = cls(await spawn_cli(*args, env=env, cwd=cwd))
        try:
            yield child
        finally:
            await child.close()

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, into: bytearray) -> None:
        while chunk := await stream.read(65536):
            into += chunk

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def out(self) -> str:
        return self._out.decode(errors="replace")

    @property
    def err(self) -> str:
        return self._err.decode(errors="replace")

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def describe(self) -> str:
        return f"--- stdout ---\n{self.out}\n--- stderr ---\n{self.err[-20000:]}"

    async def wait_for(
        self,
        condition: Callable[[], bool | Awaitable[bool]],
        *,
        within: float = 30.0,
        message: str = "condition",
    ) -> None:
        """Poll `condition` until true; fails at once (with the output) if the child
        exits first, and after `within` s."""

        async def check() -> bool:
            assert self.running, f"exited with {self.process.returncode}\n{self.describe()}"
            result = condition()
            return result if isinstance(result, bool) else await result

        try:
            await wait_until(check, within=within, interval=0.02, message=message)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.describe()}") from None

    async def wait_for_err(self, text: str, *, count: int = 1, within: float = 30.0) -> None:
        """Until `text` occurs `count` times on stderr."""
        await self.wait_for(lambda: self.err.count(text) >= count, within=within,
                            message=f"{count} x {text!r} on stderr")

    def signal(self, sig: signal.Signals) -> None:
        assert self.running, f"exited with {self.process.returncode}\n{self.describe()}"
        self.process.send_signal(sig)

    async def exit_code(self, *, within: float) -> int:
        """The exit code once the child ends and its output is read; fails after `within`."""
        try:
            async with asyncio.timeout(within):
                code = await self.process.wait()
                await asyncio.gather(*self._drains)
        except TimeoutError:
            raise AssertionError(f"still running after {within} s\n{self.describe()}") from None
        return code

    def assert_clean(self) -> None:
        """No traceback and nothing never awaited in the output."""
        output = self.out + self.err
        assert "Traceback" not in output, self.describe()
        assert "never awaited" not in output, self.describe()

    async def close(self) -> None:
        """Reap the child whatever happened (a failing test must not leak it)."""
        if self.running:
            self.process.kill()
        await self.process.wait()
        async with asyncio.timeout(5):
            await asyncio.gather(*self._drains, return_exceptions=True)
