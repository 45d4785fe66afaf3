"""One live, authenticated connection to a peer: a reader, a coalescing writer, keep-alive.

The reader decodes each body and answers pings itself; other messages go to the node's handler,
in order. A malformed message costs misbehaviour points and is skipped; an unknown even message,
a frame that fails to decrypt, or a ban ends the session. The writer drains the outbox and writes
everything queued with one `send_all`, so a burst of small messages costs few syscalls.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable

import structlog
import trio

from p2pchan.errors import CryptoError, RemoteProtocolError
from p2pchan.net import misbehaviour
from p2pchan.net.transport import SecureStream
from p2pchan.wire.codec import UnknownMessage, UnknownRequiredMessage
from p2pchan.wire.peer_messages import (
    PEER_MESSAGES,
    PONG_SUPPRESSED,
    Goodbye,
    Init,
    PeerMessage,
    Ping,
    Pong,
)

log = structlog.get_logger(__name__)

OUTBOX_SIZE = 4096
MAX_BATCH = 512
MAX_PONG_LENGTH = 65000
GOODBYE_FLUSH_SECONDS = 1.0


class Direction(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


# Gets, in order, the messages that arrived together (one read), so it can handle them in one
# go (one disk sync for a channel's ack and reveal, say).
MessageHandler = Callable[["PeerSession", list[PeerMessage]], Awaitable[None]]
FaultReporter = Callable[["PeerSession", float, str], bool]  # True: the peer is now banned


class SessionEnded(Exception):
    """Raised inside a session to end it with a reason (not an error of ours)."""


class PeerSession:
    def __init__(
        self,
        secure: SecureStream,
        direction: Direction,
        host: str,
        port: int,
        *,
        ping_interval: float,
        pong_timeout: float,
        handler: MessageHandler,
        report_fault: FaultReporter,
    ) -> None:
        self.secure = secure
        self.node_id = secure.remote_node_id
        self.direction = direction
        self.host = host
        self.port = port
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self._handler = handler
        self._report_fault = report_fault
        self._outbox_in, self._outbox_out = trio.open_memory_channel[bytes | None](OUTBOX_SIZE)
        self._pong = trio.Event()
        self._awaiting_pong = False
        self._ping_lock = trio.Lock()
        self._cancel_scope = trio.CancelScope()
        self.close_reason = ""
        self.closed = trio.Event()
        self.messages_received = 0
        self.messages_sent = 0
        self.pings_received = 0
        self._budget_window_start = trio.current_time()
        self._budget_used = 0  # budgeted faults in the current minute

    # -- sending ---------------------------------------------------------------------------

    async def send(self, message: PeerMessage) -> None:
        """Queue a message; waits only while the outbox is full (backpressure).

        With room in the outbox this does not yield, so a burst of sends queues up and the
        writer sends it as one coalesced write.
        """
        data = PEER_MESSAGES.encode(message)
        try:
            try:
                self._outbox_in.send_nowait(data)
            except trio.WouldBlock:
                await self._outbox_in.send(data)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise trio.ClosedResourceError(f"session with {self.node_id.hex()} is closed") from None

    async def _write_loop(self) -> None:
        receive_nowait = self._outbox_out.receive_nowait
        async for first in self._outbox_out:
            batch = []
            item: bytes | None = first
            while item is not None:
                batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = receive_nowait()
                except trio.WouldBlock:
                    break
            if batch:
                await self.secure.send(batch)
                self.messages_sent += len(batch)
            if item is None:
                raise SessionEnded(self.close_reason or "closed")

    # -- the session -----------------------------------------------------------------------

    async def run(self, leftover: list[bytes]) -> None:
        """Serve the session until either side ends it; `close_reason` then says why.

        Session-ending conditions are handled here; cancellation from outside and bugs propagate.
        """
        with structlog.contextvars.bound_contextvars(peer=self.node_id.hex()):
            try:
                with self._cancel_scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._write_loop)
                        if self.ping_interval > 0:
                            nursery.start_soon(self._keep_alive)
                        await self._read_loop(leftover)
            except* SessionEnded as ended:
                self._end(str(ended.exceptions[0]))
            except* (RemoteProtocolError, CryptoError) as failed:
                self._end(f"protocol violation: {failed.exceptions[0]}")
            except* (trio.BrokenResourceError, trio.ClosedResourceError):
                self._end("connection lost")
            finally:
                self.closed.set()
                self._pong.set()  # release a `ping` waiting for an answer that will not come
                self._outbox_in.close()
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self.secure.aclose()
            log.info("peer_session_ended", reason=self.close_reason)

    def _end(self, reason: str) -> None:
        if not self.close_reason:
            self.close_reason = reason

    async def close(self, reason: str, *, tell_peer: bool = True) -> None:
        """End the session; with `tell_peer`, send a goodbye first (briefly, then give up)."""
        if self.closed.is_set():
            return
        self.close_reason = self.close_reason or reason
        if tell_peer:
            with trio.move_on_after(GOODBYE_FLUSH_SECONDS):
                try:
                    await self._outbox_in.send(PEER_MESSAGES.encode(Goodbye(reason[:256])))
                    await self._outbox_in.send(None)  # the writer flushes, then ends the session
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    pass
                await self.closed.wait()
        self._cancel_scope.cancel()

    # -- receiving -------------------------------------------------------------------------

    async def _read_loop(self, leftover: list[bytes]) -> None:
        bodies = leftover
        while True:
            for_handler: list[PeerMessage] = []
            try:
                for body in bodies:
                    self.messages_received += 1
                    message = await self._dispatch(body)
                    if message is not None:
                        for_handler.append(message)
            finally:
                if for_handler:  # what came before a goodbye is still handled
                    await self._handler(self, for_handler)
            bodies = await self.secure.receive()
            if not bodies:
                raise SessionEnded("peer closed the connection")

    async def _dispatch(self, body: bytes) -> PeerMessage | None:
        """Decode a body and handle session messages here; return others for the handler."""
        try:
            message = PEER_MESSAGES.decode(body)
        except UnknownRequiredMessage:
            raise
        except RemoteProtocolError as error:
            self.fault(misbehaviour.MALFORMED_MESSAGE, f"malformed message: {error}")
            return None
        if isinstance(message, UnknownMessage):
            return None  # an optional message from a newer peer
        if isinstance(message, Ping):
            self.pings_received += 1
            if message.pong_length < PONG_SUPPRESSED:
                if message.pong_length > MAX_PONG_LENGTH:
                    self.fault(misbehaviour.MALFORMED_MESSAGE, "ping asks for an oversized pong")
                else:
                    await self.send(Pong(bytes(message.pong_length)))
        elif isinstance(message, Pong):
            if self._awaiting_pong:
                self._awaiting_pong = False
                self._pong.set()
            else:
                self.fault(misbehaviour.UNEXPECTED_MESSAGE, "pong without a ping")
        elif isinstance(message, Goodbye):
            raise SessionEnded(f"peer said goodbye: {message.reason}")
        elif isinstance(message, Init):
            self.fault(misbehaviour.UNEXPECTED_MESSAGE, "init after the session started")
        else:
            assert isinstance(message, PeerMessage)
            return message
        return None

    def fault(self, points: float, reason: str, *, budgeted: bool = False) -> None:
        """Score a fault of the peer's; end the session if that bans it. A `budgeted` fault
        (one an honest peer commits now and then by timing) is scored only beyond
        `misbehaviour.BUDGET_PER_MINUTE` of them."""
        if budgeted and self._within_budget():
            log.debug("peer_fault_tolerated", peer=self.node_id.hex(), reason=reason)
            return
        log.warning("peer_misbehaved", peer=self.node_id.hex(), points=points, reason=reason)
        if self._report_fault(self, points, reason):
            raise SessionEnded(f"banned for misbehaviour ({reason})")

    def _within_budget(self) -> bool:
        now = trio.current_time()
        if now - self._budget_window_start >= 60:
            self._budget_window_start, self._budget_used = now, 0
        self._budget_used += 1
        return self._budget_used <= misbehaviour.BUDGET_PER_MINUTE

    async def ping(self) -> float:
        """Send a ping and wait for its pong; return the round trip in seconds."""
        async with self._ping_lock:
            if self.closed.is_set():
                raise trio.ClosedResourceError(f"session with {self.node_id.hex()} is closed")
            self._pong = trio.Event()
            self._awaiting_pong = True
            started = trio.current_time()
            await self.send(Ping(0, b""))
            await self._pong.wait()
            if self._awaiting_pong:  # woken by the session ending, not by a pong
                raise trio.ClosedResourceError(f"session with {self.node_id.hex()} closed")
            return trio.current_time() - started

    async def _keep_alive(self) -> None:
        while True:
            await trio.sleep(self.ping_interval)
            with trio.move_on_after(self.pong_timeout):
                await self.ping()
                continue
            raise SessionEnded(f"no pong within {self.pong_timeout} s: peer is dead")
