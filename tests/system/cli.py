"""Running the real `p2pchan` command from system tests."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

import trio

from p2pchan_cli.processes import p2pchan_argv

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
