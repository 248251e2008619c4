"""Errors that end a CLI command with a specific exit code and one line per problem.

Anything that reaches the CLI as a `CrmsyncError` is printed without a traceback
(unless `--debug`): these are problems the user can fix, not bugs.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CrmsyncError(Exception):
    """Base for errors meant for the user; `lines()` is what gets printed."""

    exit_code = EXIT_FAILED

    def lines(self) -> list[str]:
        return [str(self)]


class UsageError(CrmsyncError):
    """Bad command-line usage (exit 2)."""

    exit_code = EXIT_USAGE


class CommandInterruptedError(CrmsyncError):
    """The command was stopped (Ctrl-C, SIGTERM) after winding down cleanly (exit 130);
    the message says what was kept."""

    exit_code = EXIT_INTERRUPTED


class ConfigError(CrmsyncError):
    """Every problem found in a config file, one line each (exit 2)."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems

    def lines(self) -> list[str]:
        return list(self.problems)
