"""The node's control interface: JSON-RPC 2.0 served on `rpc.sock` in the data dir.

One JSON object per line in each direction. Every connection runs in its own task and every
request in a task of its connection's nursery, so requests pipelined on one connection are
answered in any order (clients match replies by id). A misbehaving connection gets JSON-RPC error
replies, or is closed, and never disturbs the others. When a client goes away its calls still in
flight are cancelled, so handlers must only *wait* for work that lives in the node's own nurseries.

Limits: a request line of 1 MiB (longer: an error reply, then the connection is closed), 64
connections (more are closed at once), 256 requests in flight per connection (more wait unread).
Handler errors: `RpcParamError` → -32602, other `P2pchanError` → -32000 with `data` = {type, code},
anything else is a bug: logged, answered -32603. Logs name methods, never params; a failed
call's line carries the node's own message (`reason`), which never holds a secret.

The socket is bound through `/proc/self/fd/<dir fd>/rpc.sock`, which is short whatever the data
dir's length (Unix socket paths are limited to 107 bytes). `rpc_client.py` holds the client, and
the socket address and line framing both sides share.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

import structlog
import trio

from p2pchan.concurrency import only_expected
from p2pchan.errors import LocalProtocolError, P2pchanError, UserError
from p2pchan.net.rpc_client import (
    MAX_LINE,
    SOCKET_NAME,
    LineReader,
    LineTooLong,
    encode_line,
    open_datadir,
    socket_address,
)

log = structlog.get_logger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
T = TypeVar("T")
D = TypeVar("D")

MAX_CONNECTIONS = 64
MAX_IN_FLIGHT = 256  # per connection; beyond it the connection is simply not read
SEND_TIMEOUT = 30.0
PROBE_TIMEOUT = 5.0
MAX_LOGGED_REASON = 300  # characters of a failed call's message in its log line

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
APPLICATION_ERROR = -32000

_CONNECTION_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError)


class RpcParamError(P2pchanError):
    """A handler's params object lacks a field or holds one of the wrong type (-32602)."""


_MISSING: Any = object()


@overload
def param(params: dict[str, Any], name: str, kind: type[T]) -> T: ...
@overload
def param(params: dict[str, Any], name: str, kind: type[T], *, default: D) -> T | D: ...
def param(params: dict[str, Any], name: str, kind: type[T], *, default: Any = _MISSING) -> Any:
    """`params[name]` checked to be a `kind`; absent or null gives `default` if there is one.

    `bool` is not accepted as `int` (JSON true is not an amount); `int` is accepted as `float`.
    """
    value = params.get(name)
    if value is None:
        if default is _MISSING:
            raise RpcParamError(f"missing parameter {name!r}")
        return default
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise RpcParamError(
            f"parameter {name!r} must be {kind.__name__}, not {type(value).__name__}"
        )
    return value


def parsed_param(params: dict[str, Any], name: str, parse: Callable[[Any], T]) -> T:
    """`parse(params[name])`, its TypeError / ValueError / KeyError becoming `RpcParamError`."""
    if params.get(name) is None:
        raise RpcParamError(f"missing parameter {name!r}")
    try:
        return parse(params[name])
    except (TypeError, ValueError, KeyError) as error:
        raise RpcParamError(f"invalid parameter {name!r}: {error}") from None


@dataclass(frozen=True, slots=True)
class Request:
    request_id: str | int | None
    notification: bool  # no "id" member: executed, never answered
    method: str
    params: dict[str, Any]


class _Rejected(Exception):
    """A request that cannot be dispatched (internal to this module)."""

    def __init__(self, code: int, message: str, request_id: Any = None, answer: bool = True):
        super().__init__(message)
        self.code, self.message, self.request_id, self.answer = code, message, request_id, answer


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_request(line: bytes) -> Request:
    """One request line, checked; raises `_Rejected` with the JSON-RPC error to answer."""
    try:
        message = json.loads(line, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # bad UTF-8 is a ValueError too
        raise _Rejected(PARSE_ERROR, "parse error: not valid JSON") from None
    if isinstance(message, list):
        raise _Rejected(INVALID_REQUEST, "invalid request: batches are not supported")
    if not isinstance(message, dict):
        raise _Rejected(INVALID_REQUEST, "invalid request: not a JSON object")
    request_id = message.get("id")
    if request_id is not None and (
        isinstance(request_id, bool) or not isinstance(request_id, int | str)
    ):
        raise _Rejected(INVALID_REQUEST, "invalid request: id must be a string or an integer")
    if message.get("jsonrpc") != "2.0":
        raise _Rejected(INVALID_REQUEST, 'invalid request: jsonrpc must be "2.0"', request_id)
    method = message.get("method")
    if not isinstance(method, str):
        raise _Rejected(INVALID_REQUEST, "invalid request: method must be a string", request_id)
    notification = "id" not in message
    params = message.get("params", {})
    if not isinstance(params, dict):
        message = "invalid params: params must be an object"
        raise _Rejected(INVALID_PARAMS, message, request_id, answer=not notification)
    return Request(request_id, notification, method, params)


def _error(request_id: Any, code: int, message: str, cause: P2pchanError | None = None) -> bytes:
    error: dict[str, Any] = {"code": code, "message": message}
    if cause is not None:
        error["data"] = {"type": type(cause).__name__, "code": getattr(cause, "code", None)}
    return encode_line({"jsonrpc": "2.0", "id": request_id, "error": error})


class _Connection:
    def __init__(self, handlers: dict[str, Handler], stream: trio.SocketStream) -> None:
        self._handlers = handlers
        self._stream = stream
        self._send_lock = trio.Lock()
        self._in_flight = trio.Semaphore(MAX_IN_FLIGHT)

    async def run(self) -> None:
        reader = LineReader(self._stream, MAX_LINE)
        async with trio.open_nursery() as nursery:
            try:
                while (line := await reader.next_line()) is not None:
                    if line.strip():
                        await self._dispatch(line, nursery)
            except LineTooLong:
                log.warning("rpc_connection_dropped", reason=f"request line over {MAX_LINE} bytes")
                message = f"invalid request: line longer than {MAX_LINE} bytes"
                await self._send(_error(None, INVALID_REQUEST, message))
            nursery.cancel_scope.cancel()  # the client is gone: its calls have no one to answer

    async def _send(self, line: bytes) -> None:
        async with self._send_lock:
            with trio.fail_after(SEND_TIMEOUT):
                await self._stream.send_all(line)

    async def _dispatch(self, line: bytes, nursery: trio.Nursery) -> None:
        try:
            request = parse_request(line)
            handler = self._handlers.get(request.method)
            if handler is None:
                message = f"method not found: {request.method[:100]}"
                raise _Rejected(
                    METHOD_NOT_FOUND, message, request.request_id, not request.notification
                )
        except _Rejected as rejected:
            log.warning("rpc_bad_request", reason=rejected.message[:200])
            if rejected.answer:
                await self._send(_error(rejected.request_id, rejected.code, rejected.message))
            return
        await self._in_flight.acquire()  # released by the call's task
        nursery.start_soon(self._call, handler, request)

    async def _call(self, handler: Handler, request: Request) -> None:
        try:
            reply = await self._answer(handler, request)
            if not request.notification:
                await self._send(reply)
        finally:
            self._in_flight.release()

    async def _answer(self, handler: Handler, request: Request) -> bytes:
        method, request_id = request.method, request.request_id
        try:
            result = await handler(request.params)
            # A result JSON cannot carry is the handler's bug, so it is encoded in here.
            return encode_line({"jsonrpc": "2.0", "id": request_id, "result": result})
        except RpcParamError as error:
            log.info("rpc_invalid_params", method=method)  # its message may quote a value
            return _error(request_id, INVALID_PARAMS, str(error), error)
        except P2pchanError as error:
            # The node's own words (no secret is ever in one), cut short: a reader of the log
            # learns why, not only that, a call failed.
            log.info(
                "rpc_call_failed",
                method=method,
                error=type(error).__name__,
                reason=str(error)[:MAX_LOGGED_REASON],
            )
            return _error(request_id, APPLICATION_ERROR, str(error), error)
        except Exception:
            log.exception("rpc_handler_crashed", method=method)
            return _error(request_id, INTERNAL_ERROR, "internal error")


async def _serve_connection(
    handlers: dict[str, Handler], limiter: trio.CapacityLimiter, stream: trio.SocketStream
) -> None:
    try:
        limiter.acquire_nowait()
    except trio.WouldBlock:
        log.warning("rpc_connection_refused", reason="too many connections")
        await trio.aclose_forcefully(stream)
        return
    try:
        await _Connection(handlers, stream).run()
    except Exception as raised:
        # One connection's trouble, even a bug of ours, must not take the node down with it.
        if only_expected(raised, (trio.TooSlowError,)):
            log.warning("rpc_connection_lost", reason="client stopped reading")
        elif only_expected(raised, _CONNECTION_ERRORS):
            log.warning("rpc_connection_lost", reason="client went away")
        else:
            log.exception("rpc_connection_crashed")
    finally:
        limiter.release()
        await trio.aclose_forcefully(stream)  # works while cancelled, never blocks


async def _remove_stale_socket(datadir: Path, dir_fd: int) -> None:
    """Unlink a `rpc.sock` nobody answers on; refuse if a live server answers on it."""
    try:
        mode = os.stat(SOCKET_NAME, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise UserError(f"{datadir / SOCKET_NAME} exists and is not a socket; remove it")
    with trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM) as probe:
        try:
            with trio.fail_after(PROBE_TIMEOUT):
                await probe.connect(socket_address(dir_fd))
        except (ConnectionRefusedError, FileNotFoundError):
            pass  # stale: its server died without removing it
        except (OSError, trio.TooSlowError) as error:
            raise UserError(f"cannot check {datadir / SOCKET_NAME}: {error}") from None
        else:
            raise UserError(f"another node is running in {datadir} (its rpc.sock answers)")
    os.unlink(SOCKET_NAME, dir_fd=dir_fd)
    log.info("rpc_stale_socket_removed", path=str(datadir / SOCKET_NAME))


async def _listen(datadir: Path) -> tuple[trio.SocketListener, tuple[int, int]]:
    """Bind and listen on `rpc.sock` (mode 0600); also return its (device, inode)."""
    try:
        dir_fd = open_datadir(datadir)
    except OSError as error:
        raise UserError(f"cannot open data dir {datadir}: {error.strerror}") from None
    try:
        await _remove_stale_socket(datadir, dir_fd)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        try:
            await sock.bind(socket_address(dir_fd))
            os.chmod(SOCKET_NAME, 0o600, dir_fd=dir_fd)  # before listen: no one connects sooner
            sock.listen(MAX_CONNECTIONS)
            status = os.stat(SOCKET_NAME, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as error:
            sock.close()
            raise UserError(f"cannot listen on {datadir / SOCKET_NAME}: {error.strerror}") from None
    finally:
        os.close(dir_fd)
    return trio.SocketListener(sock), (status.st_dev, status.st_ino)


def _remove_own_socket(path: Path, identity: tuple[int, int]) -> None:
    """Unlink `path` unless it is no longer the socket we bound (a successor's, say)."""
    try:
        status = os.stat(path, follow_symlinks=False)
        if (status.st_dev, status.st_ino) == identity:
            os.unlink(path)
    except OSError as error:
        log.warning("rpc_socket_not_removed", path=str(path), reason=error.strerror)


class RpcServer:
    """Method name → handler; `serve` answers calls to them on the data dir's `rpc.sock`."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, name: str, handler: Handler) -> None:
        """Serve `name`: `handler(params)` returns the JSON result or raises a P2pchanError."""
        if name in self._handlers:
            raise LocalProtocolError(f"rpc method {name!r} is already registered")
        self._handlers[name] = handler

    async def serve(
        self, datadir: Path, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; `started` with the socket's path. Removes it on the way out."""
        listener, identity = await _listen(datadir)
        path = datadir / SOCKET_NAME
        limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    trio.serve_listeners,
                    lambda stream: _serve_connection(self._handlers, limiter, stream),
                    [listener],
                )
                log.info("rpc_listening", path=str(path), methods=len(self._handlers))
                task_status.started(path)
        finally:
            _remove_own_socket(path, identity)
            await trio.aclose_forcefully(listener)
