"""The Plasma root contract: every rule and rejection of DESIGN.md "Plasma".

Olga operates the child chain; Alice and Bob use it; Carol is a bystander (a challenger). Each
refusal is checked by its `ChainError.code` and by a snapshot showing the state unchanged.
Heights are explicit: the exit formula is `exitable_at = max(h + 2·cp, now + cp)`.
"""

from __future__ import annotations

from dataclasses import replace

from p2pchan.crypto.merkle import EMPTY, MerkleTree
from p2pchan.l1.events import (
    PaidExit,
    PlasmaBlockSubmitted,
    PlasmaCreated,
    PlasmaDeposited,
    PlasmaExitChallenged,
    PlasmaExitsFinalized,
    PlasmaExitStarted,
)
from p2pchan.l1.plasma_contract import plasma_id_for
from p2pchan.l1.plasma_state import (
    MAX_FINALIZE_PER_CALL,
    MIN_CHALLENGE_PERIOD,
    ExitStatus,
    exitable_at,
)
from p2pchan.l1.transactions import (
    PlasmaCreate,
    PlasmaDeposit,
    PlasmaFinalizeExits,
    PlasmaSubmitBlock,
)
from p2pchan.types import U64_MAX, PlasmaId
from p2pchan.wire.plasma import (
    Confirmation,
    PlasmaTransaction,
    SignedPlasmaTx,
    TxOutput,
    deposit_root,
    sign_confirmation,
    sign_tx,
    utxo_pos,
)
from tests.unit.chain_helpers import ChainHarness, identity
from tests.unit.plasma_helpers import ChildChain

OLGA, ALICE, BOB, CAROL = identity(9), identity(1), identity(2), identity(3)
BOND = 10
PERIOD = 20


def fresh(*, bond: int = BOND, period: int = PERIOD) -> ChildChain:
    harness = ChainHarness.create([(OLGA, 1000), (ALICE, 1000), (BOB, 1000), (CAROL, 1000)])
    return ChildChain(harness, OLGA, exit_bond=bond, challenge_period=period, height=1)


def with_transfer() -> tuple[ChildChain, int, SignedPlasmaTx, int]:
    """Alice deposits 100 (block 1) and pays Bob 60 in block 1000 (change 40 to herself).

    Returns the chain, Alice's deposit position, the transfer and its block number."""
    chain = fresh()
    deposit = chain.deposit(ALICE, 100, height=2)
    transfer = chain.tx([(deposit, ALICE)], [(BOB, 60), (ALICE, 40)])
    blknum = chain.submit([transfer], height=3)
    return chain, deposit, transfer, blknum


# -- create --------------------------------------------------------------------------------


def test_create_makes_the_sender_operator_of_a_chain_with_a_derived_id() -> None:
    harness = ChainHarness.create([(OLGA, 1000)])
    nonce = harness.next_nonce(OLGA)
    [created] = harness.call(OLGA, PlasmaCreate(7, 25), height=4)
    expected_id = plasma_id_for(harness.chain_id, OLGA.node_id, nonce)
    assert created == PlasmaCreated(expected_id, OLGA.node_id, 7, 25)
    record = harness.state.plasma[expected_id]
    assert (record.operator, record.exit_bond, record.challenge_period) == (OLGA.node_id, 7, 25)
    assert (record.created_block, record.current_block, record.next_deposit_block) == (4, 0, 1)
    [again] = harness.call(OLGA, PlasmaCreate(7, 25))
    assert isinstance(again, PlasmaCreated) and again.plasma_id != expected_id


def test_create_rejects_a_challenge_period_out_of_range() -> None:
    assert MIN_CHALLENGE_PERIOD == 20
    harness = ChainHarness.create([(OLGA, 1000)])
    harness.reject(OLGA, PlasmaCreate(1, 19), "challenge_period_too_small")
    harness.reject(OLGA, PlasmaCreate(1, 0), "challenge_period_too_small")
    harness.reject(OLGA, PlasmaCreate(1, 1_000_001), "challenge_period_too_large")
    harness.call(OLGA, PlasmaCreate(1, 20))


# -- submit block ----------------------------------------------------------------------------


def test_the_operator_submits_blocks_numbered_in_steps_of_1000() -> None:
    chain = fresh()
    events = chain.harness.call(OLGA, PlasmaSubmitBlock(chain.plasma_id, b"\x01" * 32), height=5)
    assert events == [PlasmaBlockSubmitted(chain.plasma_id, 1000, b"\x01" * 32, 5)]
    chain.harness.call(OLGA, PlasmaSubmitBlock(chain.plasma_id, b"\x02" * 32), height=6)
    record = chain.record
    assert record.current_block == 2000
    assert (record.blocks[1000].root, record.blocks[1000].height) == (b"\x01" * 32, 5)
    assert (record.blocks[2000].root, record.blocks[2000].height) == (b"\x02" * 32, 6)


def test_only_the_operator_submits_blocks() -> None:
    chain = fresh()
    chain.harness.reject(ALICE, PlasmaSubmitBlock(chain.plasma_id, bytes(32)), "not_operator")
    unknown = PlasmaId(b"\x07" * 32)
    chain.harness.reject(OLGA, PlasmaSubmitBlock(unknown, bytes(32)), "unknown_plasma")


# -- deposit --------------------------------------------------------------------------------


def test_deposits_take_the_numbers_between_operator_blocks() -> None:
    chain = fresh()
    before = chain.harness.balance(ALICE)
    [event] = chain.harness.call(ALICE, PlasmaDeposit(chain.plasma_id, 30), height=2)
    assert event == PlasmaDeposited(chain.plasma_id, 1, ALICE.node_id, 30, 2)
    assert chain.harness.balance(ALICE) == before - 30
    assert chain.record.blocks[1].root == deposit_root(chain.plasma_id, ALICE.node_id, 30)
    assert chain.deposit(BOB, 5, height=3) == utxo_pos(2, 0, 0)
    chain.submit([], height=4)
    assert chain.deposit(BOB, 5, height=5) == utxo_pos(1001, 0, 0)
    assert chain.deposit(ALICE, 5, height=5) == utxo_pos(1002, 0, 0)
    assert chain.record.deposits_held == 45
    chain.harness.assert_conserved()


def test_deposit_refusals() -> None:
    chain = fresh()
    reject = chain.harness.reject
    reject(ALICE, PlasmaDeposit(chain.plasma_id, 0), "invalid_amount")
    reject(ALICE, PlasmaDeposit(chain.plasma_id, 1001), "insufficient_funds")
    reject(ALICE, PlasmaDeposit(PlasmaId(bytes(32)), 1), "unknown_plasma")


def test_at_most_999_deposits_between_two_operator_blocks() -> None:
    chain = fresh()
    chain.harness.faucet(ALICE.node_id, 10_000)
    for _ in range(999):
        chain.harness.call(ALICE, PlasmaDeposit(chain.plasma_id, 1))
    assert chain.record.next_deposit_block == 1000
    chain.harness.reject(ALICE, PlasmaDeposit(chain.plasma_id, 1), "too_many_deposits")
    chain.submit([])
    assert chain.deposit(ALICE, 1) == utxo_pos(1001, 0, 0)


# -- start exit -----------------------------------------------------------------------------


def test_a_deposit_exits_without_proof_or_confirmations_and_pays_the_bond() -> None:
    chain = fresh()
    deposit = chain.deposit(ALICE, 100, height=2)
    before = chain.harness.balance(ALICE)
    [event] = chain.harness.call(ALICE, chain.start_exit(deposit), height=5)
    assert event == PlasmaExitStarted(
        chain.plasma_id, deposit, ALICE.node_id, 100, exitable_at(2, 5, PERIOD)
    )
    assert chain.harness.balance(ALICE) == before - BOND
    record = chain.record.exits[deposit]
    assert (record.owner, record.amount, record.bond, record.status) == (
        ALICE.node_id,
        100,
        BOND,
        ExitStatus.QUEUED,
    )
    assert chain.record.queue == [(record.exitable_at, deposit)]
    assert chain.record.bonds_held == BOND
    chain.harness.assert_conserved()


def test_a_deposit_exit_may_carry_the_lone_leaf_proof() -> None:
    chain = fresh()
    deposit = chain.deposit(ALICE, 100, height=2)
    lone_leaf_proof = MerkleTree([chain.tx_at(deposit).leaf]).proof(0)
    assert lone_leaf_proof == b"".join(EMPTY[:16])
    chain.harness.call(ALICE, chain.start_exit(deposit, proof=lone_leaf_proof), height=3)


def test_an_output_of_a_block_exits_with_its_proof_and_confirmations() -> None:
    chain, _, _, blknum = with_transfer()
    bob_output = utxo_pos(blknum, 0, 0)
    [event] = chain.harness.call(BOB, chain.start_exit(bob_output), height=7)
    assert isinstance(event, PlasmaExitStarted)
    assert (event.owner, event.amount, event.exitable_at) == (
        BOB.node_id,
        60,
        exitable_at(3, 7, PERIOD),
    )
    chain.harness.call(ALICE, chain.start_exit(utxo_pos(blknum, 0, 1)), height=7)


def test_an_exit_in_a_block_of_many_transactions() -> None:
    chain = fresh()
    deposits = [chain.deposit(who, 10, height=2) for who in (ALICE, BOB, CAROL)]
    txs = [
        chain.tx([(deposits[0], ALICE)], [(BOB, 10)]),
        chain.tx([(deposits[1], BOB)], [(CAROL, 4), (BOB, 6)]),
        chain.tx([(deposits[2], CAROL)], [(ALICE, 10)]),
    ]
    blknum = chain.submit(txs, height=3)
    for txindex, who in ((0, BOB), (1, CAROL), (2, ALICE)):
        chain.harness.call(who, chain.start_exit(utxo_pos(blknum, txindex, 0)), height=4)
    chain.harness.call(BOB, chain.start_exit(utxo_pos(blknum, 1, 1)), height=4)


def test_a_two_input_transaction_needs_both_confirmations() -> None:
    chain = fresh()
    first, second = chain.deposit(ALICE, 10, height=2), chain.deposit(BOB, 20, height=2)
    merge = chain.tx([(first, ALICE), (second, BOB)], [(CAROL, 30)])
    blknum = chain.submit([merge], height=3)
    position = utxo_pos(blknum, 0, 0)
    both = chain.confirmations(merge, blknum)
    chain.harness.reject(
        CAROL, chain.start_exit(position, confirmations=both[:1]), "missing_confirmations"
    )
    swapped = (both[1], both[0])
    chain.harness.reject(
        CAROL, chain.start_exit(position, confirmations=swapped), "invalid_confirmation"
    )
    chain.harness.call(CAROL, chain.start_exit(position, confirmations=both), height=4)


def test_start_exit_refusals_about_the_output() -> None:
    chain, _, _, blknum = with_transfer()
    reject = chain.harness.reject
    bob_output = utxo_pos(blknum, 0, 0)
    reject(ALICE, chain.start_exit(bob_output), "not_owner", height=5)
    call = chain.start_exit(bob_output)
    reject(BOB, replace(call, plasma_id=PlasmaId(bytes(32))), "unknown_plasma")
    for bad in (0, utxo_pos(blknum, 0, 2), utxo_pos(blknum, 70_000, 0), U64_MAX):
        reject(BOB, replace(call, utxo_pos=bad), "invalid_position")
    uncommitted = utxo_pos(blknum + 1000, 0, 0)
    reject(BOB, replace(call, utxo_pos=uncommitted), "unknown_plasma_block")
    reject(BOB, chain.start_exit(utxo_pos(blknum, 0, 1)), "not_owner")
    # An output index the transaction does not have.
    single = chain.tx([(utxo_pos(blknum, 0, 0), BOB)], [(CAROL, 60)])
    next_block = chain.submit([single], height=6)
    reject(CAROL, chain.start_exit(utxo_pos(next_block, 0, 1), tx=single), "no_such_output")


def test_start_exit_refusals_about_the_transaction_and_its_proof() -> None:
    chain, deposit, transfer, blknum = with_transfer()
    reject = chain.harness.reject
    position = utxo_pos(blknum, 0, 0)
    garbage = SignedPlasmaTx(b"\x93\x01", ())
    reject(BOB, chain.start_exit(position, tx=garbage), "invalid_tx")
    unsigned = SignedPlasmaTx(transfer.tx_bytes, ())
    reject(BOB, chain.start_exit(position, tx=unsigned), "invalid_tx")
    other_chain = chain.tx(
        [(deposit, ALICE)], [(BOB, 60), (ALICE, 40)], plasma_id=PlasmaId(b"\x05" * 32)
    )
    reject(BOB, chain.start_exit(position, tx=other_chain), "wrong_plasma")
    proof = chain.proof(blknum, 0)
    reject(BOB, chain.start_exit(position, proof=proof[:-1]), "invalid_proof")
    reject(BOB, chain.start_exit(position, proof=bytes(len(proof))), "invalid_proof")
    reject(BOB, chain.start_exit(position, proof=b""), "invalid_proof")
    # A transaction the block does not hold (same outputs, another input).
    forged = chain.tx([(utxo_pos(5, 0, 0), ALICE)], [(BOB, 60), (ALICE, 40)])
    reject(BOB, chain.start_exit(position, tx=forged, proof=proof), "invalid_proof")
    # A deposit block holds its deposit only, at index 0, with no inputs.
    fake_deposit = SignedPlasmaTx(
        PlasmaTransaction(chain.plasma_id, (), (TxOutput(ALICE.node_id, 1000),)).encode(), ()
    )
    reject(ALICE, chain.start_exit(deposit, tx=fake_deposit), "invalid_proof")
    reject(ALICE, chain.start_exit(deposit, proof=b"\x00" * 512), "invalid_proof")


def test_start_exit_refusals_about_confirmations() -> None:
    chain, _, transfer, blknum = with_transfer()
    reject = chain.harness.reject
    position = utxo_pos(blknum, 0, 0)
    root = chain.record.blocks[blknum].root
    reject(BOB, chain.start_exit(position, confirmations=()), "missing_confirmations")
    by_bob = (sign_confirmation(BOB, transfer.tx_hash, root),)  # not the input's signer
    reject(BOB, chain.start_exit(position, confirmations=by_bob), "invalid_confirmation")
    other_root = (sign_confirmation(ALICE, transfer.tx_hash, bytes(32)),)
    reject(BOB, chain.start_exit(position, confirmations=other_root), "invalid_confirmation")
    zero = (Confirmation(ALICE.node_id, bytes(64)),)
    reject(BOB, chain.start_exit(position, confirmations=zero), "invalid_confirmation")


def test_one_exit_per_output_ever() -> None:
    chain = fresh()
    deposit = chain.deposit(ALICE, 100, height=2)
    chain.harness.call(ALICE, chain.start_exit(deposit), height=3)
    chain.harness.reject(ALICE, chain.start_exit(deposit), "already_exited", height=4)
    chain.harness.call(CAROL, PlasmaFinalizeExits(chain.plasma_id, 1), height=100)
    chain.harness.reject(ALICE, chain.start_exit(deposit), "already_exited", height=101)


def test_the_bond_must_be_affordable() -> None:
    chain = fresh(bond=2000)
    deposit = chain.deposit(ALICE, 100, height=2)
    chain.harness.reject(ALICE, chain.start_exit(deposit), "insufficient_funds", height=3)


# -- challenge ------------------------------------------------------------------------------


def test_a_spent_output_exit_is_challenged_and_the_bond_goes_to_the_challenger() -> None:
    chain, deposit, _, blknum = with_transfer()
    chain.harness.call(ALICE, chain.start_exit(deposit), height=4)  # Alice exits a spent coin
    carol_before = chain.harness.balance(CAROL)
    spend = utxo_pos(blknum, 0, 0)
    [event] = chain.harness.call(CAROL, chain.challenge(deposit, spend, confirmer=ALICE), height=5)
    assert event == PlasmaExitChallenged(chain.plasma_id, deposit, CAROL.node_id, spend)
    assert chain.harness.balance(CAROL) == carol_before + BOND
    record = chain.record
    assert record.exits[deposit].status == ExitStatus.CHALLENGED
    assert record.queue == [] and record.bonds_held == 0
    chain.harness.reject(ALICE, chain.start_exit(deposit), "already_exited", height=6)
    chain.harness.reject(CAROL, PlasmaFinalizeExits(chain.plasma_id, 1), "no_exits", height=1000)
    chain.harness.assert_conserved()


def test_challenge_refusals() -> None:
    chain, deposit, transfer, blknum = with_transfer()
    reject = chain.harness.reject
    spend = utxo_pos(blknum, 0, 0)
    reject(CAROL, chain.challenge(deposit, spend, confirmer=ALICE), "unknown_exit", height=4)
    chain.harness.call(ALICE, chain.start_exit(deposit), height=4)
    call = chain.challenge(deposit, spend, confirmer=ALICE)
    reject(CAROL, replace(call, plasma_id=PlasmaId(bytes(32))), "unknown_plasma")
    reject(CAROL, chain.challenge(deposit, spend, confirmer=BOB), "invalid_confirmation")
    elsewhere = sign_confirmation(ALICE, transfer.tx_hash, bytes(32)).signature
    reject(CAROL, chain.challenge(deposit, spend, confirmation=elsewhere), "invalid_confirmation")
    proof = chain.proof(blknum, 0)
    reject(
        CAROL,
        chain.challenge(deposit, spend, confirmer=ALICE, proof=bytes(len(proof))),
        "invalid_proof",
    )
    reject(
        CAROL, chain.challenge(deposit, spend + 1, confirmer=ALICE, proof=proof), "invalid_position"
    )
    reject(
        CAROL,
        chain.challenge(
            deposit, spend + 1000 * 10**9, confirmation=bytes(64), tx=transfer, proof=proof
        ),
        "unknown_plasma_block",
    )
    # A transaction that does not spend the exiting output.
    other = chain.deposit(BOB, 5, height=5)
    unrelated = chain.tx([(other, BOB)], [(CAROL, 5)])
    later = chain.submit([unrelated], height=6)
    reject(CAROL, chain.challenge(deposit, utxo_pos(later, 0, 0), confirmer=BOB), "not_spending")
    # A spend the exiting owner never signed (the operator forged it into a block).
    spent_inputs = PlasmaTransaction.decode(transfer.tx_bytes).inputs
    forged = sign_tx(
        PlasmaTransaction(chain.plasma_id, spent_inputs, (TxOutput(OLGA.node_id, 100),)), [OLGA]
    )
    forged_block = chain.submit([forged], height=7)
    chain.signers[forged.tx_hash] = [OLGA]
    reject(
        CAROL,
        chain.challenge(deposit, utxo_pos(forged_block, 0, 0), confirmer=ALICE),
        "not_signed_by_owner",
    )
    garbage = SignedPlasmaTx(b"\xc1", ())
    reject(
        CAROL,
        chain.challenge(deposit, spend, confirmer=ALICE, tx=garbage, proof=proof),
        "invalid_tx",
    )
    other_chain = chain.tx([(deposit, ALICE)], [(BOB, 100)], plasma_id=PlasmaId(b"\x05" * 32))
    reject(
        CAROL,
        chain.challenge(deposit, spend, confirmer=ALICE, tx=other_chain, proof=proof),
        "wrong_plasma",
    )
    # The right challenge works; a second one finds the exit gone.
    chain.harness.call(CAROL, chain.challenge(deposit, spend, confirmer=ALICE), height=8)
    reject(CAROL, chain.challenge(deposit, spend, confirmer=ALICE), "exit_not_queued")


def test_a_paid_exit_cannot_be_challenged() -> None:
    chain, deposit, _, blknum = with_transfer()
    chain.harness.call(ALICE, chain.start_exit(deposit), height=4)
    chain.harness.call(CAROL, PlasmaFinalizeExits(chain.plasma_id, 1), height=100)
    chain.harness.reject(
        CAROL, chain.challenge(deposit, utxo_pos(blknum, 0, 0), confirmer=ALICE), "exit_not_queued"
    )


# -- finalize and priority ------------------------------------------------------------------


def test_finalize_pays_amount_and_bond_in_priority_order_and_stops_at_the_first_not_due() -> None:
    chain = fresh()
    early = chain.deposit(ALICE, 100, height=2)  # committed at 2
    late = chain.deposit(BOB, 50, height=30)  # committed at 30
    chain.harness.call(ALICE, chain.start_exit(early), height=31)
    chain.harness.call(BOB, chain.start_exit(late), height=31)
    early_at, late_at = exitable_at(2, 31, PERIOD), exitable_at(30, 31, PERIOD)
    assert (early_at, late_at) == (51, 70)
    reject = chain.harness.reject
    reject(CAROL, PlasmaFinalizeExits(chain.plasma_id, 5), "exits_not_due", height=early_at - 1)
    alice_before, bob_before = chain.harness.balance(ALICE), chain.harness.balance(BOB)
    [event] = chain.harness.call(CAROL, PlasmaFinalizeExits(chain.plasma_id, 5), height=early_at)
    assert event == PlasmaExitsFinalized(
        chain.plasma_id, (PaidExit(early, ALICE.node_id, 100, BOND),)
    )
    assert chain.harness.balance(ALICE) == alice_before + 100 + BOND
    assert chain.harness.balance(BOB) == bob_before
    assert chain.record.exits[early].status == ExitStatus.PAID
    reject(CAROL, PlasmaFinalizeExits(chain.plasma_id, 5), "exits_not_due", height=late_at - 1)
    chain.harness.call(CAROL, PlasmaFinalizeExits(chain.plasma_id, 5), height=late_at)
    assert chain.harness.balance(BOB) == bob_before + 50 + BOND
    assert chain.record.held() == 0
    reject(CAROL, PlasmaFinalizeExits(chain.plasma_id, 5), "no_exits", height=late_at + 1)
    chain.harness.assert_conserved()


def test_finalize_takes_at_most_max_count_exits() -> None:
    chain = fresh()
    deposits = [chain.deposit(ALICE, 1, height=2) for _ in range(MAX_FINALIZE_PER_CALL + 3)]
    for position in deposits:
        chain.harness.call(ALICE, chain.start_exit(position), height=3)
    reject = chain.harness.reject
    reject(CAROL, PlasmaFinalizeExits(chain.plasma_id, 0), "invalid_count", height=100)
    too_many = MAX_FINALIZE_PER_CALL + 1
    reject(CAROL, PlasmaFinalizeExits(chain.plasma_id, too_many), "invalid_count", height=100)
    [first] = chain.harness.call(CAROL, PlasmaFinalizeExits(chain.plasma_id, 2), height=100)
    assert isinstance(first, PlasmaExitsFinalized)
    assert [paid.utxo_pos for paid in first.exits] == deposits[:2]
    [rest] = chain.harness.call(
        CAROL, PlasmaFinalizeExits(chain.plasma_id, MAX_FINALIZE_PER_CALL), height=100
    )
    assert isinstance(rest, PlasmaExitsFinalized)
    assert [paid.utxo_pos for paid in rest.exits] == deposits[2 : 2 + MAX_FINALIZE_PER_CALL]
    assert len(chain.record.queue) == 1
    reject(ALICE, PlasmaFinalizeExits(PlasmaId(bytes(32)), 1), "unknown_plasma")


def test_older_outputs_leave_before_newer_ones_that_started_exiting_at_the_same_time() -> None:
    chain = fresh()
    old = chain.deposit(ALICE, 10, height=2)
    newer = chain.deposit(BOB, 10, height=10)
    # Bob starts first, but his output is younger: Alice's older one still goes first.
    chain.harness.call(BOB, chain.start_exit(newer), height=11)
    chain.harness.call(ALICE, chain.start_exit(old), height=12)
    assert [position for _, position in chain.record.queue] == [old, newer]


def test_the_age_cap_old_outputs_still_wait_one_challenge_period() -> None:
    chain = fresh()
    ancient = chain.deposit(ALICE, 10, height=2)
    chain.harness.call(ALICE, chain.start_exit(ancient), height=500)
    assert chain.record.exits[ancient].exitable_at == 500 + PERIOD
    chain.harness.reject(
        ALICE, PlasmaFinalizeExits(chain.plasma_id, 1), "exits_not_due", height=500 + PERIOD - 1
    )


def test_equal_exitable_at_is_ordered_by_position() -> None:
    chain = fresh()
    first = chain.deposit(ALICE, 10, height=2)
    second = chain.deposit(BOB, 10, height=2)
    chain.harness.call(BOB, chain.start_exit(second), height=3)
    chain.harness.call(ALICE, chain.start_exit(first), height=3)
    assert chain.record.queue == [(42, first), (42, second)]


def test_a_minted_output_exit_is_never_paid_more_than_the_chain_holds() -> None:
    """The operator mints 1000 from nothing in block 1000 and exits it; honest Alice's older
    deposit leaves first, and the operator's exit gets only what is left."""
    chain = fresh()
    deposit = chain.deposit(ALICE, 100, height=2)
    mint = SignedPlasmaTx(
        PlasmaTransaction(chain.plasma_id, (), (TxOutput(OLGA.node_id, 1000),)).encode(), ()
    )
    blknum = chain.submit([mint], height=3)
    minted = utxo_pos(blknum, 0, 0)
    chain.harness.call(OLGA, chain.start_exit(minted), height=4)
    chain.harness.call(ALICE, chain.start_exit(deposit), height=5)
    assert [position for _, position in chain.record.queue] == [deposit, minted]
    alice_before, olga_before = chain.harness.balance(ALICE), chain.harness.balance(OLGA)
    chain.harness.call(CAROL, PlasmaFinalizeExits(chain.plasma_id, 2), height=1000)
    assert chain.harness.balance(ALICE) == alice_before + 100 + BOND
    assert chain.harness.balance(OLGA) == olga_before + 0 + BOND  # nothing left to pay
    assert chain.record.exits[minted].paid == 0
    assert chain.record.held() == 0
    chain.harness.assert_conserved()


def test_conservation_counts_plasma_holdings() -> None:
    chain, _, _, blknum = with_transfer()
    chain.harness.call(BOB, chain.start_exit(utxo_pos(blknum, 0, 0)), height=5)
    assert chain.harness.state.contract_holdings() == 100 + BOND
    chain.harness.assert_conserved()
