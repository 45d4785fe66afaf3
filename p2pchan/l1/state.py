"""The layer-1 ledger state: accounts, channel records, the secret registry, child chains, totals.

Mutable on purpose (it is the hot path of the chain); only `p2pchan.l1.chain` and
`p2pchan.l1.contract` change it, and they validate a whole call before changing anything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from p2pchan.l1.genesis import Genesis
from p2pchan.l1.plasma_state import PlasmaChain
from p2pchan.types import Address, ChainId, ChannelId, Locksroot, PlasmaId, SecretHash
from p2pchan.wire.fields import BOOL, BYTES32, U8, U64, Optional
from p2pchan.wire.locks import EMPTY_LOCKSROOT
from p2pchan.wire.records import Nested, Record, wire

MIN_SETTLE_TIMEOUT = 20
MAX_SETTLE_TIMEOUT = 1_000_000


class ChannelState(enum.IntEnum):
    OPEN = 1
    CLOSED = 2
    SETTLED = 3


@dataclass(slots=True)
class Account(Record):
    balance: int = wire(U64)
    nonce: int = wire(U64)


@dataclass(frozen=True, slots=True)
class StoredProof(Record):
    """The winning balance proof of one direction, as the contract keeps it."""

    nonce: int = wire(U64)
    transferred_amount: int = wire(U64)
    locked_amount: int = wire(U64)
    locksroot: Locksroot = wire(BYTES32)


NO_PROOF = StoredProof(0, 0, 0, EMPTY_LOCKSROOT)


@dataclass(slots=True)
class ChannelRecord(Record):
    """One channel in the contract. Fields ending in _a/_b belong to participant A/B; a proof's
    side is its sender's."""

    channel_id: ChannelId = wire(BYTES32)
    participant_a: Address = wire(BYTES32)
    participant_b: Address = wire(BYTES32)
    settle_timeout: int = wire(U64)
    opened_block: int = wire(U64)
    state: int = wire(U8)
    deposit_a: int = wire(U64)
    deposit_b: int = wire(U64)
    closer: Address | None = wire(Optional(BYTES32))
    close_block: int = wire(U64)
    proof_a: StoredProof = wire(Nested(StoredProof))
    proof_b: StoredProof = wire(Nested(StoredProof))
    settled_block: int = wire(U64)
    withheld_a: int = wire(U64)
    withheld_b: int = wire(U64)
    unlocked_a: bool = wire(BOOL)
    unlocked_b: bool = wire(BOOL)

    @property
    def total_deposit(self) -> int:
        return self.deposit_a + self.deposit_b

    @property
    def window_end(self) -> int:
        """The last block of the settlement window (valid once closed)."""
        return self.close_block + self.settle_timeout

    def is_participant(self, address: Address) -> bool:
        return address in (self.participant_a, self.participant_b)

    def partner_of(self, address: Address) -> Address:
        return self.participant_b if address == self.participant_a else self.participant_a

    def held(self) -> int:
        """What the contract holds for this channel now."""
        if self.state == ChannelState.SETTLED:
            return (0 if self.unlocked_a else self.withheld_a) + (
                0 if self.unlocked_b else self.withheld_b
            )
        return self.total_deposit


@dataclass(slots=True)
class ChainState:
    chain_id: ChainId
    dev: bool
    min_fee: int
    accounts: dict[Address, Account] = field(default_factory=dict)
    channels: dict[ChannelId, ChannelRecord] = field(default_factory=dict)
    live_pairs: set[frozenset[Address]] = field(
        default_factory=set
    )  # pairs with an unsettled channel
    secrets: dict[SecretHash, int] = field(default_factory=dict)  # secrethash -> block registered
    plasma: dict[PlasmaId, PlasmaChain] = field(default_factory=dict)  # child chains
    supply: int = 0  # genesis allocations + faucet grants
    burned: int = 0  # fees
    faucet_grants: int = 0

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> ChainState:
        state = cls(genesis.chain_id, genesis.dev, genesis.min_fee)
        for allocation in genesis.allocations:
            state.account(allocation.address).balance += allocation.amount
        state.supply = genesis.supply
        return state

    def account(self, address: Address) -> Account:
        """The account at `address`, created empty on first use."""
        account = self.accounts.get(address)
        if account is None:
            account = self.accounts[address] = Account(0, 0)
        return account

    def balance(self, address: Address) -> int:
        account = self.accounts.get(address)
        return account.balance if account else 0

    def contract_holdings(self) -> int:
        """What the channel contract and the Plasma root contract hold together."""
        channels = sum(channel.held() for channel in self.channels.values())
        return channels + sum(chain.held() for chain in self.plasma.values())
