"""Our direction of a channel: queueing work, signing the next update, and the partner's answers.

Payments queue locks, revealed secrets queue unlocks, expired and failed locks queue removals.
`next_update` turns queued work into one signed update when none is in flight (unlocks first,
then removals, then new locks, as many as fit one message). `on_processed` records the
partner's counter-signature; `on_refused` handles a refusal: a retryable one is resent after the
next block, a final one drops the update, whose new locks stay live until a proof without them
is counter-signed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from p2pchan.core.balance_proof import SignedBalanceProof, sign_balance_proof
from p2pchan.core.channel import Channel, ChannelStatus, InFlight, UpdateKind
from p2pchan.core.direction import DirectionState, HeldLock
from p2pchan.core.outputs import OutgoingRemoved, OutgoingSettled, Output, SecretLearned
from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.errors import RemoteProtocolError, UserError
from p2pchan.types import Secret, SecretHash
from p2pchan.wire.channel_messages import (
    BalanceUpdate,
    LockedTransfer,
    LockExpired,
    LockFailed,
    LockRemoved,
    NewLock,
    Processed,
    Refused,
    RevealSecret,
    Unlock,
)

# A locked_transfer must fit one frame: each lock costs its 48-byte lock, its payload and some
# msgpack framing; the proof and headers take the rest.
FRAME_BUDGET = 60_000
LOCK_OVERHEAD = 80


class PaymentRefused(UserError):
    """This channel cannot take this payment now (capacity, lock limit, status)."""


def queue_locks(channel: Channel, locks: Sequence[HeldLock]) -> Channel:
    """Queue new outgoing locks for the next update, or refuse them all."""
    queued, refused, waiting = queue_some(channel, locks)
    if refused:
        raise PaymentRefused(refused[0][1])
    if waiting:
        limit = channel.config.max_pending_locks
        raise PaymentRefused(f"the channel already has {limit} pending locks (at most {limit})")
    return queued


def queue_some(
    channel: Channel, locks: Sequence[HeldLock]
) -> tuple[Channel, list[tuple[HeldLock, str]], list[HeldLock]]:
    """Queue as many of `locks`, in order, as the channel can take. Return the refused ones
    with the reason, and those that must wait for a free lock slot (the channel has
    `max_pending_locks` already). One pass over the pending locks, however many arrive."""
    if not channel.takes_new_transfers:
        reason = f"channel {channel.channel_id.hex()} is {channel.status}, not usable"
        return channel, [(held, reason) for held in locks], []
    ours = channel.ours
    pending = ours.all_locks()
    available = channel.available_to_send()
    count = len(pending) + len(ours.queued_locks)
    known = {held.secrethash for held in pending}
    known.update(held.secrethash for held in ours.queued_locks)
    limit = channel.config.max_pending_locks
    accepted: list[HeldLock] = []
    refused: list[tuple[HeldLock, str]] = []
    waiting: list[HeldLock] = []
    for held in locks:
        amount = held.lock.amount
        if amount <= 0:
            refused.append((held, "lock amounts must be positive"))
        elif amount > available:
            refused.append((held, f"insufficient capacity: {amount} wanted, {available} available"))
        elif count >= limit:
            waiting.append(held)
        elif held.secrethash in known:
            refused.append((held, "a lock with this secrethash is already pending"))
        else:
            accepted.append(held)
            available -= amount
            count += 1
            known.add(held.secrethash)
    if accepted:
        ours = replace(ours, queued_locks=ours.queued_locks + tuple(accepted))
        channel = replace(channel, ours=ours)
    return channel, refused, waiting


def queue_unlocks(channel: Channel, learned: dict[SecretHash, Secret]) -> Channel:
    """Queue unlocks for known secrets of our locks; a lock still in flight is unlocked by the
    update after it is acked. Secrets of no lock of ours are ignored."""
    ours = channel.ours
    ours_locks = {held.secrethash for held in ours.all_locks()}
    fresh = {h: s for h, s in learned.items() if h in ours_locks and h not in ours.queued_unlocks}
    if not fresh:
        return channel
    return replace(channel, ours=replace(ours, queued_unlocks={**ours.queued_unlocks, **fresh}))


def queue_removals(
    channel: Channel, *, expired: Sequence[SecretHash] = (), failed: Sequence[SecretHash] = ()
) -> Channel:
    ours = channel.ours
    expired_set = {h for h in expired if ours.acked.has_lock(h)} - ours.queued_unlocks.keys()
    failed_set = {h for h in failed if ours.acked.has_lock(h)}
    if expired_set <= ours.queued_expired and failed_set <= ours.queued_failed:
        return channel
    ours = replace(
        ours,
        queued_expired=ours.queued_expired | expired_set,
        queued_failed=ours.queued_failed | failed_set,
    )
    return replace(channel, ours=ours)


def next_update(channel: Channel, identity: Identity) -> tuple[Channel, BalanceUpdate | None]:
    """Sign the next update from queued work, if none is in flight: unlocks first (they pay
    the partner), then removals, then new locks."""
    ours = channel.ours
    if ours.in_flight is not None or not ours.has_work():
        return channel, None
    if channel.status == ChannelStatus.SETTLED:
        return channel, None  # nothing off-chain counts any more
    # Closed on chain: only unlocks still matter (the partner puts them on chain); expired and
    # failed locks go back to us through the on-chain unlock anyway.
    closed = channel.status == ChannelStatus.CLOSED
    nonce = ours.signed_nonce + 1
    base = ours.acked
    unlocks = {h: s for h, s in ours.queued_unlocks.items() if base.has_lock(h)}
    expired = sorted(h for h in ours.queued_expired if base.has_lock(h) and h not in unlocks)
    failed = {h for h in ours.queued_failed if base.has_lock(h)}
    removed = sorted(failed | {held.secrethash for held in ours.dropped})
    if unlocks:
        state = base.unlocking(nonce, unlocks)
        flight = InFlight(
            UpdateKind.UNLOCK,
            state,
            _sign(channel, identity, state),
            secrets=tuple(unlocks.values()),
        )
        rest = {h: s for h, s in ours.queued_unlocks.items() if h not in unlocks}
        ours = replace(ours, queued_unlocks=rest)
    elif expired and not closed:
        state = base.removing(nonce, expired)
        flight = InFlight(
            UpdateKind.LOCK_EXPIRED,
            state,
            _sign(channel, identity, state),
            secrethashes=tuple(expired),
        )
        ours = replace(ours, queued_expired=frozenset())
    elif removed and not closed:
        state = base.removing(nonce, removed)
        flight = InFlight(
            UpdateKind.LOCK_REMOVED,
            state,
            _sign(channel, identity, state),
            secrethashes=tuple(removed),
        )
        ours = replace(ours, queued_failed=frozenset())
    elif ours.queued_locks and channel.takes_new_transfers:
        batch, rest_locks = _fitting(ours.queued_locks)
        state = base.adding(nonce, batch)
        flight = InFlight(
            UpdateKind.LOCKED_TRANSFER, state, _sign(channel, identity, state), new_locks=batch
        )
        ours = replace(ours, queued_locks=rest_locks)
    else:
        return channel, None
    ours = replace(ours, in_flight=flight, signed_nonce=nonce)
    channel = replace(channel, ours=ours)
    return channel, update_message(channel, flight)


def _fitting(queued: tuple[HeldLock, ...]) -> tuple[tuple[HeldLock, ...], tuple[HeldLock, ...]]:
    size = 0
    for count, held in enumerate(queued):
        size += len(held.payload) + LOCK_OVERHEAD
        if size > FRAME_BUDGET:
            return queued[:count], queued[count:]
    return queued, ()


def _sign(channel: Channel, identity: Identity, state: DirectionState) -> SignedBalanceProof:
    return sign_balance_proof(
        identity, state.proof(channel.chain_id, channel.channel_id, channel.us)
    )


def update_message(channel: Channel, flight: InFlight) -> BalanceUpdate:
    """The message carrying an in-flight update (built again for each retransmission)."""
    if flight.kind == UpdateKind.LOCKED_TRANSFER:
        locks = tuple(NewLock(held.lock, held.payload) for held in flight.new_locks)
        return LockedTransfer(channel.channel_id, flight.signed, locks)
    if flight.kind == UpdateKind.UNLOCK:
        return Unlock(channel.channel_id, flight.signed, flight.secrets)
    if flight.kind == UpdateKind.LOCK_EXPIRED:
        return LockExpired(channel.channel_id, flight.signed, flight.secrethashes)
    return LockRemoved(channel.channel_id, flight.signed, flight.secrethashes)


def on_processed(channel: Channel, message: Processed) -> tuple[Channel, list[Output]]:
    """The partner counter-signed an update of ours."""
    ours = channel.ours
    flight = ours.in_flight
    if flight is None or message.nonce != flight.state.nonce:
        if message.nonce <= ours.acked.nonce:
            return channel, []  # a duplicate ack of something already acked
        raise RemoteProtocolError(f"processed for nonce {message.nonce}, which is not in flight")
    signed = SignedBalanceProof(
        flight.signed.data, flight.signed.signature, message.counter_signature
    )
    if not signed.counter_signature_valid(channel.partner):
        raise RemoteProtocolError("processed carries an invalid counter-signature")
    outputs: list[Output] = []
    dropped = ours.dropped
    if flight.kind == UpdateKind.UNLOCK:
        outputs.append(OutgoingSettled(channel.channel_id, _hashes_of(flight.secrets)))
    elif flight.kind == UpdateKind.LOCK_EXPIRED:
        outputs.append(OutgoingRemoved(channel.channel_id, flight.secrethashes, "expired"))
    elif flight.kind == UpdateKind.LOCK_REMOVED:
        gone = set(flight.secrethashes)
        dropped = tuple(held for held in dropped if held.secrethash not in gone)
        outputs.append(OutgoingRemoved(channel.channel_id, flight.secrethashes, "failed"))
    # The ack of a lock_removed (mostly the clean-up after a refusal) does not break a row of
    # final refusals: else a partner refusing every transfer would never stop new payments.
    refusals = ours.final_refusals if flight.kind == UpdateKind.LOCK_REMOVED else 0
    # Work queued again while this update was in flight (a reveal or lock_failed reminder, an
    # expiry seen on the next block) is done once no lock of the acked state is left for it.
    acked = flight.state
    ours = replace(
        ours,
        acked=acked,
        acked_proof=signed,
        in_flight=None,
        dropped=dropped,
        final_refusals=refusals,
        queued_unlocks={h: s for h, s in ours.queued_unlocks.items() if acked.has_lock(h)},
        queued_expired=frozenset(h for h in ours.queued_expired if acked.has_lock(h)),
        queued_failed=frozenset(h for h in ours.queued_failed if acked.has_lock(h)),
    )
    return replace(channel, ours=ours), outputs


def on_refused(channel: Channel, message: Refused, height: int) -> tuple[Channel, list[Output]]:
    ours = channel.ours
    flight = ours.in_flight
    if flight is None or message.nonce != flight.state.nonce:
        return channel, []  # about an update already resolved
    if message.retryable:
        flight = replace(flight, retry_after_block=height)
        return replace(channel, ours=replace(ours, in_flight=flight)), []
    # Final: drop the update. Its new locks stay live until a proof without them is acked.
    ours = replace(
        ours,
        in_flight=None,
        dropped=ours.dropped + flight.new_locks,
        final_refusals=ours.final_refusals + 1,
    )
    return replace(channel, ours=ours), []


def retransmission(channel: Channel, height: int) -> BalanceUpdate | None:
    """The in-flight update to send again: always on reconnect; after a retryable refusal, once
    a new block has come."""
    flight = channel.ours.in_flight
    if flight is None:
        return None
    if flight.retry_after_block is not None and height <= flight.retry_after_block:
        return None
    return update_message(channel, flight)


def _hashes_of(secrets: tuple[Secret, ...]) -> tuple[SecretHash, ...]:
    return tuple(SecretHash(sha256(secret)) for secret in secrets)


def on_lock_failed(channel: Channel, message: LockFailed) -> Channel:
    """The partner will not claim these locks of ours: queue their removal."""
    return queue_removals(channel, failed=message.secrethashes)


def on_reveal_secret(channel: Channel, message: RevealSecret) -> tuple[Channel, list[Output]]:
    """The partner revealed secrets of our locks: it took those payments; unlock them."""
    ours = channel.ours
    learned: dict[SecretHash, Secret] = {}
    for secret in message.secrets:
        secrethash = SecretHash(sha256(secret))
        if ours.acked.has_lock(secrethash) or (
            ours.in_flight is not None and ours.in_flight.state.has_lock(secrethash)
        ):
            learned[secrethash] = secret
    if not learned:
        return channel, []
    outputs: list[Output] = [
        SecretLearned(channel.channel_id, secrethash, secret)
        for secrethash, secret in learned.items()
    ]
    return queue_unlocks(channel, learned), outputs
