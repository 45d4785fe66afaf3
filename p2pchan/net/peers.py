"""The peer manager: who we are connected to, and keeping it that way.

It accepts connections (at most `max_pending_handshakes` handshakes at once, at most `max_peers`
sessions), dials peers, and keeps one session per peer. Peers we connected to are remembered in
the store and redialled with exponential backoff, across restarts too. Two sessions with one
peer: if both came the same way, the newer replaces the older (the peer reconnected); if they
crossed (both dialled at once), the one dialled by the smaller node id stays, so both ends keep
the same one.

The manager does not care where its byte streams come from: a node listens and dials over TCP
(`run`, `trio.open_tcp_stream`), while `serve` takes any trio listeners and `dial` any opener
(tests run peer networks in memory, under trio's virtual clock). Every session or inbound
handshake that starts or ends wakes `wait_until`: callers wait for a peer state, never poll it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import trio

from p2pchan.concurrency import listen_tcp
from p2pchan.crypto.keys import Identity
from p2pchan.errors import CryptoError, P2pchanError, RemoteProtocolError, UserError
from p2pchan.log import Throttle
from p2pchan.net.misbehaviour import MisbehaviourLedger
from p2pchan.net.peer import Direction, MessageHandler, PeerSession
from p2pchan.net.transport import SecureStream, initiate, respond
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.peers import RememberedPeer, forget_peer, load_peers, remember_peer
from p2pchan.types import ChainId, NodeId, short_hex
from p2pchan.wire.peer_messages import PEER_MESSAGES, PROTOCOL_VERSION, Goodbye, Init

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PeerConfig:
    max_peers: int = 128
    max_pending_handshakes: int = 32
    handshake_timeout: float = 10.0
    ping_interval: float = 30.0
    pong_timeout: float = 20.0
    reconnect_initial: float = 0.25
    reconnect_max: float = 30.0
    stable_after: float = 60.0  # a session this long resets the backoff
    ban_threshold: float = 100
    ban_seconds: float = 600


@dataclass(frozen=True)
class PeerInfo:
    node_id: NodeId
    host: str
    port: int
    connected: bool
    direction: str | None
    remembered: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id.hex(),
            "host": self.host,
            "port": self.port,
            "connected": self.connected,
            "direction": self.direction,
            "remembered": self.remembered,
        }


SessionHook = Callable[[PeerSession], Awaitable[None]]
Dialer = Callable[[str, int], Awaitable[trio.abc.Stream]]
"""Opens a byte stream to host:port (`trio.open_tcp_stream` in a node)."""


class ConnectFailed(P2pchanError):
    """A dial or handshake did not produce a session."""


_HANDSHAKE_ERRORS = (
    OSError,
    trio.TooSlowError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    RemoteProtocolError,
    CryptoError,
)


class PeerManager:
    def __init__(
        self,
        identity: Identity,
        chain_id: ChainId,
        database: NodeDatabase,
        handler: MessageHandler,
        config: PeerConfig | None = None,
        *,
        on_session: SessionHook | None = None,
        on_session_end: Callable[[PeerSession], None] | None = None,
        dial: Dialer = trio.open_tcp_stream,
    ) -> None:
        self.identity = identity
        self.chain_id = chain_id
        self.database = database
        self.handler = handler
        self.on_session = on_session
        self.on_session_end = (
            on_session_end  # called at once, without awaiting (we may be cancelled)
        )
        self.config = config or PeerConfig()
        self._open_stream = dial
        self.sessions: dict[NodeId, PeerSession] = {}
        self.remembered: dict[NodeId, RememberedPeer] = {}
        self.misbehaviour = MisbehaviourLedger(
            threshold=self.config.ban_threshold, ban_seconds=self.config.ban_seconds
        )
        self._keepers: dict[NodeId, trio.CancelScope] = {}
        self._handshakes = trio.CapacityLimiter(self.config.max_pending_handshakes)
        self._nursery: trio.Nursery | None = None
        self._changed = trio.Event()
        # A peer that stays away: one line a minute (trio's clock), not one per redial.
        self._redials = Throttle(clock=trio.current_time)
        self.listen_host = ""
        self.listen_port = 0

    # -- running ---------------------------------------------------------------------------

    async def run(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on `host:port`, redial remembered peers, and serve until cancelled; reports
        the port it listens on."""
        listeners = await listen_tcp(host, port, "--listen")
        self.listen_host, self.listen_port = listeners[0].socket.getsockname()[:2]
        await self.serve(listeners, task_status=task_status)

    async def serve(
        self,
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept peers on `listeners`, redial remembered peers, and serve until cancelled;
        reports `listen_port` (set by `run`; 0 for listeners other than TCP)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(trio.serve_listeners, self._accept, listeners)
            for peer in self.database.run_now(load_peers):
                self.remembered[peer.node_id] = peer
                self._start_keeper(peer, None)
            log.info("peers_listening", host=self.listen_host, port=self.listen_port)
            task_status.started(self.listen_port)

    async def say_goodbye(self, reason: str) -> None:
        """Tell every peer we are going (shutdown); returns once they are closed or it timed out."""
        async with trio.open_nursery() as nursery:
            for session in list(self.sessions.values()):
                nursery.start_soon(session.close, reason)

    # -- connecting ------------------------------------------------------------------------

    async def connect(self, node_id: NodeId, host: str, port: int) -> PeerInfo:
        """Dial a peer now; on success remember it and keep it connected from then on."""
        if node_id == self.identity.node_id:
            raise UserError("cannot connect to ourselves")
        dialled: tuple[PeerSession, list[bytes]] | None = None
        if node_id not in self.sessions:
            try:
                secure, leftover = await self._dial(node_id, host, port)
            except ConnectFailed as error:
                raise UserError(
                    f"cannot connect to {short_hex(node_id)}@{host}:{port}: {error}"
                ) from None
            dialled = (self._new_session(secure, Direction.OUTBOUND, host, port), leftover)
        peer = RememberedPeer(node_id, host, port)
        await self.database.run(remember_peer(peer, int(time.time() * 1000)))
        self.remembered[node_id] = peer
        if dialled is not None:
            # Even if the peer connected to us meanwhile: the duplicate rule picks the survivor.
            self._start_keeper(peer, dialled)
            await self._wait_registered(dialled[0])
        elif node_id not in self._keepers:
            self._start_keeper(peer, None)
        return self.info(node_id)

    async def disconnect(self, node_id: NodeId) -> bool:
        """Forget a peer and close its session; False if we knew nothing of it. Returns once
        the session is gone from `sessions` (a peer list asked for next no longer shows it)."""
        known = node_id in self.remembered or node_id in self.sessions
        keeper = self._keepers.pop(node_id, None)  # it stops redialling (see _keep_connected)
        if node_id in self.remembered:
            del self.remembered[node_id]
            await self.database.run(forget_peer(node_id))
        session = self.sessions.get(node_id)
        if session is not None:
            # Before cancelling the keeper: the session runs in its task, and must live long
            # enough to send the goodbye.
            await session.close("disconnect requested")
            await self.wait_until(lambda: self.sessions.get(node_id) is not session)
        if keeper is not None:
            keeper.cancel()
        return known

    async def _dial(
        self, node_id: NodeId, host: str, port: int
    ) -> tuple[SecureStream, list[bytes]]:
        try:
            with trio.fail_after(self.config.handshake_timeout):
                stream = await self._open_stream(host, port)
                try:
                    try:
                        secure = await initiate(stream, self.identity, node_id)
                    except RemoteProtocolError:
                        # Noise XK: a responder whose key is not `node_id` cannot read act
                        # one, and hangs up before answering.
                        raise ConnectFailed(
                            "the node there ended the handshake at once: a wrong node id? "
                            "(or it refuses us)"
                        ) from None
                    leftover = await self._exchange_init(secure)
                except BaseException:
                    with trio.CancelScope(shield=True):
                        await stream.aclose()
                    raise
        except _HANDSHAKE_ERRORS as error:
            raise ConnectFailed(_describe(error)) from None
        if self.misbehaviour.is_banned(node_id, trio.current_time()):
            await secure.aclose()
            raise ConnectFailed("that peer is banned for misbehaviour")
        return secure, leftover

    def _start_keeper(
        self, peer: RememberedPeer, first: tuple[PeerSession, list[bytes]] | None
    ) -> None:
        assert self._nursery is not None
        previous = self._keepers.get(peer.node_id)
        if previous is not None:  # one keeper per peer: this one replaces it
            previous.cancel()
        scope = trio.CancelScope()
        self._keepers[peer.node_id] = scope
        self._nursery.start_soon(self._keep_connected, peer, first, scope)

    async def _keep_connected(
        self,
        peer: RememberedPeer,
        first: tuple[PeerSession, list[bytes]] | None,
        scope: trio.CancelScope,
    ) -> None:
        """Stay connected to a remembered peer: redial with exponential backoff and jitter."""
        try:
            await self._redial_loop(peer, first, scope)
        finally:
            if first is not None and not first[0].closed.is_set():
                # Cancelled before it ran that session (a newer keeper replaced this one): end
                # it, or the `connect` waiting for it would wait forever.
                with trio.CancelScope(shield=True):
                    await first[0].close("superseded by a newer dial", tell_peer=False)
                    await first[0].run([])
                    self._notify_change()

    async def _redial_loop(
        self,
        peer: RememberedPeer,
        first: tuple[PeerSession, list[bytes]] | None,
        scope: trio.CancelScope,
    ) -> None:
        backoff = self.config.reconnect_initial
        with scope, structlog.contextvars.bound_contextvars(peer=peer.node_id.hex()):
            while self._keepers.get(peer.node_id) is scope:  # else: forgotten or replaced
                if first is not None:  # `_run_session` settles a duplicate with the rule
                    session, leftover = first
                    first = None
                elif (existing := self.sessions.get(peer.node_id)) is not None:
                    await existing.closed.wait()  # it connected to us meanwhile
                    backoff = self.config.reconnect_initial
                    continue
                else:
                    try:
                        secure, leftover = await self._dial(peer.node_id, peer.host, peer.port)
                    except ConnectFailed as error:
                        if (repeated := self._redials.allow(peer.node_id.hex())) is not None:
                            log.info(
                                "peer_redial_failed",
                                reason=str(error),
                                retry_in=round(backoff, 2),
                                repeated=repeated,
                            )
                        await trio.sleep(backoff * random.uniform(0.5, 1.0))
                        backoff = min(backoff * 2, self.config.reconnect_max)
                        continue
                    session = self._new_session(secure, Direction.OUTBOUND, peer.host, peer.port)
                self._redials.reset(peer.node_id.hex())
                started = trio.current_time()
                await self._run_session(session, leftover)
                if trio.current_time() - started >= self.config.stable_after:
                    backoff = self.config.reconnect_initial
                await trio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, self.config.reconnect_max)

    # -- accepting -------------------------------------------------------------------------

    async def _accept(self, stream: trio.abc.Stream) -> None:
        host, port = _peer_address(stream)
        try:
            self._handshakes.acquire_nowait()
        except trio.WouldBlock:
            log.warning("peer_refused", remote=f"{host}:{port}", reason="too many handshakes")
            await stream.aclose()
            return
        self._notify_change()
        try:
            if len(self.sessions) >= self.config.max_peers:
                raise ConnectFailed(f"already at the limit of {self.config.max_peers} peers")
            with trio.fail_after(self.config.handshake_timeout):
                secure = await respond(stream, self.identity)
                leftover = await self._exchange_init(secure)
        except (*_HANDSHAKE_ERRORS, ConnectFailed) as error:
            log.warning("peer_handshake_failed", remote=f"{host}:{port}", reason=_describe(error))
            with trio.CancelScope(shield=True):
                await stream.aclose()
            return
        finally:
            self._handshakes.release()
            self._notify_change()
        if self.misbehaviour.is_banned(secure.remote_node_id, trio.current_time()):
            log.warning("peer_refused", peer=secure.remote_node_id.hex(), reason="banned")
            await secure.aclose()
            return
        session = self._new_session(secure, Direction.INBOUND, host, port)
        await self._run_session(session, leftover)

    async def _exchange_init(self, secure: SecureStream) -> list[bytes]:
        """Send our init at once, then read and check theirs; return any bodies that followed."""
        ours = Init(PROTOCOL_VERSION, self.chain_id, b"")
        await secure.send([PEER_MESSAGES.encode(ours)])
        bodies = await secure.receive()
        if not bodies:
            raise RemoteProtocolError("connection closed before init")
        theirs = PEER_MESSAGES.decode(bodies[0])
        if not isinstance(theirs, Init):
            raise RemoteProtocolError(f"expected init first, got {type(theirs).__name__}")
        if theirs.chain_id != self.chain_id:
            await secure.send([PEER_MESSAGES.encode(Goodbye("init for another chain"))])
            raise RemoteProtocolError(f"init for another chain ({theirs.chain_id.hex()[:16]}…)")
        if theirs.version != PROTOCOL_VERSION:
            raise RemoteProtocolError(f"unsupported protocol version {theirs.version}")
        return bodies[1:]

    # -- sessions --------------------------------------------------------------------------

    def _new_session(
        self, secure: SecureStream, direction: Direction, host: str, port: int
    ) -> PeerSession:
        return PeerSession(
            secure,
            direction,
            host,
            port,
            ping_interval=self.config.ping_interval,
            pong_timeout=self.config.pong_timeout,
            handler=self.handler,
            report_fault=self._report_fault,
        )

    def _report_fault(self, session: PeerSession, points: float, reason: str) -> bool:
        return self.misbehaviour.add(session.node_id, points, trio.current_time())

    def _keeps_existing(self, existing: PeerSession, new: PeerSession) -> bool:
        """The duplicate-session rule (see the module docstring)."""
        if existing.direction == new.direction:
            return False
        ours_first = self.identity.node_id < new.node_id
        kept = Direction.OUTBOUND if ours_first else Direction.INBOUND
        return existing.direction == kept

    async def _run_session(self, session: PeerSession, leftover: list[bytes]) -> None:
        existing = self.sessions.get(session.node_id)
        if existing is not None:
            if self._keeps_existing(existing, session):
                await session.close("duplicate connection", tell_peer=False)
                await session.run([])  # already cancelled: closes the stream, sets `closed`
                self._notify_change()  # wakes a `connect` waiting for this session
                return
            await existing.close("replaced by a newer connection", tell_peer=False)
        self.sessions[session.node_id] = session
        self._notify_change()
        log.info(
            "peer_connected",
            peer=session.node_id.hex(),
            direction=session.direction.value,
            remote=f"{session.host}:{session.port}",
        )
        try:
            if self.on_session is not None:
                await self.on_session(session)  # queued before anything the session reads
            await session.run(leftover)
        finally:
            if self.sessions.get(session.node_id) is session:
                del self.sessions[session.node_id]
                if self.on_session_end is not None:
                    self.on_session_end(session)
                self._notify_change()

    def _notify_change(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_registered(self, session: PeerSession) -> None:
        while self.sessions.get(session.node_id) is not session:
            if session.closed.is_set():
                if session.node_id in self.sessions:
                    return  # the peer's crossed connection won the duplicate rule
                raise UserError(
                    f"connection to {session.node_id.hex()} closed: {session.close_reason}"
                )
            await self._changed.wait()

    async def wait_connected(self, node_id: NodeId) -> PeerSession:
        await self.wait_until(lambda: node_id in self.sessions)
        return self.sessions[node_id]

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds, checking it each time a session or an inbound
        handshake starts or ends (under the caller's deadline)."""
        while not condition():
            await self._changed.wait()

    # -- views -----------------------------------------------------------------------------

    def info(self, node_id: NodeId) -> PeerInfo:
        session = self.sessions.get(node_id)
        remembered = self.remembered.get(node_id)
        if session is not None:
            host, port = (
                (remembered.host, remembered.port) if remembered else (session.host, session.port)
            )
            return PeerInfo(
                node_id, host, port, True, session.direction.value, remembered is not None
            )
        if remembered is None:
            raise UserError(f"unknown peer {node_id.hex()}")
        return PeerInfo(node_id, remembered.host, remembered.port, False, None, True)

    def all_peers(self) -> list[PeerInfo]:
        return [self.info(node_id) for node_id in {*self.remembered, *self.sessions}]

    @property
    def pending_handshakes(self) -> int:
        """Inbound connections still in their handshake (at most `max_pending_handshakes`)."""
        return int(self._handshakes.borrowed_tokens)


def _peer_address(stream: trio.abc.Stream) -> tuple[str, int]:
    if not isinstance(stream, trio.SocketStream):
        return "?", 0  # not a socket: no address to show
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?", 0
    return str(host), int(port)


def _describe(error: BaseException) -> str:
    if isinstance(error, trio.TooSlowError):
        return "handshake timed out"
    if isinstance(error, trio.BrokenResourceError | trio.ClosedResourceError):
        return "connection lost during the handshake"
    if isinstance(error, CryptoError):
        return f"handshake failed: {error}"
    return str(error) or type(error).__name__
