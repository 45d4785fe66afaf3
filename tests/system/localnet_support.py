"""Support for tests of local networks and chaos runs: whatever a test started under its
directory is stopped when it ends, also when the test failed half-way (a `localnet up` leaves
processes in sessions of their own, and a chaos run killed by a deadline leaves its nodes)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from p2pchan_cli.localnet.state import load_state
from p2pchan_cli.localnet.supervisor import stop_processes


def processes_under(directory: Path) -> list[int]:
    """Pids of `p2pchan` processes whose command line names a path under `directory`."""
    marker = os.fsencode(str(directory))
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker in cmdline and b"p2pchan_cli" in cmdline:
            found.append(int(entry.name))
    return found


async def stop_everything_under(directory: Path) -> None:
    network = directory / "localnet.json"
    if network.exists():
        await stop_processes(load_state(directory).processes(), grace_period=5)
    for pid in processes_under(directory):
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
