"""A channel between us and one partner, as the core sees it: the explicit status table, both
directions' states, and the balance arithmetic everything else relies on.

Our direction has the state the partner counter-signed (`acked`), a few updates in flight
(signed and sent, not yet acked, each built on the one before), locks of refused updates that
stay live until a proof without them is counter-signed (`dropped`), and work queued for the next
update. Their direction has the newest proof we accepted and counter-signed. Whatever arrives
while the window of updates in flight is full goes into the next one, sharing its signature and
its disk sync; a window of more than one lets both ends work at once (an unlock need not wait
for the previous transfer's ack).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from p2pchan.core.channel.direction import DirectionState
from p2pchan.core.timing import channel_usable, lock_window
from p2pchan.errors import LocalProtocolError
from p2pchan.types import Address, ChainId, ChannelId, Secret, SecretHash
from p2pchan.wire.balance_proof import SignedBalanceProof
from p2pchan.wire.locks import HeldLock

MAX_FINAL_REFUSALS = 3  # in a row: then the channel takes no new payments


class ChannelStatus(enum.StrEnum):
    OPENING = "opening"  # opened on chain; our deposit not confirmed yet
    OPEN = "open"  # usable
    CLOSING = "closing"  # we are closing it (cooperatively or not): no new transfers
    CLOSED = "closed"  # closed on chain: the settlement window runs
    SETTLED = "settled"  # settled on chain (pending locks may still await `unlock`)


# The only allowed status changes; anything else is a bug (`LocalProtocolError`).
TRANSITIONS: dict[ChannelStatus, frozenset[ChannelStatus]] = {
    ChannelStatus.OPENING: frozenset(
        {ChannelStatus.OPEN, ChannelStatus.CLOSING, ChannelStatus.CLOSED, ChannelStatus.SETTLED}
    ),
    ChannelStatus.OPEN: frozenset(
        {ChannelStatus.CLOSING, ChannelStatus.CLOSED, ChannelStatus.SETTLED}
    ),
    ChannelStatus.CLOSING: frozenset(
        {ChannelStatus.OPEN, ChannelStatus.CLOSED, ChannelStatus.SETTLED}
    ),
    ChannelStatus.CLOSED: frozenset({ChannelStatus.SETTLED}),
    ChannelStatus.SETTLED: frozenset(),
}


class UpdateKind(enum.StrEnum):
    LOCKED_TRANSFER = "locked_transfer"
    UNLOCK = "unlock"
    LOCK_EXPIRED = "lock_expired"
    LOCK_REMOVED = "lock_removed"


@dataclass(frozen=True, slots=True)
class InFlight:
    """Our update that the partner has not acked yet: what it does, and the state it proposes."""

    kind: UpdateKind
    state: DirectionState
    signed: SignedBalanceProof
    new_locks: tuple[HeldLock, ...] = ()  # LOCKED_TRANSFER
    secrets: tuple[Secret, ...] = ()  # UNLOCK
    secrethashes: tuple[SecretHash, ...] = ()  # the locks it unlocks or removes
    retry_after_block: int | None = None  # set by a retryable refusal: resend after this block


@dataclass(frozen=True, slots=True)
class Ours:
    acked: DirectionState = DirectionState()
    acked_proof: SignedBalanceProof | None = None  # counter-signed by the partner
    in_flight: tuple[InFlight, ...] = ()  # oldest first, each built on the one before
    signed_nonce: int = 0  # the highest nonce we ever signed: never signed again
    dropped: tuple[
        HeldLock, ...
    ] = ()  # from refused updates: live until a proof without them is acked
    queued_locks: tuple[HeldLock, ...] = ()
    queued_unlocks: dict[SecretHash, Secret] = field(default_factory=dict)
    queued_expired: frozenset[SecretHash] = frozenset()
    queued_failed: frozenset[SecretHash] = frozenset()  # the partner sent lock_failed
    final_refusals: int = 0  # in a row
    # A removal of ours was refused finally (the partner sees the channel closed, or will not
    # remove the lock): removals wait for the next block instead of bouncing back at once
    # (not persisted).
    removals_held: bool = field(default=False, compare=False)
    # The states of our updates the partner refused finally: it holds them signed (and may have
    # accepted them after all, withholding its ack), so one may still win on chain and must be
    # named then. Kept until a higher nonce of ours is counter-signed.
    refused: tuple[DirectionState, ...] = ()
    # Expired locks the partner would not let us remove in time: reported failed when we
    # closed the channel over them (nobody can claim them any more), unlocked back to us on
    # chain after settle. Their payments are never reported again.
    abandoned: frozenset[SecretHash] = frozenset()

    @property
    def latest(self) -> DirectionState:
        """The newest state we signed: what the partner may hold against us."""
        return self.in_flight[-1].state if self.in_flight else self.acked

    def all_locks(self) -> list[HeldLock]:
        """Every lock of ours that may still be claimed: acked, in flight, or dropped-but-live."""
        seen = {held.secrethash: held for held in self.acked.locks}
        for flight in self.in_flight:
            for held in flight.new_locks:
                seen.setdefault(held.secrethash, held)
        for held in self.dropped:
            seen.setdefault(held.secrethash, held)
        return list(seen.values())

    def has_work(self) -> bool:
        return bool(
            self.queued_locks
            or self.queued_unlocks
            or self.queued_expired
            or self.queued_failed
            or self.dropped
        )


@dataclass(frozen=True, slots=True)
class Theirs:
    accepted: DirectionState = DirectionState()
    accepted_proof: SignedBalanceProof | None = None  # with our counter-signature
    failed_sent: frozenset[SecretHash] = frozenset()  # locks we told them we will not claim
    # For locks that came through an onion: the encrypted failure the payer reads.
    failure_packets: dict[SecretHash, bytes] = field(default_factory=dict)
    known_secrets: dict[SecretHash, Secret] = field(default_factory=dict)  # for their locks
    registered: dict[SecretHash, int] = field(default_factory=dict)  # we registered at block
    # The nonce of the first update we refused in a row, until we accept one again (not
    # persisted): the partner's updates in flight behind it were built on it.
    refused_nonce: int | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class SettledLocks:
    """The pending locks of one direction's settled proof, to unlock on chain once all expired."""

    sender: Address
    locks: tuple[HeldLock, ...]

    @property
    def unlockable_after(self) -> int:
        return max((held.lock.expiration_block for held in self.locks), default=0)


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    reveal_timeout: int = 10
    max_lock_timeout: int = 100
    max_pending_locks: int = 483
    max_in_flight: int = 4  # our updates sent and not yet acked, per channel


@dataclass(frozen=True, slots=True)
class Channel:
    chain_id: ChainId
    channel_id: ChannelId
    us: Address
    partner: Address
    we_are_a: bool  # participant A on chain is the opener
    settle_timeout: int
    config: ChannelConfig
    status: ChannelStatus = ChannelStatus.OPENING
    our_deposit: int = 0
    partner_deposit: int = 0
    opened_block: int = 0
    close_block: int | None = None
    closer: Address | None = None
    coop_expiration: int | None = None  # we signed a cooperative settle valid until this block
    coop_terms: bytes | None = None  # the terms we asked the partner to sign, and our signature
    coop_signature: bytes | None = None
    coop_partner_signature: bytes | None = None  # once the partner signed our request
    coop_we_asked: bool = False  # our user asked to close: an unused settle falls back to force
    coop_refused_until: int = 0  # the partner let terms we signed expire: no new ones till then
    # Why the channel is in its state, when that is not obvious ("" otherwise): shown to users.
    note: str = ""
    settled_unlocks: tuple[SettledLocks, ...] = ()  # on-chain unlocks still to submit
    # While closed: the nonces the contract holds for our direction and the partner's.
    chain_nonce_ours: int = 0
    chain_nonce_theirs: int = 0
    # A close of ours is asked for (by the user or a chain duty) until the chain shows it;
    # `cheat` is the dev attack mode's close without our own sent proofs.
    close_requested: bool = False
    close_cheat: bool = False
    # What layer 1 paid each side once settled (settle payout, then on-chain unlocks added);
    # None until then.
    settled_ours: int | None = None
    settled_theirs: int | None = None
    # Set when a connection to the partner starts, until its channel_sync arrives: no new
    # update goes out before our in-flight ones are resent in order (not persisted).
    awaiting_sync: bool = field(default=False, compare=False)
    ours: Ours = Ours()
    theirs: Theirs = Theirs()

    # -- status ----------------------------------------------------------------------------

    def moved_to(self, status: ChannelStatus) -> Channel:
        if status == self.status:
            return self
        if status not in TRANSITIONS[self.status]:
            raise LocalProtocolError(f"channel cannot go from {self.status} to {status}")
        return replace(self, status=status)

    @property
    def usable(self) -> bool:
        """A node uses no channel whose settle_timeout < 2 x its reveal_timeout."""
        return channel_usable(self.settle_timeout, self.config.reveal_timeout)

    @property
    def lock_window(self) -> int:
        """How far ahead of the current height a new lock on this channel may expire."""
        return lock_window(self.settle_timeout, self.config.max_lock_timeout)

    @property
    def takes_new_transfers(self) -> bool:
        return (
            self.status == ChannelStatus.OPEN
            and self.usable
            and self.coop_expiration is None
            and self.ours.final_refusals < MAX_FINAL_REFUSALS
        )

    # -- balances --------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self.our_deposit + self.partner_deposit

    def local_balance(self) -> int:
        """Ours if everything settled now, by our newest signed state, pending locks excluded."""
        return (
            self.our_deposit
            - self.ours.latest.transferred
            + self.theirs.accepted.transferred
            - self.ours.latest.locked
        )

    def remote_balance(self) -> int:
        return (
            self.partner_deposit
            - self.theirs.accepted.transferred
            + self.ours.latest.transferred
            - self.theirs.accepted.locked
        )

    def available_to_send(self) -> int:
        """What we may still lock: our balance minus every lock of ours that may be claimed or is
        queued. Dropped locks count until their removal is acked."""
        ours = self.ours
        # The locks in-flight unlocks pay out are in `latest.transferred` already.
        paid = {
            secrethash
            for flight in ours.in_flight
            if flight.kind == UpdateKind.UNLOCK
            for secrethash in flight.secrethashes
        }
        committed = sum(
            held.lock.amount for held in ours.all_locks() if held.secrethash not in paid
        )
        queued = sum(held.lock.amount for held in self.ours.queued_locks)
        return (
            self.our_deposit
            - self.ours.latest.transferred
            + self.theirs.accepted.transferred
            - committed
            - queued
        )

    def partner_available(self, their_transferred: int, their_locked: int) -> int:
        """What the partner would have left after a proof with these totals. Our newest signed
        transfer counts for them: they hold our signature on it."""
        return (
            self.partner_deposit + self.ours.latest.transferred - their_transferred - their_locked
        )

    def pending_lock_count(self) -> int:
        return len(self.ours.all_locks()) + len(self.theirs.accepted.locks)
