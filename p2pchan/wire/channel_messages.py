"""Channel messages between direct peers: balance updates, their acks and refusals, lock
failures, secret reveals, re-sync after reconnecting, and cooperative settlement.

Proof-carrying messages (`locked_transfer`, `unlock`, `lock_expired`, `lock_removed`) carry the
sender's signed balance proof and exactly what changed since its previous proof; the receiver
recomputes the new state from that and checks the proof matches it. Their message id is the
channel id and the proof's nonce, which `processed` (with the receiver's counter-signature) and
`error` (a refusal, final or retryable) name.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.errors import RemoteProtocolError
from p2pchan.types import HASH_SIZE, U64_MAX, ChannelId, Secret, SecretHash
from p2pchan.wire.balance_proof import SignedBalanceProof
from p2pchan.wire.fields import BOOL, BYTES32, SIGNATURE, U64, Bytes, ListOf, Optional, Text
from p2pchan.wire.locks import HeldLock, Lock
from p2pchan.wire.peer_messages import PEER_MESSAGES, PeerMessage, PeerType
from p2pchan.wire.records import Nested, wire

MAX_LOCKS_PER_MESSAGE = 1000
MAX_PAYLOAD = 2048  # an onion (`crypto/sphinx.py` ONION_SIZE, 1533 bytes) or a direct payload
MAX_FAILURE = 1024  # an onion failure (`crypto/sphinx_failure.py` FAILURE_SIZE: 418)


class NewLocks:
    """The locks a `locked_transfer` adds, each `[amount, expiration_block, secrethash,
    payload]`, decoded straight into `HeldLock`s (the hot path of every payment: a flat array,
    checked field by field without the generic record machinery)."""

    __slots__ = ()
    plain = False

    def check(self, value: object, path: str) -> tuple[HeldLock, ...]:
        if type(value) is not list or len(value) > MAX_LOCKS_PER_MESSAGE:
            raise RemoteProtocolError(f"field {path}: a list of at most {MAX_LOCKS_PER_MESSAGE}")
        locks = []
        for item in value:
            if type(item) is not list or len(item) != 4:
                raise RemoteProtocolError(
                    f"field {path}: each lock is [amount, expiry, hash, payload]"
                )
            amount, expiration, secrethash, payload = item
            if (
                type(amount) is not int
                or type(expiration) is not int
                or not 0 <= amount <= U64_MAX
                or not 0 <= expiration <= U64_MAX
                or type(secrethash) is not bytes
                or len(secrethash) != HASH_SIZE
                or type(payload) is not bytes
                or len(payload) > MAX_PAYLOAD
            ):
                raise RemoteProtocolError(f"field {path}: a malformed lock")
            locks.append(HeldLock(Lock(amount, expiration, SecretHash(secrethash)), payload))
        return tuple(locks)

    def to_wire(self, value: tuple[HeldLock, ...]) -> list[list[object]]:
        return [
            [held.lock.amount, held.lock.expiration_block, held.secrethash, held.payload]
            for held in value
        ]


class ChannelMessage(PeerMessage):
    __slots__ = ()
    channel_id: ChannelId


class BalanceUpdate(ChannelMessage):
    """A message carrying a new balance proof of its sender's direction."""

    __slots__ = ()
    proof: SignedBalanceProof


@PEER_MESSAGES.message(PeerType.LOCKED_TRANSFER)
@dataclass(frozen=True, slots=True)
class LockedTransfer(BalanceUpdate):
    channel_id: ChannelId = wire(BYTES32)
    proof: SignedBalanceProof = wire(Nested(SignedBalanceProof))
    locks: tuple[HeldLock, ...] = wire(NewLocks())


@PEER_MESSAGES.message(PeerType.UNLOCK)
@dataclass(frozen=True, slots=True)
class Unlock(BalanceUpdate):
    """Pays out the locks whose secrets it carries."""

    channel_id: ChannelId = wire(BYTES32)
    proof: SignedBalanceProof = wire(Nested(SignedBalanceProof))
    secrets: tuple[Secret, ...] = wire(ListOf(BYTES32, MAX_LOCKS_PER_MESSAGE))


@PEER_MESSAGES.message(PeerType.LOCK_EXPIRED)
@dataclass(frozen=True, slots=True)
class LockExpired(BalanceUpdate):
    """Removes locks that expired unclaimed."""

    channel_id: ChannelId = wire(BYTES32)
    proof: SignedBalanceProof = wire(Nested(SignedBalanceProof))
    secrethashes: tuple[SecretHash, ...] = wire(ListOf(BYTES32, MAX_LOCKS_PER_MESSAGE))


@PEER_MESSAGES.message(PeerType.LOCK_REMOVED)
@dataclass(frozen=True, slots=True)
class LockRemoved(BalanceUpdate):
    """Removes locks the receiver failed (`lock_failed`) or never accepted (a refused update)."""

    channel_id: ChannelId = wire(BYTES32)
    proof: SignedBalanceProof = wire(Nested(SignedBalanceProof))
    secrethashes: tuple[SecretHash, ...] = wire(ListOf(BYTES32, MAX_LOCKS_PER_MESSAGE))


@PEER_MESSAGES.message(PeerType.PROCESSED)
@dataclass(frozen=True, slots=True)
class Processed(ChannelMessage):
    """Accepts the update with this nonce (and every lower one) with a counter-signature."""

    channel_id: ChannelId = wire(BYTES32)
    nonce: int = wire(U64)
    counter_signature: bytes = wire(SIGNATURE)


@PEER_MESSAGES.message(PeerType.ERROR)
@dataclass(frozen=True, slots=True)
class Refused(ChannelMessage):
    """Refuses the update with this nonce. Retryable: "not yet in my view", try after a block."""

    channel_id: ChannelId = wire(BYTES32)
    nonce: int = wire(U64)
    code: str = wire(Text(64))
    reason: str = wire(Text(512))
    retryable: bool = wire(BOOL)


@PEER_MESSAGES.message(PeerType.LOCK_FAILED)
@dataclass(frozen=True, slots=True)
class LockFailed(ChannelMessage):
    """The receiver will not claim these pending locks; the sender should remove them. For
    a payment routed over several hops, `failures` holds one onion-encrypted failure per lock
    (in the order of `secrethashes`; empty for a direct payment), for the payer alone to read."""

    channel_id: ChannelId = wire(BYTES32)
    secrethashes: tuple[SecretHash, ...] = wire(ListOf(BYTES32, MAX_LOCKS_PER_MESSAGE))
    reason: str = wire(Text(512))
    failures: tuple[bytes, ...] = wire(ListOf(Bytes(max_size=MAX_FAILURE), MAX_LOCKS_PER_MESSAGE))


@PEER_MESSAGES.message(PeerType.REVEAL_SECRET)
@dataclass(frozen=True, slots=True)
class RevealSecret(ChannelMessage):
    """Secrets of locks the sender of this message received: unlock them."""

    channel_id: ChannelId = wire(BYTES32)
    secrets: tuple[Secret, ...] = wire(ListOf(BYTES32, MAX_LOCKS_PER_MESSAGE))


@PEER_MESSAGES.message(PeerType.CHANNEL_SYNC)
@dataclass(frozen=True, slots=True)
class ChannelSync(ChannelMessage):
    """Sent on every (re)connection: the newest proof of the peer's that I hold (with my
    counter-signature), and the nonce of the newest proof I signed. Lets each side retransmit
    what the other lacks, or adopt a newer proof of its own signature it somehow lost."""

    channel_id: ChannelId = wire(BYTES32)
    yours: SignedBalanceProof | None = wire(Optional(Nested(SignedBalanceProof)))
    yours_locks: bytes = wire(Bytes(max_size=MAX_LOCKS_PER_MESSAGE * 48))
    my_nonce: int = wire(U64)


@PEER_MESSAGES.message(PeerType.SETTLE_REQUEST)
@dataclass(frozen=True, slots=True)
class SettleRequest(ChannelMessage):
    """A cooperative settle: the terms (`core.coop_settle` bytes) and the requester's signature."""

    channel_id: ChannelId = wire(BYTES32)
    terms: bytes = wire(Bytes(max_size=256))
    signature: bytes = wire(SIGNATURE)


@PEER_MESSAGES.message(PeerType.SETTLE_RESPONSE)
@dataclass(frozen=True, slots=True)
class SettleResponse(ChannelMessage):
    """The other signature of the terms, or why not."""

    channel_id: ChannelId = wire(BYTES32)
    signature: bytes | None = wire(Optional(SIGNATURE))
    refusal: str = wire(Text(512))
