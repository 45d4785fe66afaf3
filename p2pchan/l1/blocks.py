"""Blocks: a header (height, parent hash, timestamp, transactions root) and the transactions.

A block's hash is sha256 over its tagged header; block 1's parent is the chain id (the genesis
hash). The transactions root commits to the ordered transaction hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.crypto.hashing import sha256
from p2pchan.l1.transactions import SignedTransaction
from p2pchan.types import BlockHash
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.fields import BYTES32, U64
from p2pchan.wire.records import Nested, NestedList, Record, wire

MAX_BLOCK_TRANSACTIONS = 20_000
MAX_BLOCK_SIZE = 64 * 1024 * 1024
_BLOCK_TAG = b"p2pchan/block/1"


@dataclass(frozen=True, slots=True)
class BlockHeader(Record):
    height: int = wire(U64)
    parent_hash: BlockHash = wire(BYTES32)
    timestamp_ms: int = wire(U64)
    transactions_root: bytes = wire(BYTES32)

    @property
    def hash(self) -> BlockHash:
        return BlockHash(sha256(_BLOCK_TAG, pack(self.to_wire())))


@dataclass(frozen=True, slots=True)
class Block(Record):
    header: BlockHeader = wire(Nested(BlockHeader))
    transactions: tuple[SignedTransaction, ...] = wire(
        NestedList(SignedTransaction, MAX_BLOCK_TRANSACTIONS)
    )

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> Block:
        return cls.from_wire(unpack(data, max_len=MAX_BLOCK_SIZE), "block")


def transactions_root(tx_hashes: list[bytes]) -> bytes:
    return sha256(b"".join(tx_hashes))
