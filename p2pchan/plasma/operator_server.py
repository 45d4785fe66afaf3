"""The operator process: its machine, store and layer-1 side, served over TCP and JSON-RPC.

`open_operator` does everything that can fail before serving: the key (created as `node init`
does when missing), the data dir lock, the store, layer 1 (its chain id must match the store's),
the child chain (created on first start), and the machine rebuilt from the stored blocks.
`Operator.run` then follows layer 1 until caught up (so every deposit is known and every stored
block's commitment is checked), re-queues stored blocks layer 1 does not hold yet, and only
then serves the TCP API, the RPC socket and `plasma.json`.

The TCP API (`p2pchan.plasma.api`) is served like layer 1's: one task per connection reading
length-prefixed frames, each answered with its request id; admission happens in frame order,
synchronously (no await between decoding and the machine), and answers are flushed once per
read. Anything malformed closes that connection only. Blocks are built every `block_interval`
seconds (or as soon as one is full), appended and fsynced, and only then committed; a block is
served once it is on disk (a `--dev` operator asked to withhold it never serves it).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import trio

from p2pchan.concurrency import leaves, only_expected
from p2pchan.crypto.keys import KEY_FILE_NAME, Identity, load_key_file, write_key_file
from p2pchan.crypto.merkle import MAX_LEAVES, MerkleTree
from p2pchan.errors import ChainError, PlasmaError, RemoteProtocolError, StoreError, UserError
from p2pchan.files import write_file_durably
from p2pchan.l1.client import L1Client
from p2pchan.l1.wallet import Wallet
from p2pchan.net.l1_link import L1Link
from p2pchan.net.rpc import RpcServer
from p2pchan.plasma.api import (
    MAX_REQUEST_SIZE,
    MAX_RESPONSE_SIZE,
    MAX_UTXOS_PER_ANSWER,
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
    StatusRequest,
    StatusResult,
    SubmitTxRequest,
    TxResult,
    UtxosRequest,
    UtxosResult,
    decode_request,
    encode_response,
)
from p2pchan.plasma.block import PlasmaBlock
from p2pchan.plasma.operator import OperatorMachine
from p2pchan.plasma.operator_l1 import OperatorChain, create_or_resume
from p2pchan.plasma.operator_rpc import register_operator_rpc
from p2pchan.plasma.operator_store import OperatorStore
from p2pchan.types import ChainId, PlasmaId
from p2pchan.wire.codec import UnknownMessage
from p2pchan.wire.framing import FrameDecoder, frame
from p2pchan.wire.records import Record

log = structlog.get_logger(__name__)

READY_FILE = "plasma.json"
MAX_CONNECTIONS = 256
SEND_TIMEOUT = 30.0
RECENT_BLOCKS = 16  # encoded blocks (and their trees) kept in memory for serving

_CONNECTION_ERRORS = (
    RemoteProtocolError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    trio.TooSlowError,
)


@dataclass(frozen=True)
class OperatorConfig:
    datadir: Path
    l1_host: str
    l1_port: int
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    block_interval: float = 1.0
    exit_bond: int = 10
    challenge_period: int = 100
    dev: bool = False
    max_block_txs: int = MAX_LEAVES
    l1_wait: float = 10.0  # how long to wait for layer 1 at startup


class Operator:
    def __init__(
        self,
        config: OperatorConfig,
        identity: Identity,
        store: OperatorStore,
        machine: OperatorMachine,
        chain: OperatorChain,
        chain_id: ChainId,
        durable_through: int,
        listeners: list[trio.SocketListener],
    ) -> None:
        self.config = config
        self.listeners = listeners
        self.identity = identity
        self.store = store
        self.machine = machine
        self.chain = chain
        self.chain_id = chain_id
        self.durable_through = durable_through  # every block up to here is on disk
        self.rpc = RpcServer()
        self._store_lock = trio.Lock()
        self._recent: OrderedDict[int, tuple[bytes, MerkleTree | None]] = OrderedDict()
        self._block_full = trio.Event()
        self._cancel_scope = trio.CancelScope()
        self.port: int = listeners[0].socket.getsockname()[1]

    @property
    def plasma_id(self) -> PlasmaId:
        return self.machine.plasma_id

    # -- running ----------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[dict[str, Any]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        register_operator_rpc(self)
        ready_path = self.config.datadir / READY_FILE
        with self._cancel_scope:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.chain.link.run)
                    height = await nursery.start(self.chain.follow)
                    for blknum in sorted(self.machine.roots):
                        if not self.chain.is_committed(blknum):
                            self.chain.enqueue(blknum, self.machine.roots[blknum])
                    log.info("plasma_operator_caught_up", height=height)
                    nursery.start_soon(self.chain.submit_roots)
                    nursery.start_soon(self._build_blocks)
                    await nursery.start(self._serve_tcp)
                    rpc_path = await nursery.start(self.rpc.serve, self.config.datadir)
                    ready = {
                        "plasma_id": self.plasma_id.hex(),
                        "operator": self.identity.node_id.hex(),
                        "host": self.config.listen_host,
                        "port": self.port,
                        "rpc": str(rpc_path),
                        "pid": os.getpid(),
                    }
                    write_file_durably(ready_path, json.dumps(ready).encode() + b"\n")
                    log.info("plasma_operator_ready", port=self.port, dev=self.config.dev)
                    task_status.started(ready)
            finally:
                ready_path.unlink(missing_ok=True)  # tiny, and must run even while cancelled

    def stop(self) -> None:
        self._cancel_scope.cancel()

    def close(self) -> None:
        for listener in self.listeners:
            listener.socket.close()
        self.store.close()

    # -- blocks -----------------------------------------------------------------------------

    async def _build_blocks(self) -> None:
        while True:
            with trio.move_on_after(self.config.block_interval):
                await self._block_full.wait()
            self._block_full = trio.Event()
            if self.machine.wants_block:
                await self.build_block()

    async def build_block(self) -> None:
        """Build the next block, make it durable, then queue its root for layer 1."""
        built = self.machine.build_block()
        try:
            async with self._store_lock:
                await trio.to_thread.run_sync(
                    lambda: self.store.append_block(
                        built.blknum, built.data, withheld=built.withheld
                    )
                )
        except BaseException as error:
            # The machine already moved on to the next block: nothing can be served or
            # committed consistently any more. Stop; a restart replays the store.
            log.critical("plasma_block_write_failed", blknum=built.blknum, reason=repr(error))
            raise StoreError(f"block {built.blknum} could not be written: {error!r}") from error
        self.durable_through = built.blknum
        self._remember(built.blknum, built.data, None)
        self.chain.enqueue(built.blknum, built.root)
        log.info(
            "plasma_block_built",
            blknum=built.blknum,
            transactions=built.transactions,
            withheld=built.withheld,
        )

    def _remember(self, blknum: int, data: bytes, tree: MerkleTree | None) -> None:
        self._recent[blknum] = (data, tree)
        self._recent.move_to_end(blknum)
        while len(self._recent) > RECENT_BLOCKS:
            self._recent.popitem(last=False)

    def served_block(self, blknum: int) -> tuple[bytes, MerkleTree | None]:
        """A durable, served block's bytes (and its tree if computed already)."""
        if blknum > self.durable_through or not self.machine.is_served(blknum):
            raise PlasmaError("unknown_block", f"block {blknum} is not available")
        recent = self._recent.get(blknum)
        if recent is not None:
            return recent
        data = self.store.read_block(blknum)
        if data is None:
            raise PlasmaError("unknown_block", f"block {blknum} is not available")
        self._remember(blknum, data, None)
        return data, None

    def tree_of(self, blknum: int) -> tuple[PlasmaBlock, MerkleTree]:
        data, tree = self.served_block(blknum)
        block = PlasmaBlock.decode(data)
        if tree is None:
            tree = block.tree()
            self._remember(blknum, data, tree)
        return block, tree

    def note_admitted(self) -> None:
        if self.machine.pending_count >= self.machine.max_block_txs:
            self._block_full.set()

    async def persist_confirmation(self, request: ConfirmRequest) -> None:
        async with self._store_lock:
            await trio.to_thread.run_sync(
                self.store.append_confirmation, request.tx_hash, request.confirmation
            )

    # -- the TCP API ------------------------------------------------------------------------

    async def _serve_tcp(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        limiter = trio.CapacityLimiter(MAX_CONNECTIONS)
        async with trio.open_nursery() as nursery:
            await nursery.start(
                trio.serve_listeners,
                lambda stream: _serve_connection(self, limiter, stream),
                self.listeners,
            )
            task_status.started()


def _peer_name(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


class _Connection:
    def __init__(self, operator: Operator, stream: trio.SocketStream) -> None:
        self.operator = operator
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
                    message = decode_request(body)
                    if isinstance(message, UnknownMessage):
                        continue
                    assert isinstance(message, Request)
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

    @staticmethod
    def _encode(response: Record) -> bytes:
        return frame(encode_response(response), max_size=MAX_RESPONSE_SIZE)

    def _dispatch(self, request: Request, nursery: trio.Nursery) -> None:
        rid = request.request_id
        try:
            if isinstance(request, ConfirmRequest):
                self.operator.machine.add_confirmation(request.tx_hash, request.confirmation)
                nursery.start_soon(self._confirm_when_durable, request)
                return
            response = self._answer(request)
        except PlasmaError as error:
            log.info("plasma_request_refused", request=type(request).__name__, code=error.code)
            response = OperatorError(rid, error.code, error.message)
        if isinstance(request, SubmitTxRequest) and request.wait and isinstance(response, TxResult):
            nursery.start_soon(self._answer_when_committed, response)
            return
        self._outbox.append(self._encode(response))

    def _answer(self, request: Request) -> Record:
        operator, machine, rid = self.operator, self.operator.machine, request.request_id
        if isinstance(request, SubmitTxRequest):
            admitted = machine.admit(request.tx)
            operator.note_admitted()
            return TxResult(rid, admitted.tx_hash, admitted.blknum, admitted.txindex, False)
        if isinstance(request, StatusRequest):
            committed = max(machine.committed, default=0)
            return StatusResult(
                rid,
                operator.plasma_id,
                operator.identity.node_id,
                operator.chain_id,
                machine.next_blknum,
                committed,
                machine.pending_count,
            )
        if isinstance(request, BlockRequest):
            data, _ = operator.served_block(request.blknum)
            return BlockResult(rid, data)
        if isinstance(request, ProofRequest):
            block, tree = operator.tree_of(request.blknum)
            if request.txindex >= len(block.transactions):
                raise PlasmaError(
                    "unknown_tx", f"block {request.blknum} has no transaction {request.txindex}"
                )
            proof = tree.proof(request.txindex)
            return ProofResult(rid, block.transactions[request.txindex], proof, tree.root)
        if isinstance(request, UtxosRequest):
            owned = machine.utxos_of(request.owner)
            listed = tuple(OwnedOutput(pos, output) for pos, output in owned[:MAX_UTXOS_PER_ANSWER])
            return UtxosResult(rid, listed, len(owned) > MAX_UTXOS_PER_ANSWER)
        if isinstance(request, ConfirmationsRequest):
            record = machine.transactions.get(request.tx_hash)
            blknum = (
                record.blknum if record is not None and record.blknum in machine.roots else None
            )
            return ConfirmationsResult(
                rid, blknum, tuple(machine.confirmations_of(request.tx_hash))
            )
        raise RemoteProtocolError(f"unexpected request {type(request).__name__}")

    async def _answer_when_committed(self, admitted: TxResult) -> None:
        await self.operator.chain.wait_committed(admitted.blknum)
        committed = TxResult(
            admitted.request_id, admitted.tx_hash, admitted.blknum, admitted.txindex, True
        )
        await self._send([self._encode(committed)])

    async def _confirm_when_durable(self, request: ConfirmRequest) -> None:
        await self.operator.persist_confirmation(request)
        await self._send([self._encode(ConfirmResult(request.request_id))])


async def _serve_connection(
    operator: Operator, limiter: trio.CapacityLimiter, stream: trio.SocketStream
) -> None:
    peer = _peer_name(stream)
    try:
        limiter.acquire_nowait()
    except trio.WouldBlock:
        log.warning("plasma_connection_refused", peer=peer, reason="too many connections")
        await stream.aclose()
        return
    try:
        await _Connection(operator, stream).run()
    except BaseException as raised:
        if not only_expected(raised, _CONNECTION_ERRORS):
            raise
        protocol = [error for error in leaves(raised) if isinstance(error, RemoteProtocolError)]
        if protocol:
            log.warning("plasma_connection_dropped", peer=peer, reason=str(protocol[0]))
    finally:
        limiter.release()
        with trio.move_on_after(1) as cleanup:
            cleanup.shield = True
            await stream.aclose()


# -- opening ----------------------------------------------------------------------------------


def load_or_create_identity(datadir: Path) -> Identity:
    """The operator's key in its data dir, created (0600) on first start as `node init` does."""
    datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path = datadir / KEY_FILE_NAME
    if not key_path.exists():
        write_key_file(key_path, Identity.generate())
    return load_key_file(key_path)


async def _reach_l1(config: OperatorConfig) -> ChainId:
    with trio.move_on_after(config.l1_wait):
        while True:
            try:
                async with L1Client.connect(config.l1_host, config.l1_port) as client:
                    return (await client.status()).chain_id
            except ChainError as error:
                log.debug("l1_not_reachable_yet", reason=str(error))
                await trio.sleep(0.25)
    raise UserError(f"cannot reach layer 1 at {config.l1_host}:{config.l1_port}")


async def _listen(config: OperatorConfig) -> list[trio.SocketListener]:
    host, port = config.listen_host, config.listen_port
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as error:
        raise UserError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


async def open_operator(config: OperatorConfig) -> Operator:
    """Everything that can fail, before anything is served or sent: the data dir, the port,
    layer 1, and only then the child chain (created on layer 1 on first start)."""
    identity = load_or_create_identity(config.datadir)
    store, blocks, confirmations = OperatorStore.open(config.datadir)
    listeners: list[trio.SocketListener] = []
    try:
        listeners = await _listen(config)
        chain_id = await _reach_l1(config)
        async with L1Client.connect(config.l1_host, config.l1_port) as client:
            info = await create_or_resume(
                store,
                client,
                identity,
                chain_id,
                exit_bond=config.exit_bond,
                challenge_period=config.challenge_period,
            )
            min_fee = (await client.status()).min_fee
        machine = OperatorMachine(
            identity, info.plasma_id, max_block_txs=config.max_block_txs, dev=config.dev
        )
        for stored in blocks:
            machine.restore_block(PlasmaBlock.decode(stored.data), withheld=stored.withheld)
        for confirmation in confirmations:
            machine.restore_confirmation(confirmation.tx_hash, confirmation.confirmation)
        link = L1Link(config.l1_host, config.l1_port)
        wallet = Wallet(link, identity, chain_id, fee=min_fee)
        chain = OperatorChain(
            machine, link, wallet, info, l1_host=config.l1_host, l1_port=config.l1_port
        )
    except BaseException:
        for listener in listeners:
            listener.socket.close()
        store.close()
        raise
    structlog.contextvars.bind_contextvars(node=identity.node_id.hex())
    log.info(
        "plasma_operator_loaded",
        plasma_id=info.plasma_id.hex(),
        blocks=len(blocks),
        next_block=machine.next_blknum,
    )
    durable_through = blocks[-1].blknum if blocks else 0
    return Operator(config, identity, store, machine, chain, chain_id, durable_through, listeners)
