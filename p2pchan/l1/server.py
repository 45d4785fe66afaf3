"""The layer-1 server: the chain service on a TCP port, with a ready file.

One task per connection reads length-prefixed request frames and answers each with a response
carrying its request id. Requests that wait (inclusion, mining, subscriptions) run in the
connection's own nursery. Anything malformed on a connection (garbage, an oversized or truncated
frame, an undecodable request) closes that connection with a logged reason; everyone else is
served on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import trio

from p2pchan.concurrency import leaves, listen_tcp, only_expected
from p2pchan.errors import ChainError, RemoteProtocolError
from p2pchan.files import write_file_durably
from p2pchan.l1.api import (
    MAX_REQUEST_SIZE,
    MAX_RESPONSE_SIZE,
    REQUESTS,
    RESPONSES,
    AccountRequest,
    AccountResult,
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
from p2pchan.l1.service import ChainService
from p2pchan.wire.codec import UnknownMessage
from p2pchan.wire.framing import FrameDecoder, frame
from p2pchan.wire.records import Record

log = structlog.get_logger(__name__)

_CONNECTION_ERRORS = (
    RemoteProtocolError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
)

READY_FILE = "l1.json"
MAX_CONNECTIONS = 1024
MAX_MINE_PER_REQUEST = 10_000
SEND_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class L1Address:
    host: str
    port: int


def _peer_name(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


class _Connection:
    def __init__(self, service: ChainService, stream: trio.SocketStream) -> None:
        self.service = service
        self.stream = stream
        self._send_lock = trio.Lock()
        self._outbox: list[bytes] = []

    async def run(self) -> None:
        decoder = FrameDecoder(max_size=MAX_REQUEST_SIZE)
        async with trio.open_nursery() as nursery:
            while True:
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                for body in decoder.feed(data):
                    message = REQUESTS.decode(body)
                    if isinstance(message, UnknownMessage):
                        log.info("l1_unknown_request_skipped", type_id=message.type_id)
                        continue
                    assert isinstance(message, Request)
                    if isinstance(message, SubscribeRequest):
                        await self._flush()
                        await self._stream_blocks(message)  # never returns normally
                    self._dispatch(message, nursery)
                await self._flush()
            if decoder.buffered:
                raise RemoteProtocolError(
                    f"connection closed inside a frame ({decoder.buffered} bytes)"
                )
            nursery.cancel_scope.cancel()

    async def _send(self, messages: list[bytes]) -> None:
        async with self._send_lock:
            with trio.fail_after(SEND_TIMEOUT):
                await self.stream.send_all(b"".join(messages))

    async def _flush(self) -> None:
        if self._outbox:
            outbox, self._outbox = self._outbox, []
            await self._send(outbox)

    def _encode(self, response: Record) -> bytes:
        return frame(RESPONSES.encode(response), max_size=MAX_RESPONSE_SIZE)

    def _dispatch(self, request: Request, nursery: trio.Nursery) -> None:
        """Answer a request now (into the outbox), or start a task for one that must wait.

        Submissions are admitted here, in frame order, so a client may pipeline one sender's
        transactions; only waiting for their block happens in a task.
        """
        if isinstance(request, MineRequest | WaitRequest):
            nursery.start_soon(self._answer_later, request)
            return
        response = self._answer_now(request)
        if (
            isinstance(request, SubmitRequest | FaucetRequest)
            and request.wait
            and isinstance(response, SubmitResult)
            and not response.included
        ):
            nursery.start_soon(self._answer_when_included, response)
            return
        self._outbox.append(self._encode(response))

    def _rejected(self, request: Request, error: ChainError) -> ErrorResponse:
        log.info(
            "l1_call_rejected",
            request=type(request).__name__,
            code=error.code,
            reason=error.message,
        )
        return ErrorResponse(request.request_id, error.code, error.message)

    def _answer_now(self, request: Request) -> Record:
        service = self.service
        rid = request.request_id
        try:
            if isinstance(request, SubmitRequest):
                tx_hash, block = service.submit(request.transaction)
                return SubmitResult(rid, tx_hash, block, False)
            if isinstance(request, FaucetRequest):
                tx_hash, block = service.faucet(request.address, request.amount)
                return SubmitResult(rid, tx_hash, block, False)
            if isinstance(request, StatusRequest):
                state = service.confirmed
                return StatusResult(
                    rid,
                    service.chain_id,
                    service.head.height,
                    service.head.hash,
                    round(service.block_time * 1000),
                    service.genesis.dev,
                    service.genesis.min_fee,
                    service.pending_count,
                    state.supply,
                    state.burned,
                    state.contract_holdings(),
                )
            if isinstance(request, AccountRequest):
                confirmed = service.confirmed.accounts.get(request.address)
                pending = service.pending.accounts.get(request.address)
                return AccountResult(
                    rid,
                    confirmed.balance if confirmed else 0,
                    confirmed.nonce if confirmed else 0,
                    pending.balance if pending else 0,
                    pending.nonce if pending else 0,
                )
            if isinstance(request, ChannelRequest):
                channel = service.confirmed.channels.get(request.channel_id)
                return ChannelResult(rid, channel, service.head.height)
            if isinstance(request, SecretRequest):
                return SecretResult(rid, service.confirmed.secrets.get(request.secrethash))
            if isinstance(request, BlockRequest):
                return BlockResult(rid, service.block(request.height))
            if isinstance(request, PlasmaChainRequest | PlasmaBlockRequest | PlasmaExitRequest):
                return self._answer_plasma(request)
            if isinstance(request, TransactionRequest):
                return TransactionResult(
                    rid,
                    service.tx_blocks.get(request.tx_hash),
                    service.is_pending(request.tx_hash),
                )
        except ChainError as error:
            return self._rejected(request, error)
        raise RemoteProtocolError(f"unexpected request {type(request).__name__}")

    def _answer_plasma(
        self, request: PlasmaChainRequest | PlasmaBlockRequest | PlasmaExitRequest
    ) -> Record:
        rid, height = request.request_id, self.service.head.height
        chain = self.service.confirmed.plasma.get(request.plasma_id)
        if isinstance(request, PlasmaChainRequest):
            return PlasmaChainResult(rid, chain.info() if chain else None, height)
        if isinstance(request, PlasmaBlockRequest):
            commit = chain.blocks.get(request.blknum) if chain else None
            return PlasmaBlockResult(rid, commit, height)
        record = chain.exits.get(request.utxo_pos) if chain else None
        return PlasmaExitResult(rid, record, height)

    async def _answer_when_included(self, admitted: SubmitResult) -> None:
        await self.service.wait_for_height(admitted.block)
        included = SubmitResult(admitted.request_id, admitted.tx_hash, admitted.block, True)
        await self._send([self._encode(included)])

    async def _answer_later(self, request: MineRequest | WaitRequest) -> None:
        service = self.service
        response: Record
        if isinstance(request, WaitRequest):
            await service.wait_for_height(request.height)
            response = HeightResult(request.request_id, service.head.height)
        elif request.count > MAX_MINE_PER_REQUEST:
            error = ChainError("too_many_blocks", f"mine at most {MAX_MINE_PER_REQUEST} at once")
            response = self._rejected(request, error)
        else:
            for _ in range(request.count):
                await service.seal()
            response = HeightResult(request.request_id, service.head.height)
        await self._send([self._encode(response)])

    async def _stream_blocks(self, request: SubscribeRequest) -> None:
        service = self.service
        await self._send([self._encode(Subscribed(request.request_id, service.head.height))])
        next_height = max(request.from_height, 1)
        while True:
            while next_height > service.head.height:
                await service.wait_for_new_block()
            batch: list[bytes] = []
            while next_height <= service.head.height and len(batch) < 64:
                batch.append(self._encode(service.notices[next_height - 1]))
                next_height += 1
            await self._send(batch)


async def _serve_connection(
    service: ChainService, limiter: trio.CapacityLimiter, stream: trio.SocketStream
) -> None:
    peer = _peer_name(stream)
    try:
        limiter.acquire_nowait()
    except trio.WouldBlock:
        log.warning("l1_connection_refused", peer=peer, reason="too many connections")
        await stream.aclose()
        return
    try:
        await _Connection(service, stream).run()
    except BaseException as raised:
        # A connection's failure ends that connection only; bugs and cancellation propagate.
        if not only_expected(raised, _CONNECTION_ERRORS):
            raise
        reasons = leaves(raised)
        protocol = [error for error in reasons if isinstance(error, RemoteProtocolError)]
        if protocol:
            log.warning("l1_connection_dropped", peer=peer, reason=str(protocol[0]))
        else:
            reason = str(reasons[0]) or type(reasons[0]).__name__
            log.info("l1_connection_lost", peer=peer, reason=reason)
    finally:
        limiter.release()
        with trio.move_on_after(1) as cleanup:
            cleanup.shield = True
            await stream.aclose()


def write_ready_file(datadir: Path, info: dict[str, Any]) -> None:
    write_file_durably(datadir / READY_FILE, json.dumps(info).encode() + b"\n")


async def serve_l1(
    service: ChainService,
    host: str,
    port: int,
    *,
    ready_file: Path | None = None,
    task_status: trio.TaskStatus[L1Address] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the chain on `host:port` (0 picks a free port) until cancelled."""
    listeners = await listen_tcp(host, port, "--port")
    bound_host, bound_port = listeners[0].socket.getsockname()[:2]
    address = L1Address(bound_host, bound_port)
    limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(service.run_block_timer)
            await nursery.start(
                trio.serve_listeners,
                lambda stream: _serve_connection(service, limiter, stream),
                listeners,
            )
            if ready_file is not None:
                write_ready_file(
                    ready_file.parent,
                    {
                        "host": bound_host,
                        "port": bound_port,
                        "pid": os.getpid(),
                        "chain_id": service.chain_id.hex(),
                    },
                )
            log.info(
                "l1_listening", host=bound_host, port=bound_port, chain_id=service.chain_id.hex()
            )
            task_status.started(address)
    finally:
        if ready_file is not None:
            # A tiny metadata call, done inline so it runs even while being cancelled.
            ready_file.unlink(missing_ok=True)  # noqa: ASYNC240
