"""Bringing a topology up as real processes: a layer 1, the nodes, funds, peers, channels.

`localnet up` (detached processes that outlive it), `chaos` and `demo` (processes of their
own, restarted at will) share this. Each node keeps one listen port for the network's life, so
a node restarted after `kill -9` is found where its peers remember it. Who dials whom is the
channel's opener `a` dialling `b`; where it dials is `address_of(a, b)`, the node itself or a
chaos proxy in front of it. Work that may run side by side (node starts, opens) does, bounded
by `PARALLEL`, since a network of 100 nodes started one by one takes minutes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from p2pchan.crypto.keys import KEY_FILE_NAME, Identity, write_key_file
from p2pchan.errors import UserError
from p2pchan.l1.client import L1Client
from p2pchan.net.api.pages import MAX_PAGE
from p2pchan.net.rpc import METHOD_NOT_FOUND
from p2pchan.net.rpc_client import RpcClient, RpcError
from p2pchan.types import Address
from p2pchan_cli.localnet.gossip import lagging_channels
from p2pchan_cli.localnet.supervisor import Tracked, free_ports, poll_until
from p2pchan_cli.localnet.topology import ChannelSpec, FeePolicy, Topology
from p2pchan_cli.processes import ChildProcess, l1_process, node_process

HOST = "127.0.0.1"
PARALLEL = 8
STATE_FILE = "localnet.json"
STATE_VERSION = 1
GOSSIP_TIMEOUT = 120.0
OPEN_TIMEOUT = 120.0
POLL_INTERVAL = 0.2

Progress = Callable[[str], None]  # told after each step, with what was done


def _quiet(_done: str) -> None:
    pass


@dataclass
class NodeHandle:
    alias: str
    datadir: Path
    node_id: str
    port: int
    child: ChildProcess | None = None
    misbehave: tuple[str, ...] = ()

    async def call(self, method: str, **params: Any) -> Any:
        async with RpcClient.connect(self.datadir) as rpc:
            return await rpc.call(method, params)

    async def every_payment(self) -> list[dict[str, Any]]:
        """Every payment record the node holds, newest first, page by page (`payments` answers
        one page: a check of the books that read only that would miss the older records)."""
        records: list[dict[str, Any]] = []
        cursor: dict[str, Any] = {}
        async with RpcClient.connect(self.datadir) as rpc:
            while True:
                page = await rpc.call("payments", {"limit": MAX_PAGE, **cursor})
                records += page
                if len(page) < MAX_PAGE:
                    return records
                cursor = {"cursor": page[-1]["index"]}

    def tracked(self) -> Tracked | None:
        if self.child is None or self.child.process is None:
            return None
        return Tracked(self.alias, self.child.process.pid, self.datadir)


@dataclass
class Network:
    """The processes of one topology under `directory` (`D/l1/`, `D/<alias>/`)."""

    directory: Path
    topology: Topology
    detached: bool = False
    dev: bool = False  # every node with --dev (chaos: cheats and attack modes at will)
    node_args: Sequence[str] = ()  # extra `node start` options (keep-alive timings)
    ready_timeout: float = 30.0  # seconds a process may take to start
    l1_port: int = 0
    l1: ChildProcess | None = None
    nodes: dict[str, NodeHandle] = field(default_factory=dict)
    channel_ids: dict[frozenset[str], str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def l1_address(self) -> str:
        return f"{HOST}:{self.l1_port}"

    def prepare(self) -> None:
        """Pick the ports and make every node's key (in-process: `node init` per node would
        start a hundred interpreters)."""
        ports = free_ports(1 + len(self.topology.nodes))
        self.l1_port = ports[0]
        for spec, port in zip(self.topology.nodes, ports[1:], strict=True):
            datadir = self.directory / spec.alias
            datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
            identity = Identity.generate()
            write_key_file(datadir / KEY_FILE_NAME, identity)
            self.nodes[spec.alias] = NodeHandle(
                spec.alias, datadir, identity.node_id.hex(), port, misbehave=spec.misbehave
            )

    def l1_child(self) -> ChildProcess:
        block_time = f"{self.topology.block_time:g}"
        child = l1_process(
            self.directory / "l1", "--port", str(self.l1_port), "--block-time", block_time, "--dev"
        )
        child.detached = self.detached
        child.ready_timeout = self.ready_timeout
        return child

    async def start_l1(self) -> None:
        self.l1 = self.l1_child()
        await self.l1.start()

    def node_child(self, alias: str) -> ChildProcess:
        node = self.nodes[alias]
        spec = self.topology.node(alias)
        args = ["--listen", f"{HOST}:{node.port}", "--alias", alias, *self.node_args]
        if spec.dev or self.dev or node.misbehave:
            args.append("--dev")
        if node.misbehave:
            args += ["--misbehave", ",".join(node.misbehave)]
        child = node_process(node.datadir, self.l1_address, *args, name=alias)
        child.detached = self.detached
        child.ready_timeout = self.ready_timeout
        return child

    async def start_node(self, alias: str) -> None:
        node = self.nodes[alias]
        node.child = self.node_child(alias)
        await node.child.start()

    async def start_nodes(self, progress: Progress = _quiet) -> None:
        async def one(alias: str) -> None:
            await self.start_node(alias)
            progress(f"node {alias} started")

        await _in_parallel([lambda a=alias: one(a) for alias in self.nodes])  # type: ignore[misc]

    async def fund(self, progress: Progress = _quiet) -> None:
        """Every node's funds from the faucet, submitted together, then one wait."""
        async with L1Client.connect(HOST, self.l1_port) as client:
            last = None
            for spec in self.topology.nodes:
                if spec.funds:
                    address = Address(bytes.fromhex(self.nodes[spec.alias].node_id))
                    last = await client.faucet(address, spec.funds)
            if last is not None:
                await client.wait_for_height(last.block)
        progress("nodes funded")

    async def connect(
        self, address_of: Callable[[str, str], tuple[str, int]], progress: Progress = _quiet
    ) -> None:
        """Each channel's opener dials the other end (remembered, so redialled after drops)."""

        async def one(channel: ChannelSpec) -> None:
            host, port = address_of(channel.a, channel.b)
            target = self.nodes[channel.b]
            await self.nodes[channel.a].call(
                "connect", node_id=target.node_id, host=host, port=port
            )

        await _in_parallel([lambda c=c: one(c) for c in self.topology.channels])  # type: ignore[misc]
        progress("peers connected")

    async def open_channels(self, progress: Progress = _quiet) -> None:
        async def one(channel: ChannelSpec) -> None:
            opener, partner = self.nodes[channel.a], self.nodes[channel.b]
            with trio.fail_after(OPEN_TIMEOUT):
                await _until_connected(opener, partner.node_id)
                opened = await opener.call(
                    "open",
                    node_id=partner.node_id,
                    amount=channel.deposit_a,
                    settle_timeout=channel.settle_timeout,
                )
                channel_id = opened["channel_id"]
                self.channel_ids[channel.ends] = channel_id
                if channel.deposit_b:
                    await partner.call("deposit", channel_id=channel_id, total=channel.deposit_b)
            progress(f"channel {channel.a}-{channel.b} open")

        await _in_parallel([lambda c=c: one(c) for c in self.topology.channels])  # type: ignore[misc]

    async def apply_fees(self) -> None:
        """Each direction's fee policy (the channel's, else its node's default) through the
        node's `setfees`; a note instead where the node has no such method yet."""
        for channel in self.topology.channels:
            for alias in (channel.a, channel.b):
                policy = self.topology.fee_policy(channel, alias)
                if policy is None:
                    continue
                if not await self._set_fees(alias, self.channel_ids[channel.ends], policy):
                    self.notes.append(
                        "fee policies not applied: the nodes have no `setfees` yet "
                        "(payments are direct until routing lands)"
                    )
                    return

    async def _set_fees(self, alias: str, channel_id: str, policy: FeePolicy) -> bool:
        try:
            await self.nodes[alias].call(
                "setfees", channel_id=channel_id, base=policy.base, ppm=policy.ppm
            )
        except RpcError as error:
            if error.rpc_code == METHOD_NOT_FOUND:
                return False
            raise
        return True

    async def wait_for_gossip(self, progress: Progress = _quiet) -> None:
        """Until every node's `graph` holds every channel of the topology with the fees it
        sets (`gossip.lagging_channels`); a note instead where the nodes serve no `graph`."""
        node_ids = {alias: node.node_id for alias, node in self.nodes.items()}
        lagging: list[str] = []
        try:
            with trio.fail_after(GOSSIP_TIMEOUT):
                for node in self.nodes.values():

                    async def converged(node: NodeHandle = node) -> bool:
                        nonlocal lagging
                        graph = await node.call("graph")
                        lagging = lagging_channels(graph, self.topology, node_ids)
                        return not lagging

                    await poll_until(converged, POLL_INTERVAL)
        except RpcError as error:
            if error.rpc_code != METHOD_NOT_FOUND:
                raise
            self.notes.append("gossip wait skipped: the nodes serve no `graph` yet")
            progress("gossip wait skipped")
            return
        except trio.TooSlowError:
            raise UserError(
                f"gossip did not converge within {GOSSIP_TIMEOUT:g} s ({len(lagging)} channels "
                f"not yet known as the topology has them, such as {', '.join(lagging[:3])})"
            ) from None
        progress("gossip converged")

    def tracked(self) -> list[Tracked]:
        """Every process started, the layer 1 last (nodes stop before their chain)."""
        processes = [node.tracked() for node in self.nodes.values()]
        if self.l1 is not None and self.l1.process is not None:
            processes.append(Tracked("l1", self.l1.process.pid, self.directory / "l1"))
        return [process for process in processes if process is not None]

    async def stop_all(self) -> None:
        """Stop every process this object started (shielded, each with a grace period)."""
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for node in self.nodes.values():
                    if node.child is not None:
                        nursery.start_soon(node.child.stop)
            if self.l1 is not None:
                await self.l1.stop()

    def state_document(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "name": self.topology.name,
            "topology": self.topology.to_document(),
            "l1": {"host": HOST, "port": self.l1_port, "datadir": str(self.directory / "l1")},
            "nodes": [
                {
                    "alias": node.alias,
                    "node_id": node.node_id,
                    "host": HOST,
                    "port": node.port,
                    "datadir": str(node.datadir),
                }
                for node in self.nodes.values()
            ],
            "channels": [
                {"a": c.a, "b": c.b, "channel_id": self.channel_ids.get(c.ends)}
                for c in self.topology.channels
            ],
            "pids": {process.name: process.pid for process in self.tracked()},
            "notes": self.notes,
        }

    def write_state(self) -> None:
        path = self.directory / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.state_document(), indent=1) + "\n")
        temporary.replace(path)


async def _until_connected(node: NodeHandle, peer_id: str) -> None:
    async def connected() -> bool:
        peers = await node.call("peers")
        return any(peer["node_id"] == peer_id and peer["connected"] for peer in peers)

    await poll_until(connected, POLL_INTERVAL)


async def _in_parallel(jobs: Sequence[Callable[[], Any]], limit: int = PARALLEL) -> None:
    """Run the jobs, `limit` at a time; the first failure cancels the rest."""
    limiter = trio.CapacityLimiter(limit)

    async def run(job: Callable[[], Any]) -> None:
        async with limiter:
            await job()

    async with trio.open_nursery() as nursery:
        for job in jobs:
            nursery.start_soon(run, job)
