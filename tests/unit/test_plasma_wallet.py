"""The watcher machine as a node's wallet: what it asks the node to store, how a restart
rebuilds it from those records and layer 1 (sent transactions stay in flight, a received
output stays spendable, a chain found bad stays bad), outputs being exited are never spent, and
each output's status and the balance a user sees."""

from __future__ import annotations

import pytest

from p2pchan.crypto.keys import Identity
from p2pchan.errors import PlasmaError
from p2pchan.plasma.wallet_view import Balance, balance, output_status
from p2pchan.plasma.watcher import (
    ActionExit,
    ContractReceive,
    FetchBlock,
    NotifyChainBad,
    PersistBlock,
    PersistConfirmation,
    PersistOutput,
    ReceiveBlock,
    RestoreWallet,
    Tick,
    WatcherConfig,
    WatcherMachine,
)
from p2pchan.wire.plasma import deposit_tx, utxo_pos
from tests.unit.chain_helpers import identity
from tests.unit.plasma_sim import PlasmaSim

OLGA, ALICE, BOB, CAROL = identity(9), identity(1), identity(2), identity(3)
PERIOD, WITHHOLD = 20, 5


def sim() -> PlasmaSim:
    return PlasmaSim([ALICE, BOB, CAROL], OLGA, challenge_period=PERIOD, withhold_timeout=WITHHOLD)


def committed(chain: PlasmaSim) -> None:
    chain.build()
    chain.step()


def restarted(
    chain: PlasmaSim,
    who: Identity,
    restore: RestoreWallet,
    *,
    serve: bool = True,
) -> WatcherMachine:
    """A fresh machine for `who` fed what its node stored and layer 1's history, as a node
    restarting does: blocks from the store (never the operator) when `serve`."""
    config = WatcherConfig(chain.plasma_id, OLGA.node_id, PERIOD, WITHHOLD)
    machine = WatcherMachine(config, who)
    machine.handle(restore)
    stored = {
        output.block.blknum: output.block
        for output in chain.persisted.get(who.node_id, [])
        if isinstance(output, PersistBlock)
    }
    heights = sorted({height for height, _ in chain.events})
    for height in range(1, chain.height + 1):
        events = [event for at, event in chain.events if at == height]
        outputs = [o for e in events for o in machine.handle(ContractReceive(e))]
        for output in outputs:
            if isinstance(output, FetchBlock) and serve and output.blknum in stored:
                machine.handle(ReceiveBlock(stored[output.blknum]))
        machine.handle(Tick(height))
    assert heights  # the history is not empty
    return machine


def confirmations_of(chain: PlasmaSim, who: Identity) -> RestoreWallet:
    held = tuple(
        (output.tx_hash, output.confirmation)
        for output in chain.persisted.get(who.node_id, [])
        if isinstance(output, PersistConfirmation)
    )
    return RestoreWallet(confirmations=held)


def test_a_watcher_asks_its_node_to_store_blocks_outputs_and_confirmations() -> None:
    chain = sim()
    chain.deposit(ALICE, 100)
    chain.step()
    assert chain.pay(ALICE, BOB, 60)
    committed(chain)
    alice = chain.persisted[ALICE.node_id]
    deposit = deposit_tx(chain.plasma_id, ALICE.node_id, 100)
    assert PersistOutput(utxo_pos(1, 0, 0), 100, deposit, b"") in alice
    [block] = [o.block for o in alice if isinstance(o, PersistBlock)]
    assert block.blknum == 1000
    [change] = [
        o for o in alice if isinstance(o, PersistOutput) and o.utxo_pos != utxo_pos(1, 0, 0)
    ]
    assert (change.utxo_pos, change.amount) == (utxo_pos(1000, 0, 1), 40)
    assert change.proof == block.tree().proof(0)  # what its exit needs
    [ours] = [o for o in alice if isinstance(o, PersistConfirmation)]
    assert ours.ours and ours.confirmation.owner == ALICE.node_id
    bob = chain.persisted[BOB.node_id]
    [received] = [o for o in bob if isinstance(o, PersistConfirmation)]
    assert not received.ours and received.confirmation == ours.confirmation
    assert [o.utxo_pos for o in bob if isinstance(o, PersistOutput)] == [utxo_pos(1000, 0, 0)]


def test_a_restart_rebuilds_the_wallet_from_its_records_and_layer_1() -> None:
    chain = sim()
    chain.deposit(ALICE, 100)
    chain.step()
    assert chain.pay(ALICE, BOB, 60)
    committed(chain)
    assert chain.watcher(BOB).spendable() == [(utxo_pos(1000, 0, 0), 60)]
    # With the confirmation it stored, Bob's output is spendable at once, operator or not.
    bob = restarted(chain, BOB, confirmations_of(chain, BOB))
    assert bob.spendable() == [(utxo_pos(1000, 0, 0), 60)]
    assert bob.chain.checked_through == chain.watcher(BOB).chain.checked_through
    # Without it, it would wait for Alice's confirmation again.
    assert restarted(chain, BOB, RestoreWallet()).spendable() == []


def test_a_sent_transaction_keeps_its_inputs_in_flight_across_a_restart() -> None:
    chain = sim()
    chain.deposit(ALICE, 100)
    chain.step()
    signed = chain.watcher(ALICE).pay(BOB.node_id, 30)  # signed and stored, not yet admitted
    alice = restarted(chain, ALICE, RestoreWallet(sent=(signed,)))
    assert alice.spendable() == []
    with pytest.raises(PlasmaError) as caught:
        alice.pay(BOB.node_id, 30)  # never a second spend of the same coin
    assert caught.value.code == "insufficient_funds"
    assert chain.send(signed)
    committed(chain)
    [block] = [o.block for o in chain.persisted[ALICE.node_id] if isinstance(o, PersistBlock)]
    alice.handle(ContractReceive(chain.events[-1][1]))
    alice.handle(ReceiveBlock(block))
    assert alice.spendable() == [(utxo_pos(1000, 0, 1), 70)]
    assert alice.sent[signed.tx_hash].confirmed_in == 1000


def test_a_chain_found_bad_stays_bad_after_a_restart() -> None:
    chain = sim()
    chain.deposit(ALICE, 100)
    chain.step()
    assert chain.pay(ALICE, BOB, 60)
    committed(chain)  # block 1000, valid
    assert chain.pay(BOB, CAROL, 60)
    committed(chain)  # block 2000, valid: but say this node found it withheld back then
    verdict = NotifyChainBad(2000, "withheld: not served in time")
    held = confirmations_of(chain, BOB).confirmations
    bob = WatcherMachine(WatcherConfig(chain.plasma_id, OLGA.node_id, PERIOD, WITHHOLD), BOB)
    bob.handle(RestoreWallet(confirmations=held, bad=verdict))
    carol = chain.persisted[CAROL.node_id]
    blocks = {o.block.blknum: o.block for o in carol if isinstance(o, PersistBlock)}
    outputs = []
    for height, event in chain.events:
        outputs += bob.handle(ContractReceive(event))
        if getattr(event, "blknum", 0) in blocks:
            outputs += bob.handle(ReceiveBlock(blocks[event.blknum]))  # served now, and valid
        outputs += bob.handle(Tick(height))
    assert bob.bad == verdict
    assert [o for o in outputs if isinstance(o, NotifyChainBad)] == [verdict]
    assert bob.chain.checked_through == 1000
    # What Bob owned before the bad block (Alice's 60, confirmed) is what he exits.
    assert bob.exit_duties == {utxo_pos(1000, 0, 0)}


def test_an_output_being_exited_is_never_spent() -> None:
    chain = sim()
    chain.deposit(ALICE, 100)
    chain.deposit(ALICE, 50)
    chain.step()
    alice = chain.watcher(ALICE)
    chain.action(ALICE, ActionExit((utxo_pos(1, 0, 0),)))
    assert alice.spendable() == [(utxo_pos(2, 0, 0), 50)]
    with pytest.raises(PlasmaError) as caught:
        alice.pay(BOB.node_id, 100)
    assert caught.value.code == "insufficient_funds"
    assert output_status(alice, utxo_pos(1, 0, 0)) == "exiting"
    chain.step()  # the exit is on layer 1 now
    assert alice.is_exiting(utxo_pos(1, 0, 0)) and utxo_pos(1, 0, 0) in alice.exits.exits
    assert alice.spendable() == [(utxo_pos(2, 0, 0), 50)]


def test_statuses_and_balance_follow_a_coins_life() -> None:
    chain = sim()
    chain.deposit(ALICE, 100)
    chain.step()
    alice, bob = chain.watcher(ALICE), chain.watcher(BOB)
    deposit, paid, change = utxo_pos(1, 0, 0), utxo_pos(1000, 0, 0), utxo_pos(1000, 0, 1)
    assert output_status(alice, deposit) == "spendable"
    assert chain.pay(ALICE, BOB, 60)
    assert output_status(alice, deposit) == "pending"  # in flight
    assert balance(alice, [(deposit, 100)]) == Balance(pending=100)
    # Bob's node sees the block before Alice's confirmation reaches it: pending until then.
    chain.machine.attack_withhold_next()
    chain.build()
    chain.step()
    assert output_status(alice, deposit) == "pending"
    chain.step(WITHHOLD)  # withheld: the chain is bad, Alice's unconfirmed input leaves
    assert alice.bad is not None
    assert output_status(alice, deposit) == "exiting"
    chain.step(3 * PERIOD)
    assert output_status(alice, deposit) == "exited"
    assert balance(alice, [(deposit, 100)]) == Balance(exited=100)
    assert bob.output(paid) is None and alice.output(change) is None


def test_received_outputs_wait_for_their_confirmations_and_spent_ones_say_so() -> None:
    chain = sim()
    chain.deposit(ALICE, 100)
    chain.step()
    assert chain.pay(ALICE, BOB, 60)
    # Alice's confirmation never reaches the operator: Bob's output stays pending.
    chain._relay = lambda output: None  # type: ignore[method-assign]
    committed(chain)
    bob = chain.watcher(BOB)
    assert output_status(bob, utxo_pos(1000, 0, 0)) == "pending"
    assert output_status(chain.watcher(ALICE), utxo_pos(1, 0, 0)) == "spent"
    assert output_status(chain.watcher(ALICE), utxo_pos(1000, 0, 1)) == "spendable"
    with pytest.raises(PlasmaError):
        bob.handle(ActionExit((utxo_pos(1000, 0, 1),)))  # Alice's change: not Bob's
