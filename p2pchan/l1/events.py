"""Contract events, delivered to subscribers with each sealed block.

They tell a chain watcher everything it must react to; details beyond them (stored proofs,
withheld amounts) are read from the channel's record.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from p2pchan.l1.plasma_state import MAX_FINALIZE_PER_CALL
from p2pchan.types import Address, ChannelId, PlasmaId, Secret, SecretHash
from p2pchan.wire.codec import MessageRegistry
from p2pchan.wire.fields import BYTES32, U64
from p2pchan.wire.records import NestedList, Record, wire


@enum.unique
class EventType(enum.IntEnum):
    CHANNEL_OPENED = 2
    CHANNEL_DEPOSITED = 4
    CHANNEL_CLOSED = 6
    CHANNEL_UPDATED = 8
    CHANNEL_SETTLED = 10
    CHANNEL_COOPERATIVELY_SETTLED = 12
    CHANNEL_UNLOCKED = 14
    SECRET_REGISTERED = 16
    PLASMA_CREATED = 18
    PLASMA_BLOCK_SUBMITTED = 20
    PLASMA_DEPOSITED = 22
    PLASMA_EXIT_STARTED = 24
    PLASMA_EXIT_CHALLENGED = 26
    PLASMA_EXITS_FINALIZED = 28


EVENTS = MessageRegistry("l1 event", EventType, max_message_size=4096)


class Event(Record):
    __slots__ = ()


@EVENTS.message(EventType.CHANNEL_OPENED)
@dataclass(frozen=True, slots=True)
class ChannelOpened(Event):
    channel_id: ChannelId = wire(BYTES32)
    participant_a: Address = wire(BYTES32)
    participant_b: Address = wire(BYTES32)
    settle_timeout: int = wire(U64)


@EVENTS.message(EventType.CHANNEL_DEPOSITED)
@dataclass(frozen=True, slots=True)
class ChannelDeposited(Event):
    channel_id: ChannelId = wire(BYTES32)
    participant: Address = wire(BYTES32)
    total_deposit: int = wire(U64)


@EVENTS.message(EventType.CHANNEL_CLOSED)
@dataclass(frozen=True, slots=True)
class ChannelClosed(Event):
    channel_id: ChannelId = wire(BYTES32)
    closer: Address = wire(BYTES32)
    close_block: int = wire(U64)
    nonce_a: int = wire(U64)  # nonce of the stored proof sent by participant A (0 if none)
    nonce_b: int = wire(U64)


@EVENTS.message(EventType.CHANNEL_UPDATED)
@dataclass(frozen=True, slots=True)
class ChannelUpdated(Event):
    channel_id: ChannelId = wire(BYTES32)
    submitter: Address = wire(BYTES32)
    nonce_a: int = wire(U64)
    nonce_b: int = wire(U64)


@EVENTS.message(EventType.CHANNEL_SETTLED)
@dataclass(frozen=True, slots=True)
class ChannelSettled(Event):
    channel_id: ChannelId = wire(BYTES32)
    payout_a: int = wire(U64)
    payout_b: int = wire(U64)
    withheld_a: int = wire(U64)  # A's locked amount kept for `unlock`
    withheld_b: int = wire(U64)


@EVENTS.message(EventType.CHANNEL_COOPERATIVELY_SETTLED)
@dataclass(frozen=True, slots=True)
class ChannelCooperativelySettled(Event):
    channel_id: ChannelId = wire(BYTES32)
    balance_a: int = wire(U64)
    balance_b: int = wire(U64)


@EVENTS.message(EventType.CHANNEL_UNLOCKED)
@dataclass(frozen=True, slots=True)
class ChannelUnlocked(Event):
    channel_id: ChannelId = wire(BYTES32)
    sender: Address = wire(BYTES32)
    to_receiver: int = wire(U64)
    to_sender: int = wire(U64)


@EVENTS.message(EventType.SECRET_REGISTERED)
@dataclass(frozen=True, slots=True)
class SecretRegistered(Event):
    secrethash: SecretHash = wire(BYTES32)
    secret: Secret = wire(BYTES32)
    block: int = wire(U64)


# -- Plasma root contract --------------------------------------------------------------------


@EVENTS.message(EventType.PLASMA_CREATED)
@dataclass(frozen=True, slots=True)
class PlasmaCreated(Event):
    plasma_id: PlasmaId = wire(BYTES32)
    operator: Address = wire(BYTES32)
    exit_bond: int = wire(U64)
    challenge_period: int = wire(U64)


@EVENTS.message(EventType.PLASMA_BLOCK_SUBMITTED)
@dataclass(frozen=True, slots=True)
class PlasmaBlockSubmitted(Event):
    plasma_id: PlasmaId = wire(BYTES32)
    blknum: int = wire(U64)
    root: bytes = wire(BYTES32)
    height: int = wire(U64)  # the layer-1 block that committed it


@EVENTS.message(EventType.PLASMA_DEPOSITED)
@dataclass(frozen=True, slots=True)
class PlasmaDeposited(Event):
    plasma_id: PlasmaId = wire(BYTES32)
    blknum: int = wire(U64)
    owner: Address = wire(BYTES32)
    amount: int = wire(U64)
    height: int = wire(U64)


@EVENTS.message(EventType.PLASMA_EXIT_STARTED)
@dataclass(frozen=True, slots=True)
class PlasmaExitStarted(Event):
    plasma_id: PlasmaId = wire(BYTES32)
    utxo_pos: int = wire(U64)
    owner: Address = wire(BYTES32)
    amount: int = wire(U64)
    exitable_at: int = wire(U64)


@EVENTS.message(EventType.PLASMA_EXIT_CHALLENGED)
@dataclass(frozen=True, slots=True)
class PlasmaExitChallenged(Event):
    plasma_id: PlasmaId = wire(BYTES32)
    utxo_pos: int = wire(U64)
    challenger: Address = wire(BYTES32)
    spending_pos: int = wire(U64)


@dataclass(frozen=True, slots=True)
class PaidExit(Record):
    utxo_pos: int = wire(U64)
    owner: Address = wire(BYTES32)
    paid: int = wire(U64)  # the exit's amount, or less if the chain held less
    bond: int = wire(U64)


@EVENTS.message(EventType.PLASMA_EXITS_FINALIZED)
@dataclass(frozen=True, slots=True)
class PlasmaExitsFinalized(Event):
    plasma_id: PlasmaId = wire(BYTES32)
    exits: tuple[PaidExit, ...] = wire(NestedList(PaidExit, MAX_FINALIZE_PER_CALL))
