"""What a channel transition reports to the node's transition (`core.node`): messages for
the partner, the partner's faults, what happened to locks (for the payment machines), and the
layer-1 duties it asks for (`core.outputs.ContractSend*`, which the node passes on as they are).
None of these but the duties leaves the core.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.core.outputs import ContractSend
from p2pchan.types import ChannelId, Secret, SecretHash
from p2pchan.wire.channel_messages import ChannelMessage
from p2pchan.wire.locks import HeldLock


@dataclass(frozen=True, slots=True)
class Send:
    message: ChannelMessage


@dataclass(frozen=True, slots=True)
class Fault:
    """The partner broke the protocol: score it (a final refusal we sent, or a bad ack).
    A `budgeted` fault is one an honest partner commits now and then by timing (a retryable
    refusal): it is scored only beyond a small budget per peer per minute."""

    points: float
    reason: str
    budgeted: bool = False


@dataclass(frozen=True, slots=True)
class SettleAnswered:
    """The partner answered our cooperative-settle request: None if it signed, else why not."""

    refusal: str | None


# -- what happened to locks ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IncomingLocks:
    """The partner locked funds to us; the payment layer decides to claim or fail each one."""

    channel_id: ChannelId
    locks: tuple[HeldLock, ...]


@dataclass(frozen=True, slots=True)
class IncomingUnlocked:
    """The partner paid out these locks of theirs to us: the payments arrived for good."""

    channel_id: ChannelId
    locks: tuple[HeldLock, ...]


@dataclass(frozen=True, slots=True)
class IncomingRemoved:
    """These locks of the partner's are gone unpaid (expired, or failed by us)."""

    channel_id: ChannelId
    secrethashes: tuple[SecretHash, ...]


@dataclass(frozen=True, slots=True)
class SecretLearned:
    """The secret of a lock we sent: the payee took the payment (proof of payment)."""

    channel_id: ChannelId
    secrethash: SecretHash
    secret: Secret


@dataclass(frozen=True, slots=True)
class OutgoingSettled:
    """Our unlock of these locks was counter-signed: the payments are paid for good."""

    channel_id: ChannelId
    secrethashes: tuple[SecretHash, ...]


@dataclass(frozen=True, slots=True)
class FailureReported:
    """The partner failed a lock of ours that went through an onion, with this encrypted
    failure for the payer (the lock is still live until its removal is counter-signed)."""

    channel_id: ChannelId
    secrethash: SecretHash
    packet: bytes


@dataclass(frozen=True, slots=True)
class LocksRefused:
    """Locks the payment layer asked this channel to send (`machine.QueueLocks`) that it
    cannot take: (secrethash, why) each. Nothing of them was signed."""

    channel_id: ChannelId
    refused: tuple[tuple[SecretHash, str], ...]


@dataclass(frozen=True, slots=True)
class OutgoingRemoved:
    """A proof without these locks of ours was counter-signed: nothing of them can be claimed
    any more, so their payments may be reported failed."""

    channel_id: ChannelId
    secrethashes: tuple[SecretHash, ...]
    reason: str


ChannelOutput = (
    Send
    | Fault
    | SettleAnswered
    | IncomingLocks
    | IncomingUnlocked
    | IncomingRemoved
    | SecretLearned
    | OutgoingSettled
    | OutgoingRemoved
    | FailureReported
    | LocksRefused
    | ContractSend
)
