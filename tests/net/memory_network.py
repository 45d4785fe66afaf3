"""Channel nodes in one trio run, talking over in-memory streams: the real composition root
(`net.node.Node`: its `Driver`, `PeerManager` and peer sessions, the Noise transport, the core,
a SQLite store per node in a temp dir) with two things replaced.

- TCP: every node dials through one `peer_helpers.MemoryNetwork` (`Node(dial=...)`) and its peer
  manager serves that network's listener (`PeerManager.serve`) instead of a TCP socket
  (`PeerManager.run`). Everything above the byte stream is the production code: handshakes,
  init, sessions, the duplicate rule, redials, misbehaviour scores.
- Layer 1: the node's link, wallet, chain watcher, layer-1 duties and Plasma wallets are built
  but never run. Blocks are fed to every node's driver as `ContractReceiveBlock` inputs carrying
  the contract events a chain would emit (`ChannelOpened`, `ChannelDeposited`), every node
  seeing every block, as the chain watcher does.

`MemoryNode.start` runs what `Node.run` runs, in its order, minus layer 1, Plasma and the RPC
socket: the driver, `Resume`, the peer manager, the node announcement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import trio

from p2pchan.core.gossip.state import FeePolicy
from p2pchan.core.inputs import ActionAnnounceNode, ContractReceiveBlock, Resume
from p2pchan.core.state import NodeState
from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.files import DatadirLock
from p2pchan.l1.events import ChannelDeposited, ChannelOpened, Event
from p2pchan.net.config import NodeConfig
from p2pchan.net.driver import Driver, now_ms
from p2pchan.net.node import Node
from p2pchan.net.peers import PeerConfig
from p2pchan.storage.db import NodeDatabase
from p2pchan.types import ChainId, ChannelId, NodeId
from tests.net.peer_helpers import HOST, MemoryNetwork

CHAIN = ChainId(sha256(b"p2pchan memory network chain"))
SETTLE_TIMEOUT = 100
# Keep-alive off: on the autojump clock a ping would only move time forward for nothing.
PEERS = PeerConfig(ping_interval=0, reconnect_initial=0.05, reconnect_max=0.5)


@dataclass
class MemoryNode:
    name: str
    node: Node
    port: int
    scope: trio.CancelScope

    @property
    def driver(self) -> Driver:
        return self.node.driver

    @property
    def state(self) -> NodeState:
        return self.node.driver.state

    @property
    def node_id(self) -> NodeId:
        return self.node.identity.node_id

    @classmethod
    async def start(
        cls,
        nursery: trio.Nursery,
        memory: MemoryNetwork,
        root: Path,
        name: str,
        fee_policy: FeePolicy,
    ) -> MemoryNode:
        identity = Identity(sha256(b"memory network key", name.encode()))
        datadir = root / name
        datadir.mkdir()
        config = NodeConfig(
            datadir, HOST, 0, HOST, 9, alias=name, peer=PEERS, fee_policy=fee_policy
        )
        lock = DatadirLock(datadir)
        lock.acquire()
        node = Node(config, identity, lock, NodeDatabase.open(datadir), CHAIN, dial=memory.dial)
        scope = trio.CancelScope()
        port, listener = memory.listen()

        async def run(task_status: trio.TaskStatus[None]) -> None:
            try:
                with scope:
                    async with trio.open_nursery() as inner:
                        await inner.start(node.driver.run)
                        await node.driver.step([Resume(now_ms())])
                        await inner.start(node.peers.serve, [listener])
                        announce = ActionAnnounceNode(name, (f"{HOST}:{port}",), now_ms())
                        await node.driver.step([announce])
                        task_status.started()
            finally:
                node.close()

        await nursery.start(run)
        return cls(name, node, port, scope)

    async def connect(self, other: MemoryNode) -> None:
        await self.node.peers.connect(other.node_id, HOST, other.port)

    async def disconnect(self, other: MemoryNode) -> None:
        """Both forget each other: the session ends and nobody redials."""
        await self.node.peers.disconnect(other.node_id)
        await other.node.peers.disconnect(self.node_id)


def channel_id_of(left: str, right: str) -> ChannelId:
    return ChannelId(sha256(b"memory network channel", left.encode(), right.encode()))


def opening_events(channels: Sequence[tuple[MemoryNode, MemoryNode]], deposit: int) -> list[Event]:
    """What layer 1 shows when these channels open, each funded by both ends."""
    events: list[Event] = []
    for left, right in channels:
        channel_id = channel_id_of(left.name, right.name)
        events.append(ChannelOpened(channel_id, left.node_id, right.node_id, SETTLE_TIMEOUT))
        events.append(ChannelDeposited(channel_id, left.node_id, deposit))
        events.append(ChannelDeposited(channel_id, right.node_id, deposit))
    return events


async def feed_block(nodes: Sequence[MemoryNode], height: int, events: Sequence[Event]) -> None:
    """A block every node sees, as its chain watcher would hand it over."""
    for node in nodes:
        await node.driver.step([ContractReceiveBlock(height, tuple(events), {}, now_ms())])


async def wait_for(nodes: Sequence[MemoryNode], condition: Callable[[MemoryNode], bool]) -> None:
    """Until `condition` holds at every node (each checked after its own steps; the caller's
    deadline bounds the wait)."""
    for node in nodes:
        await node.driver.wait_until(lambda node=node: condition(node))  # type: ignore[misc]
