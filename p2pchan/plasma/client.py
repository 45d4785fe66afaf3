"""A client of an operator's TCP API: pipelined requests over one connection.

    async with OperatorClient.connect(host, port) as operator:
        result = await operator.submit(signed_tx)

Responses are matched to requests by id, so many tasks may share one client. A refused request
raises `PlasmaError` with the operator's code; a lost connection raises `OperatorUnavailable`.
Blocks are decoded strictly here; checking them against layer 1 is the watcher's job.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import trio

from p2pchan.concurrency import background_nursery
from p2pchan.errors import PlasmaError, RemoteProtocolError
from p2pchan.plasma.api import (
    MAX_REQUEST_SIZE,
    MAX_RESPONSE_SIZE,
    REQUESTS,
    RESPONSES,
    BlockRequest,
    BlockResult,
    ConfirmationsRequest,
    ConfirmationsResult,
    ConfirmRequest,
    ConfirmResult,
    OperatorError,
    OwnedOutput,
    ProofRequest,
    ProofResult,
    Request,
    Response,
    StatusRequest,
    StatusResult,
    SubmitTxRequest,
    TxResult,
    UtxosRequest,
    UtxosResult,
)
from p2pchan.plasma.block import PlasmaBlock
from p2pchan.types import Address
from p2pchan.wire.codec import UnknownMessage
from p2pchan.wire.framing import FrameDecoder, frame
from p2pchan.wire.plasma import Confirmation, SignedPlasmaTx

R = TypeVar("R", bound=Response)
CONNECT_TIMEOUT = 10.0


class OperatorUnavailable(PlasmaError):
    """The operator cannot be reached or the connection was lost."""

    def __init__(self, message: str) -> None:
        super().__init__("unavailable", message)


class _Pending:
    __slots__ = ("done", "response")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.response: Response | None = None


class OperatorClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._ids = itertools.cycle(range(1, 2**32))
        self._pending: dict[int, _Pending] = {}
        self._send_lock = trio.Lock()
        self._closed_reason: str | None = None
        self.closed = trio.Event()  # set once the connection is gone

    @classmethod
    @asynccontextmanager
    async def connect(cls, host: str, port: int) -> AsyncIterator[OperatorClient]:
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                stream = await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError) as error:
            raise OperatorUnavailable(
                f"cannot reach the operator at {host}:{port}: {error}"
            ) from None
        client = cls(stream)
        async with stream, background_nursery() as nursery:
            nursery.start_soon(client._read_responses)
            yield client

    async def _read_responses(self) -> None:
        decoder = FrameDecoder(max_size=MAX_RESPONSE_SIZE)
        reason = "connection closed by the operator"
        try:
            while True:
                data = await self._stream.receive_some(1 << 20)
                if not data:
                    break
                for body in decoder.feed(data):
                    message = RESPONSES.decode(body)
                    if isinstance(message, UnknownMessage):
                        continue
                    if not isinstance(message, Response):
                        raise RemoteProtocolError(f"unexpected {type(message).__name__}")
                    waiter = self._pending.pop(message.request_id, None)
                    if waiter is not None:
                        waiter.response = message
                        waiter.done.set()
        except RemoteProtocolError as error:
            reason = f"bad response from the operator: {error}"
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            reason = f"connection to the operator lost: {type(error).__name__}"
        self._closed_reason = reason
        self.closed.set()
        for waiter in self._pending.values():
            waiter.done.set()
        self._pending.clear()

    async def _call(self, make: Callable[[int], Request], expected: type[R]) -> R:
        if self._closed_reason is not None:
            raise OperatorUnavailable(self._closed_reason)
        request_id = next(self._ids)
        waiter = self._pending[request_id] = _Pending()
        data = frame(REQUESTS.encode(make(request_id)), max_size=MAX_REQUEST_SIZE)
        try:
            async with self._send_lock:
                await self._stream.send_all(data)
            await waiter.done.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise OperatorUnavailable(
                f"connection to the operator lost: {type(error).__name__}"
            ) from None
        finally:
            self._pending.pop(request_id, None)
        response = waiter.response
        if response is None:
            raise OperatorUnavailable(self._closed_reason or "connection to the operator lost")
        if isinstance(response, OperatorError):
            raise PlasmaError(response.code, response.message)
        if not isinstance(response, expected):
            raise RemoteProtocolError(
                f"expected {expected.__name__}, got {type(response).__name__}"
            )
        return response

    async def status(self) -> StatusResult:
        return await self._call(StatusRequest, StatusResult)

    async def submit(self, tx: SignedPlasmaTx, *, wait: bool = False) -> TxResult:
        """Hand a transaction to the operator; with `wait`, return once its block's root is on
        layer 1 (`committed`), else as soon as it is admitted."""
        return await self._call(lambda rid: SubmitTxRequest(rid, tx, wait), TxResult)

    async def block(self, blknum: int) -> PlasmaBlock:
        result = await self._call(lambda rid: BlockRequest(rid, blknum), BlockResult)
        try:
            return PlasmaBlock.decode(result.block)
        except RemoteProtocolError as error:
            raise PlasmaError("malformed_block", f"block {blknum}: {error}") from None

    async def proof(self, blknum: int, txindex: int) -> ProofResult:
        return await self._call(lambda rid: ProofRequest(rid, blknum, txindex), ProofResult)

    async def utxos(self, owner: Address) -> tuple[OwnedOutput, ...]:
        result = await self._call(lambda rid: UtxosRequest(rid, owner), UtxosResult)
        return result.utxos

    async def confirm(self, tx_hash: bytes, confirmation: Confirmation) -> None:
        """Hand over a confirmation; returns once the operator stored it for relaying."""
        await self._call(lambda rid: ConfirmRequest(rid, tx_hash, confirmation), ConfirmResult)

    async def confirmations(self, tx_hash: bytes) -> ConfirmationsResult:
        return await self._call(lambda rid: ConfirmationsRequest(rid, tx_hash), ConfirmationsResult)
