"""The layer-1 client library: pipelined requests over one connection, and subscriptions.

    async with L1Client.connect(host, port) as client:
        status = await client.status()

Responses are matched to requests by id, so many tasks may share one client. A rejected call
raises `ChainError` with the server's code; a lost connection raises `L1Unavailable`.
`subscribe` opens a connection of its own that yields one `BlockNotice` per sealed block.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

import structlog
import trio

from p2pchan.concurrency import background_nursery, leaves
from p2pchan.errors import ChainError, RemoteProtocolError
from p2pchan.l1.api import (
    MAX_REQUEST_SIZE,
    MAX_RESPONSE_SIZE,
    REQUESTS,
    RESPONSES,
    AccountRequest,
    AccountResult,
    BlockNotice,
    BlockRequest,
    BlockResult,
    ChannelRequest,
    ChannelResult,
    ErrorResponse,
    FaucetRequest,
    HeightResult,
    MineRequest,
    PlasmaBlockRequest,
    PlasmaBlockResult,
    PlasmaChainRequest,
    PlasmaChainResult,
    PlasmaExitRequest,
    PlasmaExitResult,
    Request,
    Response,
    SecretRequest,
    SecretResult,
    StatusRequest,
    StatusResult,
    SubmitRequest,
    SubmitResult,
    Subscribed,
    SubscribeRequest,
    TransactionRequest,
    TransactionResult,
    WaitRequest,
)
from p2pchan.l1.blocks import Block
from p2pchan.l1.plasma_state import BlockCommit, ExitRecord, PlasmaChainInfo
from p2pchan.l1.state import ChannelRecord
from p2pchan.l1.transactions import SignedTransaction
from p2pchan.types import Address, ChannelId, PlasmaId, SecretHash, TxHash
from p2pchan.wire.codec import UnknownMessage
from p2pchan.wire.framing import FrameDecoder, frame

log = structlog.get_logger(__name__)

R = TypeVar("R", bound=Response)
CONNECT_TIMEOUT = 10.0


class L1Unavailable(ChainError):
    """The layer-1 node cannot be reached or the connection was lost (its code: unavailable;
    it reads as its message alone)."""

    def __init__(self, message: str) -> None:
        super().__init__("unavailable", message)

    def __str__(self) -> str:
        return self.message


def _connect_failure(error: BaseException) -> str:
    """Why a connection failed, in the system's words (`Connection refused`), not trio's
    summary of its attempts."""
    if isinstance(error, trio.TooSlowError):
        return f"no answer within {CONNECT_TIMEOUT:g} s"
    causes = leaves(error.__cause__) if error.__cause__ is not None else [error]
    for cause in causes:
        if isinstance(cause, OSError) and cause.errno is not None:
            # A name that does not resolve has a negative errno and its own words.
            return os.strerror(cause.errno) if cause.errno > 0 else str(cause.strerror)
    return str(error)


async def _connect(host: str, port: int) -> trio.SocketStream:
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            return await trio.open_tcp_stream(host, port)
    except (OSError, trio.TooSlowError) as error:
        reason = _connect_failure(error)
        raise L1Unavailable(f"cannot reach layer 1 at {host}:{port}: {reason}") from None


class _Pending:
    __slots__ = ("done", "response")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.response: Response | None = None


class L1Client:
    def __init__(self, stream: trio.SocketStream, description: str) -> None:
        self._stream = stream
        self._description = description
        self._ids = itertools.cycle(range(1, 2**32))
        self._pending: dict[int, _Pending] = {}
        self._send_lock = trio.Lock()
        self._closed_reason: str | None = None
        self.closed = trio.Event()  # set once the connection is gone

    @classmethod
    @asynccontextmanager
    async def connect(cls, host: str, port: int) -> AsyncIterator[L1Client]:
        stream = await _connect(host, port)
        client = cls(stream, f"{host}:{port}")
        async with stream, background_nursery() as nursery:
            nursery.start_soon(client._read_responses)
            yield client

    async def _read_responses(self) -> None:
        decoder = FrameDecoder(max_size=MAX_RESPONSE_SIZE)
        reason = "connection closed by layer 1"
        try:
            while True:
                data = await self._stream.receive_some(65536)
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
            reason = f"bad response from layer 1: {error}"
            log.warning("l1_client_bad_response", reason=str(error))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            reason = f"connection to layer 1 lost: {type(error).__name__}"
        self._closed_reason = reason
        self.closed.set()
        for waiter in self._pending.values():
            waiter.done.set()
        self._pending.clear()

    async def _call(self, make: Callable[[int], Request], expected: type[R]) -> R:
        if self._closed_reason is not None:
            raise L1Unavailable(self._closed_reason)
        request_id = next(self._ids)
        waiter = self._pending[request_id] = _Pending()
        data = frame(REQUESTS.encode(make(request_id)), max_size=MAX_REQUEST_SIZE)
        try:
            async with self._send_lock:
                await self._stream.send_all(data)
            await waiter.done.wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
            raise L1Unavailable(f"connection to layer 1 lost: {type(error).__name__}") from None
        finally:
            self._pending.pop(request_id, None)
        response = waiter.response
        if response is None:
            raise L1Unavailable(self._closed_reason or "connection to layer 1 lost")
        if isinstance(response, ErrorResponse):
            raise ChainError(response.code, response.message)
        if not isinstance(response, expected):
            raise RemoteProtocolError(
                f"expected {expected.__name__}, got {type(response).__name__}"
            )
        return response

    async def status(self) -> StatusResult:
        return await self._call(StatusRequest, StatusResult)

    async def account(self, address: Address) -> AccountResult:
        return await self._call(lambda rid: AccountRequest(rid, address), AccountResult)

    async def submit(self, transaction: SignedTransaction, *, wait: bool = False) -> SubmitResult:
        return await self._call(lambda rid: SubmitRequest(rid, transaction, wait), SubmitResult)

    async def faucet(self, address: Address, amount: int, *, wait: bool = False) -> SubmitResult:
        return await self._call(lambda rid: FaucetRequest(rid, address, amount, wait), SubmitResult)

    async def mine(self, count: int = 1) -> int:
        result = await self._call(lambda rid: MineRequest(rid, count), HeightResult)
        return result.height

    async def wait_for_height(self, height: int) -> int:
        result = await self._call(lambda rid: WaitRequest(rid, height), HeightResult)
        return result.height

    async def channel(self, channel_id: ChannelId) -> ChannelRecord | None:
        result = await self._call(lambda rid: ChannelRequest(rid, channel_id), ChannelResult)
        return result.channel

    async def secret_block(self, secrethash: SecretHash) -> int | None:
        result = await self._call(lambda rid: SecretRequest(rid, secrethash), SecretResult)
        return result.registered_block

    async def block(self, height: int) -> Block:
        result = await self._call(lambda rid: BlockRequest(rid, height), BlockResult)
        return result.block

    async def transaction(self, tx_hash: TxHash) -> TransactionResult:
        return await self._call(lambda rid: TransactionRequest(rid, tx_hash), TransactionResult)

    async def plasma_chain(self, plasma_id: PlasmaId) -> PlasmaChainInfo | None:
        """A child chain's record as of the head, or None if there is no such chain."""
        result = await self._call(lambda rid: PlasmaChainRequest(rid, plasma_id), PlasmaChainResult)
        return result.chain

    async def plasma_block(self, plasma_id: PlasmaId, blknum: int) -> BlockCommit | None:
        """The root and commitment height of child block `blknum`, or None if not committed."""
        result = await self._call(
            lambda rid: PlasmaBlockRequest(rid, plasma_id, blknum), PlasmaBlockResult
        )
        return result.block

    async def plasma_exit(self, plasma_id: PlasmaId, utxo_pos: int) -> ExitRecord | None:
        result = await self._call(
            lambda rid: PlasmaExitRequest(rid, plasma_id, utxo_pos), PlasmaExitResult
        )
        return result.exit


@asynccontextmanager
async def subscribe(
    host: str, port: int, from_height: int
) -> AsyncIterator[AsyncIterator[BlockNotice]]:
    """Open a subscription; iterate it for every block from `from_height` on, in order."""
    stream = await _connect(host, port)
    async with stream:
        request = SubscribeRequest(1, from_height)
        try:
            await stream.send_all(frame(REQUESTS.encode(request), max_size=MAX_REQUEST_SIZE))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise L1Unavailable("connection to layer 1 lost while subscribing") from None
        yield _notices(stream)


async def _notices(stream: trio.SocketStream) -> AsyncIterator[BlockNotice]:
    decoder = FrameDecoder(max_size=MAX_RESPONSE_SIZE)
    while True:
        try:
            data = await stream.receive_some(1 << 20)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            raise L1Unavailable("layer-1 subscription ended")
        for body in decoder.feed(data):
            message = RESPONSES.decode(body)
            if isinstance(message, BlockNotice):
                yield message
            elif isinstance(message, ErrorResponse):
                raise ChainError(message.code, message.message)
            elif not isinstance(message, Subscribed | UnknownMessage):
                raise RemoteProtocolError(f"unexpected {type(message).__name__} in subscription")
