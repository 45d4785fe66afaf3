"""The sans-IO channel core, both ends linked directly (no sockets, no trio).

Covers the status table, the payment lifecycle and batching, every refusal of a received update
(with its code, a `Fault` only for final ones, and the state untouched), the sender's side
(capacity, refusals, nonces), the chain duties, cooperative settlement checked against the real
contract rules, and re-sync. What a user relies on: both ends agree on the balances, every
proof a node holds works on chain, and nothing a partner signs or replays moves money unasked.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from p2pchan.core.channel import chain as chain_duties
from p2pchan.core.channel import close as coop
from p2pchan.core.channel import receive as receive
from p2pchan.core.channel import send as send
from p2pchan.core.channel import sync as sync
from p2pchan.core.channel.events import (
    ChannelOutput,
    IncomingLocks,
    IncomingRemoved,
    IncomingUnlocked,
    OutgoingRemoved,
    OutgoingSettled,
    SecretLearned,
    Send,
)
from p2pchan.core.channel.state import (
    MAX_FINAL_REFUSALS,
    TRANSITIONS,
    ChannelConfig,
    ChannelStatus,
)
from p2pchan.core.outputs import (
    ContractSendClose,
    ContractSendCooperativeSettle,
    ContractSendRegisterSecret,
    ContractSendSettle,
    ContractSendUnlock,
    ContractSendUpdate,
)
from p2pchan.crypto.keys import Identity
from p2pchan.crypto.signing import SigningTag
from p2pchan.crypto.transport import MAX_BODY_SIZE
from p2pchan.errors import LocalProtocolError, RemoteProtocolError
from p2pchan.l1.events import ChannelClosed, SecretRegistered
from p2pchan.l1.transactions import (
    ChannelClose,
    ChannelSettle,
    ChannelUnlock,
    ChannelUpdate,
    CooperativeSettleCall,
    RegisterSecret,
)
from p2pchan.types import ChainId, ChannelId
from p2pchan.wire.balance_proof import SignedBalanceProof, counter_sign
from p2pchan.wire.channel_messages import (
    BalanceUpdate,
    ChannelSync,
    LockedTransfer,
    LockExpired,
    LockRemoved,
    Processed,
    Refused,
    RevealSecret,
    SettleRequest,
    SettleResponse,
    Unlock,
)
from p2pchan.wire.coop_settle import CooperativeSettle
from p2pchan.wire.locks import HeldLock, Lock, encode_locks, locksroot
from p2pchan.wire.peer_messages import PEER_MESSAGES
from tests.unit.chain_helpers import ChainHarness
from tests.unit.channel_helpers import (
    CHANNEL_ID,
    Pair,
    Side,
    faults,
    forge_proof,
    held_lock,
    of_type,
    other,
    secret,
    secrethash,
    sent,
    with_status,
)

MALLORY = Identity(b"m" * 32)


# Final refusals an honest partner runs into by timing (the channel closed, a block passed while
# its update was on the way): refused, but not scored as faults.
RACES = {"channel_settled", "channel_closed", "channel_not_open", "window_ending", "lock_expired"}


def refused(pair: Pair, message: BalanceUpdate, code: str, *, height: int | None = None) -> Refused:
    """Deliver `message` to B; it must be refused with `code`, and B's state must not change; a
    final refusal is scored unless it is a race, a retryable one beyond a budget."""
    before = pair.b
    outputs = pair.deliver("b", message, height=height)
    assert pair.b == before, "a refused update changed the receiver's state"
    answers = sent(outputs)
    assert len(answers) == 1 and isinstance(answers[0], Refused), outputs
    refusal = answers[0]
    assert refusal.code == code, refusal
    scored = not refusal.retryable and code not in RACES
    found = faults(outputs)
    if refusal.retryable:  # scored only beyond the peer's budget, by the shell
        assert [fault.budgeted for fault in found] == [True], outputs
    else:
        assert [fault.budgeted for fault in found] == ([False] if scored else []), outputs
    assert not of_type(outputs, IncomingLocks) and not of_type(outputs, IncomingUnlocked)
    return refusal


def accepted(
    pair: Pair, message: BalanceUpdate, *, height: int | None = None
) -> list[ChannelOutput]:
    outputs = pair.deliver("b", message, height=height)
    answers = sent(outputs)
    assert len(answers) == 1 and isinstance(answers[0], Processed), outputs
    assert not faults(outputs)
    return outputs


def transfer(
    signer: Identity,
    nonce: int,
    new: list[HeldLock],
    *,
    pending: tuple[Lock, ...] = (),
    transferred: int = 0,
    **forged: Any,
) -> LockedTransfer:
    """A hand-built locked_transfer adding `new` on top of `pending` (honest unless `forged`)."""
    locks = [*pending, *(held.lock for held in new)]
    proof = forge_proof(signer, nonce=nonce, transferred=transferred, locks=locks, **forged)
    return LockedTransfer(CHANNEL_ID, proof, tuple(new))


def with_pending(*amounts: int) -> Pair:
    """A pair where A has locked these amounts to B (secrets 1, 2, ...), all acked."""
    pair = Pair.open()
    pair.queue("a", *(pair.lock(amount, index) for index, amount in enumerate(amounts, 1)))
    pair.flush("a")
    return pair


# -- the status table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "target"),
    [(start, target) for start in ChannelStatus for target in ChannelStatus if start != target],
)
def test_status_moves_follow_the_transitions_table(
    start: ChannelStatus, target: ChannelStatus
) -> None:
    channel = with_status(Pair.open().a, start)
    if target in TRANSITIONS[start]:
        assert channel.moved_to(target).status == target
    else:
        with pytest.raises(LocalProtocolError):
            channel.moved_to(target)


def test_the_table_covers_every_status_and_settled_is_final() -> None:
    assert set(TRANSITIONS) == set(ChannelStatus)
    assert TRANSITIONS[ChannelStatus.SETTLED] == frozenset()
    assert TRANSITIONS[ChannelStatus.CLOSED] == {ChannelStatus.SETTLED}
    for status in ChannelStatus:
        channel = with_status(Pair.open().a, status)
        assert channel.moved_to(status) is channel


# -- payments -----------------------------------------------------------------------------------


def test_a_direct_payment_locks_acks_reveals_unlocks_and_settles() -> None:
    pair = Pair.open()
    pair.queue("a", pair.lock(100, 1))
    update = pair.next_update("a")
    assert isinstance(update, LockedTransfer)
    received = pair.deliver("b", update)
    [ack] = sent(received)
    assert isinstance(ack, Processed) and ack.nonce == 1
    [incoming] = of_type(received, IncomingLocks)
    assert [held.secrethash for held in incoming.locks] == [secrethash(1)]
    assert pair.deliver("a", ack) == []
    assert pair.a.ours.acked_proof is not None
    assert pair.a.ours.acked_proof.counter_signature_valid(pair.b.us)
    assert (pair.a.local_balance(), pair.a.remote_balance()) == (900, 1000)
    assert pair.a.pending_lock_count() == pair.b.pending_lock_count() == 1
    pair.assert_balances_agree()

    learned = pair.reveal("b", 1)
    assert learned == [SecretLearned(CHANNEL_ID, secrethash(1), secret(1))]
    unlock = pair.next_update("a")
    assert isinstance(unlock, Unlock) and unlock.secrets == (secret(1),)
    received = pair.deliver("b", unlock)
    [unlocked] = of_type(received, IncomingUnlocked)
    assert [held.secrethash for held in unlocked.locks] == [secrethash(1)]
    back = pair.deliver("a", sent(received)[0])
    assert back == [OutgoingSettled(CHANNEL_ID, (secrethash(1),))]

    assert (pair.a.local_balance(), pair.a.remote_balance()) == (900, 1100)
    assert (pair.b.local_balance(), pair.b.remote_balance()) == (1100, 900)
    assert pair.a.pending_lock_count() == pair.b.pending_lock_count() == 0
    assert pair.a.ours.acked.nonce == pair.b.theirs.accepted.nonce == 2
    pair.assert_balances_agree()


def test_payments_both_ways_keep_both_views_equal() -> None:
    pair = Pair.open()
    pair.pay("a", 300, 1)
    pair.pay("b", 500, 2)
    pair.pay("a", 50, 3)
    assert (pair.a.local_balance(), pair.b.local_balance()) == (1150, 850)
    assert pair.a.available_to_send() == 1150 and pair.b.available_to_send() == 850
    pair.assert_balances_agree()


# -- batching -----------------------------------------------------------------------------------


def test_queued_locks_go_out_in_one_update_with_one_signature() -> None:
    pair = Pair.open()
    for start in range(0, 40, 10):
        pair.queue("a", *(pair.lock(5, index) for index in range(start, start + 10)))
    update = pair.next_update("a")
    assert isinstance(update, LockedTransfer) and len(update.locks) == 40
    assert pair.next_update("a") is None  # everything went into that one update
    received = accepted(pair, update)
    [incoming] = of_type(received, IncomingLocks)
    assert len(incoming.locks) == 40
    pair.deliver("a", sent(received)[0])
    assert pair.a.ours.acked.nonce == 1 and len(pair.b.theirs.accepted.locks) == 40
    assert pair.next_update("a") is None


def test_a_batch_bigger_than_one_frame_is_split() -> None:
    pair = Pair.open()
    locks = [held_lock(1, pair.height + 50, index, payload=bytes(1024)) for index in range(100)]
    pair.queue("a", *locks)
    first = pair.next_update("a")
    assert isinstance(first, LockedTransfer) and 0 < len(first.locks) < 100
    assert len(PEER_MESSAGES.encode(first)) <= MAX_BODY_SIZE
    assert first.proof.proof().locked_amount == len(first.locks)
    pair.exchange("a", first)
    second = pair.next_update("a")
    assert isinstance(second, LockedTransfer)
    assert len(first.locks) + len(second.locks) == 100
    assert len(PEER_MESSAGES.encode(second)) <= MAX_BODY_SIZE
    pair.exchange("a", second)
    assert pair.b.theirs.accepted.locks == tuple(locks)  # all of them, in the order queued
    assert pair.a.ours.acked.locksroot == pair.b.theirs.accepted.locksroot


def test_work_queued_while_an_update_is_in_flight_waits_for_its_ack() -> None:
    pair = Pair.open()
    pair.queue("a", pair.lock(10, 1))
    first = pair.next_update("a")
    assert first is not None
    pair.queue("a", pair.lock(20, 2))
    assert pair.next_update("a") is None  # one update in flight per direction
    pair.exchange("a", first)
    second = pair.next_update("a")
    assert isinstance(second, LockedTransfer)
    assert [item.lock.secrethash for item in second.locks] == [secrethash(2)]
    assert second.proof.proof().nonce == 2


def test_queued_work_goes_out_unlocks_then_expired_then_removed_then_new_locks() -> None:
    pair = Pair.open()
    expiring = pair.height + 5
    pair.queue("a", pair.lock(100, 1), pair.lock(100, 2, expiration=expiring), pair.lock(100, 3))
    pair.flush("a")
    # Lock 4 is refused finally (already expired in B's view): it becomes a dropped lock.
    pair.queue("a", pair.lock(100, 4, expiration=pair.height))
    _, received, _ = pair.round_trip("a")
    [refusal] = sent(received)
    assert isinstance(refusal, Refused) and not refusal.retryable
    pair.reveal("b", 1)  # an unlock to send
    pair.fail("b", 3)  # a removal the partner asked for
    pair.height = expiring + 2
    pair.block("a")  # lock 2 is now to be expired
    pair.queue("a", pair.lock(100, 5))  # and a new payment

    updates, outputs = [], []
    while (update := pair.next_update("a")) is not None:
        updates.append(update)
        outputs += pair.exchange("a", update)[1]
    assert [type(update) for update in updates] == [
        Unlock,
        LockExpired,
        LockRemoved,
        LockedTransfer,
    ]
    removed = updates[2]
    assert isinstance(removed, LockRemoved)
    assert set(removed.secrethashes) == {secrethash(3), secrethash(4)}
    assert outputs == [
        OutgoingSettled(CHANNEL_ID, (secrethash(1),)),
        OutgoingRemoved(CHANNEL_ID, (secrethash(2),), "expired"),
        OutgoingRemoved(CHANNEL_ID, removed.secrethashes, "failed"),
    ]
    assert pair.b.theirs.accepted.secrethashes == {secrethash(5)}
    pair.assert_balances_agree()


# -- the receiver's checks ------------------------------------------------------------------------


def test_a_hand_built_honest_update_is_accepted() -> None:
    """The baseline the forged updates below differ from in exactly one way."""
    pair = Pair.open()
    outputs = accepted(pair, transfer(pair.identity_a, 1, [pair.lock(100, 1)]))
    assert of_type(outputs, IncomingLocks)


def test_refuses_a_proof_signed_by_another_key() -> None:
    pair = Pair.open()
    honest = transfer(pair.identity_a, 1, [pair.lock(100, 1)])
    forged = SignedBalanceProof(
        honest.proof.data, MALLORY.sign(SigningTag.BALANCE_PROOF, honest.proof.data), None
    )
    refused(pair, replace(honest, proof=forged), "bad_signature")


def test_refuses_a_counter_signature_offered_as_the_proof_signature() -> None:
    pair = Pair.open()
    honest = transfer(pair.identity_a, 1, [pair.lock(100, 1)])
    data = honest.proof.data
    # A's own key, over these very bytes, but as an acknowledgement: never a proof.
    ack_signature = pair.identity_a.sign(SigningTag.BALANCE_PROOF_ACK, data)
    refused(
        pair, replace(honest, proof=SignedBalanceProof(data, ack_signature, None)), "bad_signature"
    )
    # Nor does a real counter-signature of A's turn into a proof of A's.
    b_proof = forge_proof(pair.identity_b, nonce=1, transferred=500)
    acked = counter_sign(pair.identity_a, b_proof)
    assert acked.counter_signature is not None
    bogus = SignedBalanceProof(data, acked.counter_signature, None)
    refused(pair, replace(honest, proof=bogus), "bad_signature")


def test_refuses_a_proof_of_the_receivers_own_direction() -> None:
    pair = Pair.open()
    reflected = transfer(pair.identity_b, 1, [pair.lock(100, 1)])
    refused(pair, reflected, "wrong_sender")


def test_refuses_a_proof_for_another_chain_or_channel() -> None:
    pair = Pair.open()
    new = [pair.lock(100, 1)]
    other_chain = transfer(pair.identity_a, 1, new, chain_id=ChainId(bytes(32)))
    refused(pair, other_chain, "wrong_chain")
    other_channel = transfer(pair.identity_a, 1, new, channel_id=ChannelId(bytes(32)))
    refused(pair, other_channel, "wrong_channel")


def test_refuses_a_replayed_older_proof() -> None:
    pair = Pair.open()
    pair.queue("a", pair.lock(100, 1))
    first, _, _ = pair.round_trip("a")
    pair.queue("a", pair.lock(100, 2))
    pair.round_trip("a")
    refused(pair, first, "stale_nonce")


def test_refuses_a_nonce_that_does_not_rise() -> None:
    pair = with_pending(100)
    pending = tuple(held.lock for held in pair.b.theirs.accepted.locks)
    again = transfer(pair.identity_a, 1, [pair.lock(50, 2)], pending=pending)
    refused(pair, again, "stale_nonce")
    accepted(pair, transfer(pair.identity_a, 2, [pair.lock(50, 2)], pending=pending))


@pytest.mark.parametrize("transferred", [0, 150], ids=["falls", "rises"])
def test_refuses_a_transferred_amount_it_cannot_recompute(transferred: int) -> None:
    pair = Pair.open()
    pair.pay("a", 100, 1)  # A's direction now has transferred 100, nonce 2
    refused(
        pair,
        transfer(pair.identity_a, 3, [pair.lock(10, 2)], transferred=transferred),
        "wrong_transferred",
    )
    accepted(pair, transfer(pair.identity_a, 3, [pair.lock(10, 2)], transferred=100))


def test_refuses_a_wrong_locked_amount() -> None:
    pair = Pair.open()
    refused(pair, transfer(pair.identity_a, 1, [pair.lock(100, 1)], locked=101), "wrong_locked")


def test_refuses_a_locksroot_that_does_not_match_the_locks() -> None:
    pair = Pair.open()
    other_root = locksroot([pair.lock(100, 9).lock])
    refused(
        pair, transfer(pair.identity_a, 1, [pair.lock(100, 1)], root=other_root), "wrong_locksroot"
    )


def test_refuses_locks_that_overspend_counting_what_the_partner_received() -> None:
    pair = Pair.open()
    refused(pair, transfer(pair.identity_a, 1, [pair.lock(1001, 1)]), "overspends")
    pair.pay("b", 200, 2)  # B's signed transfer of 200 counts for A
    refused(pair, transfer(pair.identity_a, 1, [pair.lock(1201, 1)]), "overspends")
    accepted(pair, transfer(pair.identity_a, 1, [pair.lock(1200, 1)]))


def test_refuses_a_duplicate_secrethash() -> None:
    pair = with_pending(100)
    pending = (pair.b.theirs.accepted.locks[0].lock,)
    same_hash = held_lock(30, pair.height + 40, 1)
    refused(pair, transfer(pair.identity_a, 2, [same_hash], pending=pending), "duplicate_lock")
    twice = [pair.lock(10, 2), held_lock(20, pair.height + 40, 2)]
    refused(pair, transfer(pair.identity_a, 2, twice, pending=pending), "duplicate_lock")


def test_refuses_more_than_max_pending_locks() -> None:
    pair = Pair.open(config=ChannelConfig(max_pending_locks=3))
    four = [pair.lock(1, index) for index in range(4)]
    refused(pair, transfer(pair.identity_a, 1, four), "too_many_locks")
    accepted(pair, transfer(pair.identity_a, 1, four[:3]))
    pending = tuple(held.lock for held in four[:3])
    refused(pair, transfer(pair.identity_a, 2, four[3:], pending=pending), "too_many_locks")


def test_refuses_a_locked_transfer_whose_locksroot_silently_drops_a_lock() -> None:
    pair = with_pending(100)
    # Claims both locks' amount but commits only to the new lock: lock 1 would vanish on chain.
    dropping = transfer(pair.identity_a, 2, [pair.lock(50, 2)], locked=150)
    refused(pair, dropping, "wrong_locksroot")


def test_refuses_an_unlock_whose_locksroot_silently_drops_another_lock() -> None:
    pair = with_pending(100, 100, 100)
    two = pair.b.theirs.accepted.locks[1].lock
    proof = forge_proof(pair.identity_a, nonce=2, transferred=100, locks=[two], locked=200)
    refused(pair, Unlock(CHANNEL_ID, proof, (secret(1),)), "wrong_locksroot")
    proof = forge_proof(pair.identity_a, nonce=2, transferred=100, locks=[two])
    refused(pair, Unlock(CHANNEL_ID, proof, (secret(1),)), "wrong_locked")


def test_refuses_to_remove_a_lock_it_never_failed() -> None:
    pair = with_pending(100, 100)
    two = pair.b.theirs.accepted.locks[1].lock
    proof = forge_proof(pair.identity_a, nonce=2, locks=[two])
    removal = LockRemoved(CHANNEL_ID, proof, (secrethash(1),))
    refused(pair, removal, "removal_without_consent")
    silent = LockRemoved(CHANNEL_ID, proof, ())
    refused(pair, silent, "wrong_locked")
    pair.fail("b", 1)
    outputs = accepted(pair, removal)
    assert of_type(outputs, IncomingRemoved) == [IncomingRemoved(CHANNEL_ID, (secrethash(1),))]
    assert pair.b.theirs.failed_sent == frozenset()


def test_refuses_an_unlock_with_a_secret_of_no_pending_lock() -> None:
    pair = with_pending(100)
    proof = forge_proof(pair.identity_a, nonce=2, transferred=100)
    refused(pair, Unlock(CHANNEL_ID, proof, (secret(7),)), "unknown_lock")
    accepted(pair, Unlock(CHANNEL_ID, proof, (secret(1),)))


def test_lock_expired_is_refused_retryably_before_expiry_and_accepted_after() -> None:
    pair = with_pending(100)
    expiration = pair.b.theirs.accepted.locks[0].lock.expiration_block
    message = LockExpired(CHANNEL_ID, forge_proof(pair.identity_a, nonce=2), (secrethash(1),))
    refusal = refused(pair, message, "not_expired", height=expiration)
    assert refusal.retryable
    refused(
        pair, replace(message, secrethashes=(secrethash(9),)), "unknown_lock", height=expiration + 1
    )
    outputs = accepted(pair, message, height=expiration + 1)
    assert IncomingRemoved(CHANNEL_ID, (secrethash(1),)) in outputs


def test_lock_expired_is_refused_finally_once_the_secret_was_registered_in_time() -> None:
    pair = with_pending(100)
    expiration = pair.b.theirs.accepted.locks[0].lock.expiration_block
    message = LockExpired(CHANNEL_ID, forge_proof(pair.identity_a, nonce=2), (secrethash(1),))
    pair.registered[secrethash(1)] = expiration
    refusal = refused(pair, message, "secret_registered", height=expiration + 5)
    assert not refusal.retryable
    pair.registered[secrethash(1)] = expiration + 1  # too late to count: the lock expired
    accepted(pair, message, height=expiration + 5)


def test_an_exact_retransmission_is_acked_again_and_changes_nothing() -> None:
    pair = Pair.open()
    pair.queue("a", pair.lock(100, 1))
    update = pair.next_update("a")
    assert update is not None
    first = pair.deliver("b", update)
    before = pair.b
    second = pair.deliver("b", update)
    assert second == [Send(sent(first)[0])]  # the same counter-signature, no new lock event
    assert pair.b == before


def test_a_closed_channel_takes_unlocks_but_no_new_locks() -> None:
    pair = with_pending(100, 40)
    pair.b, _ = chain_duties.on_closed(pair.b, pair.a.us, pair.height, 0, 0)
    assert pair.b.status == ChannelStatus.CLOSED
    pending = tuple(held.lock for held in pair.b.theirs.accepted.locks)
    refused(
        pair, transfer(pair.identity_a, 2, [pair.lock(10, 3)], pending=pending), "channel_closed"
    )
    expired = forge_proof(pair.identity_a, nonce=2, locks=pending[1:])
    refused(pair, LockExpired(CHANNEL_ID, expired, (secrethash(1),)), "channel_closed")
    proof = forge_proof(pair.identity_a, nonce=2, transferred=100, locks=pending[1:])
    outputs = accepted(pair, Unlock(CHANNEL_ID, proof, (secret(1),)))
    assert of_type(outputs, IncomingUnlocked)
    # The unlock counts only on chain now: it goes there at once, counter-signed.
    [update] = of_type(outputs, ContractSendUpdate)
    assert update.proofs == (pair.b.theirs.accepted_proof,)
    pair.b = with_status(pair.b, ChannelStatus.SETTLED)
    late = forge_proof(pair.identity_a, nonce=3, transferred=140)
    refused(pair, Unlock(CHANNEL_ID, late, (secret(2),)), "channel_settled")


def test_a_closed_channel_takes_no_unlock_too_near_the_windows_end() -> None:
    pair = with_pending(100)
    close_block = pair.height
    pair.b, _ = chain_duties.on_closed(pair.b, pair.a.us, close_block, 0, 0)
    last_useful = close_block + pair.b.settle_timeout - pair.b.config.reveal_timeout
    proof = forge_proof(pair.identity_a, nonce=2, transferred=100)
    unlock = Unlock(CHANNEL_ID, proof, (secret(1),))
    refused(pair, unlock, "window_ending", height=last_useful + 1)
    accepted(pair, unlock, height=last_useful)


def test_a_channel_settling_cooperatively_takes_no_new_locks() -> None:
    pair = Pair.open()
    pair.b, _ = coop.request_settle(pair.b, pair.identity_b, pair.height)
    refused(pair, transfer(pair.identity_a, 1, [pair.lock(10, 1)]), "channel_not_open")


@pytest.mark.parametrize(
    ("settle_timeout", "max_lock_timeout"), [(60, 100), (100, 40)], ids=["settle", "max_lock"]
)
def test_lock_expiry_window(settle_timeout: int, max_lock_timeout: int) -> None:
    config = ChannelConfig(max_lock_timeout=max_lock_timeout)
    window = min(settle_timeout, max_lock_timeout)
    pair = Pair.open(settle_timeout=settle_timeout, config=config)
    height = pair.height
    too_long = refused(
        pair,
        transfer(pair.identity_a, 1, [pair.lock(1, 1, expiration=height + window + 1)]),
        "lock_too_long",
    )
    assert too_long.retryable  # the sender's height may be ahead of ours
    expired = refused(
        pair, transfer(pair.identity_a, 1, [pair.lock(1, 1, expiration=height)]), "lock_expired"
    )
    assert not expired.retryable
    accepted(pair, transfer(pair.identity_a, 1, [pair.lock(1, 1, expiration=height + 1)]))
    accepted(
        pair,
        transfer(
            pair.identity_a,
            2,
            [pair.lock(1, 2, expiration=height + window)],
            pending=(pair.lock(1, 1, expiration=height + 1).lock,),
        ),
    )


def test_refuses_malformed_updates_with_the_higher_score() -> None:
    pair = Pair.open()
    honest = transfer(pair.identity_a, 1, [pair.lock(100, 1)])
    garbage = SignedBalanceProof(b"\xc1", honest.proof.signature, None)
    outputs = pair.deliver("b", replace(honest, proof=garbage))
    [refusal] = sent(outputs)
    assert isinstance(refusal, Refused) and refusal.code == "malformed"
    assert [fault.points for fault in faults(outputs)] == [receive.MALFORMED_POINTS]
    refused(pair, transfer(pair.identity_a, 1, []), "malformed")
    refused(pair, transfer(pair.identity_a, 1, [pair.lock(0, 1)]), "malformed")


# -- the sender's side ------------------------------------------------------------------------


def test_queue_locks_refuses_what_exceeds_capacity_and_dropped_locks_still_count() -> None:
    pair = Pair.open()
    with pytest.raises(send.PaymentRefused, match="insufficient capacity"):
        pair.queue("a", pair.lock(1001, 1))
    pair.queue("a", pair.lock(600, 1, expiration=pair.height))  # B will refuse it finally
    with pytest.raises(send.PaymentRefused):
        pair.queue("a", pair.lock(401, 2))  # the queued 600 counts
    pair.round_trip("a")
    assert pair.a.ours.dropped and pair.a.available_to_send() == 400
    with pytest.raises(send.PaymentRefused):
        pair.queue("a", pair.lock(401, 2))  # the dropped 600 is live until its removal is acked
    pair.queue("a", pair.lock(400, 2))
    assert pair.a.available_to_send() == 0


def test_an_unlock_in_flight_does_not_count_twice_against_capacity() -> None:
    pair = with_pending(100)
    assert pair.a.available_to_send() == 900
    pair.reveal("b", 1)
    assert isinstance(pair.next_update("a"), Unlock)
    assert pair.a.available_to_send() == 900  # paid out, no longer locked
    pair.queue("a", pair.lock(900, 2))


def test_queue_locks_refuses_more_than_max_pending_locks() -> None:
    pair = Pair.open(config=ChannelConfig(max_pending_locks=3))
    pair.queue("a", pair.lock(1, 1), pair.lock(1, 2))
    assert pair.next_update("a") is not None  # in flight: still pending
    pair.queue("a", pair.lock(1, 3))
    with pytest.raises(send.PaymentRefused, match="pending locks"):
        pair.queue("a", pair.lock(1, 4))


def test_queue_locks_refuses_a_secrethash_already_pending_or_twice_in_one_batch() -> None:
    pair = with_pending(100)
    with pytest.raises(send.PaymentRefused, match="secrethash"):
        pair.queue("a", pair.lock(5, 1))
    pair.queue("a", pair.lock(5, 2))
    with pytest.raises(send.PaymentRefused, match="secrethash"):
        pair.queue("a", pair.lock(5, 2))  # already queued
    with pytest.raises(send.PaymentRefused, match="secrethash"):
        pair.queue("a", pair.lock(5, 3), pair.lock(6, 3))
    assert len(pair.a.ours.queued_locks) == 1
    update = pair.next_update("a")  # what was queued still signs cleanly
    assert isinstance(update, LockedTransfer)


def test_queue_locks_refuses_non_positive_amounts() -> None:
    pair = Pair.open()
    with pytest.raises(send.PaymentRefused):
        pair.queue("a", pair.lock(0, 1))


@pytest.mark.parametrize(
    "status",
    [ChannelStatus.OPENING, ChannelStatus.CLOSING, ChannelStatus.CLOSED, ChannelStatus.SETTLED],
)
def test_queue_locks_refuses_a_channel_that_is_not_usable(status: ChannelStatus) -> None:
    pair = Pair.open()
    pair.a = with_status(pair.a, status)
    with pytest.raises(send.PaymentRefused, match="not usable"):
        pair.queue("a", pair.lock(1, 1))


def test_queue_locks_refuses_while_a_cooperative_settle_is_signed() -> None:
    pair = Pair.open()
    pair.a = replace(pair.a, coop_expiration=pair.height + 5)
    with pytest.raises(send.PaymentRefused):
        pair.queue("a", pair.lock(1, 1))


def test_processed_with_a_bad_counter_signature_raises_and_changes_nothing() -> None:
    pair = Pair.open()
    pair.queue("a", pair.lock(100, 1))
    update = pair.next_update("a")
    assert update is not None
    [ack] = sent(pair.deliver("b", update))
    assert isinstance(ack, Processed)
    before = pair.a
    mallory = counter_sign(MALLORY, update.proof).counter_signature
    proof_tag = pair.identity_b.sign(SigningTag.BALANCE_PROOF, update.proof.ack_data())
    for bad in (mallory, proof_tag, bytes(64)):
        assert bad is not None
        with pytest.raises(RemoteProtocolError):
            send.on_processed(pair.a, replace(ack, counter_signature=bad))
        assert pair.a == before and pair.a.ours.in_flight
    assert pair.deliver("a", ack) == []
    assert pair.a.ours.acked.nonce == 1


def test_a_duplicate_processed_is_ignored_and_an_unknown_one_raises() -> None:
    pair = Pair.open()
    pair.queue("a", pair.lock(100, 1))
    _, received, _ = pair.round_trip("a")
    before = pair.a
    [ack] = sent(received)
    assert isinstance(ack, Processed)
    assert send.on_processed(pair.a, ack) == (before, [])
    with pytest.raises(RemoteProtocolError):
        send.on_processed(pair.a, Processed(CHANNEL_ID, 5, bytes(64)))


def test_a_retryable_refusal_keeps_the_update_and_resends_it_after_the_next_block() -> None:
    pair = Pair.open()
    height = pair.height
    pair.queue("a", pair.lock(100, 1, expiration=height + 101))  # one beyond B's window
    update, received, _ = pair.round_trip("a")
    refusal = sent(received)[0]
    assert isinstance(refusal, Refused) and refusal.retryable
    assert pair.a.ours.in_flight and not pair.a.ours.dropped
    assert pair.a.ours.final_refusals == 0
    assert send.retransmissions(pair.a, height) == (pair.a, [])
    assert pair.next_update("a") is None  # still in flight: nothing new is signed
    pair.a, again = send.retransmissions(pair.a, height + 1)
    assert again == [update]  # the very same signed proof
    assert send.retransmissions(pair.a, height + 2)[1] == []  # sent: now awaiting an answer
    pair.height = height + 1
    pair.exchange("a", again[0])
    assert pair.a.ours.acked.nonce == 1 and not pair.a.ours.in_flight


def test_a_refusal_of_an_update_no_longer_in_flight_is_ignored() -> None:
    pair = with_pending(100)
    before = pair.a
    stale = Refused(CHANNEL_ID, 1, "stale_nonce", "old", False)
    assert send.on_refused(pair.a, stale, pair.height) == (before, [])


def pipelining_pair() -> Pair:
    return Pair.open(config=ChannelConfig(max_in_flight=4))


def overspending(signer: Identity, nonce: int) -> LockedTransfer:
    return transfer(signer, nonce, [held_lock(5000, 30, nonce)])  # the partner has 1000


def test_a_stale_nonce_opens_no_window_of_excused_stale_bases() -> None:
    """A replayed old nonce explains nothing that follows: the next update with a falling
    transferred amount is refused for that, and scored."""
    pair = pipelining_pair()
    pair.pay("a", 100, 1)  # A's direction: transferred 100, nonce 2
    refused(pair, transfer(pair.identity_a, 1, [pair.lock(10, 2)]), "stale_nonce")
    refused(pair, transfer(pair.identity_a, 3, [pair.lock(10, 3)]), "wrong_transferred")


def test_updates_in_flight_behind_a_refused_one_are_stale_base_and_unscored() -> None:
    pair = pipelining_pair()
    refused(pair, overspending(pair.identity_a, 1), "overspends")  # scored
    for nonce in (2, 3, 4):  # what a window of 4 had in flight behind it
        stale = refused(pair, overspending(pair.identity_a, nonce), "stale_base")
        assert stale.retryable
    refused(pair, overspending(pair.identity_a, 5), "overspends")  # beyond it: a new fault


def test_a_refusal_no_pipelining_explains_excuses_nothing_after_it() -> None:
    pair = pipelining_pair()
    honest = transfer(pair.identity_a, 1, [pair.lock(100, 1)])
    data = honest.proof.data
    forged = SignedBalanceProof(data, MALLORY.sign(SigningTag.BALANCE_PROOF, data), None)
    refused(pair, replace(honest, proof=forged), "bad_signature")
    refused(pair, overspending(pair.identity_a, 2), "overspends")  # still scored


def test_a_final_refusal_drops_the_update_and_its_locks_stay_live_until_removal_is_acked() -> None:
    pair = Pair.open()
    pair.queue("a", pair.lock(600, 1, expiration=pair.height))
    _, received, _ = pair.round_trip("a")
    [refusal] = sent(received)
    assert isinstance(refusal, Refused) and not refusal.retryable
    assert not faults(received)  # lock_expired: a race, not a fault
    ours = pair.a.ours
    assert not ours.in_flight and ours.acked.nonce == 0 and ours.signed_nonce == 1
    assert [held.secrethash for held in ours.all_locks()] == [secrethash(1)]
    assert ours.final_refusals == 1 and pair.a.available_to_send() == 400
    removal = pair.next_update("a")
    assert isinstance(removal, LockRemoved) and removal.secrethashes == (secrethash(1),)
    proof = removal.proof.proof()
    assert proof.nonce == 2 and proof.locked_amount == 0  # signed from the last acked state
    _, back = pair.exchange("a", removal)
    assert back == [OutgoingRemoved(CHANNEL_ID, (secrethash(1),), "failed")]
    assert pair.a.ours.dropped == () and pair.a.available_to_send() == 1000
    pair.assert_balances_agree()


def refuse_one_transfer(pair: Pair, index: int) -> None:
    """A locked_transfer B refuses finally, then the removal of its lock, which B acks."""
    pair.queue("a", pair.lock(10, index, expiration=pair.height))
    _, received, _ = pair.round_trip("a")
    assert isinstance(sent(received)[0], Refused)
    removal, _, back = pair.round_trip("a")
    assert isinstance(removal, LockRemoved) and of_type(back, OutgoingRemoved)


def test_three_final_refusals_in_a_row_stop_new_transfers() -> None:
    pair = Pair.open()
    for index in range(1, MAX_FINAL_REFUSALS):
        refuse_one_transfer(pair, index)
        assert pair.a.takes_new_transfers
    refuse_one_transfer(pair, MAX_FINAL_REFUSALS)
    assert not pair.a.takes_new_transfers
    with pytest.raises(send.PaymentRefused):
        pair.queue("a", pair.lock(10, 99))


def test_an_accepted_transfer_breaks_the_row_of_final_refusals() -> None:
    pair = Pair.open()
    for index in range(1, MAX_FINAL_REFUSALS):
        refuse_one_transfer(pair, index)
    pair.queue("a", pair.lock(10, 50))
    pair.flush("a")
    assert pair.a.ours.final_refusals == 0
    refuse_one_transfer(pair, 51)
    assert pair.a.takes_new_transfers


def test_a_node_never_signs_a_nonce_twice() -> None:
    pair = Pair.open()
    signed: list[BalanceUpdate] = []

    def step() -> list[ChannelOutput]:
        update, received, _ = pair.round_trip("a")
        signed.append(update)
        return received

    pair.queue("a", pair.lock(10, 1))
    step()  # accepted: nonce 1
    pair.queue("a", pair.lock(10, 2, expiration=pair.height))
    step()  # refused finally: nonce 2 is burnt
    pair.queue("a", pair.lock(10, 3, expiration=pair.height + 150))
    step()  # the removal of lock 2: nonce 3
    step()  # lock 3, refused retryably
    pair.a, [retried] = send.retransmissions(pair.a, pair.height + 1)
    signed.append(retried)
    pair.height += 60  # lock 3 is inside B's window now
    pair.queue("a", pair.lock(10, 4))
    pair.exchange("a", retried)
    step()  # lock 4
    by_nonce: dict[int, bytes] = {}
    for update in signed:
        nonce = update.proof.proof().nonce
        assert by_nonce.setdefault(nonce, update.proof.data) == update.proof.data
    assert sorted(by_nonce) == [1, 2, 3, 4, 5]
    assert pair.a.ours.signed_nonce == 5 == pair.b.theirs.accepted.nonce


# -- repeated news while an update is in flight -----------------------------------------------


def assert_idle_and_settleable(pair: Pair) -> None:
    """Nothing left to send, so a cooperative settle is possible."""
    assert not pair.a.ours.has_work() and pair.next_update("a") is None
    coop.request_settle(pair.a, pair.identity_a, pair.height)  # does not raise


def test_a_reveal_repeated_while_the_unlock_is_in_flight_leaves_no_stale_work() -> None:
    pair = with_pending(100)
    pair.reveal("b", 1)
    unlock = pair.next_update("a")
    assert isinstance(unlock, Unlock)
    pair.deliver("a", RevealSecret(CHANNEL_ID, (secret(1),)))  # B's reminder on a new block
    pair.exchange("a", unlock)
    assert_idle_and_settleable(pair)


def test_a_lock_failed_repeated_while_the_removal_is_in_flight_leaves_no_stale_work() -> None:
    pair = with_pending(100)
    pair.fail("b", 1)
    removal = pair.next_update("a")
    assert isinstance(removal, LockRemoved)
    for reminder in sent(receive.reminders(pair.b)):
        pair.deliver("a", reminder)
    pair.exchange("a", removal)
    assert_idle_and_settleable(pair)


def test_an_expiry_seen_again_while_lock_expired_is_in_flight_leaves_no_stale_work() -> None:
    pair = with_pending(100)
    expiration = pair.a.ours.acked.locks[0].lock.expiration_block
    pair.height = expiration + 2
    pair.block("a")
    expired = pair.next_update("a")
    assert isinstance(expired, LockExpired)
    pair.height += 1
    pair.block("a")  # the ack has not come yet: the lock is still in the acked state
    pair.exchange("a", expired)
    assert_idle_and_settleable(pair)


# -- chain duties -------------------------------------------------------------------------------


def test_our_unresolved_lock_is_expired_from_e_plus_2_not_e_plus_1() -> None:
    pair = with_pending(100)
    expiration = pair.a.ours.acked.locks[0].lock.expiration_block
    pair.height = expiration + 1
    assert pair.block("a") == []
    assert pair.next_update("a") is None
    pair.height = expiration + 2
    pair.block("a")
    update = pair.next_update("a")
    assert isinstance(update, LockExpired) and update.secrethashes == (secrethash(1),)
    received, back = pair.exchange("a", update)
    assert IncomingRemoved(CHANNEL_ID, (secrethash(1),)) in received
    assert back == [OutgoingRemoved(CHANNEL_ID, (secrethash(1),), "expired")]
    assert pair.a.local_balance() == 1000
    pair.assert_balances_agree()


@pytest.mark.parametrize(
    ("registered_after_expiry", "expires"), [(0, False), (-5, False), (1, True)]
)
def test_a_lock_whose_secret_was_registered_in_time_is_not_expired(
    registered_after_expiry: int, expires: bool
) -> None:
    pair = with_pending(100)
    expiration = pair.a.ours.acked.locks[0].lock.expiration_block
    pair.registered[secrethash(1)] = expiration + registered_after_expiry
    pair.height = expiration + 5
    pair.block("a")
    update = pair.next_update("a")
    assert isinstance(update, LockExpired) if expires else update is None


def test_a_lock_being_unlocked_is_not_expired() -> None:
    pair = with_pending(100)
    expiration = pair.a.ours.acked.locks[0].lock.expiration_block
    pair.reveal("b", 1)
    pair.height = expiration + 2
    pair.block("a")
    assert isinstance(pair.next_update("a"), Unlock)
    assert pair.a.ours.queued_expired == frozenset()


def incoming_with_known_secret(reveal_timeout: int = 10) -> tuple[Pair, int]:
    """B holds A's lock 1 and has revealed its secret; A never unlocks."""
    pair = Pair.open(config=ChannelConfig(reveal_timeout=reveal_timeout))
    pair.queue("a", pair.lock(100, 1))
    pair.flush("a")
    pair.b, _ = receive.claim_incoming(pair.b, {secrethash(1): secret(1)})
    return pair, pair.b.theirs.accepted.locks[0].lock.expiration_block


def test_a_known_secret_is_registered_at_e_minus_reveal_timeout_and_resubmitted() -> None:
    pair, expiration = incoming_with_known_secret()
    register = [ContractSendRegisterSecret(CHANNEL_ID, secret(1))]
    assert pair.block("b", expiration - 11) == []
    assert pair.block("b", expiration - 10) == register
    assert pair.block("b", expiration - 9) == []
    assert pair.block("b", expiration - 8) == []
    assert pair.block("b", expiration - 7) == register  # did not land: send it again
    pair.registered[secrethash(1)] = expiration - 6
    for height in range(expiration - 6, expiration + 4):
        assert pair.block("b", height) == [], height
    outputs = pair.block("b", expiration + 4)  # reveal_timeout blocks after the registration
    [close] = of_type(outputs, ContractSendClose)
    assert close.proofs == chain_duties.close_proofs(pair.b) and close.proofs
    assert pair.b.status == ChannelStatus.CLOSING
    [again] = of_type(pair.block("b", expiration + 5), ContractSendClose)  # not on chain yet
    assert again.proofs == close.proofs
    pair.b, _ = chain_duties.on_closed(pair.b, pair.b.us, expiration + 6, 0, 0)
    assert not of_type(pair.block("b", expiration + 6), ContractSendClose)  # the chain shows it


def test_no_registration_once_the_partner_unlocked() -> None:
    pair, expiration = incoming_with_known_secret()
    pair.a, _ = send.on_reveal_secret(pair.a, RevealSecret(CHANNEL_ID, (secret(1),)))
    pair.a = send.queue_unlocks(pair.a, {secrethash(1): secret(1)})  # the payer's decision
    pair.flush("a")
    assert pair.block("b", expiration - 10) == []
    assert pair.block("b", expiration + 20) == []


def test_a_secret_registered_in_time_for_our_lock_unlocks_it_off_chain() -> None:
    pair = with_pending(100)
    expiration = pair.a.ours.acked.locks[0].lock.expiration_block
    late, outputs = chain_duties.on_secret_registered(
        pair.a, secrethash(1), secret(1), expiration + 1
    )
    assert outputs == [] and late.ours.queued_unlocks == {}
    pair.a, outputs = chain_duties.on_secret_registered(
        pair.a, secrethash(1), secret(1), expiration
    )
    assert outputs == [SecretLearned(CHANNEL_ID, secrethash(1), secret(1))]
    assert isinstance(pair.next_update("a"), Unlock)


def test_a_secret_registered_on_chain_teaches_the_receiver_too() -> None:
    pair = with_pending(100)
    pair.b, outputs = chain_duties.on_secret_registered(pair.b, secrethash(1), secret(1), 20)
    assert outputs == [] and pair.b.theirs.known_secrets == {secrethash(1): secret(1)}


def two_way_pair() -> Pair:
    """A paid B 300 (A's direction at nonce 2), B paid A 100 (B's at nonce 2)."""
    pair = Pair.open()
    pair.pay("a", 300, 1)
    pair.pay("b", 100, 2)
    return pair


@pytest.mark.parametrize(
    ("chain_ours", "chain_theirs", "expected"),
    [(0, 0, {"ours", "theirs"}), (2, 1, {"theirs"}), (1, 2, {"ours"}), (2, 2, set())],
)
def test_a_close_by_the_partner_is_answered_with_exactly_the_newer_proofs(
    chain_ours: int, chain_theirs: int, expected: set[str]
) -> None:
    pair = two_way_pair()
    pair.b, outputs = chain_duties.on_closed(pair.b, pair.a.us, 50, chain_ours, chain_theirs)
    assert pair.b.status == ChannelStatus.CLOSED and pair.b.close_block == 50
    named = {"ours": pair.b.ours.acked_proof, "theirs": pair.b.theirs.accepted_proof}
    updates = of_type(outputs, ContractSendUpdate)
    if not expected:
        assert updates == []
        return
    [update] = updates
    assert set(update.proofs) == {named[name] for name in expected}
    assert len(update.proofs) == len(expected)
    assert all(proof.counter_signature is not None for proof in update.proofs)


def test_an_update_is_asked_for_on_every_block_of_the_window_until_the_chain_shows_it() -> None:
    pair = two_way_pair()
    pair.b, outputs = chain_duties.on_closed(pair.b, pair.a.us, 50, 0, 0)
    [first] = of_type(outputs, ContractSendUpdate)
    [again] = of_type(pair.block("b", 51), ContractSendUpdate)  # lost with a layer-1 restart
    assert again == first
    ours, theirs = pair.b.ours.acked.nonce, pair.b.theirs.accepted.nonce
    pair.b, _ = chain_duties.on_updated(pair.b, ours, theirs - 1)  # only ours landed
    [rest] = of_type(pair.block("b", 52), ContractSendUpdate)
    assert rest.proofs == (pair.b.theirs.accepted_proof,)
    pair.b, _ = chain_duties.on_updated(pair.b, ours, theirs)
    assert not of_type(pair.block("b", 53), ContractSendUpdate)


def test_no_update_is_asked_for_after_the_window() -> None:
    pair = two_way_pair()
    pair.b, _ = chain_duties.on_closed(pair.b, pair.a.us, 50, 0, 0)
    window_end = 50 + pair.b.settle_timeout
    assert of_type(pair.block("b", window_end), ContractSendUpdate)
    assert not of_type(pair.block("b", window_end + 1), ContractSendUpdate)


@pytest.mark.parametrize("cheat", [False, True])
def test_a_requested_close_is_asked_for_on_every_block_until_the_chain_shows_it(
    cheat: bool,
) -> None:
    pair = two_way_pair()
    closing = replace(
        pair.a.moved_to(ChannelStatus.CLOSING), close_requested=True, close_cheat=cheat
    )
    for height in (51, 52):
        closing, outputs = chain_duties.on_block(closing, height, {})
        [close] = of_type(outputs, ContractSendClose)
        assert close.proofs == chain_duties.close_proofs(pair.a, cheat=cheat)
    closed, _ = chain_duties.on_closed(closing, pair.a.us, 53, 0, 0)
    assert not closed.close_requested
    assert not of_type(chain_duties.on_block(closed, 54, {})[1], ContractSendClose)


def test_our_own_close_is_answered_only_with_a_newer_proof_of_the_partner() -> None:
    pair = two_way_pair()
    closed, outputs = chain_duties.on_closed(pair.a, pair.a.us, 50, 0, 1)
    assert outputs == [ContractSendUpdate(CHANNEL_ID, (pair.a.theirs.accepted_proof,))]
    assert closed.closer == pair.a.us
    # Our own sent proof is the partner's to submit: a `--cheat` close stays an attack.
    assert chain_duties.on_closed(pair.a, pair.a.us, 50, 0, 2)[1] == []


def test_a_close_fails_the_payments_still_queued() -> None:
    pair = Pair.open()
    pair.queue("a", pair.lock(10, 1))
    assert pair.next_update("a") is not None  # signed: stays live until settled
    pair.queue("a", pair.lock(20, 2))  # never signed
    pair.a, outputs = chain_duties.on_closed(pair.a, pair.b.us, 50, 0, 0)
    assert OutgoingRemoved(CHANNEL_ID, (secrethash(2),), "the channel was closed") in outputs
    assert pair.a.ours.queued_locks == () and pair.a.available_to_send() == 990


def test_a_closed_channel_sends_only_unlocks() -> None:
    pair = with_pending(100, 40)
    expiration = pair.a.ours.acked.locks[1].lock.expiration_block
    pair.a, _ = chain_duties.on_closed(pair.a, pair.b.us, pair.height, 0, 0)
    pair.b, _ = chain_duties.on_closed(pair.b, pair.b.us, pair.height, 0, 0)
    pair.reveal("b", 1)
    pair.height = expiration + 2
    pair.block("a")  # lock 2 expired: on chain it goes back to A anyway
    unlock, received, _ = pair.round_trip("a")
    assert isinstance(unlock, Unlock) and of_type(received, ContractSendUpdate)
    assert pair.a.ours.has_work()  # lock 2's expiry is still noted
    assert pair.next_update("a") is None  # but no lock_expired is sent while closed
    pair.reveal("b", 2)
    pair.a = with_status(pair.a, ChannelStatus.SETTLED)
    assert pair.next_update("a") is None  # settled: nothing off-chain counts any more


def test_settle_is_submitted_only_after_the_settlement_window() -> None:
    pair = two_way_pair()
    pair.b, _ = chain_duties.on_closed(pair.b, pair.a.us, 50, 2, 2)
    window_end = 50 + pair.b.settle_timeout
    assert not of_type(pair.block("b", window_end), ContractSendSettle)
    assert pair.block("b", window_end + 1) == [ContractSendSettle(CHANNEL_ID)]


def test_on_settled_takes_the_state_matching_the_chain_nonce() -> None:
    pair = with_pending(100)
    pair.queue("a", pair.lock(50, 2))
    update = pair.next_update("a")  # in flight, nonce 2: B may hold it
    assert update is not None
    closed, _ = chain_duties.on_closed(pair.a, pair.b.us, 50, 1, 0)
    acked_won, outputs = chain_duties.on_settled(closed, 1, 0)
    assert acked_won.status == ChannelStatus.SETTLED
    [settled] = acked_won.settled_unlocks
    assert settled.sender == pair.a.us and [h.secrethash for h in settled.locks] == [secrethash(1)]
    assert outputs == [OutgoingRemoved(CHANNEL_ID, (secrethash(2),), "not in the settled state")]
    flight_won, outputs = chain_duties.on_settled(closed, 2, 0)
    [settled] = flight_won.settled_unlocks
    assert [h.secrethash for h in settled.locks] == [secrethash(1), secrethash(2)]
    assert outputs == []


def test_on_settled_reports_an_in_flight_unlock_that_won_as_paid() -> None:
    pair = with_pending(100, 40)
    pair.reveal("b", 1)
    assert isinstance(pair.next_update("a"), Unlock)  # B holds it, but its ack never came
    closed, _ = chain_duties.on_closed(pair.a, pair.b.us, 50, 2, 0)
    settled, outputs = chain_duties.on_settled(closed, 2, 0)
    assert OutgoingSettled(CHANNEL_ID, (secrethash(1),)) in outputs
    assert not any(secrethash(1) in o.secrethashes for o in of_type(outputs, OutgoingRemoved))
    [locks] = settled.settled_unlocks
    assert [h.secrethash for h in locks.locks] == [secrethash(2)]


def test_settled_locks_are_unlocked_on_chain_once_all_expired() -> None:
    pair = with_pending(100, 40)
    last = max(held.lock.expiration_block for held in pair.a.ours.acked.locks)
    pair.a, _ = chain_duties.on_closed(pair.a, pair.b.us, 20, 1, 0)
    pair.a, _ = chain_duties.on_settled(pair.a, 1, 0)
    assert not of_type(pair.block("a", last), ContractSendUnlock)
    [unlock] = of_type(pair.block("a", last + 1), ContractSendUnlock)
    assert unlock.sender == pair.a.us
    assert unlock.locks == encode_locks(held.lock for held in pair.a.ours.acked.locks)


@pytest.mark.parametrize("side", ["a", "b"])
def test_on_unlocked_splits_claimed_and_returned_by_registration_time(side: str) -> None:
    pair = with_pending(100, 40, 30)
    locks = pair.a.ours.acked.locks
    expiration = locks[0].lock.expiration_block
    registered = {secrethash(1): expiration, secrethash(2): expiration + 1}  # 3: never
    end = pair.a if side == "a" else pair.b
    end, _ = chain_duties.on_closed(end, pair.b.us, 20, 1, 1)
    end, _ = (
        chain_duties.on_settled(end, 1, 0) if side == "a" else chain_duties.on_settled(end, 0, 1)
    )
    end, outputs = chain_duties.on_unlocked(end, pair.a.us, registered)
    returned = (secrethash(2), secrethash(3))
    if side == "a":
        assert outputs == [
            OutgoingSettled(CHANNEL_ID, (secrethash(1),)),
            OutgoingRemoved(CHANNEL_ID, returned, "expired on chain"),
        ]
    else:
        assert outputs == [
            IncomingUnlocked(CHANNEL_ID, (locks[0],)),
            IncomingRemoved(CHANNEL_ID, returned),
        ]
    assert end.settled_unlocks == ()
    assert chain_duties.on_unlocked(end, pair.a.us, registered) == (end, [])


# -- against the real contract rules ------------------------------------------------------------

ON_CHAIN_SETTLE_TIMEOUT = 60


def on_chain_pair() -> tuple[ChainHarness, Pair]:
    """A channel opened on a pure chain (A and B deposit 1000 each) and its two ends."""
    identity_a, identity_b = Identity(b"a" * 32), Identity(b"b" * 32)
    harness = ChainHarness.create([(identity_a, 10_000), (identity_b, 10_000)])
    channel_id = harness.open(
        identity_a, identity_b, settle_timeout=ON_CHAIN_SETTLE_TIMEOUT, deposits=(1000, 1000)
    )
    pair = Pair.open(
        settle_timeout=ON_CHAIN_SETTLE_TIMEOUT,
        chain_id=harness.chain_id,
        channel_id=channel_id,
        identity_a=identity_a,
        identity_b=identity_b,
    )
    return harness, pair


def answer_close(pair: Pair, side: Side, event: ChannelClosed) -> list[ChannelOutput]:
    """What end `side` does on seeing this close on chain."""
    ours, theirs = (event.nonce_a, event.nonce_b) if side == "a" else (event.nonce_b, event.nonce_a)
    channel, outputs = chain_duties.on_closed(
        pair.channel(side), event.closer, event.close_block, ours, theirs
    )
    pair.set(side, channel)
    return outputs


@pytest.mark.parametrize("cheat", [False, True], ids=["honest", "cheat"])
def test_a_close_settles_to_the_true_balances_even_when_the_closer_cheats(cheat: bool) -> None:
    harness, pair = on_chain_pair()
    pair.pay("a", 300, 1)
    pair.pay("b", 100, 2)
    channel_id = pair.a.channel_id
    start_a, start_b = harness.balance(pair.identity_a), harness.balance(pair.identity_b)
    proofs = chain_duties.close_proofs(pair.a, cheat=cheat)
    assert len(proofs) == (1 if cheat else 2)  # the cheat leaves out its own sent proof
    [closed] = harness.call(pair.identity_a, ChannelClose(channel_id, proofs), 5)
    assert isinstance(closed, ChannelClosed)
    assert of_type(answer_close(pair, "a", closed), ContractSendUpdate) == []
    updates = of_type(answer_close(pair, "b", closed), ContractSendUpdate)
    if cheat:
        [update] = updates
        harness.call(pair.identity_b, ChannelUpdate(channel_id, update.proofs), 6)
    else:
        assert updates == []
    harness.call(pair.identity_b, ChannelSettle(channel_id), 5 + ON_CHAIN_SETTLE_TIMEOUT + 1)
    assert harness.balance(pair.identity_a) - start_a == 800
    assert harness.balance(pair.identity_b) - start_b == 1200
    harness.assert_conserved()


def test_a_lock_withheld_by_its_sender_is_claimed_on_chain_by_its_receiver() -> None:
    harness, pair = on_chain_pair()
    channel_id = pair.a.channel_id
    pair.queue("a", pair.lock(100, 1))
    pair.flush("a")
    pair.b, _ = receive.claim_incoming(pair.b, {secrethash(1): secret(1)})  # A never unlocks
    expiration = pair.b.theirs.accepted.locks[0].lock.expiration_block
    start_a, start_b = harness.balance(pair.identity_a), harness.balance(pair.identity_b)

    [register] = pair.block("b", expiration - 10)
    assert isinstance(register, ContractSendRegisterSecret)
    [registered] = harness.call(pair.identity_b, RegisterSecret(register.secret), expiration - 9)
    assert isinstance(registered, SecretRegistered)
    pair.registered[secrethash(1)] = registered.block
    [close] = of_type(pair.block("b", expiration + 1), ContractSendClose)
    [closed] = harness.call(pair.identity_b, ChannelClose(channel_id, close.proofs), expiration + 2)
    assert isinstance(closed, ChannelClosed)
    answer_close(pair, "a", closed)
    answer_close(pair, "b", closed)
    settle_at = expiration + 2 + ON_CHAIN_SETTLE_TIMEOUT + 1
    assert of_type(pair.block("b", settle_at), ContractSendSettle)
    harness.call(pair.identity_b, ChannelSettle(channel_id), settle_at)
    record = harness.channel(channel_id)
    pair.a, _ = chain_duties.on_settled(pair.a, record.proof_a.nonce, record.proof_b.nonce)
    pair.b, _ = chain_duties.on_settled(pair.b, record.proof_b.nonce, record.proof_a.nonce)

    [unlock] = of_type(pair.block("b", settle_at + 1), ContractSendUnlock)
    harness.call(
        pair.identity_b, ChannelUnlock(channel_id, unlock.sender, unlock.locks), settle_at + 1
    )
    assert harness.balance(pair.identity_a) - start_a == 900
    assert harness.balance(pair.identity_b) - start_b == 1100
    _, outputs_a = chain_duties.on_unlocked(pair.a, pair.a.us, pair.registered)
    _, outputs_b = chain_duties.on_unlocked(pair.b, pair.a.us, pair.registered)
    assert outputs_a == [OutgoingSettled(channel_id, (secrethash(1),))]
    assert [type(output) for output in outputs_b] == [IncomingUnlocked]
    harness.assert_conserved()


# -- cooperative settlement ---------------------------------------------------------------------


@pytest.mark.parametrize("requester", ["a", "b"])
def test_a_cooperative_settle_pays_out_the_agreed_balances_at_once(requester: Side) -> None:
    harness, pair = on_chain_pair()
    pair.pay("a", 300, 1)
    responder = other(requester)
    channel, outputs = coop.request_settle(
        pair.channel(requester), pair.identity(requester), pair.height
    )
    pair.set(requester, channel)
    assert channel.status == ChannelStatus.CLOSING and not channel.takes_new_transfers
    [request] = sent(outputs)
    [response] = sent(pair.deliver(responder, request))
    assert isinstance(response, SettleResponse) and response.signature is not None
    assert pair.channel(responder).status == ChannelStatus.CLOSING
    assert not pair.channel(responder).takes_new_transfers
    channel, outputs, refusal = coop.on_settle_response(pair.channel(requester), response)
    assert refusal is None
    [settle] = of_type(outputs, ContractSendCooperativeSettle)
    start_a, start_b = harness.balance(pair.identity_a), harness.balance(pair.identity_b)
    call = CooperativeSettleCall(
        channel.channel_id, settle.terms, settle.signature_a, settle.signature_b
    )
    harness.call(pair.identity(requester), call, pair.height + 1)
    assert harness.balance(pair.identity_a) - start_a == 700
    assert harness.balance(pair.identity_b) - start_b == 1300
    assert coop.on_cooperatively_settled(channel).status == ChannelStatus.SETTLED
    harness.assert_conserved()


def test_a_cooperative_settle_is_refused_with_locks_pending_or_an_update_in_flight() -> None:
    pair = with_pending(100)
    with pytest.raises(coop.CooperativeCloseRefused, match="locks are pending"):
        coop.request_settle(pair.a, pair.identity_a, pair.height)
    with pytest.raises(coop.CooperativeCloseRefused, match="locks are pending"):
        coop.request_settle(pair.b, pair.identity_b, pair.height)  # its incoming lock counts
    pair = Pair.open()
    pair.queue("a", pair.lock(10, 1))
    with pytest.raises(coop.CooperativeCloseRefused):
        coop.request_settle(pair.a, pair.identity_a, pair.height)
    assert pair.next_update("a") is not None
    with pytest.raises(coop.CooperativeCloseRefused, match="in flight"):
        coop.request_settle(pair.a, pair.identity_a, pair.height)
    # B has not seen A's update yet and asks; A refuses, and stays open.
    pair.b, outputs = coop.request_settle(pair.b, pair.identity_b, pair.height)
    before = pair.a
    [response] = sent(pair.deliver("a", sent(outputs)[0]))
    assert isinstance(response, SettleResponse) and response.signature is None
    assert "in flight" in response.refusal and pair.a == before
    _, outputs, refusal = coop.on_settle_response(pair.b, response)
    assert outputs == [] and refusal == response.refusal


def signed_terms(pair: Pair, signer: Identity, **changes: Any) -> SettleRequest:
    honest = CooperativeSettle(
        pair.a.chain_id, pair.a.channel_id, 1000, 1000, 700, 1300, pair.height + 20
    )
    terms = replace(honest, **changes).encode()
    return SettleRequest(pair.a.channel_id, terms, signer.sign(SigningTag.COOP_SETTLE, terms))


@pytest.mark.parametrize(
    ("signer", "changes", "reason"),
    [
        ("a", {"balance_a": 800, "balance_b": 1200}, "differ"),
        ("a", {"deposit_a": 900}, "differ"),
        ("a", {"expiration_block": 10}, "expiration"),
        ("a", {"expiration_block": 10 + 41}, "expiration"),
        ("m", {}, "not signed by you"),
    ],
)
def test_terms_the_responder_does_not_share_are_refused(
    signer: str, changes: dict[str, int], reason: str
) -> None:
    pair = Pair.open()
    pair.pay("a", 300, 1)
    request = signed_terms(pair, pair.identity_a if signer == "a" else MALLORY, **changes)
    before = pair.b
    [response] = sent(pair.deliver("b", request))
    assert isinstance(response, SettleResponse) and response.signature is None
    assert reason in response.refusal and pair.b == before
    assert pair.b.takes_new_transfers
    [accepted_response] = sent(pair.deliver("b", signed_terms(pair, pair.identity_a)))
    assert isinstance(accepted_response, SettleResponse) and accepted_response.signature


def test_a_response_signed_by_someone_else_is_not_submitted() -> None:
    pair = Pair.open()
    pair.a, outputs = coop.request_settle(pair.a, pair.identity_a, pair.height)
    [request] = sent(outputs)
    assert isinstance(request, SettleRequest)
    forged = SettleResponse(CHANNEL_ID, MALLORY.sign(SigningTag.COOP_SETTLE, request.terms), "")
    _, outputs, refusal = coop.on_settle_response(pair.a, forged)
    assert outputs == [] and refusal is not None


def test_an_unanswered_cooperative_settle_expires_and_reopens_the_channel() -> None:
    pair = Pair.open()
    pair.a, _ = coop.request_settle(pair.a, pair.identity_a, pair.height)
    expiration = pair.a.coop_expiration
    assert expiration is not None
    pair.block("a", expiration)
    assert (pair.a.status, pair.a.takes_new_transfers) == (ChannelStatus.CLOSING, False)
    pair.block("a", expiration + 1)
    assert (pair.a.status, pair.a.takes_new_transfers) == (ChannelStatus.OPEN, True)
    pair.queue("a", pair.lock(10, 1))


def test_a_force_close_during_a_cooperative_settle_stays_closing_when_the_terms_expire() -> None:
    pair = Pair.open()
    pair.a, _ = coop.request_settle(pair.a, pair.identity_a, pair.height)
    expiration = pair.a.coop_expiration
    assert expiration is not None
    pair.a = replace(pair.a, close_requested=True)  # `close --force` while waiting
    outputs = pair.block("a", expiration + 1)
    assert pair.a.status == ChannelStatus.CLOSING and not pair.a.takes_new_transfers
    assert of_type(outputs, ContractSendClose)  # still asked for: it has not landed


# -- re-sync after reconnecting ---------------------------------------------------------------


def test_a_sync_carrying_the_ack_of_our_in_flight_update_acks_it() -> None:
    pair = with_pending(100)
    pair.reveal("b", 1)
    unlock = pair.next_update("a")
    assert unlock is not None
    pair.deliver("b", unlock)  # its `processed` is lost with the connection
    outputs = pair.deliver("a", sync.sync_message(pair.b))
    assert outputs == [OutgoingSettled(CHANNEL_ID, (secrethash(1),))]  # nothing to resend
    assert not pair.a.ours.in_flight and pair.a.ours.acked.nonce == 2
    assert pair.a.ours.acked_proof == pair.b.theirs.accepted_proof
    pair.assert_balances_agree()


def test_a_sync_without_our_update_gets_it_sent_again() -> None:
    pair = with_pending(100)
    pair.queue("a", pair.lock(10, 2))
    update = pair.next_update("a")
    outputs = pair.deliver("a", sync.sync_message(pair.b))  # B never got it
    assert update is not None and outputs == [Send(update)]
    assert pair.a.ours.in_flight


def test_a_newer_proof_of_our_own_is_adopted_and_its_nonce_never_signed_again() -> None:
    pair = Pair.open()
    pair.pay("a", 100, 1)
    lost = pair.a  # what A still has after losing its newest state
    pair.queue("a", pair.lock(50, 2))
    pair.flush("a")  # nonce 3, acked by B
    pair.a = lost
    assert pair.deliver("a", sync.sync_message(pair.b)) == []
    ours = pair.a.ours
    assert ours.acked.nonce == ours.signed_nonce == 3
    assert ours.acked.secrethashes == {secrethash(2)} and ours.acked.transferred == 100
    assert ours.acked_proof == pair.b.theirs.accepted_proof
    assert pair.a.local_balance() == 850
    pair.assert_balances_agree()
    pair.queue("a", pair.lock(10, 3))
    update = pair.next_update("a")
    assert update is not None and update.proof.proof().nonce == 4
    pair.exchange("a", update)
    assert pair.b.theirs.accepted.nonce == 4


def test_payments_queued_when_a_newer_proof_of_our_own_is_adopted_are_failed() -> None:
    pair = Pair.open()
    lost = pair.a  # what A still has after losing its newest state
    pair.pay("a", 100, 1)
    pair.a = lost
    pair.queue("a", pair.lock(10, 2))  # queued (unsigned) when B's sync arrives
    outputs = pair.deliver("a", sync.sync_message(pair.b))
    [removed] = of_type(outputs, OutgoingRemoved)
    assert removed.secrethashes == (secrethash(2),)
    assert pair.a.ours.queued_locks == () and pair.a.ours.acked.nonce == 2


def test_an_adopted_proof_keeps_the_payloads_of_the_locks_we_still_know() -> None:
    pair = Pair.open()
    held = replace(pair.lock(50, 2), payload=b"an onion, say")
    pair.queue("a", held)
    lost = pair.a  # the lock queued, its payload known, the update carrying it not stored
    pair.flush("a")
    pair.a = lost
    pair.deliver("a", sync.sync_message(pair.b))
    [adopted] = pair.a.ours.acked.locks
    assert adopted.secrethash == secrethash(2) and adopted.payload == held.payload != b""
    assert pair.a.ours.queued_locks == ()  # signed already: not sent again


def test_a_sync_with_an_older_or_equal_proof_changes_nothing() -> None:
    pair = Pair.open()
    pair.pay("a", 100, 1)
    before = pair.a
    assert pair.deliver("a", sync.sync_message(pair.b)) == []
    assert pair.a == before


def sync_carrying(proof: SignedBalanceProof, locks: bytes) -> ChannelSync:
    """What a partner sends on reconnecting: its copy of our newest proof and its locks."""
    return ChannelSync(CHANNEL_ID, proof, locks, 0)


@pytest.mark.parametrize(
    "case",
    [
        "not_signed_by_us",
        "of_the_partner",
        "no_counter_signature",
        "bad_counter_signature",
        "other_channel",
        "locks_mismatch",
    ],
)
def test_a_sync_with_a_proof_we_cannot_trust_is_the_partners_fault(case: str) -> None:
    pair = Pair.open()
    pair.pay("a", 100, 1)
    lock = pair.lock(10, 2).lock
    ours = forge_proof(pair.identity_a, nonce=5, transferred=100, locks=[lock])
    locks = encode_locks([lock])
    if case == "not_signed_by_us":
        forged_signature = MALLORY.sign(SigningTag.BALANCE_PROOF, ours.data)
        forged = SignedBalanceProof(ours.data, forged_signature, None)
        proof = counter_sign(pair.identity_b, forged)
    elif case == "of_the_partner":
        proof = counter_sign(pair.identity_b, forge_proof(pair.identity_b, nonce=5))
    elif case == "no_counter_signature":
        proof = ours
    elif case == "bad_counter_signature":
        proof = counter_sign(MALLORY, ours)
    elif case == "other_channel":
        elsewhere = forge_proof(pair.identity_a, channel_id=ChannelId(bytes(32)), nonce=5)
        proof = counter_sign(pair.identity_b, elsewhere)
    else:
        proof = counter_sign(pair.identity_b, ours)
        locks = encode_locks([pair.lock(11, 2).lock])
    before = pair.a
    with pytest.raises(RemoteProtocolError):
        sync.on_sync(pair.a, sync_carrying(proof, locks))
    assert pair.a == before
    if case == "locks_mismatch":  # the same proof with its true locks is adopted
        adopted, _ = sync.on_sync(pair.a, sync_carrying(proof, encode_locks([lock])))
        assert adopted.ours.signed_nonce == 5
