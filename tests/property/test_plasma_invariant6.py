"""Hypothesis: invariant 6 against a misbehaving operator.

Three honest users (Alice, Bob, Carol), each with a watcher that runs every layer-1 block, and
an operator, Olga, who also uses her chain. A run mixes deposits, payments and blocks with
Olga's attacks: blocks that mint from nothing, double-spend someone's coin or are withheld; she
exits every output her attacks made as soon as their block is on layer 1, and exits coins she
spent and confirmed (exits the watchers must challenge). At the end the honest users exit what
they own and layer 1 runs until every exit is due.

Checked at the end:

- invariant 6: every output an honest user owns in the valid blocks (all blocks before the first
  invalid or withheld one, as an independent replay of layer 1 and the operator's blocks finds
  them) was exited by that user and paid in full;
- the contract never paid out more than it held for the chain: layer-1 money is conserved,
  and the chain's books never went below zero (checked after every layer-1 block).
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from p2pchan.crypto.keys import Identity
from p2pchan.errors import PlasmaError
from p2pchan.l1.events import PlasmaBlockSubmitted, PlasmaDeposited
from p2pchan.l1.plasma_state import ExitStatus
from p2pchan.l1.transactions import PlasmaStartExit
from p2pchan.plasma.block import PlasmaBlock, check_block, validate_transactions
from p2pchan.plasma.exits import start_exit_call
from p2pchan.plasma.utxo import UtxoSet
from p2pchan.plasma.watcher import ActionExit
from p2pchan.wire.plasma import (
    Confirmation,
    TxOutput,
    decode_signed_tx,
    deposit_tx,
    is_deposit_block,
    sign_confirmation,
    split_utxo_pos,
    tx_signature_valid,
    utxo_pos,
)
from tests.unit.chain_helpers import identity
from tests.unit.plasma_sim import PlasmaSim

ALICE, BOB, CAROL, OLGA = identity(1), identity(2), identity(3), identity(9)
HONEST = (ALICE, BOB, CAROL)
EVERYONE = (*HONEST, OLGA)
PERIOD, WITHHOLD = 20, 5

people = st.sampled_from(EVERYONE)
amounts = st.integers(1, 400)


class Invariant6(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim = PlasmaSim(list(HONEST), OLGA, challenge_period=PERIOD, withhold_timeout=WITHHOLD)
        self.attack_blocks: set[int] = set()
        self.exited_attack_blocks: set[int] = set()

    @initialize(first=st.lists(amounts, min_size=4, max_size=4))
    def everyone_deposits(self, first: list[int]) -> None:
        for who, amount in zip(EVERYONE, first, strict=True):
            self.sim.deposit(who, amount)
        self.step_once()

    # -- honest activity --------------------------------------------------------------------

    @rule(who=people, amount=amounts)
    def deposit(self, who: Identity, amount: int) -> None:
        if self.sim.watcher(who).bad is None:  # nobody honest uses a chain known to be bad
            self.sim.deposit(who, amount)

    @rule(sender=people, receiver=people, amount=amounts)
    def pay(self, sender: Identity, receiver: Identity, amount: int) -> None:
        if sender != receiver:
            self.sim.pay(sender, receiver, amount)

    @rule(blocks=st.integers(1, 6))
    def step(self, blocks: int) -> None:
        for _ in range(blocks):
            self.step_once()

    # -- the operator -----------------------------------------------------------------------

    @rule(
        attacks=st.sets(st.sampled_from(["withhold", "mint", "double_spend"]), min_size=1),
        amount=st.integers(1, 5_000),
        pick=st.integers(0, 10_000),
    )
    def build_an_attack_block(self, attacks: set[str], amount: int, pick: int) -> None:
        """A block with one or more of Olga's attacks (honest blocks come with every step)."""
        machine = self.sim.machine
        if "withhold" in attacks:
            machine.attack_withhold_next()
        if "mint" in attacks:
            machine.attack_mint(amount)
        if "double_spend" in attacks:
            spent = sorted(self.sim.watcher(OLGA).chain.spends)  # spent in valid blocks
            targets = spent or sorted(position for position, _ in machine.utxos.items())
            if targets:
                machine.attack_double_spend(targets[pick % len(targets)])
        built = self.sim.build()
        self.attack_blocks.add(built.blknum)

    @rule(pick=st.integers(0, 10_000))
    def olga_exits_a_coin_she_spent(self, pick: int) -> None:
        """Olga exits an output she spent and confirmed: every watcher must challenge it."""
        watcher = self.sim.watcher(OLGA)
        spent = [
            position
            for position, tx_hash in sorted(watcher.chain.spends.items())
            if OLGA.node_id in watcher.chain.txs[tx_hash].input_owners
            and position not in self.sim.chain.exits
        ]
        if not spent:
            return
        position = spent[pick % len(spent)]
        call = self.olga_exit_call(position)
        if call is not None:
            self.sim.call(OLGA, call)

    def olga_exit_call(self, position: int) -> PlasmaStartExit | None:
        """The exit of an output Olga owned in a valid block, as her wallet knows it."""
        blknum, txindex, _ = split_utxo_pos(position)
        plasma_id = self.sim.plasma_id
        watcher = self.sim.watcher(OLGA)
        chain = watcher.chain
        if is_deposit_block(blknum):
            output = chain.deposits[blknum]
            return start_exit_call(
                plasma_id, position, deposit_tx(plasma_id, output.owner, output.amount), None, ()
            )
        signed = chain.blocks[blknum][txindex]
        known = chain.txs[signed.tx_hash]
        have = watcher.confirmations.get(signed.tx_hash, {})
        if not all(owner in have for owner in known.input_owners):
            return None
        confirmations = tuple(Confirmation(owner, have[owner]) for owner in known.input_owners)
        return start_exit_call(plasma_id, position, signed, chain.trees[blknum], confirmations)

    def exit_attack_outputs(self) -> None:
        """As soon as an attack block is on layer 1, Olga exits every output of hers in it."""
        for blknum in sorted(self.attack_blocks - self.exited_attack_blocks):
            commit = self.sim.chain.blocks.get(blknum)
            if commit is None:
                continue
            self.exited_attack_blocks.add(blknum)
            block = PlasmaBlock.decode(self.sim.blocks[blknum])
            tree = block.tree()
            for txindex, signed in enumerate(block.transactions):
                decoded = decode_signed_tx(signed)
                if not all(
                    tx_signature_valid(OLGA.node_id, signed.tx_bytes, signature)
                    for signature in signed.signatures
                ):
                    continue  # someone else's transaction: Olga cannot confirm it
                for oindex, output in enumerate(decoded.tx.outputs):
                    if output.owner != OLGA.node_id:
                        continue
                    # Olga signed every input of her attack transactions: she "confirms" them.
                    confirmations = tuple(
                        sign_confirmation(OLGA, signed.tx_hash, commit.root)
                        for _ in decoded.tx.inputs
                    )
                    position = utxo_pos(blknum, txindex, oindex)
                    self.sim.call(
                        OLGA,
                        start_exit_call(self.sim.plasma_id, position, signed, tree, confirmations),
                    )

    def step_once(self) -> None:
        """One layer-1 block; the operator builds a block whenever something waits for one."""
        if self.sim.machine.wants_block:
            self.sim.build()
        self.sim.step()
        self.exit_attack_outputs()

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def the_contract_never_pays_more_than_it_holds(self) -> None:
        self.sim.harness.assert_conserved()
        chain = self.sim.chain
        assert chain.deposits_held >= 0 and chain.bonds_held >= 0

    def teardown(self) -> None:
        sim = self.sim
        self.sim.step()  # calls still queued (deposits) land first; no more blocks are built
        for who in EVERYONE:  # Olga too: her coins would otherwise cover her cheating
            if sim.watcher(who).bad is None:
                sim.action(who, ActionExit())
        for _ in range(3 * PERIOD + 10):
            sim.step()
            self.exit_attack_outputs()
        sim.harness.assert_conserved()
        entitled = self.valid_prefix_outputs()
        for position, output in entitled.items():
            if output.owner == OLGA.node_id:
                continue
            record = sim.chain.exits.get(position)
            assert record is not None, f"honest output {position} was never exited"
            assert record.owner == output.owner
            assert record.status == ExitStatus.PAID, (position, record)
            assert record.paid == output.amount, (position, record)

    def valid_prefix_outputs(self) -> dict[int, TxOutput]:
        """Replay layer 1 and the operator's blocks, independently of every watcher, up to the
        first block that is invalid or was never served: the outputs unspent there."""
        sim = self.sim
        deposits = {
            event.blknum: TxOutput(event.owner, event.amount)
            for _, event in sim.events
            if isinstance(event, PlasmaDeposited)
        }
        committed = {
            event.blknum: event.root
            for _, event in sim.events
            if isinstance(event, PlasmaBlockSubmitted)
        }
        utxos = UtxoSet()
        for blknum in sorted([*deposits, *committed]):
            if blknum in deposits:
                utxos.add(utxo_pos(blknum, 0, 0), deposits[blknum])
                continue
            if not sim.machine.is_served(blknum):
                break
            block = PlasmaBlock.decode(sim.blocks[blknum])
            try:
                check_block(
                    block,
                    plasma_id=sim.plasma_id,
                    blknum=blknum,
                    operator=OLGA.node_id,
                    root=committed[blknum],
                )
                validate_transactions(utxos, block)
            except PlasmaError:
                break
        return dict(utxos.items())


TestInvariant6 = Invariant6.TestCase
TestInvariant6.settings = settings(max_examples=60, stateful_step_count=60, deadline=None)
