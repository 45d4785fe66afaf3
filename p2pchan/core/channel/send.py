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

from p2pchan.core.channel.direction import DirectionState
from p2pchan.core.channel.events import (
    ChannelOutput,
    FailureReported,
    OutgoingRemoved,
    OutgoingSettled,
    SecretLearned,
)
from p2pchan.core.channel.state import Channel, ChannelStatus, InFlight, UpdateKind
from p2pchan.core.timing import too_late_to_send
from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.errors import RemoteProtocolError, UserError
from p2pchan.types import Secret, SecretHash
from p2pchan.wire.balance_proof import SignedBalanceProof, sign_balance_proof
from p2pchan.wire.channel_messages import (
    BalanceUpdate,
    LockedTransfer,
    LockExpired,
    LockFailed,
    LockRemoved,
    Processed,
    Refused,
    RevealSecret,
    Unlock,
)
from p2pchan.wire.locks import HeldLock

# A locked_transfer must fit one frame: each lock costs its 48-byte lock, its payload and some
# msgpack framing; the proof and headers take the rest.
FRAME_BUDGET = 60_000
LOCK_OVERHEAD = 80


class PaymentRefused(UserError):
    """This channel cannot take this payment now (capacity, lock limit, status)."""


def drop_stale_queued(channel: Channel, height: int) -> tuple[Channel, tuple[SecretHash, ...]]:
    """Queued (never signed) locks that became too late to send while waiting for the window:
    their payments fail now (nothing was promised)."""
    queued = channel.ours.queued_locks
    reveal = channel.config.reveal_timeout
    stale = tuple(
        held.secrethash
        for held in queued
        if too_late_to_send(held.lock.expiration_block, height, reveal)
    )
    if not stale:
        return channel, ()
    kept = tuple(held for held in queued if held.secrethash not in stale)
    return replace(channel, ours=replace(channel.ours, queued_locks=kept)), stale


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
    """Sign the next update from queued work, on top of our newest signed state, if the window
    of updates in flight has room: unlocks first (they pay the partner), then removals, then
    new locks."""
    ours = channel.ours
    if len(ours.in_flight) >= channel.config.max_in_flight or not ours.has_work():
        return channel, None
    if channel.awaiting_sync:
        return channel, None  # first the partner's channel_sync, then our resent updates
    if channel.status == ChannelStatus.SETTLED:
        return channel, None  # nothing off-chain counts any more
    # Closed on chain: only unlocks still matter (the partner puts them on chain); expired and
    # failed locks go back to us through the on-chain unlock anyway.
    closed = channel.status == ChannelStatus.CLOSED
    nonce = ours.signed_nonce + 1
    base = ours.latest
    being_removed = {
        h
        for flight in ours.in_flight
        if flight.kind == UpdateKind.LOCK_REMOVED
        for h in flight.secrethashes
    }
    # Unlock only locks the partner has acknowledged holding: an unlock built on an unacked
    # transfer would fall with it if it were refused, and the next proof would pay less than one
    # we already signed (transferred amounts never fall).
    unlocks = {
        h: s for h, s in ours.queued_unlocks.items() if base.has_lock(h) and ours.acked.has_lock(h)
    }
    expired = sorted(h for h in ours.queued_expired if base.has_lock(h) and h not in unlocks)
    failed = {h for h in ours.queued_failed if base.has_lock(h)}
    removed = sorted((failed | {held.secrethash for held in ours.dropped}) - being_removed)
    if unlocks:
        state = base.unlocking(nonce, unlocks)
        flight = InFlight(
            UpdateKind.UNLOCK,
            state,
            _sign(channel, identity, state),
            secrets=tuple(unlocks.values()),
            secrethashes=tuple(unlocks),
        )
        rest = {h: s for h, s in ours.queued_unlocks.items() if h not in unlocks}
        ours = replace(ours, queued_unlocks=rest)
    elif expired and not closed and not ours.removals_held:
        state = base.removing(nonce, expired)
        flight = InFlight(
            UpdateKind.LOCK_EXPIRED,
            state,
            _sign(channel, identity, state),
            secrethashes=tuple(expired),
        )
        ours = replace(ours, queued_expired=frozenset())
    elif removed and not closed and not ours.removals_held:
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
    ours = replace(ours, in_flight=(*ours.in_flight, flight), signed_nonce=nonce)
    channel = replace(channel, ours=ours)
    return channel, update_message(channel, flight)


def _fitting(queued: tuple[HeldLock, ...]) -> tuple[tuple[HeldLock, ...], tuple[HeldLock, ...]]:
    """The first locks of the queue that fit one frame, and the rest."""
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
        return LockedTransfer(channel.channel_id, flight.signed, flight.new_locks)
    if flight.kind == UpdateKind.UNLOCK:
        return Unlock(channel.channel_id, flight.signed, flight.secrets)
    if flight.kind == UpdateKind.LOCK_EXPIRED:
        return LockExpired(channel.channel_id, flight.signed, flight.secrethashes)
    return LockRemoved(channel.channel_id, flight.signed, flight.secrethashes)


def on_processed(channel: Channel, message: Processed) -> tuple[Channel, list[ChannelOutput]]:
    """The partner counter-signed our update of this nonce, which acks every earlier one too."""
    if channel.status == ChannelStatus.SETTLED:
        return channel, []  # the chain decided; `on_settled` reported every lock of ours
    ours = channel.ours
    index = next(
        (i for i, flight in enumerate(ours.in_flight) if flight.state.nonce == message.nonce),
        None,
    )
    if index is None:
        if message.nonce <= ours.acked.nonce:
            return channel, []  # a duplicate ack of something already acked
        raise RemoteProtocolError(f"processed for nonce {message.nonce}, which is not in flight")
    flight = ours.in_flight[index]
    signed = SignedBalanceProof(
        flight.signed.data, flight.signed.signature, message.counter_signature
    )
    if not signed.counter_signature_valid(channel.partner):
        raise RemoteProtocolError("processed carries an invalid counter-signature")
    outputs: list[ChannelOutput] = []
    dropped = ours.dropped
    acked_flights = ours.in_flight[: index + 1]
    abandoned = ours.abandoned
    for done in acked_flights:
        if done.kind == UpdateKind.UNLOCK:
            outputs.append(OutgoingSettled(channel.channel_id, done.secrethashes))
            continue
        if done.kind == UpdateKind.LOCK_REMOVED:
            gone = set(done.secrethashes)
            dropped = tuple(held for held in dropped if held.secrethash not in gone)
        if done.kind in (UpdateKind.LOCK_EXPIRED, UpdateKind.LOCK_REMOVED):
            # Abandoned locks (reported failed when we closed over them) are not reported again.
            reported = tuple(h for h in done.secrethashes if h not in abandoned)
            abandoned = abandoned - frozenset(done.secrethashes)
            reason = "expired" if done.kind == UpdateKind.LOCK_EXPIRED else "failed"
            if reported:
                outputs.append(OutgoingRemoved(channel.channel_id, reported, reason))
    # The ack of a lock_removed (mostly the clean-up after a refusal) does not break a row of
    # final refusals: else a partner refusing every transfer would never stop new payments.
    only_removals = all(done.kind == UpdateKind.LOCK_REMOVED for done in acked_flights)
    ours = replace(
        ours,
        acked=flight.state,
        acked_proof=signed,
        in_flight=ours.in_flight[index + 1 :],
        dropped=dropped,
        refused=tuple(state for state in ours.refused if state.nonce > flight.state.nonce),
        final_refusals=ours.final_refusals if only_removals else 0,
        abandoned=abandoned,
    )
    # Work queued again while it was in flight (a reveal or lock_failed reminder, an expiry
    # seen on the next block) is done once no lock of our newest state is left for it.
    latest = ours.latest
    ours = replace(
        ours,
        queued_unlocks={h: s for h, s in ours.queued_unlocks.items() if latest.has_lock(h)},
        queued_expired=frozenset(h for h in ours.queued_expired if latest.has_lock(h)),
        queued_failed=frozenset(h for h in ours.queued_failed if latest.has_lock(h)),
    )
    return replace(channel, ours=ours), outputs


def on_refused(
    channel: Channel, message: Refused, height: int
) -> tuple[Channel, list[ChannelOutput]]:
    """A refusal of one of our in-flight updates. Everything after it was built on it, so it
    shares its fate: retryable, all are sent again after the next block; final, all are
    dropped, their new locks staying live until a proof without them is acked. Work of the
    later ones that was not refused for itself (unlocks, removals) is queued again."""
    ours = channel.ours
    index = next(
        (i for i, flight in enumerate(ours.in_flight) if flight.state.nonce == message.nonce),
        None,
    )
    if index is None:
        return channel, []  # about an update already resolved
    kept, affected = ours.in_flight[:index], ours.in_flight[index:]
    if message.retryable:
        retried = tuple(replace(flight, retry_after_block=height) for flight in affected)
        return replace(channel, ours=replace(ours, in_flight=kept + retried)), []
    dropped_locks = tuple(held for flight in affected for held in flight.new_locks)
    unlocks = dict(ours.queued_unlocks)
    expired, failed = set(ours.queued_expired), set(ours.queued_failed)
    for later in affected[1:]:
        if later.kind == UpdateKind.UNLOCK:
            unlocks.update(zip(later.secrethashes, later.secrets, strict=True))
        elif later.kind == UpdateKind.LOCK_EXPIRED:
            expired.update(later.secrethashes)
        elif later.kind == UpdateKind.LOCK_REMOVED:
            failed.update(later.secrethashes)
    refused_removal = affected[0].kind in (UpdateKind.LOCK_EXPIRED, UpdateKind.LOCK_REMOVED)
    ours = replace(
        ours,
        in_flight=kept,
        removals_held=ours.removals_held or refused_removal,
        dropped=ours.dropped + dropped_locks,
        refused=ours.refused + tuple(flight.state for flight in affected),
        queued_unlocks=unlocks,
        queued_expired=frozenset(expired),
        queued_failed=frozenset(failed),
        final_refusals=ours.final_refusals + 1,
    )
    return replace(channel, ours=ours), []


def retransmissions(channel: Channel, height: int) -> tuple[Channel, list[BalanceUpdate]]:
    """In-flight updates a retryable refusal holds back, once a new block has come: they are
    sent again (in order) and wait for an answer."""
    ours = channel.ours
    due = [
        flight.retry_after_block is not None and height > flight.retry_after_block
        for flight in ours.in_flight
    ]
    if not any(due):
        return channel, []
    resent = tuple(replace(flight, retry_after_block=None) for flight in ours.in_flight)
    channel = replace(channel, ours=replace(ours, in_flight=resent))
    return channel, [update_message(channel, flight) for flight in resent]


def resend_in_flight(channel: Channel, height: int) -> list[BalanceUpdate]:
    """Every in-flight update not held back by a retryable refusal, in order: sent again until
    acked (the receiver acks an exact retransmission again and changes nothing)."""
    messages = []
    for flight in channel.ours.in_flight:
        if flight.retry_after_block is not None and height <= flight.retry_after_block:
            break  # held back, and everything after it is built on it
        messages.append(update_message(channel, flight))
    return messages


def on_lock_failed(channel: Channel, message: LockFailed) -> tuple[Channel, list[ChannelOutput]]:
    """The partner will not claim these locks of ours: queue their removal, and pass on the
    onion-encrypted failures of routed payments to their payer."""
    failures = message.failures
    if failures and len(failures) != len(message.secrethashes):
        raise RemoteProtocolError("lock_failed carries failures that do not match its locks")
    ours = {held.secrethash for held in channel.ours.all_locks()}
    reported: list[ChannelOutput] = [
        FailureReported(channel.channel_id, secrethash, packet)
        for secrethash, packet in zip(message.secrethashes, failures, strict=False)
        if packet and secrethash in ours
    ]
    return queue_removals(channel, failed=message.secrethashes), reported


def on_reveal_secret(
    channel: Channel, message: RevealSecret
) -> tuple[Channel, list[ChannelOutput]]:
    """The partner revealed secrets of our locks: it took those payments. Reported, not acted
    on: the payment machine that owns each lock decides when to unlock it (a mediator close to
    the expiry registers the secret on layer 1 first)."""
    ours = channel.ours
    learned: dict[SecretHash, Secret] = {}
    # An abandoned lock expired unclaimed and its payment was reported failed: too late to pay.
    ours_locks = {held.secrethash for held in ours.all_locks()} - ours.abandoned
    for secret in message.secrets:
        secrethash = SecretHash(sha256(secret))
        if secrethash in ours_locks:
            learned[secrethash] = secret
    if not learned:
        return channel, []
    outputs: list[ChannelOutput] = [
        SecretLearned(channel.channel_id, secrethash, secret)
        for secrethash, secret in learned.items()
    ]
    return channel, outputs
