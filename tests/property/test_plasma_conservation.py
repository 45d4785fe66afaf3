"""Hypothesis: layer 1's conservation machine, extended with child chains.

The machine of `test_chain_conservation` (transfers, faucet, channels) also creates child chains,
deposits, submits blocks (honest ones, and blocks that mint, double-spend, forge signatures or
commit a meaningless root), starts exits (with real proofs and confirmations, sometimes
corrupted), challenges them (with real spends, sometimes unconfirmed or unrelated) and
finalizes them, over advancing heights. After every step, besides the inherited invariants
(conservation counts the Plasma holdings):

- each chain's books balance: what it holds for outputs is exactly its deposits less the exit
  amounts it paid, never below zero, and its bonds are exactly those of its queued exits;
- the queue is exactly the queued exits, in priority order `(exitable_at, utxo_pos)`;
- no exit was ever paid more than its output's amount.

Accepted calls are also checked against the rules they must have obeyed: an exit by the output's
owner with DESIGN's `exitable_at`, a challenge that spends the exit's output, a finalize that
paid due exits only, in priority order.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from p2pchan.crypto.keys import Identity
from p2pchan.crypto.merkle import MerkleTree
from p2pchan.l1.events import (
    PlasmaCreated,
    PlasmaDeposited,
    PlasmaExitsFinalized,
    PlasmaExitStarted,
)
from p2pchan.l1.plasma_state import ExitStatus, exitable_at
from p2pchan.l1.transactions import (
    PlasmaChallengeExit,
    PlasmaCreate,
    PlasmaDeposit,
    PlasmaFinalizeExits,
    PlasmaStartExit,
    PlasmaSubmitBlock,
)
from p2pchan.types import PlasmaId
from p2pchan.wire.plasma import (
    Confirmation,
    PlasmaTransaction,
    SignedPlasmaTx,
    TxInput,
    TxOutput,
    deposit_tx,
    sign_confirmation,
    sign_tx,
    split_utxo_pos,
    utxo_pos,
)
from tests.property.test_chain_conservation import PEOPLE, ChainMachine, fees, people, picks

UNKNOWN_PLASMA = PlasmaId(b"\x01" * 32)


@dataclass(frozen=True)
class KnownTx:
    """A transaction in a committed child block, as its signers and the test know it."""

    blknum: int
    txindex: int
    signed: SignedPlasmaTx
    signers: tuple[Identity, ...]
    tx: PlasmaTransaction


@dataclass(frozen=True)
class TxSpec:
    spend: int  # which known output (modulo)
    honest_signer: bool  # signed by the output's owner, or by someone else
    extra: int  # added to the output amount: > 0 mints
    split: bool  # two outputs instead of one


tx_specs = st.builds(
    TxSpec,
    spend=picks,
    honest_signer=st.sampled_from([True, True, True, False]),
    extra=st.sampled_from([0, 0, 0, 0, 50]),
    split=st.booleans(),
)


class PlasmaChainMachine(ChainMachine):
    def __init__(self) -> None:
        super().__init__()
        self.plasma_ids: list[PlasmaId] = []
        self.operators: dict[PlasmaId, Identity] = {}
        self.known: dict[PlasmaId, list[KnownTx]] = {}
        self.blocks: dict[tuple[PlasmaId, int], list[SignedPlasmaTx]] = {}
        self.deposited: dict[PlasmaId, int] = {}
        self.paid_out: dict[PlasmaId, int] = {}

    def plasma(self, pick: int) -> PlasmaId:
        if not self.plasma_ids or pick % 16 == 0:
            return UNKNOWN_PLASMA
        return self.plasma_ids[pick % len(self.plasma_ids)]

    def outputs(self, plasma_id: PlasmaId) -> list[tuple[int, KnownTx, TxOutput]]:
        return [
            (utxo_pos(known.blknum, known.txindex, oindex), known, output)
            for known in self.known.get(plasma_id, [])
            for oindex, output in enumerate(known.tx.outputs)
        ]

    def owner(self, address: bytes) -> Identity:
        return next(who for who in PEOPLE if who.node_id == address)

    def spends_of(self, plasma_id: PlasmaId, position: int) -> list[KnownTx]:
        return [
            known
            for known in self.known.get(plasma_id, [])
            if any(tx_input.pos == position for tx_input in known.tx.inputs)
        ]

    def queued_exits(self) -> bool:
        return any(chain.queue for chain in self.harness.state.plasma.values())

    # -- rules ------------------------------------------------------------------------

    @initialize(first=st.integers(1, 400), second=st.integers(1, 400))
    def create_first_chain(self, first: int, second: int) -> None:
        """Every run starts with a child chain holding two deposits, so the exit game is
        played in most runs rather than waiting for a random create."""
        self.plasma_create(PEOPLE[0], 5, 20)
        self.plasma_deposit(PEOPLE[1], 1, first)
        self.plasma_deposit(PEOPLE[2], 1, second)

    @precondition(lambda self: len(self.plasma_ids) < 2)
    @rule(operator=people, bond=st.sampled_from([0, 5, 50]), period=st.sampled_from([19, 20, 25]))
    def plasma_create(self, operator: Identity, bond: int, period: int) -> None:
        events = self.submit(operator, PlasmaCreate(bond, period), 1)
        if events is not None:
            [created] = events
            assert isinstance(created, PlasmaCreated) and period >= 20
            self.plasma_ids.append(created.plasma_id)
            self.operators[created.plasma_id] = operator
            self.known[created.plasma_id] = []
            self.deposited[created.plasma_id] = self.paid_out[created.plasma_id] = 0

    @rule(who=people, pick=picks, amount=st.one_of(st.integers(0, 300), st.integers(0, 1200)))
    def plasma_deposit(self, who: Identity, pick: int, amount: int) -> None:
        plasma_id = self.plasma(pick)
        events = self.submit(who, PlasmaDeposit(plasma_id, amount), 1)
        if events is not None:
            [event] = events
            assert isinstance(event, PlasmaDeposited) and amount > 0
            signed = deposit_tx(plasma_id, who.node_id, amount)
            tx = PlasmaTransaction.decode(signed.tx_bytes)
            self.known[plasma_id].append(KnownTx(event.blknum, 0, signed, (), tx))
            self.blocks[(plasma_id, event.blknum)] = [signed]
            self.deposited[plasma_id] += amount

    @rule(
        caller=st.sampled_from(["operator", "operator", "operator", *PEOPLE]),
        pick=picks,
        specs=st.lists(tx_specs, max_size=4),
        meaningless_root=st.sampled_from([False] * 5 + [True]),
        fee=fees,
    )
    def plasma_submit_block(
        self,
        caller: str | Identity,
        pick: int,
        specs: list[TxSpec],
        meaningless_root: bool,
        fee: int,
    ) -> None:
        plasma_id = self.plasma(pick)
        submitter = self.operators.get(plasma_id, PEOPLE[0]) if caller == "operator" else caller
        assert isinstance(submitter, Identity)
        outputs = self.outputs(plasma_id)
        built: list[tuple[SignedPlasmaTx, tuple[Identity, ...], PlasmaTransaction]] = []
        for spec in specs:
            if not outputs:
                break
            position, _, output = outputs[spec.spend % len(outputs)]
            owner = self.owner(output.owner)
            signer = owner if spec.honest_signer else PEOPLE[(PEOPLE.index(owner) + 1) % 4]
            total = output.amount + spec.extra
            recipient = PEOPLE[spec.spend % len(PEOPLE)].node_id
            new_outputs = (
                (TxOutput(recipient, total // 2 or 1), TxOutput(owner.node_id, total - total // 2))
                if spec.split and total >= 2
                else (TxOutput(recipient, total),)
            )
            tx = PlasmaTransaction(plasma_id, (TxInput(*split_utxo_pos(position)),), new_outputs)
            built.append((sign_tx(tx, [signer]), (signer,), tx))
        tree = MerkleTree([signed.leaf for signed, _, _ in built])
        root = bytes(32) if meaningless_root else tree.root
        chain = self.harness.state.plasma.get(plasma_id)
        blknum = chain.next_block if chain else 0
        events = self.submit(submitter, PlasmaSubmitBlock(plasma_id, root), fee)
        if events is not None:
            assert chain is not None and submitter.node_id == chain.operator
            if not meaningless_root:
                self.blocks[(plasma_id, blknum)] = [signed for signed, _, _ in built]
                for txindex, (signed, signers, tx) in enumerate(built):
                    self.known[plasma_id].append(KnownTx(blknum, txindex, signed, signers, tx))

    def proof_of(self, plasma_id: PlasmaId, known: KnownTx) -> bytes:
        if known.blknum % 1000:
            return b""
        txs = self.blocks[(plasma_id, known.blknum)]
        return MerkleTree([signed.leaf for signed in txs]).proof(known.txindex)

    def confirmations_of(self, plasma_id: PlasmaId, known: KnownTx) -> tuple[Confirmation, ...]:
        root = self.harness.state.plasma[plasma_id].blocks[known.blknum].root
        return tuple(sign_confirmation(who, known.signed.tx_hash, root) for who in known.signers)

    @rule(
        pick=picks,
        output_pick=picks,
        by_owner=st.sampled_from([True, True, True, False]),
        corrupt=st.sampled_from(["none"] * 6 + ["proof", "confirmation"]),
        fee=fees,
    )
    def plasma_start_exit(
        self, pick: int, output_pick: int, by_owner: bool, corrupt: str, fee: int
    ) -> None:
        plasma_id = self.plasma(pick)
        outputs = self.outputs(plasma_id)
        spent = [entry for entry in outputs if self.spends_of(plasma_id, entry[0])]
        if spent and output_pick % 2:
            outputs = spent  # an exit of a spent coin: the case challenges are for
        if not outputs:
            return
        position, known, output = outputs[output_pick % len(outputs)]
        owner = self.owner(output.owner)
        sender = owner if by_owner else PEOPLE[(PEOPLE.index(owner) + 1) % 4]
        proof = self.proof_of(plasma_id, known)
        confirmations = self.confirmations_of(plasma_id, known)
        if corrupt == "proof":
            proof = bytes(512)
        elif corrupt == "confirmation" and confirmations:
            confirmations = (Confirmation(confirmations[0].owner, bytes(64)),)
        chain = self.harness.state.plasma[plasma_id]
        call = PlasmaStartExit(plasma_id, position, known.signed, proof, confirmations)
        events = self.submit(sender, call, fee)
        if events is not None:
            [started] = events
            assert isinstance(started, PlasmaExitStarted)
            assert sender.node_id == output.owner and started.amount == output.amount
            committed = chain.blocks[known.blknum].height
            expected = exitable_at(committed, self.applied_at, chain.challenge_period)
            assert started.exitable_at == expected

    def plasma_start_exit_of(self, plasma_id: PlasmaId, position: int) -> None:
        """The owner's honest exit of one output."""
        _, known, output = next(entry for entry in self.outputs(plasma_id) if entry[0] == position)
        call = PlasmaStartExit(
            plasma_id,
            position,
            known.signed,
            self.proof_of(plasma_id, known),
            self.confirmations_of(plasma_id, known),
        )
        self.submit(self.owner(output.owner), call, 1)

    @precondition(queued_exits)
    @rule(
        caller=people,
        exit_pick=picks,
        spend_pick=picks,
        confirmed=st.sampled_from([True, True, True, False]),
        fee=fees,
    )
    def plasma_challenge(
        self,
        caller: Identity,
        exit_pick: int,
        spend_pick: int,
        confirmed: bool,
        fee: int,
    ) -> None:
        chains = self.harness.state.plasma
        targets = [
            (plasma_id, position)
            for plasma_id, chain in chains.items()
            for position in sorted(chain.exits)
            if chain.exits[position].status == ExitStatus.QUEUED or exit_pick % 7 == 0
        ]
        challengeable = [target for target in targets if self.spends_of(*target)]
        if challengeable and exit_pick % 4:
            targets = challengeable
        if not targets:
            return
        plasma_id, position = targets[(exit_pick // 7) % len(targets)]
        spends = self.spends_of(plasma_id, position)
        candidates = spends if spends and spend_pick % 5 else self.known[plasma_id]
        known = candidates[spend_pick % len(candidates)]
        self.challenge_with(caller, plasma_id, position, known, confirmed=confirmed, fee=fee)

    def challenge_with(
        self,
        caller: Identity,
        plasma_id: PlasmaId,
        position: int,
        known: KnownTx,
        *,
        confirmed: bool,
        fee: int,
    ) -> None:
        chain = self.harness.state.plasma[plasma_id]
        record = chain.exits.get(position)
        if record is None:
            return
        spends = self.spends_of(plasma_id, position)
        proof = self.proof_of(plasma_id, known) if known.blknum % 1000 == 0 else bytes(512)
        root = chain.blocks[known.blknum].root
        confirmer = self.owner(record.owner) if confirmed else caller
        confirmation = sign_confirmation(confirmer, known.signed.tx_hash, root).signature
        spending_pos = utxo_pos(known.blknum, known.txindex, 0)
        call = PlasmaChallengeExit(
            plasma_id, position, spending_pos, known.signed, proof, confirmation
        )
        events = self.submit(caller, call, fee)
        if events is not None:
            assert known in spends and record.status == ExitStatus.CHALLENGED
            assert known.signers[0].node_id == record.owner and confirmer.node_id == record.owner

    @rule(pick=picks, challenger=st.sampled_from(PEOPLE[:3]), delay=st.integers(0, 40))
    def exit_a_spent_coin_and_challenge_it(
        self, pick: int, challenger: Identity, delay: int
    ) -> None:
        """An owner exits a coin it spent (and confirmed); someone answers with the spend."""
        spent = [
            (plasma_id, position)
            for plasma_id in self.plasma_ids
            for position, _, _ in self.outputs(plasma_id)
            if position not in self.harness.state.plasma[plasma_id].exits
            and any(known.signers for known in self.spends_of(plasma_id, position))
        ]
        if not spent:
            return
        plasma_id, position = spent[pick % len(spent)]
        known = next(known for known in self.spends_of(plasma_id, position) if known.signers)
        self.plasma_start_exit_of(plasma_id, position)
        self.height += delay
        self.challenge_with(challenger, plasma_id, position, known, confirmed=True, fee=1)

    @precondition(queued_exits)
    @rule(caller=people, pick=picks, max_count=st.integers(0, 17), fee=fees)
    def plasma_finalize(self, caller: Identity, pick: int, max_count: int, fee: int) -> None:
        plasma_id = self.plasma(pick)
        chain = self.harness.state.plasma.get(plasma_id)
        queue_before = list(chain.queue) if chain else []
        events = self.submit(caller, PlasmaFinalizeExits(plasma_id, max_count), fee)
        if events is not None:
            assert chain is not None
            [finalized] = events
            assert isinstance(finalized, PlasmaExitsFinalized)
            paid_positions = [paid.utxo_pos for paid in finalized.exits]
            assert 1 <= len(paid_positions) <= max_count
            assert (
                paid_positions == [position for _, position in queue_before][: len(paid_positions)]
            )
            for paid in finalized.exits:
                record = chain.exits[paid.utxo_pos]
                assert record.exitable_at <= self.applied_at and paid.paid <= record.amount
                self.paid_out[plasma_id] += paid.paid

    @precondition(queued_exits)
    @rule(pick=picks, offset=st.sampled_from([-1, 0, 0, 1]))
    def advance_to_an_exit(self, pick: int, offset: int) -> None:
        edges = [
            record.exitable_at + offset
            for chain in self.harness.state.plasma.values()
            for record in chain.exits.values()
            if record.status == ExitStatus.QUEUED and record.exitable_at + offset >= self.height
        ]
        if edges:
            self.height = sorted(edges)[pick % len(edges)]

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def plasma_books_balance(self) -> None:
        for plasma_id, chain in self.harness.state.plasma.items():
            assert chain.deposits_held == self.deposited[plasma_id] - self.paid_out[plasma_id]
            assert chain.deposits_held >= 0
            queued = [
                record for record in chain.exits.values() if record.status == ExitStatus.QUEUED
            ]
            assert chain.bonds_held == sum(record.bond for record in queued)
            assert chain.queue == sorted(record.priority for record in queued)
            for record in chain.exits.values():
                assert record.paid <= record.amount
                assert record.status == ExitStatus.PAID or record.paid == 0


TestPlasmaConservation = PlasmaChainMachine.TestCase
TestPlasmaConservation.settings = settings(max_examples=80, stateful_step_count=120, deadline=None)
