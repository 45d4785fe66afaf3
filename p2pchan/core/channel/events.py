"""What the channel core asks the shell to do, after it has persisted the new state.

Persist first, then carry these out in order: send messages, submit layer-1 transactions, and
tell the payment layer what happened to locks.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.types import Address, ChannelId, Secret, SecretHash
from p2pchan.wire.balance_proof import SignedBalanceProof
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
class OutgoingRemoved:
    """A proof without these locks of ours was counter-signed: nothing of them can be claimed
    any more, so their payments may be reported failed."""

    channel_id: ChannelId
    secrethashes: tuple[SecretHash, ...]
    reason: str


# -- layer 1 ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterSecretOnChain:
    channel_id: ChannelId
    secret: Secret


@dataclass(frozen=True, slots=True)
class CloseOnChain:
    channel_id: ChannelId
    proofs: tuple[SignedBalanceProof, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class UpdateOnChain:
    channel_id: ChannelId
    proofs: tuple[SignedBalanceProof, ...]


@dataclass(frozen=True, slots=True)
class SettleOnChain:
    channel_id: ChannelId


@dataclass(frozen=True, slots=True)
class UnlockOnChain:
    channel_id: ChannelId
    sender: Address
    locks: bytes  # the 48-byte lock encodings hashing to the settled locksroot


@dataclass(frozen=True, slots=True)
class CooperativeSettleOnChain:
    channel_id: ChannelId
    terms: bytes
    signature_a: bytes
    signature_b: bytes


Output = (
    Send
    | Fault
    | IncomingLocks
    | IncomingUnlocked
    | IncomingRemoved
    | SecretLearned
    | OutgoingSettled
    | OutgoingRemoved
    | RegisterSecretOnChain
    | CloseOnChain
    | UpdateOnChain
    | SettleOnChain
    | UnlockOnChain
    | CooperativeSettleOnChain
)
