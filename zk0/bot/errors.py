"""Exit codes and the one-sentence errors zk0bot prints.

Every failure a user can fix is a :class:`BotError` carrying what went wrong and the fix;
the CLI prints ``error: <problem> Fix: <fix>`` on stderr and exits with the error's code, so
scripts can branch on *why* a command failed without parsing text. Typer itself exits 2 on
a usage error (unknown option, missing argument), which is kept as :attr:`ExitCode.USAGE`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; stable, documented in docs/NODE-OPERATORS.md."""

    OK = 0
    FAILED = 1  # a step ran and failed (a playbook task, a required doctor check, a run)
    USAGE = 2  # bad command line (typer/click) or an invalid value
    MISSING_TOOL = 3  # ansible-playbook, docker or flwr is not installed
    NOT_FOUND = 4  # a file the command needs does not exist (key, CA, settings, playbooks)
    UNREACHABLE = 5  # the SuperLink cannot be reached or its certificate does not verify
    NOT_CONFIGURED = 6  # nothing to act on yet (no saved settings: run `start` first)


class BotError(Exception):
    """A failure the user can fix: ``problem`` and ``fix`` are one sentence each."""

    def __init__(self, problem: str, fix: str, code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(problem)
        self.problem = problem.rstrip(".")
        self.fix = fix.rstrip(".")
        self.code = code

    def __str__(self) -> str:
        return f"{self.problem}. Fix: {self.fix}."
