"""Peer managers for tests: a `Network` of them in one trio run, over loopback TCP or over a
`MemoryNetwork`, and `RawPeer`, a peer played by hand.

The memory network does no real IO (its streams are `trio.testing.memory_stream_pair`s, the
node's database writes on trio's thread), so tests on it may run under trio's autojump clock:
backoffs, keep-alive and handshake timeouts then take their real values, in no time.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import math
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog
import trio
import trio.testing

from p2pchan.crypto.keys import Identity
from p2pchan.net.peer import PeerSession
from p2pchan.net.peers import Dialer, PeerConfig, PeerInfo, PeerManager
from p2pchan.net.transport import SecureStream, initiate
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.peers import RememberedPeer, remember_peer
from p2pchan.types import ChainId, NodeId
from p2pchan.wire.peer_messages import (
    PEER_MESSAGES,
    PROTOCOL_VERSION,
    Init,
    PeerMessage,
    Ping,
    Pong,
)
from tests.log_watch import WatchedLogs, watch_logs

HOST = "127.0.0.1"
CHAIN = ChainId(os.urandom(32))
FAST = PeerConfig(
    handshake_timeout=2.0,
    ping_interval=0.05,
    pong_timeout=1.0,  # a whole test network shares one thread: leave room for bursts
    reconnect_initial=0.01,
    reconnect_max=0.05,
)
"""Short timers, for tests on real sockets (real time)."""
QUIET = dataclasses.replace(FAST, ping_interval=0)
"""No keep-alive: for peers played by hand, which do not answer pings."""

log = structlog.get_logger(__name__)


# -- an in-memory loopback --------------------------------------------------------------------


MemoryStream = trio.StapledStream[trio.testing.MemorySendStream, trio.testing.MemoryReceiveStream]


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """Accepts the streams `MemoryNetwork.dial` hands it."""

    def __init__(self) -> None:
        self._incoming, self._waiting = trio.open_memory_channel[MemoryStream](math.inf)
        self.closed = False

    def deliver(self, stream: MemoryStream) -> None:
        self._incoming.send_nowait(stream)

    async def accept(self) -> trio.abc.Stream:
        try:
            return await self._waiting.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise trio.ClosedResourceError("listener closed") from None

    async def aclose(self) -> None:
        """Stop listening; connections not accepted yet are closed, as a kernel would (at
        once, without a checkpoint: this runs while its server is being cancelled)."""
        self.closed = True
        self._incoming.close()
        while True:
            try:
                stream = self._waiting.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            stream.send_stream.close()
            stream.receive_stream.close()
        self._waiting.close()
        await trio.lowlevel.checkpoint()


class MemoryNetwork:
    """Listeners by port, and `dial`, which works like `trio.open_tcp_stream` on them (refused
    where nothing listens). Every dial is recorded with the time of trio's clock."""

    def __init__(self) -> None:
        self.listeners: dict[int, MemoryListener] = {}
        self.dials: list[tuple[float, int]] = []
        self._ports = itertools.count(20_000)
        self._dialled = trio.Event()

    def free_port(self) -> int:
        return next(self._ports)

    def listen(self, port: int = 0) -> tuple[int, MemoryListener]:
        port = port or self.free_port()
        existing = self.listeners.get(port)
        if existing is not None and not existing.closed:
            raise OSError(errno.EADDRINUSE, f"port {port} is in use")
        listener = self.listeners[port] = MemoryListener()
        return port, listener

    async def dial(self, host: str, port: int) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        self.dials.append((trio.current_time(), port))
        self._dialled.set()
        self._dialled = trio.Event()
        listener = self.listeners.get(port)
        if listener is None or listener.closed:
            raise OSError(errno.ECONNREFUSED, f"connection to {host}:{port} refused")
        ours, theirs = trio.testing.memory_stream_pair()
        listener.deliver(theirs)
        return ours

    def dials_to(self, port: int) -> list[float]:
        return [at for at, dialled in self.dials if dialled == port]

    async def wait_for_dials(self, port: int, count: int) -> list[float]:
        """The times of the first `count` dials to `port`, once they happened."""
        while len(self.dials_to(port)) < count:
            await self._dialled.wait()
        return self.dials_to(port)[:count]


# -- peer managers ----------------------------------------------------------------------------


class Inbox:
    """What a peer manager's handler received, in order, with a way to wait for it."""

    def __init__(self, log_messages: bool) -> None:
        self.received: list[tuple[NodeId, PeerMessage]] = []
        self.log_messages = log_messages
        self._handled = trio.Event()

    async def handler(self, session: PeerSession, messages: list[PeerMessage]) -> None:
        for message in messages:
            if self.log_messages:
                log.info("test_message_handled", type=type(message).__name__)
            self.received.append((session.node_id, message))
        self._handled.set()
        self._handled = trio.Event()

    async def wait_for(self, count: int) -> None:
        """Wait until `count` messages have arrived (under the caller's deadline)."""
        while len(self.received) < count:
            await self._handled.wait()


@dataclass
class Peer:
    """One running `PeerManager` with what its handler received."""

    name: str
    identity: Identity
    manager: PeerManager
    port: int
    scope: trio.CancelScope
    stopped: trio.Event
    inbox: Inbox
    dial: Dialer

    @property
    def node_id(self) -> NodeId:
        return self.identity.node_id

    @property
    def received(self) -> list[tuple[NodeId, PeerMessage]]:
        return self.inbox.received

    async def connect(self, other: Peer) -> PeerInfo:
        return await self.manager.connect(other.node_id, HOST, other.port)

    def session(self, other: Peer) -> PeerSession:
        return self.manager.sessions[other.node_id]

    async def crash(self) -> None:
        """Stop abruptly: cancel the manager (no goodbyes) and wait until it is gone."""
        self.scope.cancel()
        await self.stopped.wait()


class Network:
    """Peer managers in this trio run, over loopback TCP, or over `memory` when given."""

    def __init__(self, nursery: trio.Nursery, root: Path, memory: MemoryNetwork | None) -> None:
        self.nursery = nursery
        self.root = root
        self.memory = memory
        self.databases: list[NodeDatabase] = []
        self.log_messages = False
        """Whether handlers log each message (the logging test checks those lines)."""

    @property
    def dial(self) -> Dialer:
        return trio.open_tcp_stream if self.memory is None else self.memory.dial

    async def start(
        self,
        name: str,
        config: PeerConfig = FAST,
        *,
        identity: Identity | None = None,
        chain_id: ChainId = CHAIN,
        port: int = 0,
        remembered: Sequence[RememberedPeer] = (),
    ) -> Peer:
        """Start a peer manager; `remembered` peers are in its store before it starts."""
        identity = identity or Identity.generate()
        datadir = self.root / name
        datadir.mkdir(exist_ok=True)
        database = NodeDatabase.open(datadir)
        self.databases.append(database)
        for peer in remembered:
            database.run_now(remember_peer(peer, 0))
        inbox = Inbox(self.log_messages)
        manager = PeerManager(identity, chain_id, database, inbox.handler, config, dial=self.dial)
        scope, stopped = trio.CancelScope(), trio.Event()
        memory = self.memory

        async def serve(task_status: trio.TaskStatus[int]) -> None:
            try:
                with scope:
                    if memory is None:
                        await manager.run(HOST, port, task_status=task_status)
                        return
                    memory_port, listener = memory.listen(port)
                    async with trio.open_nursery() as nursery:
                        await nursery.start(manager.serve, [listener])
                        task_status.started(memory_port)
            finally:
                stopped.set()

        bound_port = await self.nursery.start(serve)
        return Peer(name, identity, manager, bound_port, scope, stopped, inbox, self.dial)

    def close(self) -> None:
        for database in self.databases:
            database.close()


async def wait_until_at_any(condition: Callable[[], bool], *peers: Peer) -> None:
    """Wait until `condition()` holds, checking it whenever a session starts or ends at any of
    `peers` (under the caller's deadline)."""
    async with trio.open_nursery() as nursery:

        async def wait_at(peer: Peer) -> None:
            await peer.manager.wait_until(condition)
            nursery.cancel_scope.cancel()

        for peer in peers:
            nursery.start_soon(wait_at, peer)


@asynccontextmanager
async def open_network(root: Path, memory: MemoryNetwork | None = None) -> AsyncIterator[Network]:
    async with trio.open_nursery() as nursery:
        net = Network(nursery, root, memory)
        try:
            yield net
        finally:
            nursery.cancel_scope.cancel()
    net.close()


class RawPeer:
    """A peer played by hand: a real handshake and init, then whatever the test sends."""

    def __init__(self, identity: Identity, secure: SecureStream) -> None:
        self.identity = identity
        self.secure = secure
        self._pending: deque[bytes] = deque()

    @classmethod
    async def connect(
        cls, target: Peer, identity: Identity | None = None, chain_id: ChainId = CHAIN
    ) -> RawPeer:
        identity = identity or Identity.generate()
        stream = await target.dial(HOST, target.port)
        secure = await initiate(stream, identity, target.node_id)
        await secure.send([PEER_MESSAGES.encode(Init(PROTOCOL_VERSION, chain_id, b""))])
        raw = cls(identity, secure)
        init = await raw.next_message()
        assert isinstance(init, Init) and init.chain_id == chain_id, init
        return raw

    @property
    def node_id(self) -> NodeId:
        return self.identity.node_id

    async def send_raw(self, *bodies: bytes) -> None:
        await self.secure.send(list(bodies))

    async def next_message(self) -> PeerMessage | None:
        """The next message the manager sent; None once it closed the connection."""
        while not self._pending:
            try:
                bodies = await self.secure.receive()
            except trio.BrokenResourceError:  # a reset: it closed with our bytes unread
                return None
            if not bodies:
                return None
            self._pending.extend(bodies)
        message = PEER_MESSAGES.decode(self._pending.popleft())
        assert isinstance(message, PeerMessage), message
        return message

    async def ping(self, pong_length: int) -> Pong:
        await self.send_raw(PEER_MESSAGES.encode(Ping(pong_length, b"")))
        while True:
            message = await self.next_message()
            assert message is not None, "closed instead of answering the ping"
            if isinstance(message, Pong):
                return message

    async def wait_closed(self) -> list[PeerMessage]:
        """Read until the manager closes the connection; return what it sent meanwhile."""
        messages = []
        while (message := await self.next_message()) is not None:
            messages.append(message)
        return messages

    async def aclose(self) -> None:
        await self.secure.aclose()


def capture() -> AbstractContextManager[WatchedLogs]:
    """Capture log lines with the context fields bound in the task that logged them."""
    return watch_logs(structlog.contextvars.merge_contextvars)
