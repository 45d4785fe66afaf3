"""The running chain: loads the store, admits transactions, seals blocks, serves subscribers.

Two states are kept. `pending` has every admitted transaction applied, so `submit` answers at once
with the exact outcome (a rejected call is never included). `confirmed` holds only sealed,
durable blocks and answers queries. Sealing writes the block and fsyncs it *before* the confirmed
state, waiters and subscribers see it: a transaction reported as included survives kill -9.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog
import trio

from p2pchan.errors import ChainError, RemoteProtocolError, StoreError
from p2pchan.l1 import chain
from p2pchan.l1.api import BlockNotice
from p2pchan.l1.blocks import (
    MAX_BLOCK_SIZE,
    MAX_BLOCK_TRANSACTIONS,
    Block,
    BlockHeader,
    transactions_root,
)
from p2pchan.l1.events import Event
from p2pchan.l1.genesis import Genesis, GenesisSpec
from p2pchan.l1.state import ChainState
from p2pchan.l1.store import ChainStore
from p2pchan.l1.transactions import (
    FaucetGrant,
    SignedTransaction,
    Transaction,
    decode_transaction,
    faucet_transaction,
)
from p2pchan.types import Address, BlockHash, TxHash

log = structlog.get_logger(__name__)

# What one block may hold; admission refuses more, so every sealed block decodes on replay.
_ENTRY_OVERHEAD = 16  # msgpack array and bin headers around a transaction's body and signature
_BLOCK_BYTE_BUDGET = MAX_BLOCK_SIZE - 1024 * 1024  # headroom for the header and framing


@dataclass(frozen=True, slots=True)
class Admitted:
    """A transaction applied to the pending state, waiting for its block."""

    transaction: Transaction
    events: list[Event]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def load_or_create_genesis(store: ChainStore, spec: GenesisSpec | None, dev: bool) -> Genesis:
    """The data dir's genesis; created on first start with a fresh random nonce."""
    existing = store.read_genesis()
    if existing is not None:
        try:
            genesis = Genesis.decode(existing)
        except RemoteProtocolError as error:
            raise StoreError(f"{store.genesis_path} is unreadable: {error}") from None
        if (
            spec is not None
            and spec.create(nonce=genesis.nonce, timestamp_ms=genesis.timestamp_ms, dev=dev)
            != genesis
        ):
            raise StoreError(
                f"{store.datadir} already holds a chain with a different genesis; "
                "use a new --datadir"
            )
        return genesis
    genesis = (spec or GenesisSpec()).create(nonce=os.urandom(32), timestamp_ms=now_ms(), dev=dev)
    store.write_genesis(genesis.encode())
    return genesis


class ChainService:
    def __init__(self, store: ChainStore, genesis: Genesis, *, block_time: float) -> None:
        self.store = store
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.block_time = block_time
        self.confirmed = ChainState.from_genesis(genesis)
        self.pending = ChainState.from_genesis(genesis)
        self.head = BlockHeader(0, BlockHash(self.chain_id), genesis.timestamp_ms, bytes(32))
        self.notices: list[BlockNotice] = []  # notices[h - 1] is block h's
        self.tx_blocks: dict[TxHash, int] = {}  # every included transaction -> its block
        self._admitted: list[Admitted] = []
        self._admitted_bytes = 0
        self._pending_hashes: set[TxHash] = set()
        self._sealing_height = 1  # the block admitted transactions go into
        self._seal_lock = trio.Lock()
        self._broken: str | None = None  # set when a block could not be made durable
        self._new_block = trio.Event()

    @classmethod
    def open(
        cls,
        datadir: Path,
        *,
        block_time: float,
        dev: bool = False,
        genesis_spec: GenesisSpec | None = None,
    ) -> ChainService:
        datadir.mkdir(parents=True, exist_ok=True)
        store = ChainStore(datadir)
        try:
            genesis = load_or_create_genesis(store, genesis_spec, dev)
            service = cls(store, genesis, block_time=block_time)
            service._replay(store.open_blocks())
        except BaseException:
            store.close()
            raise
        log.info(
            "l1_loaded",
            chain_id=service.chain_id.hex(),
            height=service.head.height,
            dev=genesis.dev,
        )
        return service

    def _replay(self, records: Iterable[bytes]) -> None:
        for data in records:
            try:
                block = Block.decode(data)
            except RemoteProtocolError as error:
                raise StoreError(f"block {self.head.height + 1} is unreadable: {error}") from None
            header = block.header
            if header.height != self.head.height + 1 or header.parent_hash != self.head.hash:
                raise StoreError(f"block {header.height} does not extend the chain")
            events: list[Event] = []
            hashes: list[bytes] = []
            for signed in block.transactions:
                try:
                    tx = decode_transaction(signed, verify=False)
                    events.extend(chain.apply(self.confirmed, tx, header.height))
                    chain.apply(self.pending, tx, header.height)
                except ChainError as error:
                    raise StoreError(f"block {header.height} does not replay: {error}") from None
                hashes.append(tx.hash)
                self.tx_blocks[tx.hash] = header.height
            if transactions_root(hashes) != header.transactions_root:
                raise StoreError(f"block {header.height} transactions root does not match")
            self.head = header
            self.notices.append(BlockNotice(header, tuple(events)))
        self._sealing_height = self.head.height + 1

    # -- admission -------------------------------------------------------------------------

    @property
    def pending_count(self) -> int:
        return len(self._admitted)

    def submit(self, signed: SignedTransaction) -> tuple[TxHash, int]:
        """Verify and apply a transaction to the pending state; return its hash and block.

        Raises `ChainError` saying why it was refused; a refused transaction changes nothing.
        """
        tx = decode_transaction(signed)
        if tx.is_faucet_grant:
            raise ChainError("not_allowed", "faucet grants come only from the faucet call")
        return self._admit(tx)

    def faucet(self, address: Address, amount: int) -> tuple[TxHash, int]:
        if not self.genesis.dev:
            raise ChainError("not_dev", "the faucet exists only on --dev chains")
        grant = FaucetGrant(address, amount)
        return self._admit(faucet_transaction(self.chain_id, self.pending.faucet_grants, grant))

    def _admit(self, tx: Transaction) -> tuple[TxHash, int]:
        self._check_not_broken()
        size = len(tx.signed.body) + len(tx.signed.signature) + _ENTRY_OVERHEAD
        if (
            len(self._admitted) >= MAX_BLOCK_TRANSACTIONS
            or self._admitted_bytes + size > _BLOCK_BYTE_BUDGET
        ):
            raise ChainError("block_full", "the next block is full; retry after it is sealed")
        events = chain.apply(self.pending, tx, self._sealing_height)
        self._admitted.append(Admitted(tx, events))
        self._admitted_bytes += size
        self._pending_hashes.add(tx.hash)
        return tx.hash, self._sealing_height

    def _check_not_broken(self) -> None:
        if self._broken is not None:
            raise StoreError(f"layer 1 stopped: {self._broken}; restart it")

    def is_pending(self, tx_hash: TxHash) -> bool:
        return tx_hash in self._pending_hashes

    def block(self, height: int) -> Block:
        """A sealed block, read back from the log."""
        if not 1 <= height <= self.head.height:
            raise ChainError("unknown_block", f"no block {height}; the head is {self.head.height}")
        return Block.decode(self.store.read_block(height))

    # -- sealing ---------------------------------------------------------------------------

    async def seal(self) -> BlockHeader:
        """Cut a block from everything admitted, make it durable, then publish it."""
        async with self._seal_lock:
            self._check_not_broken()
            admitted, self._admitted = self._admitted, []
            self._admitted_bytes = 0
            height = self._sealing_height
            self._sealing_height += 1
            hashes = [entry.transaction.hash for entry in admitted]
            header = BlockHeader(
                height,
                self.head.hash,
                max(now_ms(), self.head.timestamp_ms),
                transactions_root(list(hashes)),
            )
            block = Block(header, tuple(entry.transaction.signed for entry in admitted))
            try:
                await trio.to_thread.run_sync(self.store.append_block, block.encode())
            except BaseException as error:
                # The pending state already holds these transactions and their height is used:
                # nothing can be sealed consistently any more. Stop; a restart replays the log.
                self._broken = f"block {height} could not be written: {error!r}"
                log.critical("l1_block_write_failed", height=height, reason=repr(error))
                raise
            events: list[Event] = []
            for entry in admitted:
                confirmed_events = chain.apply(self.confirmed, entry.transaction, height)
                if confirmed_events != entry.events:
                    raise StoreError(f"block {height} applied differently twice; refusing to go on")
                events.extend(confirmed_events)
                self.tx_blocks[entry.transaction.hash] = height
            self._pending_hashes.difference_update(hashes)
            self.head = header
            self.notices.append(BlockNotice(header, tuple(events)))
            self._new_block.set()
            self._new_block = trio.Event()
            log.debug("l1_block_sealed", height=height, transactions=len(admitted))
            return header

    async def run_block_timer(self) -> None:
        """Seal a block every `block_time` seconds (a no-op loop when `block_time` is 0)."""
        if self.block_time <= 0:
            await trio.sleep_forever()
        next_at = trio.current_time() + self.block_time
        while True:
            await trio.sleep_until(next_at)
            await self.seal()
            next_at = max(next_at + self.block_time, trio.current_time())

    async def wait_for_height(self, height: int) -> None:
        while self.head.height < height:
            await self._new_block.wait()

    async def wait_for_new_block(self) -> None:
        await self._new_block.wait()

    def close(self) -> None:
        self.store.close()
