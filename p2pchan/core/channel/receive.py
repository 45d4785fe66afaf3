"""Their direction of a channel: checking each balance update before we counter-sign it.

The new state is recomputed from our last accepted state and what the message says changed;
the proof must match it exactly (nonce rising, transferred amount never falling, locked amount
and locksroot those of the recomputed locks), be signed by the partner for this chain and
channel, and leave the partner solvent. Anything else is refused — finally (the peer is scored)
or, for "not yet in my view" (heights), retryably — and the state stays untouched.
Accepting yields `processed` with our counter-signature, to be sent once the state is stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from p2pchan.core.channel.direction import DirectionState
from p2pchan.core.channel.events import (
    ChannelOutput,
    Fault,
    IncomingLocks,
    IncomingRemoved,
    IncomingUnlocked,
    Send,
)
from p2pchan.core.channel.state import Channel, ChannelStatus
from p2pchan.core.outputs import ContractSendUpdate
from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.errors import RemoteProtocolError
from p2pchan.types import Secret, SecretHash
from p2pchan.wire.balance_proof import BalanceProof, SignedBalanceProof, counter_sign
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

# Misbehaviour points for an update we refuse finally (a malformed one costs more).
REFUSAL_POINTS = 10
MALFORMED_POINTS = 20
RETRYABLE_POINTS = 5  # only beyond the peer's budget of retryable refusals (see `Fault`)


class Refusal(Exception):
    """Why an update is not accepted; `retryable` means "not yet in my view"."""

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        retryable: bool = False,
        matters_after: bool = True,
        scored: bool = True,
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.retryable = retryable
        # False for faults no pipelining explains (a bad signature, another chain).
        self.matters_after = matters_after
        # False for a race an honest partner runs into (the channel closed, a block passed
        # while its update was on the way): refused finally, but not a fault.
        self.scored = scored


def on_update(
    channel: Channel,
    message: BalanceUpdate,
    identity: Identity,
    height: int,
    registered: Mapping[SecretHash, int],
) -> tuple[Channel, list[ChannelOutput]]:
    theirs = channel.theirs
    try:
        proof = message.proof.proof()
    except RemoteProtocolError as error:
        return _refused(channel, 0, Refusal("malformed", f"undecodable balance proof: {error}"))
    accepted_proof = theirs.accepted_proof
    if (
        accepted_proof is not None
        and proof.nonce == theirs.accepted.nonce
        and message.proof.data == accepted_proof.data
        and message.proof.signature == accepted_proof.signature
    ):
        # A retransmission of what we already accepted: acknowledge it again, change nothing.
        assert accepted_proof.counter_signature is not None
        ack = Processed(channel.channel_id, proof.nonce, accepted_proof.counter_signature)
        return channel, [Send(ack)]
    try:
        _check_proof_envelope(channel, message.proof, proof)
        state, effect = _recompute(channel, message, proof.nonce, height, registered)
        _check_proof_matches(channel, proof, state)
    except Refusal as refusal:
        return _refused_update(channel, proof.nonce, refusal)
    signed = counter_sign(identity, message.proof)
    assert signed.counter_signature is not None
    removed = theirs.accepted.secrethashes - state.secrethashes
    theirs = replace(
        theirs,
        accepted=state,
        accepted_proof=signed,
        refused_nonce=None,
        failed_sent=theirs.failed_sent - removed,
        failure_packets={h: p for h, p in theirs.failure_packets.items() if h not in removed}
        if theirs.failure_packets
        else theirs.failure_packets,
        known_secrets={h: s for h, s in theirs.known_secrets.items() if h not in removed},
        registered={h: b for h, b in theirs.registered.items() if h not in removed},
    )
    ack = Processed(channel.channel_id, proof.nonce, signed.counter_signature)
    outputs: list[ChannelOutput] = [Send(ack), effect]
    if channel.status == ChannelStatus.CLOSED:
        # Closed on chain: the new proof counts only once on chain, and it must win there, or
        # nobody would keep the locks of the settled proof.
        outputs.append(ContractSendUpdate(channel.channel_id, (signed,)))
    return replace(channel, theirs=theirs), outputs


def _refused_update(
    channel: Channel, nonce: int, refusal: Refusal
) -> tuple[Channel, list[ChannelOutput]]:
    """Refuse an update. The updates an honest partner had in flight behind it (at most its
    window) were built on it: they get a retryable, unscored `stale_base`, and the partner drops
    or resends them as the first refusal says. Anything further is judged on its own."""
    if not refusal.matters_after or nonce <= channel.theirs.accepted.nonce:
        # Nothing an honest partner had in flight was built on a stale or unverifiable update.
        return _refused(channel, nonce, refusal)
    first = channel.theirs.refused_nonce
    if first is not None and first < nonce < first + channel.config.max_in_flight:
        stale = Refusal("stale_base", f"follows refused update {first}", retryable=True)
        return _refused(channel, nonce, stale)
    return _refused(
        replace(channel, theirs=replace(channel.theirs, refused_nonce=nonce)), nonce, refusal
    )


def _refused(channel: Channel, nonce: int, refusal: Refusal) -> tuple[Channel, list[ChannelOutput]]:
    message = Refused(
        channel.channel_id, nonce, refusal.code, refusal.reason[:512], refusal.retryable
    )
    outputs: list[ChannelOutput] = [Send(message)]
    reason = f"refused update {nonce}: {refusal.code}: {refusal.reason}"
    if refusal.retryable:
        # Honest partners meet these by timing, a few per block; beyond a small budget per
        # minute they are spam (each costs us a signature check and a reply) and scored.
        outputs.append(Fault(RETRYABLE_POINTS, reason, budgeted=True))
    elif refusal.scored:
        points = MALFORMED_POINTS if refusal.code == "malformed" else REFUSAL_POINTS
        outputs.append(Fault(points, reason))
    return channel, outputs


def _check_proof_envelope(
    channel: Channel, signed: SignedBalanceProof, proof: BalanceProof
) -> None:
    if proof.chain_id != channel.chain_id:
        raise Refusal("wrong_chain", "balance proof is for another chain", matters_after=False)
    if proof.channel_id != channel.channel_id:
        raise Refusal("wrong_channel", "balance proof is for another channel", matters_after=False)
    if proof.sender != channel.partner:
        raise Refusal(
            "wrong_sender", "balance proof is not of the partner's direction", matters_after=False
        )
    if not signed.sender_signature_valid(proof):
        raise Refusal(
            "bad_signature", "balance proof is not signed by the partner", matters_after=False
        )
    if proof.nonce <= channel.theirs.accepted.nonce:
        raise Refusal(
            "stale_nonce",
            f"nonce {proof.nonce} does not rise above {channel.theirs.accepted.nonce}",
        )


def _recompute(
    channel: Channel,
    message: BalanceUpdate,
    nonce: int,
    height: int,
    registered: Mapping[SecretHash, int],
) -> tuple[DirectionState, ChannelOutput]:
    """The state this update must prove, and what it means for the payment layer."""
    current = channel.theirs.accepted
    if channel.status == ChannelStatus.SETTLED:
        raise Refusal("channel_settled", "the channel is settled", scored=False)
    if channel.status == ChannelStatus.CLOSED:
        _check_closed_update(channel, height)
    if channel.status == ChannelStatus.CLOSED and not isinstance(message, Unlock):
        raise Refusal(
            "channel_closed", "the channel is closed on chain: it takes only unlocks", scored=False
        )
    if isinstance(message, LockedTransfer):
        if (
            channel.status != ChannelStatus.OPEN
            or channel.coop_expiration is not None
            or not channel.usable
        ):
            raise Refusal(
                "channel_not_open",
                f"the channel takes no new locks ({channel.status})",
                scored=False,
            )
        new = message.locks
        if not new:
            raise Refusal("malformed", "a locked_transfer without locks")
        _check_new_locks(channel, new, height)
        try:
            state = current.adding(nonce, new)
        except ValueError as error:
            raise Refusal("duplicate_lock", str(error)) from None
        if channel.partner_available(state.transferred, state.locked) < 0:
            raise Refusal("overspends", "the locks exceed what the partner has in the channel")
        return state, IncomingLocks(channel.channel_id, new)
    if isinstance(message, Unlock):
        hashes = [SecretHash(sha256(secret)) for secret in message.secrets]
        unknown = [h for h in hashes if not current.has_lock(h)]
        if unknown or not hashes or len(set(hashes)) != len(hashes):
            raise Refusal("unknown_lock", "unlock names a secret of no pending lock")
        paid = tuple(current.lock(h) for h in hashes)
        return current.unlocking(nonce, hashes), IncomingUnlocked(channel.channel_id, paid)
    if isinstance(message, LockExpired):
        hashes = list(message.secrethashes)
        for secrethash in hashes:
            _check_expired(channel, secrethash, height, registered)
        return current.removing(nonce, hashes), IncomingRemoved(channel.channel_id, tuple(hashes))
    if isinstance(message, LockRemoved):
        hashes = list(message.secrethashes)
        consented = channel.theirs.failed_sent
        if any(current.has_lock(h) and h not in consented for h in hashes):
            raise Refusal("removal_without_consent", "removes a lock we did not fail")
        present = tuple(h for h in hashes if current.has_lock(h))
        return current.removing(nonce, hashes), IncomingRemoved(channel.channel_id, present)
    raise Refusal("malformed", f"{type(message).__name__} is not a balance update")


def _check_closed_update(channel: Channel, height: int) -> None:
    """A channel closed on chain takes no new lock (checked below) but still takes unlocks and
    removals, only while the `update` carrying them can still land in the settlement window
    (never near its end): else the settled proof would be one whose locks nobody keeps."""
    window_end = (channel.close_block or 0) + channel.settle_timeout
    if height + channel.config.reveal_timeout > window_end:
        raise Refusal(
            "window_ending", f"the settlement window ends at block {window_end}", scored=False
        )


def _check_new_locks(channel: Channel, new: tuple[HeldLock, ...], height: int) -> None:
    limit = channel.config.max_pending_locks
    if len(channel.theirs.accepted.locks) + len(new) > limit:
        raise Refusal("too_many_locks", f"more than {limit} pending locks")
    window = channel.lock_window
    for held in new:
        lock = held.lock
        if lock.amount == 0:
            raise Refusal("malformed", "a lock of amount 0")
        if lock.expiration_block <= height:
            raise Refusal(
                "lock_expired",
                f"lock expires at {lock.expiration_block}, now {height}",
                scored=False,
            )
        if lock.expiration_block - height > window:
            # The sender's height may be ahead of ours: retry after our next block.
            raise Refusal(
                "lock_too_long",
                f"lock expires at {lock.expiration_block}, beyond {height} + {window}",
                retryable=True,
            )


def _check_expired(
    channel: Channel, secrethash: SecretHash, height: int, registered: Mapping[SecretHash, int]
) -> None:
    """A lock may be removed as expired once height ≥ E + 1 and its secret was not registered
    on chain at or before E."""
    current = channel.theirs.accepted
    if not current.has_lock(secrethash):
        raise Refusal("unknown_lock", "lock_expired names no pending lock")
    expiration = current.lock(secrethash).lock.expiration_block
    if height < expiration + 1:
        raise Refusal(
            "not_expired",
            f"lock expires at {expiration}; my height is {height}",
            retryable=True,
        )
    block = registered.get(secrethash)
    if block is not None and block <= expiration:
        raise Refusal("secret_registered", f"its secret was registered at block {block}")


def _check_proof_matches(channel: Channel, proof: BalanceProof, state: DirectionState) -> None:
    if proof.transferred_amount != state.transferred:
        raise Refusal(
            "wrong_transferred",
            f"transferred amount {proof.transferred_amount}, expected {state.transferred}",
        )
    if proof.locked_amount != state.locked:
        raise Refusal(
            "wrong_locked", f"locked amount {proof.locked_amount}, expected {state.locked}"
        )
    if proof.locksroot != state.locksroot:
        raise Refusal("wrong_locksroot", "the locksroot does not match the pending locks")


# -- our decisions about the partner's locks -------------------------------------------------


def claim_incoming(
    channel: Channel, secrets: Mapping[SecretHash, Secret]
) -> tuple[Channel, list[ChannelOutput]]:
    """Remember the secrets of locks we will claim, and reveal them to the partner."""
    theirs = channel.theirs
    known = {h: s for h, s in secrets.items() if theirs.accepted.has_lock(h)}
    if not known:
        return channel, []
    theirs = replace(theirs, known_secrets={**theirs.known_secrets, **known})
    reveal = RevealSecret(channel.channel_id, tuple(known.values()))
    return replace(channel, theirs=theirs), [Send(reveal)]


def fail_incoming(
    channel: Channel,
    secrethashes: Sequence[SecretHash],
    reason: str,
    failures: Mapping[SecretHash, bytes] | None = None,
) -> tuple[Channel, list[ChannelOutput]]:
    """Tell the partner we will not claim these locks (we consent to their removal), with an
    onion-encrypted failure for the payer where the lock came through an onion."""
    theirs = channel.theirs
    failing = {
        h for h in secrethashes if theirs.accepted.has_lock(h) and h not in theirs.known_secrets
    }
    if not failing:
        return channel, []
    packets = {h: p for h, p in (failures or {}).items() if h in failing}
    theirs = replace(
        theirs,
        failed_sent=theirs.failed_sent | failing,
        failure_packets={**theirs.failure_packets, **packets}
        if packets
        else theirs.failure_packets,
    )
    channel = replace(channel, theirs=theirs)
    return channel, _lock_failed(channel, sorted(failing), reason)


FAILURES_PER_MESSAGE = 100  # encrypted failures of 418 bytes: a message fits one frame


def _lock_failed(
    channel: Channel, hashes: Sequence[SecretHash], reason: str
) -> list[ChannelOutput]:
    """`lock_failed` for these locks: one message, or one per hundred where they carry
    encrypted failures."""
    packets = channel.theirs.failure_packets
    if not any(h in packets for h in hashes):
        return [Send(LockFailed(channel.channel_id, tuple(hashes), reason[:512], ()))]
    messages: list[ChannelOutput] = []
    for start in range(0, len(hashes), FAILURES_PER_MESSAGE):
        chunk = tuple(hashes[start : start + FAILURES_PER_MESSAGE])
        failures = tuple(packets.get(h, b"") for h in chunk)
        messages.append(Send(LockFailed(channel.channel_id, chunk, reason[:512], failures)))
    return messages


def reminders(channel: Channel) -> list[ChannelOutput]:
    """Messages whose effect we still wait for, sent again on reconnect and on each block:
    secrets revealed but not yet unlocked, failures not yet removed."""
    theirs = channel.theirs
    outputs: list[ChannelOutput] = []
    pending = {h: s for h, s in theirs.known_secrets.items() if theirs.accepted.has_lock(h)}
    if pending:
        outputs.append(Send(RevealSecret(channel.channel_id, tuple(pending.values()))))
    failing = sorted(h for h in theirs.failed_sent if theirs.accepted.has_lock(h))
    if failing:
        outputs += _lock_failed(channel, failing, "failed")
    return outputs
