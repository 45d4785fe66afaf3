"""Support for system tests: running the real `p2pchan` command, reading child process logs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from p2pchan_cli.processes import ChildProcess, p2pchan_argv

COMMAND_DEADLINE = 60


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)


async def p2pchan(*args: str) -> CommandResult:
    """Run `p2pchan ARGS...` to completion (with a deadline) and capture its output."""
    with trio.fail_after(COMMAND_DEADLINE):
        done = await trio.run_process(
            p2pchan_argv(*args),
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return CommandResult(done.returncode, done.stdout.decode(), done.stderr.decode())


def log_events(child: ChildProcess) -> list[dict[str, Any]]:
    """The JSON log lines a child process has written so far."""
    lines = child.log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


async def wait_for_log_event(
    child: ChildProcess, matches: Callable[[dict[str, Any]], bool]
) -> None:
    """Poll a child's log until a line matches (under the caller's deadline).

    Another process's log file has nothing to wait on but itself, so this polls.
    """
    while not any(matches(event) for event in log_events(child)):  # noqa: ASYNC110
        await trio.sleep(0.05)
