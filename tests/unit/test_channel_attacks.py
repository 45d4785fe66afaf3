"""The channel core against a hostile or vanished partner: locks it will not let us remove,
cooperative settles lost or abused, refusals used as spam, and what layer 1 paid after settle.

Each test pins down one way a partner could keep our money locked or our channel frozen, and
the core's answer to it (DESIGN.md "Crash safety" and invariant 4).
"""

from __future__ import annotations

from dataclasses import replace

from p2pchan.core.channel import chain as chain_duties
from p2pchan.core.channel import close as coop
from p2pchan.core.channel.events import Fault, OutgoingRemoved, OutgoingSettled, SecretLearned
from p2pchan.core.channel.state import ChannelStatus
from p2pchan.core.outputs import ContractSendClose, ContractSendCooperativeSettle
from p2pchan.storage.channel_codec import decode_channel, encode_channel
from p2pchan.wire.channel_messages import (
    LockedTransfer,
    LockExpired,
    Processed,
    Refused,
    RevealSecret,
    SettleRequest,
    SettleResponse,
)
from p2pchan.wire.codec import pack, unpack
from tests.unit.channel_helpers import (
    Pair,
    faults,
    of_type,
    secret,
    secrethash,
    sent,
)

REVEAL = 10  # the harness's reveal_timeout (ChannelConfig default)


def a_pays_b(expiration: int, index: int = 1, amount: int = 100) -> Pair:
    """A pair where A's lock (secret `index`) to B is acked and nothing else happened."""
    pair = Pair.open()
    pair.queue("a", pair.lock(amount, index, expiration=expiration))
    pair.flush("a")
    return pair


def removals(outputs: list[object]) -> list[bytes]:
    return [h for removed in of_type(outputs, OutgoingRemoved) for h in removed.secrethashes]


# -- our expired lock that the partner will not let us remove ---------------------------------


def test_a_lock_the_partner_ignores_lock_expired_for_is_failed_and_the_channel_closed() -> None:
    expiry = 30
    pair = a_pays_b(expiry)
    pair.block("a", expiry + 2)
    update = pair.next_update("a")
    assert isinstance(update, LockExpired)  # sent once height >= E + 2 ...
    # ... and the partner never answers. Until E + 2 + reveal_timeout we wait for its ack.
    assert pair.block("a", expiry + 2 + REVEAL - 1) == []
    assert pair.a.status == ChannelStatus.OPEN
    outputs = pair.block("a", expiry + 2 + REVEAL)
    assert removals(outputs) == [secrethash(1)]  # nobody can claim it: the payment failed
    [close] = of_type(outputs, ContractSendClose)
    assert pair.a.status == ChannelStatus.CLOSING and pair.a.close_requested
    assert close.proofs == chain_duties.close_proofs(pair.a)
    assert "expired lock" in pair.a.note
    # Asked for again on later blocks, but the payment is never reported twice.
    later = pair.block("a", expiry + 2 + REVEAL + 1)
    assert of_type(later, ContractSendClose) and not removals(later)


def test_a_late_ack_of_the_removal_does_not_report_an_abandoned_payment_again() -> None:
    expiry = 30
    pair = a_pays_b(expiry)
    pair.block("a", expiry + 2)
    update = pair.next_update("a")
    assert update is not None
    pair.block("a", expiry + 2 + REVEAL)  # abandoned, closing
    [ack] = sent(pair.deliver("b", update, height=expiry + 2))
    assert isinstance(ack, Processed)
    assert removals(pair.deliver("a", ack)) == []
    assert not pair.a.ours.abandoned  # gone for good: nothing left to remember


def test_a_lock_whose_removal_the_partner_refuses_is_failed_and_the_channel_closed() -> None:
    expiry = 30
    pair = a_pays_b(expiry)
    pair.block("a", expiry + 2)
    update = pair.next_update("a")
    assert update is not None
    nonce = update.proof.proof().nonce
    pair.deliver("a", Refused(pair.a.channel_id, nonce, "refused", "no", False))
    # The refused removal is not sent again at once (it would bounce back and forth) ...
    assert pair.next_update("a") is None
    # ... but after the next block.
    pair.block("a", expiry + 3)
    assert isinstance(pair.next_update("a"), LockExpired)
    outputs = pair.block("a", expiry + 2 + REVEAL)
    assert removals(outputs) == [secrethash(1)] and of_type(outputs, ContractSendClose)


def test_an_unacked_transfer_whose_lock_expired_is_failed_and_the_channel_closed() -> None:
    """The partner withholds its ack: the lock stays in flight, never removable off-chain."""
    expiry = 30
    pair = Pair.open()
    pair.queue("a", pair.lock(100, 1, expiration=expiry))
    transfer = pair.next_update("a")
    assert isinstance(transfer, LockedTransfer)
    pair.deliver("b", transfer)  # accepted, but its ack never comes back
    assert pair.block("a", expiry + 2 + REVEAL - 1) == []
    outputs = pair.block("a", expiry + 2 + REVEAL)
    assert removals(outputs) == [secrethash(1)] and of_type(outputs, ContractSendClose)


def test_a_lock_whose_secret_was_registered_in_time_is_never_abandoned() -> None:
    expiry = 30
    pair = a_pays_b(expiry)
    pair.registered[secrethash(1)] = expiry  # the partner claimed it on chain, in time
    outputs = pair.block("a", expiry + 2 + REVEAL)
    assert not removals(outputs) and not of_type(outputs, ContractSendClose)
    assert pair.a.status == ChannelStatus.OPEN


def test_a_lock_we_are_unlocking_is_not_abandoned() -> None:
    """The partner revealed the secret (the payment succeeded) and ignores our unlock."""
    expiry = 30
    pair = a_pays_b(expiry)
    assert of_type(pair.reveal("b", 1), SecretLearned)
    assert pair.next_update("a") is not None  # the unlock, never acked
    outputs = pair.block("a", expiry + 2 + REVEAL)
    assert not removals(outputs) and not of_type(outputs, ContractSendClose)


def test_a_secret_revealed_for_an_abandoned_lock_is_too_late() -> None:
    expiry = 30
    pair = a_pays_b(expiry)
    pair.block("a", expiry + 2 + REVEAL)
    outputs = pair.deliver("a", RevealSecret(pair.a.channel_id, (secret(1),)))
    assert outputs == [] and not pair.a.ours.queued_unlocks


def test_an_abandoned_lock_returned_on_chain_is_not_reported_again() -> None:
    expiry = 30
    pair = a_pays_b(expiry)
    pair.block("a", expiry + 2 + REVEAL)
    pair.a, _ = chain_duties.on_closed(pair.a, pair.a.us, expiry + 13, 1, 0)
    pair.a, outputs = chain_duties.on_settled(pair.a, 1, 0, payout_ours=900, payout_theirs=1000)
    assert not removals(outputs)
    pair.a, outputs = chain_duties.on_unlocked(pair.a, pair.a.us, {}, to_sender=100)
    assert not removals(outputs) and not of_type(outputs, OutgoingSettled)
    assert not pair.a.ours.abandoned


def test_queued_locks_that_waited_too_long_fail_before_they_are_signed() -> None:
    pair = Pair.open()
    pair.queue("a", pair.lock(10, 1, expiration=40), pair.lock(10, 2, expiration=80))
    outputs = pair.block("a", 40 - REVEAL)
    assert removals(outputs) == [secrethash(1)]
    assert [held.secrethash for held in pair.a.ours.queued_locks] == [secrethash(2)]


# -- cooperative settles -----------------------------------------------------------------------


def requested(pair: Pair) -> SettleRequest:
    pair.a, outputs = coop.request_settle(pair.a, pair.identity_a, pair.height)
    [request] = sent(outputs)
    assert isinstance(request, SettleRequest)
    return request


def test_a_signed_cooperative_settle_is_submitted_again_every_block_until_it_lands() -> None:
    pair = Pair.open()
    pair.pay("a", 300, 1)
    [response] = sent(pair.deliver("b", requested(pair)))
    pair.a, first, refusal = coop.on_settle_response(pair.a, response)
    assert refusal is None
    [settle] = of_type(first, ContractSendCooperativeSettle)
    expiration = pair.a.coop_expiration
    assert expiration is not None
    for height in range(pair.height + 1, expiration + 1):  # lost in a layer-1 crash, say
        assert of_type(pair.block("a", height), ContractSendCooperativeSettle) == [settle]
    assert pair.block("b", expiration) == []  # the requester submits it, not the responder


def test_a_signed_cooperative_settle_that_expires_unused_falls_back_to_a_forced_close() -> None:
    pair = Pair.open()
    pair.pay("a", 300, 1)
    [response] = sent(pair.deliver("b", requested(pair)))
    pair.a, _, _ = coop.on_settle_response(pair.a, response)
    expiration = pair.a.coop_expiration
    assert expiration is not None
    outputs = pair.block("a", expiration + 1)
    [close] = of_type(outputs, ContractSendClose)
    assert close.proofs == chain_duties.close_proofs(pair.a)
    assert pair.a.status == ChannelStatus.CLOSING and pair.a.close_requested
    assert "expired unused" in pair.a.note and pair.a.coop_expiration is None
    assert of_type(pair.block("a", expiration + 2), ContractSendClose)  # until the chain shows it
    # The responder, whose signature went unused, takes payments again.
    pair.block("b", expiration + 1)
    assert pair.b.status == ChannelStatus.OPEN and "expired unused" in pair.b.note


def test_a_refused_cooperative_settle_reopens_at_expiry_and_says_why() -> None:
    pair = Pair.open()
    pair.queue("b", pair.lock(10, 7))  # B has an update of its own in flight: it refuses
    assert pair.next_update("b") is not None
    [response] = sent(pair.deliver("b", requested(pair)))
    assert isinstance(response, SettleResponse) and response.signature is None
    pair.a, outputs, refusal = coop.on_settle_response(pair.a, response)
    assert outputs == [] and refusal is not None and refusal in pair.a.note
    expiration = pair.a.coop_expiration
    assert expiration is not None
    assert not of_type(pair.block("a", expiration + 1), ContractSendClose)
    assert pair.a.status == ChannelStatus.OPEN and refusal in pair.a.note


def test_asking_again_gets_the_same_terms_and_the_same_signature_unscored() -> None:
    pair = Pair.open()
    request = requested(pair)
    [first] = sent(pair.deliver("b", request))
    again = requested(pair)  # `close` run twice
    assert again == request
    outputs = pair.deliver("b", again)
    assert sent(outputs) == [first] and not faults(outputs)


def test_other_terms_while_signed_ones_are_pending_are_refused_and_scored() -> None:
    pair = Pair.open()
    pair.deliver("b", requested(pair))
    pair.a = replace(pair.a, coop_we_asked=False, coop_expiration=None)
    pair.height += 1
    other_terms = requested(pair)  # another expiration: a freeze extended
    outputs = pair.deliver("b", other_terms)
    [refusal] = sent(outputs)
    assert isinstance(refusal, SettleResponse) and refusal.signature is None
    assert [fault.budgeted for fault in faults(outputs)] == [False]


def test_a_partner_letting_signed_terms_expire_is_refused_and_scored_for_a_while() -> None:
    pair = Pair.open()
    pair.deliver("b", requested(pair))
    expiration = pair.b.coop_expiration
    assert expiration is not None
    pair.block("b", expiration + 1)
    assert pair.b.takes_new_transfers
    cooldown_end = pair.b.coop_refused_until
    assert cooldown_end == expiration + 1 + chain_duties.COOP_COOLDOWN_BLOCKS
    pair.a = Pair.open().a  # the partner forgets and asks again, and again
    pair.height = expiration + 2
    outputs = pair.deliver("b", requested(pair))
    assert faults(outputs) and sent(outputs)[0].signature is None  # type: ignore[attr-defined]
    assert pair.b.takes_new_transfers  # not frozen again
    pair.a = Pair.open().a
    pair.height = cooldown_end
    outputs = pair.deliver("b", requested(pair))
    assert not faults(outputs) and sent(outputs)[0].signature  # type: ignore[attr-defined]


# -- what layer 1 paid -------------------------------------------------------------------------


def test_after_settle_the_channel_shows_what_layer_1_paid_each_side() -> None:
    expiry = 30
    pair = a_pays_b(expiry, amount=100)
    pair.b, _ = chain_duties.on_closed(pair.b, pair.b.us, 20, 0, 1)
    pair.b, _ = chain_duties.on_settled(pair.b, 0, 1, payout_ours=1000, payout_theirs=900)
    assert (pair.b.settled_ours, pair.b.settled_theirs) == (1000, 900)
    pair.registered[secrethash(1)] = expiry  # B claimed the lock on chain
    pair.b, _ = chain_duties.on_unlocked(
        pair.b, pair.a.us, pair.registered, to_receiver=100, to_sender=0
    )
    assert (pair.b.settled_ours, pair.b.settled_theirs) == (1100, 900)
    settled = coop.on_cooperatively_settled(Pair.open().a, balance_ours=700, balance_theirs=1300)
    assert (settled.settled_ours, settled.settled_theirs) == (700, 1300)


# -- the store -------------------------------------------------------------------------------


def test_the_new_channel_fields_survive_the_store_and_format_2_still_loads() -> None:
    expiry = 30
    pair = a_pays_b(expiry)
    pair.block("a", expiry + 2 + REVEAL)
    channel = replace(pair.a, coop_refused_until=77, settled_ours=5, settled_theirs=6)
    assert decode_channel(encode_channel(channel)) == channel
    value = unpack(encode_channel(channel), max_len=1 << 20)
    value[0] = 2
    del value[-2]  # format 2 had no "since format 3" list
    old = decode_channel(pack(value))
    assert old.ours.abandoned == frozenset() and old.note == ""
    assert old.ours.acked == channel.ours.acked


def test_a_retryable_refusal_is_a_budgeted_fault() -> None:
    pair = Pair.open()
    pair.queue("a", pair.lock(10, 1, expiration=pair.height + 500))  # beyond B's window
    update = pair.next_update("a")
    assert update is not None
    outputs = pair.deliver("b", update)
    assert [type(out) for out in outputs if isinstance(out, Fault)] == [Fault]
    assert faults(outputs)[0].budgeted


def test_an_update_of_ours_refused_but_settled_on_chain_still_names_its_locks() -> None:
    """The partner refused our update (or seemed to), yet holds it signed and settles with it:
    its locks must be unlocked on chain, not reported failed."""
    pair = Pair.open()
    pair.queue("a", pair.lock(100, 1))
    transfer = pair.next_update("a")
    assert isinstance(transfer, LockedTransfer)
    pair.deliver("b", transfer)  # accepted: B holds our signed proof
    nonce = transfer.proof.proof().nonce
    pair.deliver("a", Refused(pair.a.channel_id, nonce, "stale_nonce", "old", False))
    assert pair.a.ours.refused and not pair.a.ours.in_flight
    pair.a, _ = chain_duties.on_closed(pair.a, pair.a.partner, 20, nonce, 0)
    pair.a, outputs = chain_duties.on_settled(pair.a, nonce, 0)
    assert not removals(outputs)
    [settled] = pair.a.settled_unlocks
    assert [held.secrethash for held in settled.locks] == [secrethash(1)]
    assert decode_channel(encode_channel(pair.a)) == pair.a
