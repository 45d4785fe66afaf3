"""The control-RPC client the CLI uses: JSON-RPC 2.0 calls to a node over its `rpc.sock`.

    async with RpcClient.connect(datadir) as rpc:
        info = await rpc.call("info", {})

Many tasks may share one client: a writer task sends request lines in order and a reader task
matches replies to calls by id. An error reply raises `RpcError`; a lost connection makes every
pending call raise `RpcError("connection to the node was lost")` at once.

It also owns what both sides share: the short address of `rpc.sock` (bound and connected through
`/proc/self/fd/<data dir fd>/`, so long data dirs work) and the newline-delimited JSON framing.

structlog is imported only when there is something to log (`_log`): the CLI imports this module
for every call to a node, and importing structlog would cost it about 60 ms.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from p2pchan.concurrency import background_nursery
from p2pchan.errors import P2pchanError, UserError

SOCKET_NAME = "rpc.sock"
MAX_LINE = 1 << 20  # a request line, without its newline: the server's limit
CONNECT_TIMEOUT = 10.0
MAX_REPLY_LINE = 256 << 20  # a node's own replies, e.g. a large graph
CONNECTION_LOST = "connection to the node was lost"


class RpcError(P2pchanError):
    """The node answered a call with an error, or the connection to it was lost.

    `message` is the node's message (also `str(error)`), `type` the name of the node's error
    class, `code` that error's own code if it has one (a `ChainError`'s, say) and `rpc_code`
    the JSON-RPC error code (None when the connection was lost).
    """

    def __init__(
        self,
        message: str,
        *,
        error_type: str | None = None,
        code: Any = None,
        rpc_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type = error_type
        self.code = code
        self.rpc_code = rpc_code


class LineTooLong(P2pchanError):
    """The other side sent a line longer than the limit."""


class LineReader:
    """Splits a byte stream into lines of at most `max_line` bytes (newline not included)."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_line: int) -> None:
        self._stream = stream
        self._max_line = max_line
        self._buffer = bytearray()
        self._start = 0  # where the next line begins in _buffer
        self._searched = 0  # bytes from _start already known to hold no newline

    async def next_line(self) -> bytes | None:
        """The next line, or None at end of stream (an unterminated last line is dropped)."""
        while True:
            end = self._buffer.find(b"\n", self._start + self._searched)
            if end >= 0:
                line = bytes(self._buffer[self._start : end])
                self._start, self._searched = end + 1, 0
                if len(line) > self._max_line:
                    raise LineTooLong(f"line longer than {self._max_line} bytes")
                return line
            self._searched = len(self._buffer) - self._start
            if self._searched > self._max_line:
                raise LineTooLong(f"line longer than {self._max_line} bytes")
            del self._buffer[: self._start]
            self._start = 0
            data = await self._stream.receive_some(65536)
            if not data:
                return None
            self._buffer += data


def socket_address(dir_fd: int) -> str:
    """The short path of `rpc.sock` in the directory open as `dir_fd` (Linux only)."""
    return f"/proc/self/fd/{dir_fd}/{SOCKET_NAME}"


def open_datadir(datadir: Path) -> int:
    return os.open(datadir, os.O_RDONLY | os.O_DIRECTORY)


def encode_line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


async def _connect(datadir: Path) -> trio.SocketStream:
    not_running = UserError(f"no node is running in {datadir} (cannot connect to its rpc.sock)")
    try:
        dir_fd = open_datadir(datadir)
    except (FileNotFoundError, NotADirectoryError):
        raise not_running from None
    except OSError as error:
        raise UserError(f"cannot open data dir {datadir}: {error.strerror}") from None
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            return await trio.open_unix_socket(socket_address(dir_fd))
    except (FileNotFoundError, ConnectionRefusedError):
        raise not_running from None
    except OSError as error:
        raise UserError(f"cannot connect to the rpc.sock in {datadir}: {error.strerror}") from None
    except trio.TooSlowError:
        raise UserError(f"the node in {datadir} does not accept connections") from None
    finally:
        os.close(dir_fd)


class _Pending:
    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: dict[str, Any] | None = None


def _error_of(reply: dict[str, Any]) -> RpcError:
    error = reply["error"]
    if not isinstance(error, dict):
        return RpcError(f"malformed error reply from the node: {error!r}"[:200])
    data = error.get("data")
    data = data if isinstance(data, dict) else {}
    rpc_code = error.get("code")
    return RpcError(
        str(error.get("message", "error without a message")),
        error_type=data.get("type"),
        code=data.get("code"),
        rpc_code=rpc_code if isinstance(rpc_code, int) else None,
    )


class RpcClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._outgoing, self._to_send = trio.open_memory_channel[tuple[int, bytes]](math.inf)
        self._lost = False

    @classmethod
    @asynccontextmanager
    async def connect(cls, datadir: Path) -> AsyncIterator[RpcClient]:
        """Connect to the node serving `datadir`; `UserError` if none is running there."""
        stream = await _connect(datadir)
        client = cls(stream)
        async with stream, background_nursery() as nursery:
            nursery.start_soon(client._read_replies)
            nursery.start_soon(client._write_requests)
            yield client

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """The result of `method(params)` on the node; `RpcError` if it failed."""
        if self._lost:
            raise RpcError(CONNECTION_LOST)
        request_id = next(self._ids)
        request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
        line = encode_line(request)
        if len(line) > MAX_LINE:
            raise RpcError(f"the {method} request is larger than the node accepts ({MAX_LINE} B)")
        waiter = self._pending[request_id] = _Pending()
        try:
            self._outgoing.send_nowait((request_id, line))
            await waiter.done.wait()
        finally:
            self._pending.pop(request_id, None)  # a cancelled call's line is never sent
        if waiter.reply is None:
            raise RpcError(CONNECTION_LOST)
        if "error" in waiter.reply:
            raise _error_of(waiter.reply)
        return waiter.reply.get("result")

    async def _write_requests(self) -> None:
        """Send queued request lines whole, so a cancelled caller never leaves half a line."""
        try:
            async for request_id, line in self._to_send:
                batch = [line] if request_id in self._pending else []
                while True:
                    try:
                        request_id, line = self._to_send.receive_nowait()
                    except trio.WouldBlock:
                        break
                    if request_id in self._pending:
                        batch.append(line)
                if batch:
                    await self._stream.send_all(b"".join(batch))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._connection_lost()

    async def _read_replies(self) -> None:
        reader = LineReader(self._stream, MAX_REPLY_LINE)
        try:
            while (line := await reader.next_line()) is not None:
                reply = json.loads(line)
                request_id = reply.get("id") if isinstance(reply, dict) else None
                if type(request_id) is not int:
                    _log().warning("rpc_client_unmatched_reply", reason="reply without a call id")
                    continue
                waiter = self._pending.pop(request_id, None)
                if waiter is not None:
                    waiter.reply = reply
                    waiter.done.set()
        except (ValueError, RecursionError, LineTooLong):
            _log().warning("rpc_client_bad_reply", reason="the node sent a malformed reply")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self._connection_lost()

    def _connection_lost(self) -> None:
        self._lost = True
        for waiter in self._pending.values():
            waiter.done.set()
        self._pending.clear()


def _log() -> Any:
    import structlog  # see the module docstring

    return structlog.get_logger(__name__)
