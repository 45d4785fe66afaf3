"""The channel contract: every rule and rejection of DESIGN.md "Toy layer 1".

Alice (participant A, the opener) and Bob (B) share a channel; Carol is a third party. Each
rejection is checked by its `ChainError.code` and by a snapshot showing the state unchanged.
Heights are explicit: a channel closed at block c has the window c+1 ... c+settle_timeout.
"""

from __future__ import annotations

from typing import Any

import pytest

from p2pchan.crypto.keys import Identity
from p2pchan.crypto.signing import SigningTag
from p2pchan.l1.events import (
    ChannelClosed,
    ChannelCooperativelySettled,
    ChannelDeposited,
    ChannelOpened,
    ChannelSettled,
    ChannelUnlocked,
    ChannelUpdated,
)
from p2pchan.l1.state import MIN_SETTLE_TIMEOUT, ChannelState, StoredProof
from p2pchan.l1.transactions import (
    FAUCET_ADDRESS,
    ChannelClose,
    ChannelDeposit,
    ChannelOpen,
    ChannelSettle,
    ChannelUnlock,
    ChannelUpdate,
    RegisterSecret,
)
from p2pchan.types import U64_MAX, ChainId, ChannelId
from p2pchan.wire.balance_proof import SignedBalanceProof
from p2pchan.wire.locks import EMPTY_LOCKSROOT, Lock, encode_locks
from tests.unit.chain_helpers import ChainHarness, identity, lock, secret, snapshot

ALICE, BOB, CAROL = identity(1), identity(2), identity(3)
SETTLE_TIMEOUT = 20
CLOSE_AT = 10
WINDOW_END = CLOSE_AT + SETTLE_TIMEOUT
SETTLE_AT = WINDOW_END + 1


def chain_with_channel(deposits: tuple[int, int] = (100, 100)) -> tuple[ChainHarness, ChannelId]:
    harness = ChainHarness.create([(ALICE, 1000), (BOB, 1000), (CAROL, 1000)])
    channel_id = harness.open(ALICE, BOB, settle_timeout=SETTLE_TIMEOUT, deposits=deposits)
    return harness, channel_id


def closed_channel(
    *proofs: SignedBalanceProof, deposits: tuple[int, int] = (100, 100)
) -> tuple[ChainHarness, ChannelId]:
    harness, channel_id = chain_with_channel(deposits)
    harness.call(ALICE, ChannelClose(channel_id, proofs), height=CLOSE_AT)
    return harness, channel_id


def settled_channel(
    *proofs: SignedBalanceProof, deposits: tuple[int, int] = (100, 100)
) -> tuple[ChainHarness, ChannelId]:
    harness, channel_id = closed_channel(*proofs, deposits=deposits)
    harness.call(CAROL, ChannelSettle(channel_id), height=SETTLE_AT)
    return harness, channel_id


# A proof factory that needs no harness: chain id and channel id are deterministic.
_TEMPLATE, _TEMPLATE_CHANNEL = chain_with_channel()


def proof(sender: Identity, nonce: int, transferred: int = 0, **options: Any) -> SignedBalanceProof:
    """A proof on the channel of `chain_with_channel` (its ids are the same in every harness)."""
    return _TEMPLATE.proof(sender, _TEMPLATE_CHANNEL, nonce, transferred, **options)


# -- open --------------------------------------------------------------------------------


def test_open_creates_an_open_channel_with_the_opener_as_a() -> None:
    harness = ChainHarness.create([(ALICE, 1000)])
    events = harness.call(ALICE, ChannelOpen(BOB.node_id, 25), height=3)
    [opened] = events
    assert isinstance(opened, ChannelOpened)
    record = harness.channel(opened.channel_id)
    assert (record.participant_a, record.participant_b) == (ALICE.node_id, BOB.node_id)
    assert record.state == ChannelState.OPEN
    assert (record.settle_timeout, record.opened_block) == (25, 3)
    assert record.total_deposit == 0
    assert opened == ChannelOpened(record.channel_id, ALICE.node_id, BOB.node_id, 25)


def test_settle_timeout_below_the_minimum_is_rejected() -> None:
    assert MIN_SETTLE_TIMEOUT == 20
    harness = ChainHarness.create([(ALICE, 1000)])
    harness.reject(ALICE, ChannelOpen(BOB.node_id, 19), "settle_timeout_too_small")
    harness.reject(ALICE, ChannelOpen(BOB.node_id, 0), "settle_timeout_too_small")
    harness.call(ALICE, ChannelOpen(BOB.node_id, 20))
    assert len(harness.state.channels) == 1


def test_opening_with_yourself_is_rejected() -> None:
    harness = ChainHarness.create([(ALICE, 1000)])
    harness.reject(ALICE, ChannelOpen(ALICE.node_id, 20), "same_participant")


def test_opening_with_the_faucet_address_is_rejected() -> None:
    harness = ChainHarness.create([(ALICE, 1000)])
    harness.reject(ALICE, ChannelOpen(FAUCET_ADDRESS, 20), "invalid_participant")


def test_one_unsettled_channel_per_pair_in_either_order() -> None:
    harness, channel_id = chain_with_channel()
    harness.reject(ALICE, ChannelOpen(BOB.node_id, 20), "channel_exists")
    harness.reject(BOB, ChannelOpen(ALICE.node_id, 20), "channel_exists")
    harness.call(ALICE, ChannelClose(channel_id, ()), height=CLOSE_AT)
    harness.reject(BOB, ChannelOpen(ALICE.node_id, 20), "channel_exists", height=CLOSE_AT)
    # Other pairs are free meanwhile.
    harness.call(CAROL, ChannelOpen(ALICE.node_id, 20), height=CLOSE_AT)
    harness.call(CAROL, ChannelSettle(channel_id), height=SETTLE_AT)
    events = harness.call(BOB, ChannelOpen(ALICE.node_id, 20), height=SETTLE_AT)
    [opened] = events
    assert isinstance(opened, ChannelOpened)
    assert opened.channel_id != channel_id
    assert harness.channel(channel_id).state == ChannelState.SETTLED
    assert harness.channel(opened.channel_id).state == ChannelState.OPEN


def test_reopening_after_settle_gets_a_new_channel_id() -> None:
    harness, first = settled_channel()
    second = harness.open(ALICE, BOB, height=SETTLE_AT)
    assert second != first
    assert len(harness.state.channels) == 2
    # Old proofs can never be used on the new channel: they name the old id.
    harness.reject(
        BOB,
        ChannelClose(second, (harness.proof(ALICE, first, 1, 50),)),
        "invalid_proof",
        height=SETTLE_AT,
    )


def test_reopening_after_a_cooperative_settle_is_allowed() -> None:
    harness, channel_id = chain_with_channel()
    harness.call(ALICE, harness.coop_settle(channel_id, 150, 50, 5, signers=(ALICE, BOB)), height=5)
    second = harness.open(BOB, ALICE, height=6)
    assert second != channel_id


# -- deposit -----------------------------------------------------------------------------


def test_deposit_is_a_monotonic_total() -> None:
    harness, channel_id = chain_with_channel(deposits=(0, 0))
    events = harness.call(ALICE, ChannelDeposit(channel_id, ALICE.node_id, 100))
    assert events == [ChannelDeposited(channel_id, ALICE.node_id, 100)]
    harness.call(ALICE, ChannelDeposit(channel_id, ALICE.node_id, 160))
    assert harness.balance(ALICE) == 1000 - 160
    assert harness.channel(channel_id).deposit_a == 160
    harness.assert_conserved()


def test_decreasing_deposit_is_rejected() -> None:
    harness, channel_id = chain_with_channel(deposits=(100, 0))
    harness.reject(ALICE, ChannelDeposit(channel_id, ALICE.node_id, 99), "deposit_decreased")
    assert harness.channel(channel_id).deposit_a == 100


def test_repeated_deposit_total_is_a_free_no_op() -> None:
    harness, channel_id = chain_with_channel(deposits=(100, 0))
    before = snapshot(harness.state)
    nonce = harness.next_nonce(ALICE)
    assert harness.call(ALICE, ChannelDeposit(channel_id, ALICE.node_id, 100)) == []
    after = snapshot(harness.state)
    assert harness.balance(ALICE) == 900
    assert harness.channel(channel_id).deposit_a == 100
    # Only Alice's nonce moved: a retry of the same total is harmless.
    assert harness.next_nonce(ALICE) == nonce + 1
    after["accounts"][ALICE.node_id][1] -= 1
    assert after == before


def test_anyone_may_top_up_a_participant_but_not_a_stranger() -> None:
    harness, channel_id = chain_with_channel(deposits=(100, 0))
    harness.call(CAROL, ChannelDeposit(channel_id, BOB.node_id, 30))
    assert harness.channel(channel_id).deposit_b == 30
    assert harness.balance(CAROL) == 970
    assert harness.balance(BOB) == 1000
    harness.reject(CAROL, ChannelDeposit(channel_id, CAROL.node_id, 30), "not_participant")
    harness.assert_conserved()


def test_deposit_to_an_unknown_channel_is_rejected() -> None:
    harness, _ = chain_with_channel()
    harness.reject(ALICE, ChannelDeposit(ChannelId(bytes(32)), ALICE.node_id, 1), "unknown_channel")


def test_deposit_after_close_or_settle_is_rejected() -> None:
    harness, channel_id = closed_channel()
    harness.reject(ALICE, ChannelDeposit(channel_id, ALICE.node_id, 200), "wrong_state")
    harness.call(CAROL, ChannelSettle(channel_id), height=SETTLE_AT)
    harness.reject(ALICE, ChannelDeposit(channel_id, ALICE.node_id, 200), "already_settled")


def test_deposit_overflowing_u64_is_rejected() -> None:
    """Unreachable with a u64 genesis supply (deposits come out of balances), so the channel's
    deposit is inflated by hand to reach the check."""
    harness, channel_id = chain_with_channel(deposits=(0, 0))
    harness.channel(channel_id).deposit_a = U64_MAX - 5
    harness.reject(BOB, ChannelDeposit(channel_id, BOB.node_id, 6), "overflow")
    harness.call(BOB, ChannelDeposit(channel_id, BOB.node_id, 5))
    assert harness.channel(channel_id).total_deposit == U64_MAX


def test_deposits_at_the_u64_limit_are_accepted() -> None:
    half = 2**63
    harness = ChainHarness.create([(ALICE, half), (BOB, U64_MAX - half)])
    channel_id = harness.open(ALICE, BOB, deposits=(half, U64_MAX - half))
    assert harness.channel(channel_id).total_deposit == U64_MAX
    harness.assert_conserved()


# -- close -------------------------------------------------------------------------------


def test_close_by_a_non_participant_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    harness.reject(CAROL, ChannelClose(channel_id, ()), "not_participant")
    harness.reject(
        CAROL,
        ChannelClose(channel_id, (proof(ALICE, 1, 10, counter_signer=BOB),)),
        "not_participant",
    )


def test_close_records_closer_block_and_proofs() -> None:
    harness, channel_id = chain_with_channel()
    events = harness.call(
        BOB,
        ChannelClose(channel_id, (proof(ALICE, 4, 30), proof(BOB, 2, 5, counter_signer=ALICE))),
        height=CLOSE_AT,
    )
    assert events == [ChannelClosed(channel_id, BOB.node_id, CLOSE_AT, 4, 2)]
    record = harness.channel(channel_id)
    assert record.state == ChannelState.CLOSED
    assert record.closer == BOB.node_id
    assert record.window_end == WINDOW_END
    assert record.proof_a.transferred_amount == 30
    assert record.proof_b.transferred_amount == 5


def test_close_twice_is_rejected() -> None:
    harness, channel_id = closed_channel()
    harness.reject(ALICE, ChannelClose(channel_id, ()), "wrong_state", height=CLOSE_AT + 1)
    harness.reject(BOB, ChannelClose(channel_id, (proof(ALICE, 9, 50),)), "wrong_state")


def test_close_with_a_proof_for_another_chain_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    foreign = proof(BOB, 1, 10, chain_id=ChainId(bytes(32)))
    harness.reject(ALICE, ChannelClose(channel_id, (foreign,)), "wrong_chain")


def test_close_transaction_for_another_chain_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    harness.reject(ALICE, ChannelClose(channel_id, ()), "wrong_chain", chain_id=ChainId(bytes(32)))


def test_close_with_a_proof_not_signed_by_its_sender_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    genuine = proof(BOB, 1, 10)
    # Alice signs a proof that names Bob as its sender.
    forged = SignedBalanceProof(genuine.data, proof(ALICE, 1, 10).signature, None)
    harness.reject(ALICE, ChannelClose(channel_id, (forged,)), "bad_signature")
    tampered = SignedBalanceProof(genuine.data, bytes(64), None)
    harness.reject(ALICE, ChannelClose(channel_id, (tampered,)), "bad_signature")


def test_counter_signature_offered_as_a_proof_is_rejected() -> None:
    """Bob's ack of Alice's proof must never pass as a proof signed by Bob."""
    harness, channel_id = chain_with_channel()
    acked = proof(ALICE, 3, 40, counter_signer=BOB)
    assert acked.counter_signature is not None
    # The ack signature put in the sender's slot, over Alice's proof bytes...
    as_sender = SignedBalanceProof(acked.data, acked.counter_signature, None)
    harness.reject(BOB, ChannelClose(channel_id, (as_sender,)), "bad_signature")
    # ...or over the very bytes it signed (proof bytes + Alice's signature).
    as_data = SignedBalanceProof(acked.ack_data(), acked.counter_signature, None)
    harness.reject(ALICE, ChannelClose(channel_id, (as_data,)), "invalid_proof")
    # Only the domain tag tells an ack from a proof: a signature by Bob in the ack domain over
    # bytes that are a valid proof of Bob's is still no proof.
    bob_data = proof(BOB, 7, 90).data
    ack_domain = SignedBalanceProof(
        bob_data, BOB.sign(SigningTag.BALANCE_PROOF_ACK, bob_data), None
    )
    harness.reject(ALICE, ChannelClose(channel_id, (ack_domain,)), "bad_signature")


def test_closer_own_proof_needs_the_partner_counter_signature() -> None:
    harness, channel_id = chain_with_channel()
    own = proof(ALICE, 2, 20)
    harness.reject(ALICE, ChannelClose(channel_id, (own,)), "missing_counter_signature")
    # A counter-signature by someone other than the receiver is no counter-signature.
    by_carol = SignedBalanceProof(
        own.data, own.signature, proof(ALICE, 2, 20, counter_signer=CAROL).counter_signature
    )
    harness.reject(ALICE, ChannelClose(channel_id, (by_carol,)), "missing_counter_signature")
    harness.call(ALICE, ChannelClose(channel_id, (proof(ALICE, 2, 20, counter_signer=BOB),)))
    assert harness.channel(channel_id).proof_a.nonce == 2


def test_close_with_two_proofs_of_one_direction_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    harness.reject(
        ALICE, ChannelClose(channel_id, (proof(BOB, 1, 5), proof(BOB, 2, 6))), "invalid_proof"
    )


def test_close_with_a_proof_for_another_channel_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    other = harness.open(ALICE, CAROL)
    wrong = harness.proof(BOB, other, 1, 5)
    harness.reject(ALICE, ChannelClose(channel_id, (wrong,)), "invalid_proof")


def test_close_with_a_proof_from_a_stranger_or_nonce_zero_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    harness.reject(ALICE, ChannelClose(channel_id, (proof(CAROL, 1, 5),)), "invalid_proof")
    harness.reject(ALICE, ChannelClose(channel_id, (proof(BOB, 0, 5),)), "invalid_proof")


def test_malformed_proof_bytes_are_rejected() -> None:
    harness, channel_id = chain_with_channel()
    garbage = SignedBalanceProof(b"\xc1", bytes(64), None)
    harness.reject(ALICE, ChannelClose(channel_id, (garbage,)), "invalid_proof")


def test_proof_whose_transferred_plus_locked_overflows_u64_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    harness.reject(ALICE, ChannelClose(channel_id, (proof(BOB, 1, U64_MAX, locked=1),)), "overflow")
    harness.reject(
        ALICE, ChannelClose(channel_id, (proof(BOB, 1, 2**63, locked=2**63),)), "overflow"
    )
    # Exactly u64 fits.
    harness.call(ALICE, ChannelClose(channel_id, (proof(BOB, 1, U64_MAX - 7, locked=7),)))


# -- update ------------------------------------------------------------------------------


def test_update_while_open_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    harness.reject(BOB, ChannelUpdate(channel_id, (proof(ALICE, 1, 5),)), "wrong_state")


def test_update_replaces_only_with_a_strictly_higher_nonce() -> None:
    harness, channel_id = closed_channel(proof(BOB, 3, 10))
    update = ChannelUpdate(channel_id, (proof(ALICE, 5, 40),))
    events = harness.call(BOB, update, height=CLOSE_AT + 1)
    assert events == [ChannelUpdated(channel_id, BOB.node_id, 5, 3)]
    harness.reject(BOB, ChannelUpdate(channel_id, (proof(ALICE, 5, 99),)), "no_proof_applies")
    harness.reject(BOB, ChannelUpdate(channel_id, (proof(ALICE, 4, 99),)), "no_proof_applies")
    harness.reject(
        BOB,
        ChannelUpdate(channel_id, (proof(BOB, 3, 0, counter_signer=ALICE),)),
        "no_proof_applies",
    )
    assert harness.channel(channel_id).proof_a == StoredProof(5, 40, 0, EMPTY_LOCKSROOT)


def test_update_where_every_proof_is_stale_or_invalid_is_rejected() -> None:
    harness, channel_id = closed_channel(proof(BOB, 3, 10))
    harness.call(BOB, ChannelUpdate(channel_id, (proof(ALICE, 5, 40),)), height=CLOSE_AT + 1)
    error = harness.reject(
        BOB,
        ChannelUpdate(
            channel_id,
            (proof(ALICE, 4, 60), proof(ALICE, 9, 90, chain_id=ChainId(bytes(32)))),
        ),
        "no_proof_applies",
    )
    assert "stale" in error.message
    assert "wrong_chain" in error.message
    harness.reject(BOB, ChannelUpdate(channel_id, ()), "no_proof_applies")


def test_update_applies_the_good_proof_and_skips_the_stale_one() -> None:
    harness, channel_id = closed_channel(proof(BOB, 3, 10))
    events = harness.call(
        ALICE,
        ChannelUpdate(channel_id, (proof(BOB, 2, 99), proof(ALICE, 4, 25, counter_signer=BOB))),
        height=CLOSE_AT + 2,
    )
    assert events == [ChannelUpdated(channel_id, ALICE.node_id, 4, 3)]
    record = harness.channel(channel_id)
    assert (record.proof_a.nonce, record.proof_a.transferred_amount) == (4, 25)
    assert (record.proof_b.nonce, record.proof_b.transferred_amount) == (3, 10)


def test_update_with_two_proofs_of_one_direction_keeps_the_highest() -> None:
    harness, channel_id = closed_channel()
    harness.call(
        BOB, ChannelUpdate(channel_id, (proof(ALICE, 7, 70), proof(ALICE, 6, 60))), height=11
    )
    assert harness.channel(channel_id).proof_a.nonce == 7
    harness2, channel_id2 = closed_channel()
    harness2.call(
        BOB, ChannelUpdate(channel_id2, (proof(ALICE, 6, 60), proof(ALICE, 7, 70))), height=11
    )
    assert harness2.channel(channel_id2).proof_a.nonce == 7


def test_third_party_update_needs_the_counter_signature() -> None:
    harness, channel_id = closed_channel()
    error = harness.reject(
        CAROL, ChannelUpdate(channel_id, (proof(ALICE, 2, 30),)), "no_proof_applies"
    )
    assert "missing_counter_signature" in error.message
    harness.call(CAROL, ChannelUpdate(channel_id, (proof(ALICE, 2, 30, counter_signer=BOB),)))
    assert harness.channel(channel_id).proof_a.nonce == 2


def test_sender_cannot_submit_its_own_proof_without_a_counter_signature() -> None:
    """Without the ack a sender could push a proof its receiver never accepted (say, one
    that drops a lock the receiver could still claim)."""
    harness, channel_id = closed_channel()
    harness.reject(ALICE, ChannelUpdate(channel_id, (proof(ALICE, 2, 30),)), "no_proof_applies")


def test_update_window_is_inclusive_of_its_last_block() -> None:
    harness, channel_id = closed_channel()
    harness.reject(
        BOB,
        ChannelUpdate(channel_id, (proof(ALICE, 1, 5),)),
        "window_closed",
        height=WINDOW_END + 1,
    )
    harness.call(BOB, ChannelUpdate(channel_id, (proof(ALICE, 1, 5),)), height=WINDOW_END)


def test_update_after_settle_is_rejected() -> None:
    harness, channel_id = settled_channel()
    harness.reject(
        BOB, ChannelUpdate(channel_id, (proof(ALICE, 1, 5),)), "already_settled", height=40
    )


# -- settle ------------------------------------------------------------------------------


def test_settle_waits_for_the_end_of_the_window() -> None:
    harness, channel_id = closed_channel()
    harness.reject(CAROL, ChannelSettle(channel_id), "window_open", height=CLOSE_AT)
    harness.reject(CAROL, ChannelSettle(channel_id), "window_open", height=WINDOW_END)
    events = harness.call(CAROL, ChannelSettle(channel_id), height=WINDOW_END + 1)
    assert events == [ChannelSettled(channel_id, 100, 100, 0, 0)]
    assert harness.balance(ALICE) == 1000
    assert harness.balance(BOB) == 1000
    assert harness.channel(channel_id).state == ChannelState.SETTLED
    harness.assert_conserved()


def test_settle_while_open_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    harness.reject(ALICE, ChannelSettle(channel_id), "wrong_state", height=100)


def test_double_settle_is_rejected() -> None:
    harness, channel_id = settled_channel(proof(BOB, 1, 30))
    harness.reject(ALICE, ChannelSettle(channel_id), "already_settled", height=SETTLE_AT + 5)
    assert harness.balance(ALICE) == 900 + 130


# (d_A, d_B, t_A, t_B, L_A, L_B) -> (payout_A, payout_B, withheld_A, withheld_B)
SETTLE_CASES = [
    pytest.param((100, 50, 0, 0, 0, 0), (100, 50, 0, 0), id="no-transfers"),
    pytest.param((100, 50, 30, 10, 0, 0), (80, 70, 0, 0), id="net-transfer-to-B"),
    pytest.param((100, 50, 10, 45, 0, 0), (135, 15, 0, 0), id="net-transfer-to-A"),
    pytest.param((100, 50, 30, 10, 5, 7), (75, 63, 5, 7), id="locks-withheld"),
    pytest.param((100, 50, 150, 10, 0, 0), (0, 150, 0, 0), id="tA-exceeds-dA-plus-tB"),
    pytest.param((100, 50, 0, 200, 0, 0), (150, 0, 0, 0), id="tB-exceeds-dB-clamped-to-T"),
    pytest.param((100, 50, 90, 0, 20, 0), (0, 140, 10, 0), id="LA-exceeds-share"),
    pytest.param((100, 50, 0, 50, 0, 80), (150, 0, 0, 0), id="LB-with-zero-share"),
    pytest.param((60, 40, 10, 25, 30, 20), (45, 5, 30, 20), id="both-locked"),
    pytest.param((0, 100, 0, 40, 0, 10), (40, 50, 0, 10), id="single-funded"),
    pytest.param((0, 0, 0, 0, 0, 0), (0, 0, 0, 0), id="empty"),
    pytest.param((100, 50, 200, 300, 0, 0), (150, 0, 0, 0), id="both-over-transfer"),
    pytest.param((2**63, 2**63 - 1, U64_MAX - 5, 0, 5, 0), (0, U64_MAX, 0, 0), id="u64"),
    pytest.param((2**63, 2**63 - 1, 0, 0, 0, 2**63 - 1), (2**63, 0, 0, 2**63 - 1), id="u64-L"),
]


@pytest.mark.parametrize(("amounts", "expected"), SETTLE_CASES)
def test_settle_arithmetic(
    amounts: tuple[int, int, int, int, int, int], expected: tuple[int, int, int, int]
) -> None:
    d_a, d_b, t_a, t_b, l_a, l_b = amounts
    harness = ChainHarness.create([(ALICE, d_a), (BOB, d_b)])
    channel_id = harness.open(ALICE, BOB, deposits=(d_a, d_b))
    proofs = (
        harness.proof(ALICE, channel_id, 1, t_a, locked=l_a, counter_signer=BOB),
        harness.proof(BOB, channel_id, 1, t_b, locked=l_b),
    )
    harness.call(ALICE, ChannelClose(channel_id, proofs), height=CLOSE_AT)
    [settled] = harness.call(ALICE, ChannelSettle(channel_id), height=SETTLE_AT)
    payout_a, payout_b, withheld_a, withheld_b = expected
    assert settled == ChannelSettled(channel_id, payout_a, payout_b, withheld_a, withheld_b)
    assert harness.balance(ALICE) == payout_a
    assert harness.balance(BOB) == payout_b
    record = harness.channel(channel_id)
    assert (record.withheld_a, record.withheld_b) == (withheld_a, withheld_b)
    assert harness.state.contract_holdings() == withheld_a + withheld_b
    harness.assert_conserved()


# -- unlock ------------------------------------------------------------------------------

# Alice (A) sends Bob locks; their amounts are withheld from A's share at settle.
LOCK_EXPIRY = 15  # before SETTLE_AT, so unlock can follow settle directly


def settled_with_locks(
    locks: list[Lock],
    *,
    transferred: int = 0,
    locked: int | None = None,
    registered: dict[int, int] | None = None,
) -> tuple[ChainHarness, ChannelId]:
    """A settled channel whose A→B proof carries `locks`; `registered` maps a secret index to
    the block it is registered at (before close)."""
    harness, channel_id = chain_with_channel()
    for index, block in sorted((registered or {}).items(), key=lambda item: item[1]):
        harness.call(CAROL, RegisterSecret(secret(index)), height=block)
    signed = harness.proof(
        ALICE, channel_id, 1, transferred, locks=locks, locked=locked, counter_signer=BOB
    )
    harness.call(BOB, ChannelClose(channel_id, (signed,)), height=CLOSE_AT)
    harness.call(CAROL, ChannelSettle(channel_id), height=SETTLE_AT)
    return harness, channel_id


def test_unlock_before_settle_is_rejected() -> None:
    locks = [lock(10, LOCK_EXPIRY, secret(1))]
    harness, channel_id = chain_with_channel()
    signed = harness.proof(ALICE, channel_id, 1, locks=locks, counter_signer=BOB)
    unlock = ChannelUnlock(channel_id, ALICE.node_id, encode_locks(locks))
    harness.reject(BOB, unlock, "wrong_state", height=CLOSE_AT - 1)
    harness.call(BOB, ChannelClose(channel_id, (signed,)), height=CLOSE_AT)
    harness.reject(BOB, unlock, "wrong_state", height=WINDOW_END + 5)
    harness.call(BOB, ChannelSettle(channel_id), height=WINDOW_END + 5)
    harness.call(BOB, unlock, height=WINDOW_END + 5)


def test_unlock_pays_registered_locks_to_the_receiver_and_the_rest_back() -> None:
    locks = [
        lock(10, LOCK_EXPIRY, secret(1)),  # registered early: Bob's
        lock(20, LOCK_EXPIRY, secret(2)),  # registered exactly at expiry: Bob's
        lock(30, LOCK_EXPIRY, secret(3)),  # registered one block late: back to Alice
        lock(40, LOCK_EXPIRY, secret(4)),  # never registered: back to Alice
    ]
    harness, channel_id = chain_with_channel()
    harness.call(CAROL, RegisterSecret(secret(1)), height=3)
    harness.call(CAROL, RegisterSecret(secret(2)), height=LOCK_EXPIRY)
    harness.call(CAROL, RegisterSecret(secret(3)), height=LOCK_EXPIRY + 1)
    signed = harness.proof(ALICE, channel_id, 1, 5, locks=locks, counter_signer=BOB)
    harness.call(BOB, ChannelClose(channel_id, (signed,)), height=CLOSE_AT)
    [settled] = harness.call(CAROL, ChannelSettle(channel_id), height=SETTLE_AT)
    # A's share is 95, all 100 locked: only 95 withheld, payout 0.
    assert settled == ChannelSettled(channel_id, 0, 105, 95, 0)
    events = harness.call(
        CAROL, ChannelUnlock(channel_id, ALICE.node_id, encode_locks(locks)), height=SETTLE_AT
    )
    # Claimed 30 for Bob; the other 65 of the withheld 95 go back to Alice.
    assert events == [ChannelUnlocked(channel_id, ALICE.node_id, 30, 65)]
    assert harness.balance(BOB) == 900 + 105 + 30
    assert harness.balance(ALICE) == 900 + 65
    assert harness.state.contract_holdings() == 0
    harness.assert_conserved()


def test_secret_registered_after_expiry_returns_the_lock_to_the_sender() -> None:
    locks = [lock(10, LOCK_EXPIRY, secret(1))]
    harness, channel_id = settled_with_locks(locks, registered={1: LOCK_EXPIRY + 1})
    events = harness.call(
        BOB, ChannelUnlock(channel_id, ALICE.node_id, encode_locks(locks)), height=SETTLE_AT
    )
    assert events == [ChannelUnlocked(channel_id, ALICE.node_id, 0, 10)]
    assert harness.balance(ALICE) == 1000


@pytest.mark.parametrize("registered_at", [1, LOCK_EXPIRY - 1, LOCK_EXPIRY])
def test_secret_registered_at_or_before_expiry_pays_the_receiver(registered_at: int) -> None:
    locks = [lock(10, LOCK_EXPIRY, secret(1))]
    harness, channel_id = settled_with_locks(locks, registered={1: registered_at})
    events = harness.call(
        ALICE, ChannelUnlock(channel_id, ALICE.node_id, encode_locks(locks)), height=SETTLE_AT
    )
    assert events == [ChannelUnlocked(channel_id, ALICE.node_id, 10, 0)]
    assert harness.balance(BOB) == 1010
    assert harness.balance(ALICE) == 990


def test_secret_registered_after_close_but_by_expiry_still_counts() -> None:
    expiry = SETTLE_AT + 3  # the lock outlives the window
    locks = [lock(10, expiry, secret(1))]
    harness, channel_id = settled_with_locks(locks)
    harness.call(BOB, RegisterSecret(secret(1)), height=expiry)
    unlock = ChannelUnlock(channel_id, ALICE.node_id, encode_locks(locks))
    harness.reject(BOB, unlock, "locks_not_expired", height=expiry)
    harness.call(BOB, unlock, height=expiry + 1)
    assert harness.balance(BOB) == 1010


def test_unlock_before_every_lock_has_expired_is_rejected() -> None:
    late = SETTLE_AT + 10
    locks = [lock(10, LOCK_EXPIRY, secret(1)), lock(20, late, secret(2))]
    harness, channel_id = settled_with_locks(locks)
    unlock = ChannelUnlock(channel_id, ALICE.node_id, encode_locks(locks))
    harness.reject(ALICE, unlock, "locks_not_expired", height=SETTLE_AT)
    harness.reject(ALICE, unlock, "locks_not_expired", height=late)
    events = harness.call(ALICE, unlock, height=late + 1)
    assert events == [ChannelUnlocked(channel_id, ALICE.node_id, 0, 30)]


def test_unlock_with_locks_that_do_not_match_the_locksroot_is_rejected() -> None:
    locks = [lock(10, LOCK_EXPIRY, secret(1)), lock(20, LOCK_EXPIRY, secret(2))]
    harness, channel_id = settled_with_locks(locks, registered={1: 2, 2: 2})
    for wrong in (
        locks[::-1],  # wrong order
        locks[:1],  # a lock left out
        [*locks, lock(5, LOCK_EXPIRY, secret(3))],  # a lock added
        [lock(15, LOCK_EXPIRY, secret(1)), locks[1]],  # an amount changed
        [],
    ):
        harness.reject(
            BOB,
            ChannelUnlock(channel_id, ALICE.node_id, encode_locks(wrong)),
            "locksroot_mismatch",
            height=SETTLE_AT,
        )
    harness.call(
        BOB, ChannelUnlock(channel_id, ALICE.node_id, encode_locks(locks)), height=SETTLE_AT
    )
    assert harness.balance(BOB) == 1030


def test_unlock_twice_is_rejected() -> None:
    locks = [lock(10, LOCK_EXPIRY, secret(1))]
    harness, channel_id = settled_with_locks(locks, registered={1: 2})
    unlock = ChannelUnlock(channel_id, ALICE.node_id, encode_locks(locks))
    harness.call(BOB, unlock, height=SETTLE_AT)
    harness.reject(BOB, unlock, "already_unlocked", height=SETTLE_AT + 1)
    harness.reject(ALICE, unlock, "already_unlocked", height=SETTLE_AT + 1)
    assert harness.balance(BOB) == 1010


def test_unlock_of_a_direction_without_locks_releases_nothing_once() -> None:
    harness, channel_id = settled_with_locks([lock(10, LOCK_EXPIRY, secret(1))])
    unlock = ChannelUnlock(channel_id, BOB.node_id, b"")
    assert harness.call(ALICE, unlock, height=SETTLE_AT) == [
        ChannelUnlocked(channel_id, BOB.node_id, 0, 0)
    ]
    harness.reject(ALICE, unlock, "already_unlocked", height=SETTLE_AT)


def test_unlock_names_a_participant() -> None:
    harness, channel_id = settled_with_locks([])
    harness.reject(
        ALICE, ChannelUnlock(channel_id, CAROL.node_id, b""), "not_participant", height=SETTLE_AT
    )


def test_unlock_never_pays_more_than_was_withheld() -> None:
    # The proof claims only 5 locked although its locks add up to 60: 5 is withheld.
    locks = [lock(25, LOCK_EXPIRY, secret(1)), lock(35, LOCK_EXPIRY, secret(2))]
    harness, channel_id = settled_with_locks(locks, locked=5, registered={1: 2, 2: 2})
    assert harness.channel(channel_id).withheld_a == 5
    events = harness.call(
        BOB, ChannelUnlock(channel_id, ALICE.node_id, encode_locks(locks)), height=SETTLE_AT
    )
    assert events == [ChannelUnlocked(channel_id, ALICE.node_id, 5, 0)]
    assert harness.balance(BOB) == 1005
    assert harness.balance(ALICE) == 995
    harness.assert_conserved()


def test_unlock_is_capped_by_a_share_smaller_than_the_locks() -> None:
    # A transferred 90 of its 100 and locks 60 more: only its remaining share of 10 is withheld.
    locks = [lock(60, LOCK_EXPIRY, secret(1))]
    harness, channel_id = settled_with_locks(locks, transferred=90, registered={1: 2})
    record = harness.channel(channel_id)
    assert record.withheld_a == 10
    events = harness.call(
        BOB, ChannelUnlock(channel_id, ALICE.node_id, encode_locks(locks)), height=SETTLE_AT
    )
    assert events == [ChannelUnlocked(channel_id, ALICE.node_id, 10, 0)]
    assert harness.balance(BOB) == 900 + 190 + 10
    assert harness.balance(ALICE) == 900
    harness.assert_conserved()


def test_unlock_after_cooperative_settle_has_nothing_to_release() -> None:
    harness, channel_id = chain_with_channel()
    harness.call(ALICE, harness.coop_settle(channel_id, 120, 80, 9, signers=(ALICE, BOB)))
    harness.reject(BOB, ChannelUnlock(channel_id, ALICE.node_id, b""), "already_unlocked")


# -- cooperative settle -----------------------------------------------------------------


def test_cooperative_settle_pays_out_at_once() -> None:
    harness, channel_id = chain_with_channel()
    call = harness.coop_settle(channel_id, 130, 70, 5, signers=(ALICE, BOB))
    events = harness.call(CAROL, call, height=5)
    assert events == [ChannelCooperativelySettled(channel_id, 130, 70)]
    assert harness.balance(ALICE) == 1030
    assert harness.balance(BOB) == 970
    assert harness.channel(channel_id).state == ChannelState.SETTLED
    assert harness.state.contract_holdings() == 0
    harness.assert_conserved()


def test_expired_cooperative_settle_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    call = harness.coop_settle(channel_id, 100, 100, 5, signers=(ALICE, BOB))
    harness.reject(ALICE, call, "coop_expired", height=6)
    harness.call(ALICE, call, height=5)


@pytest.mark.parametrize(("balance_a", "balance_b"), [(100, 99), (101, 100), (0, 0), (201, 0)])
def test_cooperative_settle_must_add_up_to_the_deposits(balance_a: int, balance_b: int) -> None:
    harness, channel_id = chain_with_channel()
    call = harness.coop_settle(channel_id, balance_a, balance_b, 50, signers=(ALICE, BOB))
    harness.reject(ALICE, call, "coop_mismatch")


def test_cooperative_settle_signed_before_a_deposit_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    call = harness.coop_settle(channel_id, 150, 50, 50, signers=(ALICE, BOB))
    harness.call(BOB, ChannelDeposit(channel_id, BOB.node_id, 150))
    harness.reject(ALICE, call, "coop_mismatch")


def test_cooperative_settle_naming_other_deposits_is_rejected_even_if_the_total_fits() -> None:
    """Terms signed for deposits (100, 150) must not apply to deposits (150, 100), although
    the balances add up to the same total."""
    harness, channel_id = chain_with_channel(deposits=(150, 100))
    call = harness.coop_settle(channel_id, 100, 150, 50, signers=(ALICE, BOB), deposits=(100, 150))
    harness.reject(ALICE, call, "coop_mismatch")
    harness.call(ALICE, harness.coop_settle(channel_id, 100, 150, 50, signers=(ALICE, BOB)))
    assert harness.balance(BOB) == 900 + 150


@pytest.mark.parametrize("missing", ["a", "b", "both"])
def test_cooperative_settle_needs_both_signatures(missing: str) -> None:
    harness, channel_id = chain_with_channel()
    signers = (
        None if missing in ("a", "both") else ALICE,
        None if missing in ("b", "both") else BOB,
    )
    call = harness.coop_settle(channel_id, 200, 0, 50, signers=signers)
    harness.reject(ALICE, call, "bad_signature")


def test_cooperative_settle_signed_by_a_stranger_or_swapped_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    harness.reject(
        ALICE, harness.coop_settle(channel_id, 200, 0, 50, signers=(ALICE, CAROL)), "bad_signature"
    )
    harness.reject(
        ALICE, harness.coop_settle(channel_id, 200, 0, 50, signers=(BOB, ALICE)), "bad_signature"
    )


def test_cooperative_settle_for_another_channel_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    other = harness.open(ALICE, CAROL, deposits=(100, 100))
    # Terms signed for `other`, submitted against `channel_id` (same deposits, same balances).
    call = harness.coop_settle(channel_id, 100, 100, 50, signers=(ALICE, BOB), for_channel=other)
    harness.reject(ALICE, call, "coop_mismatch")


def test_cooperative_settle_for_another_chain_is_rejected() -> None:
    harness, channel_id = chain_with_channel()
    call = harness.coop_settle(
        channel_id, 100, 100, 50, signers=(ALICE, BOB), chain_id=ChainId(bytes(32))
    )
    harness.reject(ALICE, call, "wrong_chain")


def test_cooperative_settle_while_closed_inside_the_window() -> None:
    harness, channel_id = closed_channel(proof(BOB, 1, 50))
    call = harness.coop_settle(channel_id, 110, 90, WINDOW_END, signers=(ALICE, BOB))
    events = harness.call(BOB, call, height=WINDOW_END)
    assert events == [ChannelCooperativelySettled(channel_id, 110, 90)]
    assert harness.balance(ALICE) == 1010
    harness.reject(BOB, ChannelSettle(channel_id), "already_settled", height=SETTLE_AT)


def test_cooperative_settle_after_the_window_is_rejected() -> None:
    harness, channel_id = closed_channel()
    call = harness.coop_settle(channel_id, 110, 90, 1000, signers=(ALICE, BOB))
    harness.reject(BOB, call, "window_closed", height=WINDOW_END + 1)


def test_cooperative_settle_after_settle_is_rejected() -> None:
    harness, channel_id = settled_channel()
    call = harness.coop_settle(channel_id, 110, 90, 1000, signers=(ALICE, BOB))
    harness.reject(BOB, call, "already_settled", height=SETTLE_AT)


def test_cooperative_settle_cannot_be_replayed() -> None:
    harness, channel_id = chain_with_channel()
    call = harness.coop_settle(channel_id, 110, 90, 50, signers=(ALICE, BOB))
    harness.call(BOB, call, height=5)
    harness.reject(BOB, call, "already_settled", height=6)
    assert harness.balance(ALICE) == 1010


# -- disputes ----------------------------------------------------------------------------


def test_classic_attack_closing_with_a_stale_proof_is_defeated_by_update() -> None:
    """Alice paid Bob 70 (her newest proof, nonce 5); Bob paid Alice 10 then 30. Alice closes
    with none of her own proofs and only Bob's old one; Bob answers with her newest proof."""
    harness, channel_id = chain_with_channel()
    alice_old = proof(ALICE, 2, 20, counter_signer=BOB)
    alice_newest = proof(ALICE, 5, 70, counter_signer=BOB)
    bob_old = proof(BOB, 1, 10, counter_signer=ALICE)
    harness.call(ALICE, ChannelClose(channel_id, (bob_old,)), height=CLOSE_AT)
    # Bob reacts as soon as he sees the close (Alice's signature is all he needs).
    unsigned_newest = SignedBalanceProof(alice_newest.data, alice_newest.signature, None)
    harness.call(BOB, ChannelUpdate(channel_id, (unsigned_newest,)), height=CLOSE_AT + 1)
    # Alice cannot roll her direction back, not even with Bob's own counter-signature.
    harness.reject(
        ALICE, ChannelUpdate(channel_id, (alice_old,)), "no_proof_applies", height=CLOSE_AT + 2
    )
    harness.call(CAROL, ChannelSettle(channel_id), height=SETTLE_AT)
    # Owed to Bob with every newest proof: 100 + 70 - 30 = 140. He gets at least that.
    assert harness.balance(BOB) == 900 + 100 + 70 - 10
    assert harness.balance(BOB) >= 900 + 140
    assert harness.balance(ALICE) == 900 + 100 - 70 + 10
    harness.assert_conserved()


def test_stale_proof_in_the_last_window_block_wins_if_unanswered() -> None:
    """Why a node updates as soon as it sees the close: nothing after the window counts."""
    harness, channel_id = closed_channel(proof(BOB, 1, 10))
    harness.reject(
        BOB,
        ChannelUpdate(channel_id, (proof(ALICE, 5, 70),)),
        "window_closed",
        height=WINDOW_END + 1,
    )
    harness.call(CAROL, ChannelSettle(channel_id), height=SETTLE_AT)
    assert harness.balance(ALICE) == 900 + 110


def test_honest_close_with_both_newest_proofs_needs_no_update() -> None:
    harness, channel_id = chain_with_channel()
    alice_newest = proof(ALICE, 5, 70, counter_signer=BOB)
    bob_newest = proof(BOB, 3, 30)
    harness.call(ALICE, ChannelClose(channel_id, (alice_newest, bob_newest)), height=CLOSE_AT)
    # Bob has nothing newer to offer: his update of the same proofs is refused.
    harness.reject(
        BOB,
        ChannelUpdate(channel_id, (proof(ALICE, 5, 70), proof(BOB, 3, 30, counter_signer=ALICE))),
        "no_proof_applies",
        height=CLOSE_AT + 1,
    )
    [settled] = harness.call(BOB, ChannelSettle(channel_id), height=SETTLE_AT)
    assert settled == ChannelSettled(channel_id, 60, 140, 0, 0)
    assert harness.balance(ALICE) == 900 + 60
    assert harness.balance(BOB) == 900 + 140


def test_watchtower_can_update_with_counter_signed_proofs() -> None:
    """A third party holding both directions (a watchtower) defends Bob while he is away."""
    harness, channel_id = closed_channel(proof(BOB, 1, 10, counter_signer=ALICE))
    tower = CAROL
    events = harness.call(
        tower,
        ChannelUpdate(
            channel_id,
            (proof(ALICE, 5, 70, counter_signer=BOB), proof(BOB, 3, 30, counter_signer=ALICE)),
        ),
        height=CLOSE_AT + 1,
    )
    assert events == [ChannelUpdated(channel_id, tower.node_id, 5, 3)]
    harness.call(tower, ChannelSettle(channel_id), height=SETTLE_AT)
    assert harness.balance(BOB) == 900 + 140
