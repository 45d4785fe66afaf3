"""The operator's pure machine: admission, block building, confirmations relay, dev attacks.

The shell (`operator_server.py`) feeds it submitted transactions, layer-1 events and the block
timer, and carries out what it returns in order: a `BuiltBlock` is written and fsynced, and only
then is its root submitted to layer 1 (persist before promise).

Admission checks a transaction against the *pending* UTXO set: the deposits and the outputs of
built blocks, less every input already admitted. An admitted transaction's inputs are spent at
once (a second spend is refused as `spent_input`), its outputs become spendable when its block
is built. The transaction's position in the coming block is known on admission.

Mutable state on purpose: admission is the hot path (measured: one Ed25519 verification per
input is most of its cost; see docs/BENCHMARKS.md), so nothing is copied per transaction.
On a `--dev` operator the attack switches of DESIGN.md put an invalid transaction into the next
block (an output from nothing, a double spend signed by the operator) or withhold that block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2pchan.crypto.keys import Identity
from p2pchan.crypto.merkle import MAX_LEAVES
from p2pchan.errors import PlasmaError, RemoteProtocolError
from p2pchan.plasma.block import PlasmaBlock, sign_block
from p2pchan.plasma.utxo import UtxoSet, apply_transaction, check_transaction
from p2pchan.types import Address, PlasmaId
from p2pchan.wire.plasma import (
    CHILD_BLOCK_INTERVAL,
    Confirmation,
    DecodedTx,
    PlasmaTransaction,
    SignedPlasmaTx,
    TxInput,
    TxOutput,
    confirmation_valid,
    decode_signed_tx,
    sign_tx,
    split_utxo_pos,
    utxo_pos,
)

DEPOSIT_PRESSURE = 500  # build even an empty block once this many deposits wait for one


@dataclass(frozen=True, slots=True)
class Admitted:
    tx_hash: bytes
    blknum: int
    txindex: int


@dataclass(frozen=True, slots=True)
class BuiltBlock:
    """A new block to persist, then commit: its number, root and encoded bytes."""

    blknum: int
    root: bytes
    data: bytes
    transactions: int
    withheld: bool  # a --dev attack: commit the root but never serve the block


@dataclass(slots=True)
class TxRecord:
    """Where a transaction is, and who owned its inputs (who may confirm it)."""

    blknum: int
    txindex: int
    input_owners: tuple[Address, ...]
    confirmations: dict[Address, bytes] = field(default_factory=dict)
    # Set for a transaction replayed from the store: a deposit it spends may be learnt from
    # layer 1 only after the replay, so its owners are looked up again when one confirms.
    inputs: tuple[int, ...] = ()


class OperatorMachine:
    def __init__(
        self,
        operator: Identity,
        plasma_id: PlasmaId,
        *,
        max_block_txs: int = MAX_LEAVES,
        dev: bool = False,
    ) -> None:
        if not 1 <= max_block_txs <= MAX_LEAVES:
            raise ValueError(f"a block holds 1 to {MAX_LEAVES} transactions")
        self.operator = operator
        self.plasma_id = plasma_id
        self.max_block_txs = max_block_txs
        self.dev = dev
        self.utxos = UtxoSet()
        self.next_blknum = CHILD_BLOCK_INTERVAL  # the block admitted transactions go into
        self.roots: dict[int, bytes] = {}  # every built block
        self.committed: set[int] = set()  # blocks whose root layer 1 recorded
        self.withheld: set[int] = set()
        self.transactions: dict[bytes, TxRecord] = {}
        self.deposits_waiting = 0  # deposits since the last built block
        self._pending: list[DecodedTx] = []
        self._forced: list[SignedPlasmaTx] = []  # attack transactions for the next block
        self._withhold_next = False

    # -- admission ------------------------------------------------------------------------

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def admit(self, signed: SignedPlasmaTx) -> Admitted:
        """Check a transaction against the pending UTXO set and queue it for the next block.

        Raises `PlasmaError` with a stable code; a refused transaction changes nothing.
        """
        if len(self._pending) + len(self._forced) >= self.max_block_txs:
            raise PlasmaError("block_full", "the next block is full; retry after it is built")
        try:
            decoded = decode_signed_tx(signed)
        except RemoteProtocolError as error:
            raise PlasmaError("malformed", str(error)) from None
        if decoded.tx_hash in self.transactions:
            raise PlasmaError("duplicate_tx", "this transaction was already admitted")
        spent = check_transaction(self.utxos, decoded, self.plasma_id)
        spend = self.utxos.spend
        for position, _ in spent:
            spend(position)
        txindex = len(self._pending)
        self._pending.append(decoded)
        self.transactions[decoded.tx_hash] = TxRecord(
            self.next_blknum, txindex, tuple(output.owner for _, output in spent)
        )
        return Admitted(decoded.tx_hash, self.next_blknum, txindex)

    # -- blocks ---------------------------------------------------------------------------

    @property
    def wants_block(self) -> bool:
        """Something waits for a block: transactions, an attack, or many deposits."""
        return bool(self._pending or self._forced) or self.deposits_waiting >= DEPOSIT_PRESSURE

    def build_block(self) -> BuiltBlock:
        """Seal everything admitted (and any attack transaction) into the next block."""
        blknum = self.next_blknum
        transactions = [decoded.signed for decoded in self._pending] + self._forced
        block, tree = sign_block(self.operator, self.plasma_id, blknum, transactions)
        for txindex, signed in enumerate(self._forced, start=len(self._pending)):
            decoded = decode_signed_tx(signed)
            apply_transaction(self.utxos, decoded, blknum, txindex)
            self.transactions[decoded.tx_hash] = TxRecord(
                blknum, txindex, tuple(self.operator.node_id for _ in decoded.tx.inputs)
            )
        add = self.utxos.add
        for txindex, decoded in enumerate(self._pending):
            # Inputs were spent on admission; the outputs exist from now on.
            for oindex, output in enumerate(decoded.tx.outputs):
                add(utxo_pos(blknum, txindex, oindex), output)
        withheld = self._withhold_next
        if withheld:
            self.withheld.add(blknum)
        self._pending, self._forced, self._withhold_next = [], [], False
        self.roots[blknum] = tree.root
        self.next_blknum += CHILD_BLOCK_INTERVAL
        self.deposits_waiting = 0
        return BuiltBlock(blknum, tree.root, block.encode(), len(transactions), withheld)

    def restore_block(self, block: PlasmaBlock, *, withheld: bool = False) -> None:
        """Replay a block from the store after a restart (it was checked when built)."""
        if block.blknum != self.next_blknum or self._pending or self._forced:
            raise PlasmaError("store_out_of_order", f"stored block {block.blknum} is out of order")
        for txindex, signed in enumerate(block.transactions):
            decoded = decode_signed_tx(signed)
            inputs = tuple(tx_input.pos for tx_input in decoded.tx.inputs)
            owners = tuple(self._owner_of(position) for position in inputs)
            apply_transaction(self.utxos, decoded, block.blknum, txindex)
            self.transactions[decoded.tx_hash] = TxRecord(
                block.blknum, txindex, owners, inputs=inputs
            )
        if withheld:
            self.withheld.add(block.blknum)
        self.roots[block.blknum] = block.tree().root
        self.next_blknum += CHILD_BLOCK_INTERVAL

    def _owner_of(self, position: int) -> Address:
        output = self.utxos.ever(position)
        return output.owner if output is not None else self.operator.node_id

    # -- layer 1 --------------------------------------------------------------------------

    def on_deposit(self, blknum: int, owner: Address, amount: int) -> None:
        position = utxo_pos(blknum, 0, 0)
        if self.utxos.ever(position) is None and blknum > self.next_blknum - CHILD_BLOCK_INTERVAL:
            self.deposits_waiting += 1
        self.utxos.add(position, TxOutput(owner, amount))

    def on_committed(self, blknum: int, root: bytes) -> None:
        """Layer 1 recorded `root` as block `blknum`; it must be the one we built."""
        built = self.roots.get(blknum)
        if built != root:
            raise PlasmaError(
                "root_mismatch", f"layer 1 holds another root for block {blknum} than ours"
            )
        self.committed.add(blknum)

    # -- serving --------------------------------------------------------------------------

    def is_served(self, blknum: int) -> bool:
        return blknum in self.roots and blknum not in self.withheld

    def utxos_of(self, owner: Address) -> list[tuple[int, TxOutput]]:
        return self.utxos.owned_by(owner)

    def add_confirmation(self, tx_hash: bytes, confirmation: Confirmation) -> TxRecord:
        """Keep an input owner's confirmation of a committed transaction, for its receiver."""
        record = self.transactions.get(tx_hash)
        if record is None or record.blknum not in self.roots:
            raise PlasmaError("unknown_tx", "no built block holds this transaction")
        if record.blknum not in self.committed:
            raise PlasmaError("not_committed", f"block {record.blknum} is not on layer 1 yet")
        if confirmation.owner not in record.input_owners and record.inputs:
            record.input_owners = tuple(self._owner_of(position) for position in record.inputs)
        if confirmation.owner not in record.input_owners:
            raise PlasmaError("not_input_owner", "only an input's owner confirms a transaction")
        root = self.roots[record.blknum]
        if not confirmation_valid(confirmation.owner, tx_hash, root, confirmation.signature):
            raise PlasmaError("bad_confirmation", "the confirmation's signature is not valid")
        record.confirmations[confirmation.owner] = confirmation.signature
        return record

    def restore_confirmation(self, tx_hash: bytes, confirmation: Confirmation) -> None:
        """Keep a confirmation read back from the store (it was checked when received)."""
        record = self.transactions.get(tx_hash)
        if record is not None:
            record.confirmations[confirmation.owner] = confirmation.signature

    def confirmations_of(self, tx_hash: bytes) -> list[Confirmation]:
        record = self.transactions.get(tx_hash)
        if record is None:
            return []
        return [Confirmation(owner, sig) for owner, sig in record.confirmations.items()]

    # -- dev attacks ----------------------------------------------------------------------

    def _require_dev(self) -> None:
        if not self.dev:
            raise PlasmaError("not_dev", "attacks are only for --dev operators")

    def attack_withhold_next(self) -> int:
        """Commit the next block's root but never serve the block. Returns its number."""
        self._require_dev()
        self._withhold_next = True
        return self.next_blknum

    def attack_mint(self, amount: int) -> bytes:
        """Put an output from nothing (to the operator) into the next block."""
        self._require_dev()
        if amount == 0:
            raise PlasmaError("zero_amount", "mint something")
        tx = PlasmaTransaction(self.plasma_id, (), (TxOutput(self.operator.node_id, amount),))
        return self._force(SignedPlasmaTx(tx.encode(), ()))

    def attack_double_spend(self, position: int) -> bytes:
        """Put a spend of `position` (usually spent already) to the operator, signed by the
        operator rather than the owner, into the next block."""
        self._require_dev()
        output = self.utxos.ever(position)
        if output is None:
            raise PlasmaError("unknown_output", f"no output {position} to double-spend")
        tx = PlasmaTransaction(
            self.plasma_id,
            (TxInput(*split_utxo_pos(position)),),
            (TxOutput(self.operator.node_id, output.amount),),
        )
        return self._force(sign_tx(tx, [self.operator]))

    def _force(self, signed: SignedPlasmaTx) -> bytes:
        if len(self._pending) + len(self._forced) >= self.max_block_txs:
            raise PlasmaError("block_full", "the next block is full")
        self._forced.append(signed)
        return signed.tx_hash
