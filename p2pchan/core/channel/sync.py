"""Re-sync after (re)connecting: exchange the newest proofs, not just nonces.

Each side sends the newest proof of the other's that it holds (with its counter-signature) and
the nonce of the newest proof it signed itself. From the partner's copy of our proof we learn
whether our in-flight update arrived (then the copy is its ack), and if the partner holds a newer
proof of our own signature than we do (we lost state), we adopt it and sign only above it: a
node never signs a nonce twice. Then whatever is still in flight is sent again, in order; no
new update goes out before that (else the partner would see a later nonce before the resent
earlier one it was built on).
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from p2pchan.core.channel.direction import DirectionState
from p2pchan.core.channel.events import ChannelOutput, OutgoingRemoved, Send
from p2pchan.core.channel.receive import reminders
from p2pchan.core.channel.send import on_processed, update_message
from p2pchan.core.channel.state import Channel
from p2pchan.errors import RemoteProtocolError
from p2pchan.wire.balance_proof import SignedBalanceProof
from p2pchan.wire.channel_messages import ChannelSync, Processed
from p2pchan.wire.locks import HeldLock, decode_locks, encode_locks, locksroot

log = structlog.get_logger(__name__)


def sync_message(channel: Channel) -> ChannelSync:
    theirs = channel.theirs
    return ChannelSync(
        channel.channel_id,
        theirs.accepted_proof,
        encode_locks(held.lock for held in theirs.accepted.locks),
        channel.ours.signed_nonce,
    )


def session_started(channel: Channel) -> tuple[Channel, list[ChannelOutput]]:
    """A connection to the partner started: tell it what we hold, and send nothing new until
    its channel_sync arrives."""
    return replace(channel, awaiting_sync=True), [Send(sync_message(channel))]


def on_sync(channel: Channel, message: ChannelSync) -> tuple[Channel, list[ChannelOutput]]:
    outputs: list[ChannelOutput] = []
    channel = replace(channel, awaiting_sync=False)
    if message.yours is not None:
        channel, outputs = _reconcile_ours(channel, message.yours, message.yours_locks)
    outputs += [Send(update_message(channel, flight)) for flight in channel.ours.in_flight]
    return channel, outputs + reminders(channel)


def _reconcile_ours(
    channel: Channel, held: SignedBalanceProof, locks_blob: bytes
) -> tuple[Channel, list[ChannelOutput]]:
    proof = held.proof()
    if proof.chain_id != channel.chain_id or proof.channel_id != channel.channel_id:
        raise RemoteProtocolError("channel_sync carries a proof of another channel")
    if proof.sender != channel.us or not held.sender_signature_valid(proof):
        raise RemoteProtocolError("channel_sync carries a proof that is not ours")
    if not held.counter_signature_valid(channel.partner):
        raise RemoteProtocolError("channel_sync carries a proof without a valid counter-signature")
    ours = channel.ours
    flight = next((f for f in ours.in_flight if f.state.nonce == proof.nonce), None)
    if flight is not None:
        if held.data != flight.signed.data:
            raise RemoteProtocolError("channel_sync: a different proof under our in-flight nonce")
        assert held.counter_signature is not None
        return on_processed(
            channel, Processed(channel.channel_id, proof.nonce, held.counter_signature)
        )
    if proof.nonce <= ours.signed_nonce:
        return channel, []  # we know it, or something newer
    # The partner holds a newer proof of ours than we remember: we lost state. Adopt it.
    try:
        locks = decode_locks(locks_blob)
    except RemoteProtocolError:
        raise RemoteProtocolError("channel_sync carries malformed locks") from None
    if (
        locksroot(locks) != proof.locksroot
        or sum(lock.amount for lock in locks) != proof.locked_amount
    ):
        raise RemoteProtocolError("channel_sync locks do not match the proof's locksroot")
    # Locks we still know keep their payloads (an onion, for a routed payment): a lock is
    # sent again with its payload if it must be (the partner holds it already otherwise).
    payloads = {held.secrethash: held.payload for held in ours.all_locks()}
    payloads.update((held.secrethash, held.payload) for held in ours.queued_locks)
    adopted = DirectionState(
        proof.nonce,
        proof.transferred_amount,
        tuple(HeldLock(lock, payloads.get(lock.secrethash, b"")) for lock in locks),
    )
    log.warning(
        "adopted_own_newer_proof",
        channel=channel.channel_id.hex(),
        nonce=proof.nonce,
        our_last_nonce=ours.signed_nonce,
    )
    # Payments queued for our next update were never signed: they fail, and may be paid again.
    unsigned = tuple(h.secrethash for h in ours.queued_locks if not adopted.has_lock(h.secrethash))
    ours = replace(
        ours,
        acked=adopted,
        acked_proof=held,
        in_flight=(),
        refused=(),
        signed_nonce=proof.nonce,
        queued_locks=(),
    )
    reason = "a newer proof of ours was adopted from the partner"
    outputs: list[ChannelOutput] = (
        [OutgoingRemoved(channel.channel_id, unsigned, reason)] if unsigned else []
    )
    return replace(channel, ours=ours), outputs
