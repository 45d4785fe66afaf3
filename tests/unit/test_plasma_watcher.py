"""The watcher's pure machine, wired to layer 1 and the operator machine in `PlasmaSim`:
block checks, confirmations, bad-chain detection (invalid or withheld blocks), the exits it
starts and challenges, and finalizing."""

from __future__ import annotations

import pytest

from p2pchan.crypto.keys import Identity
from p2pchan.errors import PlasmaError
from p2pchan.l1.events import PlasmaBlockSubmitted, PlasmaDeposited
from p2pchan.l1.plasma_state import ExitStatus
from p2pchan.l1.transactions import PlasmaStartExit
from p2pchan.plasma.block import sign_block
from p2pchan.plasma.watcher import (
    ActionExit,
    ContractReceive,
    ContractSendStartExit,
    FetchBlock,
    NotifyChainBad,
    ReceiveBlock,
    Tick,
    WatcherConfig,
    WatcherMachine,
)
from p2pchan.types import PlasmaId
from p2pchan.wire.plasma import (
    PlasmaTransaction,
    TxInput,
    TxOutput,
    deposit_tx,
    sign_tx,
    utxo_pos,
)
from tests.unit.chain_helpers import identity
from tests.unit.plasma_sim import PlasmaSim

OLGA, ALICE, BOB, CAROL = identity(9), identity(1), identity(2), identity(3)
PERIOD, WITHHOLD = 20, 5


def sim() -> PlasmaSim:
    return PlasmaSim([ALICE, BOB, CAROL], OLGA, challenge_period=PERIOD, withhold_timeout=WITHHOLD)


def funded(amounts: dict[Identity, int]) -> PlasmaSim:
    """A chain where each identity has deposited its amount (deposit blocks 1, 2, ...)."""
    chain = sim()
    for who, amount in amounts.items():
        chain.deposit(who, amount)
    chain.step()
    return chain


def committed(chain: PlasmaSim) -> None:
    """Build a block, commit it on layer 1, and let everyone see it."""
    chain.build()
    chain.step()


def balance(chain: PlasmaSim, who: Identity) -> int:
    return chain.harness.balance(who)


def exit_everything_and_wait(chain: PlasmaSim) -> None:
    for who in (ALICE, BOB, CAROL, OLGA):
        if chain.watcher(who).bad is None:
            chain.action(who, ActionExit())
    chain.step(3 * PERIOD + 5)


# -- honest chain ---------------------------------------------------------------------------


def test_payments_are_spendable_once_confirmed_and_everyone_can_leave() -> None:
    chain = funded({ALICE: 100})
    assert chain.watcher(ALICE).spendable() == [(utxo_pos(1, 0, 0), 100)]
    assert chain.pay(ALICE, BOB, 60)
    assert chain.watcher(ALICE).spendable() == []  # the deposit is in flight
    assert chain.watcher(BOB).spendable() == []
    committed(chain)
    # Alice saw her transaction in a valid block and confirmed it; Bob has the confirmation.
    assert chain.watcher(BOB).spendable() == [(utxo_pos(1000, 0, 0), 60)]
    assert chain.watcher(ALICE).spendable() == [(utxo_pos(1000, 0, 1), 40)]
    assert chain.pay(BOB, CAROL, 25)
    committed(chain)
    assert chain.watcher(CAROL).spendable() == [(utxo_pos(2000, 0, 0), 25)]
    assert not chain.bad
    before = {who: balance(chain, who) for who in (ALICE, BOB, CAROL)}
    exit_everything_and_wait(chain)
    assert balance(chain, ALICE) - before[ALICE] == 40
    assert balance(chain, BOB) - before[BOB] == 35
    assert balance(chain, CAROL) - before[CAROL] == 25
    assert chain.chain.held() == 0


def test_a_wallet_pays_with_two_inputs_and_takes_change() -> None:
    chain = funded({ALICE: 30})
    chain.deposit(ALICE, 50)
    chain.step()
    assert chain.pay(ALICE, BOB, 70)
    committed(chain)
    assert chain.watcher(BOB).spendable() == [(utxo_pos(1000, 0, 0), 70)]
    assert chain.watcher(ALICE).spendable() == [(utxo_pos(1000, 0, 1), 10)]
    with pytest.raises(PlasmaError) as caught:
        chain.watcher(ALICE).pay(BOB.node_id, 11)
    assert caught.value.code == "insufficient_funds"


def test_a_refused_payment_frees_its_inputs() -> None:
    chain = funded({ALICE: 30})
    signed = chain.watcher(ALICE).pay(BOB.node_id, 10)
    chain.machine.admit(signed)  # the operator already has it: a resend is a duplicate
    assert not chain.send(signed)
    assert chain.watcher(ALICE).spendable() == [(utxo_pos(1, 0, 0), 30)]


def test_only_own_outputs_are_spent_or_exited() -> None:
    chain = funded({ALICE: 30, BOB: 5})
    foreign = sign_tx(
        PlasmaTransaction(chain.plasma_id, (TxInput(2, 0, 0),), (TxOutput(ALICE.node_id, 5),)),
        [ALICE],
    )
    with pytest.raises(PlasmaError) as caught:
        chain.record_send(ALICE, foreign)
    assert caught.value.code == "not_spendable"
    with pytest.raises(PlasmaError) as not_owned:
        chain.action(ALICE, ActionExit((utxo_pos(2, 0, 0),)))
    assert not_owned.value.code == "not_owned"


# -- bad chains -----------------------------------------------------------------------------


def test_an_invalid_block_makes_everyone_exit_what_they_own_before_it() -> None:
    chain = funded({ALICE: 100, BOB: 40})
    assert chain.pay(ALICE, BOB, 60)
    committed(chain)  # block 1000: valid
    chain.machine.attack_mint(10_000)
    assert chain.pay(BOB, CAROL, 100)  # Bob's 60 + 40 go into the bad block
    built = chain.build()
    chain.step()  # block 2000 committed, served, found invalid
    for who in (ALICE, BOB, CAROL):
        bad = chain.bad[who.node_id]
        assert bad.blknum == built.blknum and "no_inputs" in bad.reason
    with pytest.raises(PlasmaError) as caught:
        chain.watcher(ALICE).pay(BOB.node_id, 1)
    assert caught.value.code == "insufficient_funds"  # nothing is spendable on a bad chain
    # The operator exits its minted output as early as it can.
    minted = utxo_pos(built.blknum, 1, 0)
    assert minted not in chain.watcher(ALICE).chain.utxos  # the bad block was never applied
    alice_before, bob_before = balance(chain, ALICE), balance(chain, BOB)
    chain.step(3 * PERIOD + 5)
    exits = chain.chain.exits
    # Alice exits her change; Bob his two outputs (he never confirmed the spend to Carol).
    assert exits[utxo_pos(1000, 0, 1)].status == ExitStatus.PAID
    assert {exits[utxo_pos(1000, 0, 0)].status, exits[utxo_pos(2, 0, 0)].status} == {
        ExitStatus.PAID
    }
    assert balance(chain, ALICE) - alice_before == 40
    assert balance(chain, BOB) - bob_before == 100
    assert utxo_pos(built.blknum, 0, 0) not in exits  # Carol cannot: never confirmed


def test_a_withheld_block_is_bad_after_the_timeout_and_unconfirmed_inputs_leave() -> None:
    chain = funded({ALICE: 100})
    chain.machine.attack_withhold_next()
    assert chain.pay(ALICE, BOB, 100)
    chain.build()
    chain.step()  # committed, not served
    chain.step(WITHHOLD - 1)
    assert not chain.bad
    assert chain.refusals == []
    chain.step()
    assert {bad.blknum for bad in chain.bad.values()} == {1000}
    assert all("withheld" in bad.reason for bad in chain.bad.values())
    alice_before = balance(chain, ALICE)
    chain.step(3 * PERIOD + 5)
    assert chain.chain.exits[utxo_pos(1, 0, 0)].status == ExitStatus.PAID
    assert balance(chain, ALICE) - alice_before == 100  # her never-confirmed payment is hers
    assert not chain.watcher(BOB).owned


def test_a_block_with_a_wrong_root_or_signature_is_invalid() -> None:
    plasma_id = PlasmaId(b"\x42" * 32)
    config = WatcherConfig(plasma_id, OLGA.node_id, PERIOD, WITHHOLD)
    deposit = deposit_tx(plasma_id, ALICE.node_id, 10)
    spend = sign_tx(
        PlasmaTransaction(plasma_id, (TxInput(1, 0, 0),), (TxOutput(BOB.node_id, 10),)), [ALICE]
    )
    good, tree = sign_block(OLGA, plasma_id, 1000, [spend])
    forged, _ = sign_block(CAROL, plasma_id, 1000, [spend])
    for root, block, reason in (
        (tree.root, forged, "bad_block_signature"),
        (b"\x05" * 32, good, "wrong_root"),
    ):
        watcher = WatcherMachine(config, ALICE)
        watcher.handle(ContractReceive(PlasmaDeposited(plasma_id, 1, ALICE.node_id, 10, 2)))
        assert watcher.handle(ContractReceive(PlasmaBlockSubmitted(plasma_id, 1000, root, 3))) == [
            FetchBlock(1000)
        ]
        outputs = watcher.handle(ReceiveBlock(block))
        [bad] = [output for output in outputs if isinstance(output, NotifyChainBad)]
        assert bad.blknum == 1000 and reason in bad.reason
        [exit_call] = [output for output in outputs if isinstance(output, ContractSendStartExit)]
        assert exit_call.call == PlasmaStartExit(plasma_id, utxo_pos(1, 0, 0), deposit, b"", ())


def test_blocks_are_checked_in_order_and_fetched_until_served() -> None:
    plasma_id = PlasmaId(b"\x42" * 32)
    watcher = WatcherMachine(WatcherConfig(plasma_id, OLGA.node_id, PERIOD, WITHHOLD), BOB)
    first, first_tree = sign_block(OLGA, plasma_id, 1000, [])
    second, second_tree = sign_block(OLGA, plasma_id, 2000, [])
    for blknum, tree, height in ((1000, first_tree, 2), (2000, second_tree, 3)):
        watcher.handle(ContractReceive(PlasmaBlockSubmitted(plasma_id, blknum, tree.root, height)))
    watcher.handle(ReceiveBlock(second))  # early: waits for block 1000
    assert watcher.chain.checked_through == 0
    assert watcher.handle(Tick(4)) == [FetchBlock(1000)]
    watcher.handle(ReceiveBlock(first))
    assert watcher.chain.checked_through == 2000 and watcher.bad is None


# -- challenges and finalizing --------------------------------------------------------------


def test_an_exit_of_a_spent_coin_is_challenged_by_every_watcher() -> None:
    chain = funded({OLGA: 500})
    assert chain.pay(OLGA, BOB, 500)
    committed(chain)  # Olga's wallet confirmed the payment; Bob holds her confirmation
    olga_deposit = utxo_pos(1, 0, 0)
    olga_before = balance(chain, OLGA)
    chain.call(
        OLGA,
        PlasmaStartExit(
            chain.plasma_id, olga_deposit, deposit_tx(chain.plasma_id, OLGA.node_id, 500), b"", ()
        ),
    )
    chain.step()  # the exit starts
    assert chain.chain.exits[olga_deposit].status == ExitStatus.QUEUED
    chain.step()  # every watcher challenges it; the first challenge wins the bond
    assert chain.chain.exits[olga_deposit].status == ExitStatus.CHALLENGED
    assert balance(chain, OLGA) == olga_before - chain.exit_bond
    assert ("PlasmaChallengeExit", "exit_not_queued") in chain.refusals  # the later ones
    # Bob's output is still his and leaves in full.
    bob_before = balance(chain, BOB)
    exit_everything_and_wait(chain)
    assert balance(chain, BOB) - bob_before == 500


def test_finalize_is_asked_for_once_a_users_exit_waits_behind_a_due_head() -> None:
    chain = funded({ALICE: 70})
    chain.action(ALICE, ActionExit())
    chain.step()
    record = chain.chain.exits[utxo_pos(1, 0, 0)]
    assert record.status == ExitStatus.QUEUED
    chain.step(record.exitable_at - chain.height - 1)
    assert chain.chain.exits[utxo_pos(1, 0, 0)].status == ExitStatus.QUEUED
    assert ("PlasmaFinalizeExits", "exits_not_due") not in chain.refusals
    chain.step(2)
    assert chain.chain.exits[utxo_pos(1, 0, 0)].status == ExitStatus.PAID
    assert chain.watcher(ALICE).exit_status(utxo_pos(1, 0, 0)) == ExitStatus.PAID


def test_the_withhold_timeout_must_leave_time_to_exit_ahead_of_the_withheld_block() -> None:
    plasma_id = PlasmaId(b"\x42" * 32)
    for timeout in (0, PERIOD, PERIOD + 1):
        with pytest.raises(PlasmaError) as caught:
            WatcherMachine(WatcherConfig(plasma_id, OLGA.node_id, PERIOD, timeout), ALICE)
        assert caught.value.code == "bad_withhold_timeout"
    WatcherMachine(WatcherConfig(plasma_id, OLGA.node_id, PERIOD, PERIOD - 1), ALICE)
