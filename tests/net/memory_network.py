"""Channel nodes in one trio run, talking over in-memory streams: the real composition root
(`net.node.Node`: its `Driver`, `PeerManager` and peer sessions, the Noise transport, the core,
a SQLite store per node in a temp dir) with two things replaced.

- TCP: `MemoryNet.install` swaps the peer manager's listener (`listen_tcp`) and `trio`'s
  `open_tcp_stream` for in-memory ones (`trio.testing.memory_stream_pair`), keyed by a made-up
  port per node. Everything above the byte stream is the production code: handshakes, init,
  sessions, the duplicate rule, redials, misbehaviour scores.
- Layer 1: the node's link, wallet, chain watcher and layer-1 duties are built but never run.
  Blocks are fed to every node's driver as `ContractReceiveBlock` inputs carrying the contract
  events a chain would emit (`ChannelOpened`, `ChannelDeposited`), every node seeing every
  block, as the chain watcher does.

`MemoryNode.start` runs what `Node.run` runs, in its order, minus layer 1 and the RPC socket:
the driver, `Resume`, the peer manager, the node announcement.
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from p2pchan.core.gossip.state import FeePolicy
from p2pchan.core.inputs import ActionAnnounceNode, ContractReceiveBlock, Resume
from p2pchan.core.state import NodeState
from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.files import DatadirLock
from p2pchan.l1.events import ChannelDeposited, ChannelOpened, Event
from p2pchan.net import peers as peers_module
from p2pchan.net.config import NodeConfig
from p2pchan.net.driver import Driver, now_ms
from p2pchan.net.node import Node
from p2pchan.net.peers import PeerConfig
from p2pchan.storage.db import NodeDatabase
from p2pchan.types import ChainId, ChannelId, NodeId

HOST = "127.0.0.1"
CHAIN = ChainId(sha256(b"p2pchan memory network chain"))
SETTLE_TIMEOUT = 100
# Keep-alive off: on the autojump clock a ping would only move time forward for nothing.
PEERS = PeerConfig(ping_interval=0, reconnect_initial=0.05, reconnect_max=0.5)


class _Socket:
    """What the peer manager reads of a socket: the two addresses."""

    def __init__(self, local: tuple[str, int], remote: tuple[str, int]) -> None:
        self._local, self._remote = local, remote

    def getsockname(self) -> tuple[str, int]:
        return self._local

    def getpeername(self) -> tuple[str, int]:
        return self._remote


class MemoryStream(trio.abc.Stream):
    """One end of a `memory_stream_pair`, with the `.socket` a TCP stream has."""

    def __init__(self, inner: trio.StapledStream[Any, Any], socket: _Socket) -> None:
        self._inner = inner
        self.socket = socket

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self._inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self._inner.aclose()


class MemoryListener(trio.abc.Listener[MemoryStream]):
    def __init__(self, net: MemoryNet, port: int) -> None:
        self.net = net
        self.port = port
        self.socket = _Socket((HOST, port), (HOST, 0))
        self._incoming, self._accepted = trio.open_memory_channel[MemoryStream](64)

    def offer(self, stream: MemoryStream) -> None:
        self._incoming.send_nowait(stream)

    async def accept(self) -> MemoryStream:
        return await self._accepted.receive()

    async def aclose(self) -> None:
        self.net.listeners.pop(self.port, None)
        self._incoming.close()
        await trio.lowlevel.checkpoint()


class MemoryNet:
    """Listeners by port; dialing a port no node listens on is refused, as TCP would."""

    def __init__(self) -> None:
        self.listeners: dict[int, MemoryListener] = {}
        self._ports = itertools.count(30_000)
        self._dialers = itertools.count(50_000)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(peers_module, "listen_tcp", self.listen)
        monkeypatch.setattr(trio, "open_tcp_stream", self.dial)

    async def listen(self, host: str, port: int, option: str) -> list[MemoryListener]:
        await trio.lowlevel.checkpoint()
        port = port or next(self._ports)
        listener = self.listeners[port] = MemoryListener(self, port)
        return [listener]

    async def dial(self, host: str, port: int, **_: Any) -> MemoryStream:
        await trio.lowlevel.checkpoint()
        listener = self.listeners.get(port)
        if listener is None:
            raise OSError(errno.ECONNREFUSED, f"nothing listens on {host}:{port}")
        ours, theirs = trio.testing.memory_stream_pair()
        dialer = (HOST, next(self._dialers))
        listener.offer(MemoryStream(theirs, _Socket((host, port), dialer)))
        return MemoryStream(ours, _Socket(dialer, (host, port)))


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
        cls, nursery: trio.Nursery, root: Path, name: str, fee_policy: FeePolicy
    ) -> MemoryNode:
        identity = Identity(sha256(b"memory network key", name.encode()))
        datadir = root / name
        datadir.mkdir()
        config = NodeConfig(
            datadir, HOST, 0, HOST, 9, alias=name, peer=PEERS, fee_policy=fee_policy
        )
        lock = DatadirLock(datadir)
        lock.acquire()
        node = Node(config, identity, lock, NodeDatabase.open(datadir), CHAIN)
        scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[int]) -> None:
            try:
                with scope:
                    async with trio.open_nursery() as inner:
                        await inner.start(node.driver.run)
                        await node.driver.step([Resume(now_ms())])
                        port = await inner.start(node.peers.run, HOST, 0)
                        announce = ActionAnnounceNode(name, (f"{HOST}:{port}",), now_ms())
                        await node.driver.step([announce])
                        task_status.started(port)
            finally:
                node.close()

        port = await nursery.start(run)
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
