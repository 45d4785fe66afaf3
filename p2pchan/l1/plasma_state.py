"""Plasma state inside the layer-1 state: each child chain's committed blocks, exits and funds.

Mutable, like the rest of `ChainState`, and changed only by `p2pchan.l1.plasma_contract`, which
checks a whole call before changing anything. It is rebuilt exactly on a layer-1 restart by
replaying the block log, as channel state is. The exit queue is a list kept sorted by priority
`(exitable_at, utxo_pos)`: inserting is a bisect and a memmove, finalizing takes from the front,
and a challenge removes one entry by bisect, so even a mass exit of 10^5 outputs stays cheap.

The chain holds `deposits_held` (what backs its outputs: deposits less the exit amounts paid)
and `bonds_held` (the bonds of queued exits). Nothing is ever paid beyond `deposits_held`.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass, field

from p2pchan.types import Address, PlasmaId
from p2pchan.wire.fields import BYTES32, U8, U64, Optional
from p2pchan.wire.plasma import CHILD_BLOCK_INTERVAL
from p2pchan.wire.records import Record, wire

MIN_CHALLENGE_PERIOD = 20
MAX_CHALLENGE_PERIOD = 1_000_000
MAX_FINALIZE_PER_CALL = 16  # one finalize call is one event, which lists what it paid


def exitable_at(committed_height: int, now: int, challenge_period: int) -> int:
    """The first layer-1 block at which an exit may be paid (DESIGN: `max(h + 2·cp, now + cp)`).

    `committed_height` is the layer-1 height at which the output's block was committed, `now` the
    height of the `start_exit`. Outputs of older blocks therefore leave before any output of a
    newer (possibly invalid) block that started exiting at the same time.
    """
    return max(committed_height + 2 * challenge_period, now + challenge_period)


class ExitStatus(enum.IntEnum):
    QUEUED = 1
    CHALLENGED = 2
    PAID = 3


@dataclass(frozen=True, slots=True)
class BlockCommit(Record):
    """A committed child block: its root and the layer-1 height that committed it."""

    root: bytes = wire(BYTES32)
    height: int = wire(U64)


@dataclass(slots=True)
class ExitRecord(Record):
    utxo_pos: int = wire(U64)
    owner: Address = wire(BYTES32)
    amount: int = wire(U64)
    bond: int = wire(U64)
    started_block: int = wire(U64)
    exitable_at: int = wire(U64)
    status: int = wire(U8)  # an ExitStatus
    paid: int = wire(U64)  # the amount paid on finalizing (less than `amount` only if short)

    @property
    def priority(self) -> tuple[int, int]:
        return (self.exitable_at, self.utxo_pos)


@dataclass(frozen=True, slots=True)
class PlasmaChainInfo(Record):
    """A child chain's record as the layer-1 API returns it (without blocks and exits)."""

    plasma_id: PlasmaId = wire(BYTES32)
    operator: Address = wire(BYTES32)
    exit_bond: int = wire(U64)
    challenge_period: int = wire(U64)
    created_block: int = wire(U64)
    current_block: int = wire(U64)  # the last operator block number (0 before the first)
    next_deposit_block: int = wire(U64)
    deposits_held: int = wire(U64)
    bonds_held: int = wire(U64)
    queued_exits: int = wire(U64)
    next_exitable_at: int | None = wire(Optional(U64))  # the head of the exit queue


@dataclass(slots=True)
class PlasmaChain:
    plasma_id: PlasmaId
    operator: Address
    exit_bond: int
    challenge_period: int
    created_block: int
    current_block: int = 0
    deposits_since_block: int = 0
    deposits_held: int = 0
    bonds_held: int = 0
    blocks: dict[int, BlockCommit] = field(default_factory=dict)
    exits: dict[int, ExitRecord] = field(default_factory=dict)
    queue: list[tuple[int, int]] = field(default_factory=list)  # sorted (exitable_at, utxo_pos)

    @property
    def next_block(self) -> int:
        return self.current_block + CHILD_BLOCK_INTERVAL

    @property
    def next_deposit_block(self) -> int:
        return self.current_block + self.deposits_since_block + 1

    def held(self) -> int:
        return self.deposits_held + self.bonds_held

    def enqueue(self, record: ExitRecord) -> None:
        bisect.insort(self.queue, record.priority)

    def dequeue(self, record: ExitRecord) -> None:
        index = bisect.bisect_left(self.queue, record.priority)
        if index < len(self.queue) and self.queue[index] == record.priority:
            del self.queue[index]

    def info(self) -> PlasmaChainInfo:
        return PlasmaChainInfo(
            self.plasma_id,
            self.operator,
            self.exit_bond,
            self.challenge_period,
            self.created_block,
            self.current_block,
            self.next_deposit_block,
            self.deposits_held,
            self.bonds_held,
            len(self.queue),
            self.queue[0][0] if self.queue else None,
        )
