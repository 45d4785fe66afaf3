"""The operator's pure machine: admission against the pending UTXO set, block building,
the confirmations relay, restoring from its store, and the --dev attack switches."""

from __future__ import annotations

from typing import Any

import pytest

from p2pchan.crypto.merkle import MerkleTree
from p2pchan.errors import PlasmaError
from p2pchan.plasma.block import PlasmaBlock, check_block, validate_transactions
from p2pchan.plasma.operator import DEPOSIT_PRESSURE, OperatorMachine
from p2pchan.plasma.utxo import UtxoSet
from p2pchan.types import PlasmaId
from p2pchan.wire.plasma import (
    PlasmaTransaction,
    SignedPlasmaTx,
    TxInput,
    TxOutput,
    sign_confirmation,
    sign_tx,
    split_utxo_pos,
    utxo_pos,
)
from tests.unit.chain_helpers import identity

OLGA, ALICE, BOB, CAROL = identity(9), identity(1), identity(2), identity(3)
PLASMA = PlasmaId(b"\x42" * 32)
DEPOSIT_A = utxo_pos(1, 0, 0)  # Alice 100
DEPOSIT_B = utxo_pos(2, 0, 0)  # Bob 50


def operator(**options: Any) -> OperatorMachine:
    machine = OperatorMachine(OLGA, PLASMA, **options)
    machine.on_deposit(1, ALICE.node_id, 100)
    machine.on_deposit(2, BOB.node_id, 50)
    return machine


def pay(spends: list[tuple[int, Any]], outputs: list[tuple[Any, int]], **kw: Any) -> SignedPlasmaTx:
    tx = PlasmaTransaction(
        kw.get("plasma_id", PLASMA),
        tuple(TxInput(*split_utxo_pos(position)) for position, _ in spends),
        tuple(TxOutput(who.node_id, amount) for who, amount in outputs),
    )
    return sign_tx(tx, [who for _, who in spends])


def state_of(machine: OperatorMachine) -> tuple[Any, ...]:
    return (
        sorted(machine.utxos.items()),
        machine.pending_count,
        dict(machine.transactions),
        machine.next_blknum,
    )


def refused(machine: OperatorMachine, signed: SignedPlasmaTx, code: str) -> None:
    before = state_of(machine)
    with pytest.raises(PlasmaError) as caught:
        machine.admit(signed)
    assert caught.value.code == code, caught.value
    assert state_of(machine) == before, "a refused transaction changed the operator's state"


def test_admission_gives_the_position_and_a_block_makes_outputs_spendable() -> None:
    machine = operator()
    assert not machine.wants_block
    to_bob = pay([(DEPOSIT_A, ALICE)], [(BOB, 60), (ALICE, 40)])
    admitted = machine.admit(to_bob)
    assert (admitted.tx_hash, admitted.blknum, admitted.txindex) == (to_bob.tx_hash, 1000, 0)
    second = machine.admit(pay([(DEPOSIT_B, BOB)], [(CAROL, 50)]))
    assert (second.blknum, second.txindex) == (1000, 1)
    assert machine.wants_block
    # Bob's new output does not exist until its block is built.
    refused(machine, pay([(utxo_pos(1000, 0, 0), BOB)], [(CAROL, 60)]), "missing_input")
    built = machine.build_block()
    assert (built.blknum, built.transactions, built.withheld) == (1000, 2, False)
    block = PlasmaBlock.decode(built.data)
    tree = check_block(block, plasma_id=PLASMA, blknum=1000, operator=OLGA.node_id, root=built.root)
    assert tree.root == MerkleTree([to_bob.leaf, block.transactions[1].leaf]).root
    assert machine.utxos_of(BOB.node_id) == [(utxo_pos(1000, 0, 0), TxOutput(BOB.node_id, 60))]
    assert machine.admit(pay([(utxo_pos(1000, 0, 0), BOB)], [(CAROL, 60)])).blknum == 2000
    assert machine.build_block().blknum == 2000
    assert not machine.wants_block


def test_admission_refusals_leave_the_state_untouched() -> None:
    machine = operator()
    machine.admit(pay([(DEPOSIT_A, ALICE)], [(BOB, 100)]))
    refused(machine, pay([(DEPOSIT_A, ALICE)], [(CAROL, 100)]), "spent_input")  # double spend
    refused(machine, pay([(utxo_pos(7, 0, 0), ALICE)], [(CAROL, 1)]), "missing_input")
    refused(machine, pay([(DEPOSIT_B, BOB), (DEPOSIT_B, BOB)], [(CAROL, 100)]), "duplicate_input")
    refused(machine, pay([(DEPOSIT_B, ALICE)], [(ALICE, 50)]), "bad_signature")  # foreign input
    refused(machine, pay([(DEPOSIT_B, BOB)], [(CAROL, 49)]), "unbalanced")
    refused(machine, pay([(DEPOSIT_B, BOB)], [(CAROL, 51)]), "unbalanced")
    refused(machine, pay([(DEPOSIT_B, BOB)], [(CAROL, 50), (BOB, 0)]), "zero_amount")
    other = PlasmaId(bytes(32))
    refused(machine, pay([(DEPOSIT_B, BOB)], [(CAROL, 50)], plasma_id=other), "wrong_plasma")
    good = pay([(DEPOSIT_B, BOB)], [(CAROL, 50)])
    refused(machine, SignedPlasmaTx(good.tx_bytes, ()), "malformed")
    refused(machine, SignedPlasmaTx(b"\x92\x01", ()), "malformed")
    machine.admit(good)
    refused(machine, good, "duplicate_tx")
    machine.build_block()
    refused(machine, good, "duplicate_tx")  # still known once built


def test_a_full_block_refuses_more_until_built() -> None:
    machine = operator(max_block_txs=1)
    machine.admit(pay([(DEPOSIT_A, ALICE)], [(BOB, 100)]))
    refused(machine, pay([(DEPOSIT_B, BOB)], [(CAROL, 50)]), "block_full")
    machine.build_block()
    machine.admit(pay([(DEPOSIT_B, BOB)], [(CAROL, 50)]))


def test_many_deposits_ask_for_a_block_even_without_transactions() -> None:
    machine = OperatorMachine(OLGA, PLASMA)
    for blknum in range(1, DEPOSIT_PRESSURE + 1):
        machine.on_deposit(blknum, ALICE.node_id, 1)
    machine.on_deposit(DEPOSIT_PRESSURE, ALICE.node_id, 1)  # a replayed notice counts once
    assert machine.wants_block and machine.build_block().transactions == 0
    assert not machine.wants_block


def test_layer_1_must_hold_the_roots_we_built() -> None:
    machine = operator()
    built = machine.build_block()
    machine.on_committed(1000, built.root)
    assert 1000 in machine.committed
    with pytest.raises(PlasmaError) as caught:
        machine.on_committed(2000, built.root)
    assert caught.value.code == "root_mismatch"


def test_confirmations_are_checked_then_relayed() -> None:
    machine = operator()
    merge = pay([(DEPOSIT_A, ALICE), (DEPOSIT_B, BOB)], [(CAROL, 150)])
    machine.admit(merge)

    def add_refused(confirmation: Any, code: str) -> None:
        with pytest.raises(PlasmaError) as caught:
            machine.add_confirmation(merge.tx_hash, confirmation)
        assert caught.value.code == code

    add_refused(sign_confirmation(ALICE, merge.tx_hash, bytes(32)), "unknown_tx")  # not built
    built = machine.build_block()
    add_refused(sign_confirmation(ALICE, merge.tx_hash, built.root), "not_committed")
    machine.on_committed(1000, built.root)
    add_refused(sign_confirmation(CAROL, merge.tx_hash, built.root), "not_input_owner")
    add_refused(sign_confirmation(ALICE, merge.tx_hash, bytes(32)), "bad_confirmation")
    with pytest.raises(PlasmaError) as unknown:
        machine.add_confirmation(b"\x01" * 32, sign_confirmation(ALICE, b"\x01" * 32, built.root))
    assert unknown.value.code == "unknown_tx"
    assert machine.confirmations_of(merge.tx_hash) == []
    for who in (ALICE, BOB):
        machine.add_confirmation(merge.tx_hash, sign_confirmation(who, merge.tx_hash, built.root))
    assert {c.owner for c in machine.confirmations_of(merge.tx_hash)} == {
        ALICE.node_id,
        BOB.node_id,
    }


def test_a_restarted_operator_rebuilds_its_utxos_from_its_blocks() -> None:
    machine = operator()
    machine.admit(pay([(DEPOSIT_A, ALICE)], [(BOB, 60), (ALICE, 40)]))
    first = machine.build_block()
    machine.admit(pay([(utxo_pos(1000, 0, 0), BOB), (DEPOSIT_B, BOB)], [(CAROL, 110)]))
    second = machine.build_block()
    restored = OperatorMachine(OLGA, PLASMA)
    for built in (first, second):  # blocks first: the deposits come from layer 1 later
        restored.restore_block(PlasmaBlock.decode(built.data))
    restored.on_deposit(1, ALICE.node_id, 100)
    restored.on_deposit(2, BOB.node_id, 50)
    assert sorted(restored.utxos.items()) == sorted(machine.utxos.items())
    assert restored.next_blknum == 3000 and restored.roots == machine.roots
    assert restored.transactions.keys() == machine.transactions.keys()
    with pytest.raises(PlasmaError) as caught:
        restored.restore_block(PlasmaBlock.decode(first.data))
    assert caught.value.code == "store_out_of_order"
    # The owners of deposits spent in replayed blocks may confirm, though the deposits were
    # learnt after the replay (a receiver must get its payer's confirmation after a crash).
    restored.on_committed(1000, first.root)
    restored.on_committed(2000, second.root)
    [spend] = PlasmaBlock.decode(first.data).transactions
    restored.add_confirmation(spend.tx_hash, sign_confirmation(ALICE, spend.tx_hash, first.root))
    assert [c.owner for c in restored.confirmations_of(spend.tx_hash)] == [ALICE.node_id]
    [merge] = PlasmaBlock.decode(second.data).transactions
    restored.add_confirmation(merge.tx_hash, sign_confirmation(BOB, merge.tx_hash, second.root))
    with pytest.raises(PlasmaError) as stranger:
        restored.add_confirmation(
            merge.tx_hash, sign_confirmation(CAROL, merge.tx_hash, second.root)
        )
    assert stranger.value.code == "not_input_owner"


# -- attacks --------------------------------------------------------------------------------


def watcher_verdict(machine: OperatorMachine, built_data: bytes) -> str:
    """What a watcher holding the operator's honest history says of a block."""
    honest = UtxoSet()
    honest.add(DEPOSIT_A, TxOutput(ALICE.node_id, 100))
    honest.add(DEPOSIT_B, TxOutput(BOB.node_id, 50))
    try:
        validate_transactions(honest, PlasmaBlock.decode(built_data))
    except PlasmaError as error:
        return error.code
    return "valid"


def test_attacks_are_refused_on_an_honest_operator() -> None:
    machine = operator()
    for attack in (
        machine.attack_withhold_next,
        lambda: machine.attack_mint(5),
        lambda: machine.attack_double_spend(DEPOSIT_A),
    ):
        with pytest.raises(PlasmaError) as caught:
            attack()
        assert caught.value.code == "not_dev"


def test_mint_puts_an_output_from_nothing_into_the_next_block() -> None:
    machine = operator(dev=True)
    machine.attack_mint(1_000)
    built = machine.build_block()
    assert watcher_verdict(machine, built.data) == "no_inputs"
    assert machine.utxos_of(OLGA.node_id) == [(utxo_pos(1000, 0, 0), TxOutput(OLGA.node_id, 1_000))]
    with pytest.raises(PlasmaError):
        machine.attack_mint(0)


def test_double_spend_spends_an_output_again_for_the_operator() -> None:
    machine = operator(dev=True)
    machine.admit(pay([(DEPOSIT_A, ALICE)], [(BOB, 100)]))
    assert watcher_verdict(machine, machine.build_block().data) == "valid"
    machine.attack_double_spend(DEPOSIT_A)
    built = machine.build_block()
    block = PlasmaBlock.decode(built.data)
    assert len(block.transactions) == 1
    honest = UtxoSet()
    honest.add(DEPOSIT_A, TxOutput(ALICE.node_id, 100))
    with pytest.raises(PlasmaError) as caught:
        validate_transactions(honest, block)  # Alice's coin, signed by the operator
    assert caught.value.code == "bad_signature"
    with pytest.raises(PlasmaError) as unknown:
        machine.attack_double_spend(utxo_pos(77, 0, 0))
    assert unknown.value.code == "unknown_output"


def test_withhold_next_commits_but_never_serves_that_block() -> None:
    machine = operator(dev=True)
    assert machine.attack_withhold_next() == 1000
    machine.admit(pay([(DEPOSIT_A, ALICE)], [(BOB, 100)]))
    built = machine.build_block()
    assert built.withheld and not machine.is_served(1000)
    second = machine.build_block()
    assert not second.withheld and machine.is_served(2000)
