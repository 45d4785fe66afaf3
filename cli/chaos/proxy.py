"""A TCP proxy per link, in front of a node's listener, so a chaos run can delay, drop, reset
and partition that one link while both nodes run on.

The dialling node connects to the proxy's port instead of its partner's; every connection
through it gets two pump tasks (one per direction) that forward chunk by chunk. Faults are
states of the link, set and cleared by the chaos schedule:

- delay: each chunk is held `delay` seconds before it goes on (order kept: one pump per way);
- drop: chunks are swallowed; since the link carries an encrypted stream that cannot resume
  after a hole, its connections are reset once the drop ends (keep-alive notices before);
- reset: every connection is closed at once with a TCP RST (SO_LINGER 0);
- partition: existing connections are reset and new ones refused until it heals.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from dataclasses import dataclass, field

import structlog
import trio

log = structlog.get_logger(__name__)

CHUNK = 65536
_LINGER_ZERO = struct.pack("ii", 1, 0)


def _abort(stream: trio.SocketStream) -> None:
    """Close with a RST rather than a FIN, as a crashed host or a middlebox would."""
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    stream.socket.close()


@dataclass(eq=False)
class _Connection:
    inbound: trio.SocketStream
    outbound: trio.SocketStream
    cancel: trio.CancelScope = field(default_factory=trio.CancelScope)
    holed: bool = False  # bytes were swallowed: the stream cannot go on

    def abort(self) -> None:
        _abort(self.inbound)
        _abort(self.outbound)
        self.cancel.cancel()


@dataclass(eq=False)
class LinkProxy:
    """Listens on `port` (0: any) and forwards to `target_port` on loopback."""

    name: str
    target_port: int
    host: str = "127.0.0.1"
    port: int = 0
    delay: float = 0.0
    dropping: bool = False
    partitioned: bool = False
    connections: set[_Connection] = field(default_factory=set)
    accepted: int = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, inbound: trio.SocketStream) -> None:
        self.accepted += 1
        if self.partitioned:
            _abort(inbound)
            return
        try:
            outbound = await trio.open_tcp_stream(self.host, self.target_port)
        except OSError:
            _abort(inbound)  # the node behind is down: as if the connection were refused
            return
        connection = _Connection(inbound, outbound)
        self.connections.add(connection)
        try:
            with connection.cancel:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, connection, inbound, outbound, nursery)
                    nursery.start_soon(self._pump, connection, outbound, inbound, nursery)
        finally:
            self.connections.discard(connection)
            connection.abort()

    async def _pump(
        self,
        connection: _Connection,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        nursery: trio.Nursery,
    ) -> None:
        try:
            while True:
                data = await source.receive_some(CHUNK)
                if not data:
                    break
                if self.dropping:
                    connection.holed = True
                    continue
                if connection.holed:
                    break
                if self.delay:
                    await trio.sleep(self.delay)
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        nursery.cancel_scope.cancel()

    def reset(self) -> int:
        """RST every connection now; how many there were."""
        live = list(self.connections)
        for connection in live:
            connection.abort()
        return len(live)

    def set_delay(self, seconds: float) -> None:
        self.delay = seconds

    def set_dropping(self, dropping: bool) -> None:
        self.dropping = dropping
        if not dropping:  # a stream with a hole in it cannot go on
            for connection in list(self.connections):
                if connection.holed:
                    connection.abort()

    def set_partitioned(self, partitioned: bool) -> None:
        self.partitioned = partitioned
        if partitioned:
            self.reset()

    def heal(self) -> None:
        self.set_delay(0.0)
        self.set_dropping(False)
        self.set_partitioned(False)
