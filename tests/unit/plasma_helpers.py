"""Helpers for driving the Plasma root contract in tests: a child chain on a `ChainHarness`.

`ChildChain` creates a chain, keeps every block's transactions (deposit blocks included) as the
operator would, and builds the exit and challenge calls with real proofs and confirmations, so
a test changes one thing at a time to see one rule refuse it.
"""

from __future__ import annotations

from collections.abc import Sequence

from p2pchan.crypto.keys import Identity
from p2pchan.crypto.merkle import MerkleTree
from p2pchan.l1.events import PlasmaCreated, PlasmaDeposited
from p2pchan.l1.plasma_state import PlasmaChain
from p2pchan.l1.transactions import (
    PlasmaChallengeExit,
    PlasmaCreate,
    PlasmaDeposit,
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
from tests.unit.chain_helpers import ChainHarness


class ChildChain:
    def __init__(
        self,
        harness: ChainHarness,
        operator: Identity,
        *,
        exit_bond: int = 10,
        challenge_period: int = 20,
        height: int | None = None,
    ) -> None:
        self.harness = harness
        self.operator = operator
        [created] = harness.call(operator, PlasmaCreate(exit_bond, challenge_period), height)
        assert isinstance(created, PlasmaCreated)
        self.plasma_id: PlasmaId = created.plasma_id
        self.blocks: dict[int, list[SignedPlasmaTx]] = {}
        self.signers: dict[bytes, list[Identity]] = {}

    @property
    def record(self) -> PlasmaChain:
        return self.harness.state.plasma[self.plasma_id]

    def deposit(self, who: Identity, amount: int, height: int | None = None) -> int:
        """Deposit on layer 1; return the deposit output's position."""
        [event] = self.harness.call(who, PlasmaDeposit(self.plasma_id, amount), height)
        assert isinstance(event, PlasmaDeposited)
        self.blocks[event.blknum] = [deposit_tx(self.plasma_id, who.node_id, amount)]
        return utxo_pos(event.blknum, 0, 0)

    def tx(
        self,
        spends: Sequence[tuple[int, Identity]],
        outputs: Sequence[tuple[Identity, int]],
        *,
        plasma_id: PlasmaId | None = None,
    ) -> SignedPlasmaTx:
        """A transaction spending `(position, owner)` pairs, each signed by that owner."""
        inputs = tuple(TxInput(*split_utxo_pos(position)) for position, _ in spends)
        tx = PlasmaTransaction(
            self.plasma_id if plasma_id is None else plasma_id,
            inputs,
            tuple(TxOutput(owner.node_id, amount) for owner, amount in outputs),
        )
        signed = sign_tx(tx, [owner for _, owner in spends])
        self.signers[signed.tx_hash] = [owner for _, owner in spends]
        return signed

    def submit(
        self, txs: Sequence[SignedPlasmaTx], height: int | None = None, *, root: bytes | None = None
    ) -> int:
        """Commit an operator block of `txs` (or an arbitrary root); return its number."""
        blknum = self.record.next_block
        tree_root = MerkleTree([signed.leaf for signed in txs]).root
        self.harness.call(
            self.operator,
            PlasmaSubmitBlock(self.plasma_id, tree_root if root is None else root),
            height,
        )
        self.blocks[blknum] = list(txs)
        return blknum

    def proof(self, blknum: int, txindex: int) -> bytes:
        return MerkleTree([signed.leaf for signed in self.blocks[blknum]]).proof(txindex)

    def confirmations(self, signed: SignedPlasmaTx, blknum: int) -> tuple[Confirmation, ...]:
        root = self.record.blocks[blknum].root
        return tuple(
            sign_confirmation(owner, signed.tx_hash, root) for owner in self.signers[signed.tx_hash]
        )

    def tx_at(self, position: int) -> SignedPlasmaTx:
        blknum, txindex, _ = split_utxo_pos(position)
        return self.blocks[blknum][txindex]

    def start_exit(
        self,
        position: int,
        *,
        tx: SignedPlasmaTx | None = None,
        proof: bytes | None = None,
        confirmations: tuple[Confirmation, ...] | None = None,
    ) -> PlasmaStartExit:
        """The exit call of an output with its real proof and confirmations, unless given."""
        blknum, txindex, _ = split_utxo_pos(position)
        signed = self.tx_at(position) if tx is None else tx
        if proof is None:
            proof = b"" if blknum % 1000 else self.proof(blknum, txindex)
        if confirmations is None:
            confirmations = self.confirmations(signed, blknum) if signed.signatures else ()
        return PlasmaStartExit(self.plasma_id, position, signed, proof, confirmations)

    def challenge(
        self,
        position: int,
        spending_pos: int,
        *,
        confirmer: Identity | None = None,
        tx: SignedPlasmaTx | None = None,
        proof: bytes | None = None,
        confirmation: bytes | None = None,
    ) -> PlasmaChallengeExit:
        """Challenge the exit of `position` with the transaction at `spending_pos`, confirmed by
        `confirmer` (by default the exit's owner's identity must be given)."""
        blknum, txindex, _ = split_utxo_pos(spending_pos)
        signed = self.tx_at(spending_pos) if tx is None else tx
        if proof is None:
            proof = self.proof(blknum, txindex)
        if confirmation is None:
            assert confirmer is not None
            root = self.record.blocks[blknum].root
            confirmation = sign_confirmation(confirmer, signed.tx_hash, root).signature
        return PlasmaChallengeExit(
            self.plasma_id, position, spending_pos, signed, proof, confirmation
        )
