"""Support for system tests: running the real `p2pchan` command, reading child process logs,
polling another process's state, and a `Network` of a layer-1 process and channel nodes in one
test's directory."""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from p2pchan.net.rpc_client import RpcClient
from p2pchan_cli.processes import ChildProcess, l1_process, node_process, p2pchan_argv
from tests.conftest import ProcessRegistry

COMMAND_DEADLINE = 60
POLL_INTERVAL = 0.05
POLL_MARGIN = 1.0  # seconds before the caller's deadline at which a poll gives up and says why


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.returncode == 0, self.stderr
        return json.loads(self.stdout)


async def p2pchan(*args: str, env: dict[str, str] | None = None) -> CommandResult:
    """Run `p2pchan ARGS...` to completion (with a deadline) and capture its output; `env`
    adds to the environment (`COLUMNS` sizes its tables)."""
    with trio.fail_after(COMMAND_DEADLINE):
        done = await trio.run_process(
            p2pchan_argv(*args),
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=None if env is None else {**os.environ, **env},
        )
    return CommandResult(done.returncode, done.stdout.decode(), done.stderr.decode())


def log_events(child: ChildProcess) -> list[dict[str, Any]]:
    """The JSON log lines a child process has written so far."""
    lines = child.log_path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


async def poll_until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll until `condition()` holds, under the caller's deadline (there must be one); just
    before it, fail saying `what` it waited for, rather than with a bare timeout of the test.

    System tests poll because the state they wait for lives in other processes (a node, layer 1,
    an operator, their log files), which offer nothing to wait on from here.
    """
    deadline = trio.current_effective_deadline()
    assert deadline != math.inf, f"polling for {what} with no deadline: use trio.fail_after"
    with trio.move_on_at(deadline - POLL_MARGIN):
        while not await condition():  # noqa: ASYNC110 - another process's state
            await trio.sleep(POLL_INTERVAL)
        return
    raise AssertionError(f"still waiting at the test's deadline for {what}")


async def wait_for_log_event(
    child: ChildProcess, matches: Callable[[dict[str, Any]], bool]
) -> None:
    """Poll a child's log until a line matches (its log file has nothing to wait on)."""

    async def logged() -> bool:
        return any(matches(event) for event in log_events(child))

    await poll_until(logged, f"a matching line in {child.name}'s log")


class Network:
    """A layer-1 process and channel nodes, each in a directory under `root` named after it."""

    def __init__(self, processes: ProcessRegistry, root: Path) -> None:
        self.processes = processes
        self.root = root
        self.l1 = ""
        self.l1_child: ChildProcess | None = None
        self.block_time = 0.2

    async def start_l1(self, *, block_time: float = 0.2, port: int = 0) -> None:
        self.block_time = block_time
        options = ("--port", str(port), "--block-time", str(block_time), "--dev")
        chain = self.processes.add(l1_process(self.root / "l1", *options))
        ready = await chain.start()
        self.l1 = f"{ready['host']}:{ready['port']}"
        self.l1_child = chain

    async def restart_l1(self) -> None:
        """kill -9 layer 1 and start it again on the same data dir and port (its mempool is
        lost; its blocks are not)."""
        assert self.l1_child is not None
        self.l1_child.kill()
        await self.l1_child.wait_exit()
        await self.start_l1(block_time=self.block_time, port=int(self.l1.rsplit(":", 1)[1]))

    async def init_node(self, name: str) -> str:
        result = await p2pchan("node", "init", "--datadir", str(self.root / name), "--json")
        return str(result.json()["node_id"])

    async def start_node(self, name: str, *extra: str) -> ChildProcess:
        child = self.processes.add(node_process(self.root / name, self.l1, *extra, name=name))
        await child.start()
        return child

    async def rpc(self, name: str, method: str, params: dict[str, Any] | None = None) -> Any:
        async with RpcClient.connect(self.root / name) as rpc:
            return await rpc.call(method, params or {})

    async def wait_connected(self, name: str, peer: str) -> None:
        """Poll the node's peer list (another process) until `peer` shows as connected."""

        async def connected() -> bool:
            peers = await self.rpc(name, "peers")
            return any(p["node_id"] == peer and p["connected"] for p in peers)

        await poll_until(connected, f"{name} to show {peer[:8]} connected")
