"""Networks of real processes for the multi-node benchmarks (`bench multihop`, `bench gossip`):
one layer 1 and any number of nodes in one temporary directory, funded, connected and joined
by channels through the same RPCs a user calls.

Shaped for many processes on few cores: keys are written here (no `node init` interpreter per
node), nodes start a few at a time (fifty interpreters importing at once on two cores starve
each other past any sensible ready deadline), and every wait has a deadline. `bench_network`
is an async context manager: on the way out, failed stage and Ctrl-C included, every process
it started is stopped (all at once, shielded from the cancellation) and the directory removed.
The `/proc` readers give each process's CPU time and resident memory (Linux; None elsewhere).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from p2pchan.crypto.keys import KEY_FILE_NAME, Identity, write_key_file
from p2pchan.l1.client import L1Client
from p2pchan.net.rpc_client import RpcClient
from p2pchan.types import Address
from p2pchan_cli.processes import ChildProcess, l1_process, node_process

NODE_STARTS_AT_ONCE = 6
READY_TIMEOUT = 120.0  # one node among many starting on a loaded machine
STOP_GRACE_SECONDS = 10.0
FUNDED_TIMEOUT = 60.0


@dataclass
class BenchNode:
    name: str
    node_id: str  # hex, known from the key before the process starts
    child: ChildProcess

    @property
    def datadir(self) -> Path:
        return self.child.ready_file.parent

    @property
    def pid(self) -> int | None:
        return self.child.process.pid if self.child.process is not None else None

    @property
    def address(self) -> dict[str, Any]:
        """What `connect` takes to reach this node."""
        ready = self.child.ready
        return {"node_id": self.node_id, "host": ready["host"], "port": ready["port"]}

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """One RPC call on a connection of its own."""
        async with RpcClient.connect(self.datadir) as rpc:
            return await rpc.call(method, params)


class BenchNetwork:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[ChildProcess] = []
        self.nodes: list[BenchNode] = []
        self.l1_child: ChildProcess | None = None
        self.l1_host = ""
        self.l1_port = 0

    @property
    def l1(self) -> str:
        return f"{self.l1_host}:{self.l1_port}"

    async def start_l1(self, block_time: float) -> None:
        chain = l1_process(
            self.workdir / "l1",
            "--port",
            "0",
            "--dev",
            "--block-time",
            str(block_time),
            log_level="warning",
        )
        self.children.append(chain)
        self.l1_child = chain
        ready = await chain.start()
        self.l1_host, self.l1_port = str(ready["host"]), int(ready["port"])

    def add_node(self, name: str, *extra: str, log_level: str = "warning") -> BenchNode:
        """A node's data dir and key, and its (not yet started) process."""
        datadir = self.workdir / name
        datadir.mkdir(mode=0o700, parents=True)
        identity = Identity.generate()
        write_key_file(datadir / KEY_FILE_NAME, identity)
        child = node_process(datadir, self.l1, *extra, name=name, log_level=log_level)
        child.ready_timeout = READY_TIMEOUT
        node = BenchNode(name, identity.node_id.hex(), child)
        self.nodes.append(node)
        return node

    async def start_nodes(
        self, nodes: Sequence[BenchNode], on_ready: Callable[[int], None] | None = None
    ) -> None:
        """Start `nodes`, a few at a time; `on_ready(count)` after each is ready."""
        limiter = trio.CapacityLimiter(NODE_STARTS_AT_ONCE)
        ready = 0

        async def start(node: BenchNode) -> None:
            nonlocal ready
            async with limiter:
                self.children.append(node.child)
                await node.child.start()
            ready += 1
            if on_ready is not None:
                on_ready(ready)

        async with trio.open_nursery() as nursery:
            for node in nodes:
                nursery.start_soon(start, node)

    async def fund(self, amounts: dict[str, int]) -> None:
        """Faucet grants (by node id hex), all in flight at once; returns once every balance
        shows its grant."""
        async with L1Client.connect(self.l1_host, self.l1_port) as client:
            for node_id, value in amounts.items():
                await client.faucet(Address(bytes.fromhex(node_id)), value)
            with trio.fail_after(FUNDED_TIMEOUT):
                for node_id, value in amounts.items():
                    address = Address(bytes.fromhex(node_id))
                    while True:  # another process's state: nothing to wait on but polling
                        if (await client.account(address)).balance >= value:
                            break
                        await trio.sleep(0.1)

    async def connect(self, node: BenchNode, peer: BenchNode) -> None:
        await node.call("connect", peer.address)

    async def open_channel(self, opener: BenchNode, partner: BenchNode, deposit: int) -> str:
        """Open and deposit (the two connected); the channel id once the channel is usable."""
        opened = await opener.call("open", {"node_id": partner.node_id, "amount": deposit})
        return str(opened["channel_id"])

    async def stop_all(self) -> None:
        """Stop every process started, nodes before layer 1, each SIGTERM then SIGKILL."""
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for child in self.children:
                    if child is not self.l1_child:
                        nursery.start_soon(_stop, child)
            if self.l1_child is not None:
                await self.l1_child.stop(grace_period=STOP_GRACE_SECONDS)


async def _stop(child: ChildProcess) -> None:
    await child.stop(grace_period=STOP_GRACE_SECONDS)


@asynccontextmanager
async def bench_network(prefix: str, workdir: Path | None = None) -> AsyncIterator[BenchNetwork]:
    """A network in a fresh temporary directory, torn down whatever happens; or in `workdir`
    (created, and kept afterwards with the logs: for looking into a failed run)."""
    network = BenchNetwork(_make_workdir(prefix, workdir))
    try:
        yield network
    finally:
        try:
            await network.stop_all()
        finally:
            if workdir is None:
                shutil.rmtree(network.workdir, ignore_errors=True)


def _make_workdir(prefix: str, workdir: Path | None) -> Path:
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix=prefix))
    workdir.mkdir(parents=True)
    return workdir


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds the process has used so far (None: not readable)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime: fields 14 and 15


def cpu_snapshot(children: Sequence[ChildProcess]) -> dict[str, float | None]:
    """CPU seconds so far of each running child, by name."""
    return {child.name: cpu_seconds(child.process.pid) for child in children if child.process}


def cpu_spent(
    before: dict[str, float | None], after: dict[str, float | None]
) -> dict[str, float | None]:
    """CPU seconds each process spent between two snapshots (None: not measured)."""
    spent: dict[str, float | None] = {}
    for name, used in before.items():
        now = after.get(name)
        spent[name] = None if used is None or now is None else now - used
    return spent


def resident_mb(pid: int | None) -> float | None:
    """The process's resident memory in MB (None: not readable)."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def load_average() -> float:
    return round(os.getloadavg()[0], 2)
