"""The genesis block: initial allocations, chain parameters and a fresh random nonce.

`chain_id` is the hash of the genesis bytes, so two chains never share an id even with the same
allocations (each genesis, `--dev` ones included, gets its own nonce when first created).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from p2pchan.crypto.hashing import sha256
from p2pchan.errors import RemoteProtocolError, UserError
from p2pchan.types import U64_MAX, Address, ChainId, parse_address, parse_amount
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.fields import BOOL, BYTES32, U16, U64
from p2pchan.wire.records import NestedList, Record, wire

GENESIS_VERSION = 1
MAX_ALLOCATIONS = 100_000
MAX_GENESIS_SIZE = 8 * 1024 * 1024
_CHAIN_ID_TAG = b"p2pchan/genesis/1"


@dataclass(frozen=True, slots=True)
class Allocation(Record):
    address: Address = wire(BYTES32)
    amount: int = wire(U64)


@dataclass(frozen=True, slots=True)
class Genesis(Record):
    version: int = wire(U16)
    nonce: bytes = wire(BYTES32)
    timestamp_ms: int = wire(U64)
    dev: bool = wire(BOOL)
    min_fee: int = wire(U64)
    allocations: tuple[Allocation, ...] = wire(NestedList(Allocation, MAX_ALLOCATIONS))

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> Genesis:
        genesis = cls.from_wire(unpack(data, max_len=MAX_GENESIS_SIZE), "genesis")
        if genesis.version != GENESIS_VERSION:
            raise RemoteProtocolError(f"unsupported genesis version {genesis.version}")
        if sum(allocation.amount for allocation in genesis.allocations) > U64_MAX:
            raise RemoteProtocolError("genesis allocations exceed u64")
        return genesis

    @property
    def chain_id(self) -> ChainId:
        return ChainId(sha256(_CHAIN_ID_TAG, self.encode()))

    @property
    def supply(self) -> int:
        return sum(allocation.amount for allocation in self.allocations)


@dataclass(frozen=True, slots=True)
class GenesisSpec:
    """What an operator's genesis file says; the nonce and timestamp are added at creation."""

    allocations: tuple[Allocation, ...] = ()
    min_fee: int = 0
    dev: bool = False

    def create(self, *, nonce: bytes, timestamp_ms: int, dev: bool) -> Genesis:
        return Genesis(
            GENESIS_VERSION, nonce, timestamp_ms, dev or self.dev, self.min_fee, self.allocations
        )


def load_genesis_spec(path: Path) -> GenesisSpec:
    """Read a genesis file.

    Format: `{"allocations": {"<hex account>": amount}, "min_fee": 0, "dev": false}`.
    """
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as error:
        raise UserError(f"cannot read genesis file {path}: {error}") from None
    if not isinstance(document, dict):
        raise UserError(f"genesis file {path} must hold a JSON object")
    unknown = set(document) - {"allocations", "min_fee", "dev"}
    if unknown:
        raise UserError(f"genesis file {path}: unknown keys {sorted(unknown)}")
    raw_allocations = document.get("allocations", {})
    if not isinstance(raw_allocations, dict):
        raise UserError("genesis allocations must be an object of account -> amount")
    allocations = tuple(
        Allocation(
            parse_address(account, "genesis account"),
            _amount(amount, f"genesis amount for {account}"),
        )
        for account, amount in raw_allocations.items()
    )
    if sum(allocation.amount for allocation in allocations) > U64_MAX:
        raise UserError("genesis allocations add up to more than u64")
    dev = document.get("dev", False)
    if not isinstance(dev, bool):
        raise UserError("genesis dev must be true or false")
    return GenesisSpec(allocations, _amount(document.get("min_fee", 0), "genesis min_fee"), dev)


def _amount(value: object, what: str) -> int:
    # parse_amount takes an int or a decimal string; JSON may also hold floats, null, lists...
    if not isinstance(value, int | str):
        raise UserError(f"{what} must be an integer, got {json.dumps(value)}")
    return parse_amount(value, what)
