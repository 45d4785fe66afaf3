"""The cooperative-settle message both participants sign to close a channel at once.

It covers chain id, channel id, both total deposits, both final balances and an expiration
block; the contract accepts it only if the deposits are still those, the balances add up to them
exactly and the current block is at most the expiration.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.types import ChainId, ChannelId
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.fields import BYTES32, U64
from p2pchan.wire.records import Record, wire

MAX_COOP_SETTLE_DATA = 256


@dataclass(frozen=True, slots=True)
class CooperativeSettle(Record):
    chain_id: ChainId = wire(BYTES32)
    channel_id: ChannelId = wire(BYTES32)
    deposit_a: int = wire(U64)
    deposit_b: int = wire(U64)
    balance_a: int = wire(U64)
    balance_b: int = wire(U64)
    expiration_block: int = wire(U64)

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> CooperativeSettle:
        return cls.from_wire(unpack(data, max_len=MAX_COOP_SETTLE_DATA), "cooperative_settle")
