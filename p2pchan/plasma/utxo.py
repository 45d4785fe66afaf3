"""The UTXO set of a child chain and the one rule for a valid transaction.

DESIGN.md: a transaction is valid when every input exists, is unspent, appears once, is signed
by its owner, and the input sum equals the output sum; amounts are > 0. The operator checks it
against its pending set before admitting a transaction, the watcher against the set of the valid
blocks before checking a block: both call `check_transaction`, so the rule lives here once.

The set remembers every output it ever held (spent ones too), so a late deposit notice cannot
bring a spent output back, and a double spend names what it spent. Mutable on purpose: it is
the operator's hot path (one dict lookup and one signature check per input).
"""

from __future__ import annotations

from collections.abc import Iterator

from p2pchan.errors import PlasmaError
from p2pchan.types import Address, PlasmaId
from p2pchan.wire.plasma import DecodedTx, TxOutput, tx_signature_valid, utxo_pos


class UtxoSet:
    """Outputs by position. `begin` / `rollback` / `commit` make a batch of changes atomic
    (a block is applied whole or not at all) without copying the set."""

    __slots__ = ("_by_owner", "_consumed", "_journal", "_spent", "_unspent")

    def __init__(self) -> None:
        self._unspent: dict[int, TxOutput] = {}
        self._spent: dict[int, TxOutput] = {}
        self._by_owner: dict[Address, set[int]] = {}
        self._consumed: set[int] = set()  # spent before this set learnt of them
        self._journal: list[tuple[bool, int]] | None = None  # (was an add, position)

    def __len__(self) -> int:
        return len(self._unspent)

    def __contains__(self, position: int) -> bool:
        return position in self._unspent

    def get(self, position: int) -> TxOutput | None:
        return self._unspent.get(position)

    def ever(self, position: int) -> TxOutput | None:
        """The output at `position`, spent or not (None if it never existed)."""
        return self._unspent.get(position) or self._spent.get(position)

    def is_spent(self, position: int) -> bool:
        return position in self._spent

    def add(self, position: int, output: TxOutput) -> None:
        """Add a new output; a position that exists or was spent is left as it is."""
        if position in self._unspent or position in self._spent:
            return
        if position in self._consumed:  # a replayed block spent it before its deposit arrived
            self._consumed.discard(position)
            self._spent[position] = output
            return
        self._unspent[position] = output
        self._by_owner.setdefault(output.owner, set()).add(position)
        if self._journal is not None:
            self._journal.append((True, position))

    def spend(self, position: int) -> TxOutput:
        output = self._unspent.pop(position)
        self._spent[position] = output
        self._disown(position, output)
        if self._journal is not None:
            self._journal.append((False, position))
        return output

    def consume(self, position: int) -> None:
        """Spend `position` if unspent; if never seen, remember it so it is born spent."""
        if position in self._unspent:
            self.spend(position)
        elif position not in self._spent:
            self._consumed.add(position)

    def _disown(self, position: int, output: TxOutput) -> None:
        owned = self._by_owner.get(output.owner)
        if owned is not None:
            owned.discard(position)
            if not owned:
                del self._by_owner[output.owner]

    def begin(self) -> None:
        """Start recording changes, to `commit` or `rollback` them together."""
        self._journal = []

    def commit(self) -> None:
        self._journal = None

    def rollback(self) -> None:
        """Undo every change since `begin`."""
        journal, self._journal = self._journal or [], None
        for was_add, position in reversed(journal):
            if was_add:
                output = self._unspent.pop(position)
                self._disown(position, output)
            else:
                output = self._spent.pop(position)
                self._unspent[position] = output
                self._by_owner.setdefault(output.owner, set()).add(position)

    def owned_by(self, owner: Address) -> list[tuple[int, TxOutput]]:
        """The unspent outputs of `owner`, by position."""
        positions = self._by_owner.get(owner, ())
        return sorted((position, self._unspent[position]) for position in positions)

    def items(self) -> Iterator[tuple[int, TxOutput]]:
        return iter(self._unspent.items())


def check_transaction(
    utxos: UtxoSet, decoded: DecodedTx, plasma_id: PlasmaId, *, verify: bool = True
) -> list[tuple[int, TxOutput]]:
    """Raise `PlasmaError` unless `decoded` may be applied to `utxos`; return the positions it
    spends and the outputs there.

    Cheap checks come first and the signatures last: they are the main cost.
    """
    tx = decoded.tx
    if tx.plasma_id != plasma_id:
        raise PlasmaError("wrong_plasma", "the transaction is for another child chain")
    if not tx.inputs:
        raise PlasmaError("no_inputs", "a transaction spends at least one output")
    if not tx.outputs:
        raise PlasmaError("no_outputs", "a transaction creates at least one output")
    output_sum = 0
    for output in tx.outputs:
        if output.amount == 0:
            raise PlasmaError("zero_amount", "every output amount must be more than 0")
        output_sum += output.amount
    spent: list[tuple[int, TxOutput]] = []
    input_sum = 0
    for tx_input in tx.inputs:
        position = tx_input.pos
        if any(position == earlier for earlier, _ in spent):
            raise PlasmaError("duplicate_input", f"output {position} is spent twice")
        existing = utxos.get(position)
        if existing is None:
            if utxos.is_spent(position):
                raise PlasmaError("spent_input", f"output {position} is already spent")
            raise PlasmaError("missing_input", f"output {position} does not exist")
        spent.append((position, existing))
        input_sum += existing.amount
    if input_sum != output_sum:
        raise PlasmaError("unbalanced", f"inputs sum to {input_sum}, outputs to {output_sum}")
    if verify:
        tx_bytes, signatures = decoded.signed.tx_bytes, decoded.signed.signatures
        for index, (_, output) in enumerate(spent):
            if not tx_signature_valid(output.owner, tx_bytes, signatures[index]):
                raise PlasmaError("bad_signature", f"input {index} is not signed by its owner")
    return spent


def apply_transaction(utxos: UtxoSet, decoded: DecodedTx, blknum: int, txindex: int) -> None:
    """Spend the inputs and add the outputs at their positions in block `blknum`.

    Unchecked: the caller checked it, or replays its own blocks (whose deposits it may learn of
    later), or wants an invalid transaction forced into a block to take effect anyway.
    """
    for tx_input in decoded.tx.inputs:
        utxos.consume(tx_input.pos)
    for oindex, output in enumerate(decoded.tx.outputs):
        utxos.add(utxo_pos(blknum, txindex, oindex), output)
