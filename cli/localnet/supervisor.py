"""Processes of a local network seen from outside: free ports, liveness by pid, stopping.

`localnet up` leaves its processes running in their own sessions and returns; `status` and
`down` are later commands that know them only by the pids in the network's state file. A pid
alone is not trusted (the process may have died and the pid been reused): a process counts as
ours only while its command line still names the data dir it was started with.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import trio

from p2pchan.errors import UserError

STOP_POLL_INTERVAL = 0.05
T = TypeVar("T")


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free right now (bound to port 0, then released).

    A network keeps each node's port across restarts, so peers redial the same address; the
    small race with another program taking a port in between fails that start loudly."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class Tracked:
    """A process of the network: its pid and the data dir its command line names."""

    name: str
    pid: int
    datadir: Path


def is_ours(process: Tracked) -> bool:
    """The pid still runs (not a zombie) and is the process started with that data dir."""
    try:
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{process.pid}/stat").read_text()
    except OSError:
        return False
    state = status.rpartition(")")[2].split()[:1]
    if state == ["Z"]:
        return False
    return os.fsencode(str(process.datadir)) in cmdline


async def stop_processes(processes: Iterable[Tracked], grace_period: float = 10.0) -> list[str]:
    """Stop every process still ours: SIGCONT (a paused one cannot exit), SIGTERM, and SIGKILL
    after `grace_period`. Returns the names of those that had to be killed."""
    running = [process for process in processes if is_ours(process)]
    for process in running:
        for signum in (signal.SIGCONT, signal.SIGTERM):
            _send(process.pid, signum)
    with trio.move_on_after(grace_period):
        await poll_until(_all_gone(running), STOP_POLL_INTERVAL)
    killed = [process for process in running if is_ours(process)]
    for process in killed:
        _send(process.pid, signal.SIGKILL)
    with trio.move_on_after(grace_period):
        await poll_until(_all_gone(killed), STOP_POLL_INTERVAL)
    return [process.name for process in killed]


async def until_signalled(main: Callable[[], Awaitable[T]]) -> T:
    """`main()`, ended (its own cleanup run) by SIGTERM or SIGHUP as by Ctrl-C: a run that
    owns processes must not leave them behind when it is itself told to stop."""
    result: list[T] = []
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:

            async def run_main() -> None:
                result.append(await main())
                nursery.cancel_scope.cancel()

            nursery.start_soon(run_main)
            async for signum in signals:
                raise UserError(f"stopped by {signal.Signals(signum).name}")
    return result[0]


def _all_gone(processes: list[Tracked]) -> Callable[[], Awaitable[bool]]:
    async def gone() -> bool:
        return not any(is_ours(process) for process in processes)

    return gone


def _send(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # gone in between
        os.kill(pid, signum)


async def poll_until(done: Callable[[], Awaitable[bool]], interval: float) -> None:
    """Until `done()` holds, asking every `interval` s (under the caller's deadline): another
    process's state has nothing to wait on but asking."""
    while True:
        if await done():
            return
        await trio.sleep(interval)
