"""Child `p2pchan` processes for the demo, benchmarks, localnets and system tests.

A `ChildProcess` runs `python -m p2pchan_cli.main ...` with its output in a log file, waits for
the ready file the process writes (checking that its pid is the new process's, since a ready file
left by a killed process may still be there), and is stopped with SIGTERM or killed with SIGKILL.
Every wait has a deadline; a child that dies early fails the wait with the tail of its log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from p2pchan.errors import UserError

READY_POLL_INTERVAL = 0.02


def p2pchan_argv(*args: str) -> list[str]:
    """The command line that runs `p2pchan` with this interpreter."""
    return [sys.executable, "-m", "p2pchan_cli.main", *args]


@dataclass
class ChildProcess:
    name: str
    argv: list[str]
    ready_file: Path
    log_path: Path
    ready_timeout: float = 30.0
    detached: bool = False  # its own session: outlives this command (a localnet's processes)
    process: trio.Process | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    _log_fd: int | None = None

    async def start(self) -> dict[str, Any]:
        """Start the process and return its ready file once it names this process."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = await trio.lowlevel.open_process(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_fd,
            stderr=self._log_fd,
            env=env,
            start_new_session=self.detached,
        )
        self.ready = await self._wait_ready()
        if self.detached:
            self._reap()  # the child keeps its own copy of the log file
        return self.ready

    async def _wait_ready(self) -> dict[str, Any]:
        assert self.process is not None
        timeout = self.ready_timeout
        with trio.move_on_after(timeout):
            while True:
                if self.process.poll() is not None:
                    self._reap()
                    raise UserError(
                        f"{self.name} exited with status {self.process.returncode} before it "
                        f"was ready: {self.log_tail()}"
                    )
                ready = _read_json(self.ready_file)
                if ready is not None and ready.get("pid") == self.process.pid:
                    return ready
                await trio.sleep(READY_POLL_INTERVAL)
        # A start that failed leaves nothing running: a slow process left behind would hold
        # its port and data dir, and every retry would fail on them (seen in a chaos run on a
        # loaded machine: restarts failing "port in use" for the rest of the run).
        with trio.CancelScope(shield=True):
            self.kill()
            await self.process.wait()
        self._reap()
        raise UserError(f"{self.name} not ready after {timeout} s: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash would leave things."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def stop(self, *, grace_period: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL if still running after `grace_period`. Returns the exit status.

        Shielded: it finishes even while the caller is being cancelled.
        """
        process = self.process
        if process is None:
            return None
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(grace_period):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
        self._reap()
        return process.returncode

    async def wait_exit(self) -> int:
        assert self.process is not None
        status = await self.process.wait()
        self._reap()
        return status

    def signal(self, signum: int) -> None:
        """Send `signum` (SIGSTOP, SIGCONT, ...) if the process still runs."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signum)

    def _reap(self) -> None:
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not written yet, or being replaced
    return data if isinstance(data, dict) else None


def l1_process(
    datadir: Path, *extra: str, name: str = "l1", log_level: str = "info"
) -> ChildProcess:
    """`p2pchan l1 start` in `datadir`, logging JSON lines to `datadir/l1.log`."""
    argv = _server_argv(log_level, "l1", "start", "--datadir", str(datadir), *extra)
    return ChildProcess(name, argv, datadir / "l1.json", datadir / "l1.log")


def node_process(
    datadir: Path, l1: str, *extra: str, name: str = "node", log_level: str = "info"
) -> ChildProcess:
    """`p2pchan node start` in an initialised `datadir`, JSON logs in `datadir/node.log`."""
    argv = _server_argv(log_level, "node", "start", "--datadir", str(datadir), "--l1", l1, *extra)
    return ChildProcess(name, argv, datadir / "node.json", datadir / "node.log")


def plasma_operator_process(
    datadir: Path, l1: str, *extra: str, name: str = "operator", log_level: str = "info"
) -> ChildProcess:
    """`p2pchan plasma operator` in `datadir`, JSON logs in `datadir/operator.log`."""
    argv = _server_argv(
        log_level, "plasma", "operator", "--datadir", str(datadir), "--l1", l1, *extra
    )
    return ChildProcess(name, argv, datadir / "plasma.json", datadir / "operator.log")


def _server_argv(log_level: str, *args: str) -> list[str]:
    """A server command that logs JSON lines at `log_level`."""
    return p2pchan_argv("--log-format", "json", "--log-level", log_level, *args)
