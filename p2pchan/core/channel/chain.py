"""A channel meets layer 1: new blocks, contract events, and the on-chain duties they bring.

Every block: locks of ours unresolved at E + 2 are queued for `lock_expired`; one still pending
at E + 2 + reveal_timeout (the partner ignores or refuses its removal, or is gone) can no longer
be claimed by anyone, so its payment is reported failed and, if the channel is open, we close it
to unlock the lock back to us on chain. An incoming lock whose secret we know and that is not
unlocked by E - reveal_timeout gets its secret registered on chain, and if it is still not
unlocked reveal_timeout blocks later, we close. A close by the partner is answered at once with
an `update` carrying our newest proofs of both directions (never near the window's end); after
the window we settle; once a settled direction's locks have all expired we unlock them on chain
(claims of secrets registered in time go to their receiver). A cooperative settle both sides
signed is submitted again every block until the chain shows it or its terms expire; then a
close our user asked for falls back to a forced close. Every duty is asked for again on every
block until the chain shows it done, so a transaction lost in a layer-1 crash is sent again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from p2pchan.core.channel.direction import DirectionState
from p2pchan.core.channel.events import (
    ChannelOutput,
    IncomingRemoved,
    IncomingUnlocked,
    OutgoingRemoved,
    OutgoingSettled,
    SecretLearned,
    Send,
)
from p2pchan.core.channel.send import (
    drop_stale_queued,
    queue_removals,
    queue_unlocks,
    retransmissions,
)
from p2pchan.core.channel.state import Channel, ChannelStatus, SettledLocks, UpdateKind
from p2pchan.core.outputs import (
    ContractSendClose,
    ContractSendCooperativeSettle,
    ContractSendRegisterSecret,
    ContractSendSettle,
    ContractSendUnlock,
    ContractSendUpdate,
)
from p2pchan.types import Address, Secret, SecretHash
from p2pchan.wire.balance_proof import SignedBalanceProof
from p2pchan.wire.locks import HeldLock, encode_locks

EXPIRED_AFTER = 2  # lock_expired is sent once height >= E + 2
RESUBMIT_AFTER = 3  # blocks before a secret registration that has not landed is sent again
# Blocks after terms we signed for the partner expired unused during which we sign no new
# ones: a partner asking again and again would otherwise freeze the channel.
COOP_COOLDOWN_BLOCKS = 100


def on_block(
    channel: Channel, height: int, registered: Mapping[SecretHash, int]
) -> tuple[Channel, list[ChannelOutput]]:
    if channel.ours.removals_held:  # a new block: refused removals may be tried again
        channel = replace(channel, ours=replace(channel.ours, removals_held=False))
    channel, outputs = _cooperative_duties(channel, height)
    channel, stale = drop_stale_queued(channel, height)
    if stale:
        outputs.append(OutgoingRemoved(channel.channel_id, stale, "expired before it was sent"))
    if channel.status in (ChannelStatus.OPEN, ChannelStatus.CLOSING, ChannelStatus.CLOSED):
        channel = _expire_our_locks(channel, height, registered)
        channel, duties = _claim_duties(channel, height, registered)
        outputs += duties
        channel, abandoned = _abandon_stuck_locks(channel, height, registered)
        outputs += abandoned
    closing_asked = any(isinstance(output, ContractSendClose) for output in outputs)
    if channel.status == ChannelStatus.CLOSING and channel.close_requested and not closing_asked:
        # Asked for on every block until the chain shows the close: a lost transaction (a
        # layer-1 restart, our own crash) is simply sent again.
        proofs = close_proofs(channel, cheat=channel.close_cheat)
        outputs.append(ContractSendClose(channel.channel_id, proofs, "close requested"))
    closed = channel.status == ChannelStatus.CLOSED and channel.close_block is not None
    if closed and height <= (channel.close_block or 0) + channel.settle_timeout:
        update = _update_needed(channel)
        if update is not None:
            outputs.append(update)
    if closed and height > (channel.close_block or 0) + channel.settle_timeout:
        outputs.append(ContractSendSettle(channel.channel_id))
    channel, resent = retransmissions(channel, height)
    outputs += [Send(message) for message in resent]
    for settled in channel.settled_unlocks:
        if height > settled.unlockable_after:
            blob = encode_locks(held.lock for held in settled.locks)
            outputs.append(ContractSendUnlock(channel.channel_id, settled.sender, blob))
    return channel, outputs


def _cooperative_duties(channel: Channel, height: int) -> tuple[Channel, list[ChannelOutput]]:
    """Submit a cooperative settle both sides signed again on every block while its terms
    last; once they expire unused, fall back to a forced close if our user asked to close, or
    take payments again (and sign no new terms for a while) if the partner asked."""
    expiration = channel.coop_expiration
    if expiration is None:
        return channel, []
    if height <= expiration:
        if (
            channel.status == ChannelStatus.CLOSING
            and channel.coop_we_asked
            and channel.close_block is None
        ):
            output = cooperative_settle_output(channel)
            return channel, [output] if output is not None else []
        return channel, []
    signed_by_both = channel.coop_partner_signature is not None
    channel = replace(
        channel,
        coop_expiration=None,
        coop_terms=None,
        coop_signature=None,
        coop_partner_signature=None,
    )
    we_asked, channel = channel.coop_we_asked, replace(channel, coop_we_asked=False)
    if channel.status != ChannelStatus.CLOSING or channel.close_block is not None:
        return channel, []
    if channel.close_requested:
        return channel, []  # a forced close was asked for meanwhile: it goes on
    if we_asked and signed_by_both:
        note = f"the cooperative close expired unused at block {expiration}: closing by force"
        channel = replace(channel, close_requested=True, note=note)
        return channel, [ContractSendClose(channel.channel_id, close_proofs(channel), note)]
    if we_asked:
        note = channel.note or f"the cooperative close was not signed by block {expiration}"
    else:
        note = f"the partner's cooperative close expired unused at block {expiration}"
        channel = replace(channel, coop_refused_until=height + COOP_COOLDOWN_BLOCKS)
    return replace(channel.moved_to(ChannelStatus.OPEN), note=note), []


def cooperative_settle_output(channel: Channel) -> ContractSendCooperativeSettle | None:
    """The cooperative-settle transaction, once both signatures are known."""
    theirs = channel.coop_partner_signature
    if channel.coop_terms is None or channel.coop_signature is None or theirs is None:
        return None
    ours = channel.coop_signature
    signature_a, signature_b = (ours, theirs) if channel.we_are_a else (theirs, ours)
    return ContractSendCooperativeSettle(
        channel.channel_id, channel.coop_terms, signature_a, signature_b
    )


def _expire_our_locks(
    channel: Channel, height: int, registered: Mapping[SecretHash, int]
) -> Channel:
    ours = channel.ours
    expired = [
        held.secrethash
        for held in ours.acked.locks
        if height >= held.lock.expiration_block + EXPIRED_AFTER
        and held.secrethash not in ours.queued_unlocks
        and registered.get(held.secrethash, height + 1) > held.lock.expiration_block
    ]
    return queue_removals(channel, expired=expired) if expired else channel


def _abandon_stuck_locks(
    channel: Channel, height: int, registered: Mapping[SecretHash, int]
) -> tuple[Channel, list[ChannelOutput]]:
    """Our expired locks still pending at E + 2 + reveal_timeout: the partner ignores or
    refuses their removal, withholds its ack, or is gone. Nobody can claim them any more (their
    secret was not registered by E), so their payments fail now; an open channel is closed so
    that the on-chain unlock gives them back to us. Locks we are paying out (secret known) are
    not stuck: their payments succeeded."""
    ours = channel.ours
    deadline = EXPIRED_AFTER + channel.config.reveal_timeout
    unlocking = set(ours.queued_unlocks)
    unlocking.update(
        h
        for flight in ours.in_flight
        if flight.kind == UpdateKind.UNLOCK
        for h in flight.secrethashes
    )
    stuck = tuple(
        held.secrethash
        for held in ours.all_locks()
        if height >= held.lock.expiration_block + deadline
        and held.secrethash not in unlocking
        and held.secrethash not in ours.abandoned
        and registered.get(held.secrethash, height + 1) > held.lock.expiration_block
    )
    if not stuck:
        return channel, []
    reason = "expired, and the partner did not let us remove the lock: closing the channel"
    outputs: list[ChannelOutput] = [OutgoingRemoved(channel.channel_id, stuck, reason)]
    channel = replace(channel, ours=replace(ours, abandoned=ours.abandoned | frozenset(stuck)))
    if channel.status == ChannelStatus.OPEN:
        note = f"the partner did not remove {len(stuck)} expired lock(s) of ours: closing"
        channel = replace(channel.moved_to(ChannelStatus.CLOSING), close_requested=True, note=note)
        outputs.append(ContractSendClose(channel.channel_id, close_proofs(channel), note))
    return channel, outputs


def _claim_duties(
    channel: Channel, height: int, registered: Mapping[SecretHash, int]
) -> tuple[Channel, list[ChannelOutput]]:
    """Register known secrets of incoming locks nearing expiry; close if that is not enough."""
    theirs = channel.theirs
    reveal = channel.config.reveal_timeout
    outputs: list[ChannelOutput] = []
    ours_registered = dict(theirs.registered)
    must_close = False
    for secrethash, secret in theirs.known_secrets.items():
        if not theirs.accepted.has_lock(secrethash):
            continue
        expiration = theirs.accepted.lock(secrethash).lock.expiration_block
        on_chain = registered.get(secrethash)
        submitted = ours_registered.get(secrethash)
        if on_chain is None and (
            (submitted is None and height >= expiration - reveal)
            or (
                submitted is not None
                and height >= submitted + RESUBMIT_AFTER
                and height <= expiration
            )
        ):
            # Register it (again, if our transaction has not landed in a few blocks).
            outputs.append(ContractSendRegisterSecret(channel.channel_id, secret))
            ours_registered[secrethash] = height
            continue
        since = on_chain if on_chain is not None else submitted
        if since is not None and height >= since + reveal:
            must_close = channel.status == ChannelStatus.OPEN
    if ours_registered != theirs.registered:
        channel = replace(channel, theirs=replace(theirs, registered=ours_registered))
    if must_close:
        channel = replace(channel.moved_to(ChannelStatus.CLOSING), close_requested=True)
        outputs.append(
            ContractSendClose(
                channel.channel_id,
                close_proofs(channel),
                "an incoming lock was not unlocked after its secret was registered",
            )
        )
    return channel, outputs


def close_proofs(channel: Channel, *, cheat: bool = False) -> tuple[SignedBalanceProof, ...]:
    """What a close of ours submits: the partner's newest proof, and ours with its counter-
    signature (so no dispute is needed). `cheat` (dev attack mode) leaves ours out."""
    proofs = []
    if channel.theirs.accepted_proof is not None:
        proofs.append(channel.theirs.accepted_proof)
    if channel.ours.acked_proof is not None and not cheat:
        proofs.append(channel.ours.acked_proof)
    return tuple(proofs)


def on_opened(channel: Channel, opened_block: int) -> Channel:
    channel = replace(channel, opened_block=opened_block)
    return (
        channel.moved_to(ChannelStatus.OPEN) if channel.status == ChannelStatus.OPENING else channel
    )


def on_deposited(channel: Channel, participant: Address, total_deposit: int) -> Channel:
    if participant == channel.us:
        return replace(channel, our_deposit=max(channel.our_deposit, total_deposit))
    return replace(channel, partner_deposit=max(channel.partner_deposit, total_deposit))


def on_closed(
    channel: Channel,
    closer: Address,
    close_block: int,
    chain_nonce_ours: int,
    chain_nonce_theirs: int,
) -> tuple[Channel, list[ChannelOutput]]:
    """The channel was closed on chain. If the partner closed it, answer at once with whatever
    newer proofs we hold (a stale proof in the window's last block could not be answered). If
    we closed it, only a newer proof of the partner's can still help us; our own sent proof is
    the partner's to submit (and a dev `--cheat` close must stay the attack it is)."""
    channel = replace(
        channel,
        close_block=close_block,
        closer=closer,
        coop_expiration=None,
        coop_we_asked=False,
        close_requested=False,
    )
    channel = channel.moved_to(ChannelStatus.CLOSED)
    outputs: list[ChannelOutput] = []
    queued = channel.ours.queued_locks
    if queued:
        # Never signed, and a closed channel takes no new lock: these payments failed here.
        channel = replace(channel, ours=replace(channel.ours, queued_locks=()))
        hashes = tuple(held.secrethash for held in queued)
        outputs.append(OutgoingRemoved(channel.channel_id, hashes, "the channel was closed"))
    channel = replace(
        channel, chain_nonce_ours=chain_nonce_ours, chain_nonce_theirs=chain_nonce_theirs
    )
    update = _update_needed(channel)
    if update is not None:
        outputs.append(update)
    return channel, outputs


def on_updated(
    channel: Channel, chain_nonce_ours: int, chain_nonce_theirs: int
) -> tuple[Channel, list[ChannelOutput]]:
    """Someone updated the closed channel on chain: remember what the contract holds now."""
    return (
        replace(channel, chain_nonce_ours=chain_nonce_ours, chain_nonce_theirs=chain_nonce_theirs),
        [],
    )


def _update_needed(channel: Channel) -> ContractSendUpdate | None:
    """Our newer proofs than the contract holds, to submit in an `update` (asked for again on
    every block of the window until the chain shows them). After a close of our own only the
    partner's newer proof counts: our own sent proof is the partner's to submit, and a dev
    `--cheat` close must stay the attack it is."""
    proofs = []
    theirs_proof = channel.theirs.accepted_proof
    if theirs_proof is not None and channel.theirs.accepted.nonce > channel.chain_nonce_theirs:
        proofs.append(theirs_proof)
    ours_proof = channel.ours.acked_proof
    if (
        ours_proof is not None
        and channel.closer != channel.us
        and channel.ours.acked.nonce > channel.chain_nonce_ours
    ):
        proofs.append(ours_proof)
    return ContractSendUpdate(channel.channel_id, tuple(proofs)) if proofs else None


def on_secret_registered(
    channel: Channel, secrethash: SecretHash, secret: Secret, block: int
) -> tuple[Channel, list[ChannelOutput]]:
    """A secret is on chain: a lock of ours with it is as good as claimed (unlock it off-chain
    now: the payment succeeded); for a lock of theirs, we now know the secret too."""
    outputs: list[ChannelOutput] = []
    ours_lock = next((h for h in channel.ours.all_locks() if h.secrethash == secrethash), None)
    if ours_lock is not None and block <= ours_lock.lock.expiration_block:
        outputs.append(SecretLearned(channel.channel_id, secrethash, secret))
        channel = queue_unlocks(channel, {secrethash: secret})
    theirs = channel.theirs
    if theirs.accepted.has_lock(secrethash) and secrethash not in theirs.known_secrets:
        theirs = replace(theirs, known_secrets={**theirs.known_secrets, secrethash: secret})
        channel = replace(channel, theirs=theirs)
    return channel, outputs


def on_settled(
    channel: Channel,
    chain_nonce_ours: int,
    chain_nonce_theirs: int,
    *,
    payout_ours: int = 0,
    payout_theirs: int = 0,
) -> tuple[Channel, list[ChannelOutput]]:
    """Settled on chain: whichever of our states won holds the locks to unlock on chain; locks
    of ours in no winning state can no longer be claimed. The payouts are what layer 1 paid
    each side now (the withheld locks follow with `unlock`)."""
    channel = replace(
        channel.moved_to(ChannelStatus.SETTLED),
        settled_ours=payout_ours,
        settled_theirs=payout_theirs,
    )
    ours = channel.ours
    candidates = [ours.acked, *(flight.state for flight in ours.in_flight), *ours.refused]
    ours_state = next((s for s in candidates if s.nonce == chain_nonce_ours), DirectionState())
    theirs_state = (
        channel.theirs.accepted
        if channel.theirs.accepted.nonce == chain_nonce_theirs
        else DirectionState()
    )
    unlocks = tuple(
        SettledLocks(sender, state.locks)
        for sender, state in ((channel.us, ours_state), (channel.partner, theirs_state))
        if state.locks
    )
    alive = ours_state.secrethashes
    # In-flight unlocks up to the winning state paid their locks out (the winning transferred
    # amount includes them).
    paid = tuple(
        secrethash
        for flight in ours.in_flight
        if flight.kind == UpdateKind.UNLOCK and flight.state.nonce <= chain_nonce_ours
        for secrethash in flight.secrethashes
    )
    dead = tuple(
        h.secrethash
        for h in ours.all_locks()
        if h.secrethash not in alive and h.secrethash not in paid
    )
    outputs: list[ChannelOutput] = []
    if paid:
        outputs.append(OutgoingSettled(channel.channel_id, paid))
    channel, reported = _not_abandoned(channel, dead)
    if reported:
        outputs.append(OutgoingRemoved(channel.channel_id, reported, "not in the settled state"))
    return replace(channel, settled_unlocks=unlocks), outputs


def on_unlocked(
    channel: Channel,
    sender: Address,
    registered: Mapping[SecretHash, int],
    *,
    to_receiver: int = 0,
    to_sender: int = 0,
) -> tuple[Channel, list[ChannelOutput]]:
    """A settled direction was unlocked on chain: each lock went to its receiver if its secret
    was registered in time, else back to its sender."""
    if sender == channel.us:
        channel = _paid_on_chain(channel, ours=to_sender, theirs=to_receiver)
    else:
        channel = _paid_on_chain(channel, ours=to_receiver, theirs=to_sender)
    settled = next((s for s in channel.settled_unlocks if s.sender == sender), None)
    if settled is None:
        return channel, []
    claimed = tuple(
        held
        for held in settled.locks
        if registered.get(held.secrethash, held.lock.expiration_block + 1)
        <= held.lock.expiration_block
    )
    returned = tuple(held.secrethash for held in settled.locks if held not in claimed)
    outputs: list[ChannelOutput] = []
    if sender == channel.us:
        if claimed:
            outputs.append(OutgoingSettled(channel.channel_id, _hashes(claimed)))
        channel, reported = _not_abandoned(channel, returned)
        if reported:
            outputs.append(OutgoingRemoved(channel.channel_id, reported, "expired on chain"))
    else:
        if claimed:
            outputs.append(IncomingUnlocked(channel.channel_id, claimed))
        if returned:
            outputs.append(IncomingRemoved(channel.channel_id, returned))
    remaining = tuple(s for s in channel.settled_unlocks if s.sender != sender)
    return replace(channel, settled_unlocks=remaining), outputs


def _paid_on_chain(channel: Channel, *, ours: int, theirs: int) -> Channel:
    return replace(
        channel,
        settled_ours=(channel.settled_ours or 0) + ours,
        settled_theirs=(channel.settled_theirs or 0) + theirs,
    )


def _not_abandoned(
    channel: Channel, secrethashes: tuple[SecretHash, ...]
) -> tuple[Channel, tuple[SecretHash, ...]]:
    """The locks among these whose payments are still to be reported failed: those abandoned
    earlier were reported then. They leave the abandoned set (they are gone now)."""
    abandoned = channel.ours.abandoned
    if not abandoned:
        return channel, secrethashes
    reported = tuple(h for h in secrethashes if h not in abandoned)
    left = abandoned - frozenset(secrethashes)
    return replace(channel, ours=replace(channel.ours, abandoned=left)), reported


def _hashes(locks: tuple[HeldLock, ...]) -> tuple[SecretHash, ...]:
    return tuple(held.secrethash for held in locks)
