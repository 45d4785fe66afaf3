"""Plasma's signed byte formats: transactions, their signatures, confirmations, output positions.

Layer 1 (exits and challenges) and the Plasma core (operator, watcher) both read these bytes, so
they live here, below both. A transaction is the msgpack array

    [plasma_id (32), [[blknum, txindex, oindex], ...] (<= 2 inputs), [[owner, amount], ...] (<= 2)]

and travels as `SignedPlasmaTx(tx_bytes, signatures)`: one signature per input, in input order,
each by that input's owner over `"p2pchan/plasma_tx/1" || tx_bytes`. Its hash is
sha256(tx_bytes); its Merkle leaf is sha256(tx_bytes || signatures). The plasma id is derived
from layer 1's chain id, so a transaction never replays on another chain. A confirmation is an
input owner's signature over `"p2pchan/plasma_confirm/1" || tx_hash || root`, given once the
owner has seen the block (root) holding the transaction.

An output is named by `utxo_pos = blknum * 10^9 + txindex * 10^4 + oindex`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.crypto.merkle import MAX_LEAVES, merkle_root
from p2pchan.crypto.signing import SigningTag, is_valid
from p2pchan.errors import RemoteProtocolError
from p2pchan.types import U64_MAX, Address, PlasmaId
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.fields import BYTES32, SIGNATURE, U8, U16, U64, Bytes, ListOf
from p2pchan.wire.records import NestedList, Record, wire

CHILD_BLOCK_INTERVAL = 1000  # operator blocks are 1000, 2000, ...; deposits fill the gaps
MAX_DEPOSITS_BETWEEN_BLOCKS = CHILD_BLOCK_INTERVAL - 1
BLOCK_OFFSET = 10**9
TX_OFFSET = 10**4
MAX_INPUTS = 2
MAX_OUTPUTS = 2
MAX_TX_BYTES = 1024  # a full transaction is about 200 bytes
MAX_BLKNUM = U64_MAX // BLOCK_OFFSET - 1  # so that every position fits u64


def utxo_pos(blknum: int, txindex: int, oindex: int) -> int:
    return blknum * BLOCK_OFFSET + txindex * TX_OFFSET + oindex


def split_utxo_pos(position: int) -> tuple[int, int, int]:
    """(blknum, txindex, oindex) of a position; see `is_valid_utxo_pos`."""
    blknum, rest = divmod(position, BLOCK_OFFSET)
    txindex, oindex = divmod(rest, TX_OFFSET)
    return blknum, txindex, oindex


def is_valid_utxo_pos(position: int) -> bool:
    """A position that names an output slot at all: a block, a tree slot, an output index."""
    blknum, txindex, oindex = split_utxo_pos(position)
    return 1 <= blknum <= MAX_BLKNUM and txindex < MAX_LEAVES and oindex < MAX_OUTPUTS


def is_deposit_block(blknum: int) -> bool:
    return blknum % CHILD_BLOCK_INTERVAL != 0


@dataclass(frozen=True, slots=True)
class TxInput(Record):
    blknum: int = wire(U64)
    txindex: int = wire(U16)
    oindex: int = wire(U8)

    @property
    def pos(self) -> int:
        return self.blknum * BLOCK_OFFSET + self.txindex * TX_OFFSET + self.oindex


@dataclass(frozen=True, slots=True)
class TxOutput(Record):
    owner: Address = wire(BYTES32)
    amount: int = wire(U64)


@dataclass(frozen=True, slots=True)
class PlasmaTransaction(Record):
    plasma_id: PlasmaId = wire(BYTES32)
    inputs: tuple[TxInput, ...] = wire(NestedList(TxInput, MAX_INPUTS))
    outputs: tuple[TxOutput, ...] = wire(NestedList(TxOutput, MAX_OUTPUTS))

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> PlasmaTransaction:
        """Decode strictly; every input must name a valid output position."""
        return check_tx_value(unpack(data, max_len=MAX_TX_BYTES))


def _bad(path: str, expected: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"{path}: expected {expected}")


def check_tx_value(value: object) -> PlasmaTransaction:
    """Check a decoded transaction array field by field.

    Written out rather than through `Record.from_wire` because every transaction is decoded on
    the operator's and the watcher's hot path (measured 23 µs generic, 6 µs here); it accepts
    and refuses exactly what the records declare (a test compares the two), and also refuses
    an input that names no output slot.
    """
    if type(value) is not list or len(value) != 3:
        raise _bad("plasma_tx", "[plasma_id, inputs, outputs]")
    plasma_id, raw_inputs, raw_outputs = value
    if type(plasma_id) is not bytes or len(plasma_id) != 32:
        raise _bad("plasma_tx.plasma_id", "32 bytes")
    if type(raw_inputs) is not list or len(raw_inputs) > MAX_INPUTS:
        raise _bad("plasma_tx.inputs", f"a list of at most {MAX_INPUTS}")
    if type(raw_outputs) is not list or len(raw_outputs) > MAX_OUTPUTS:
        raise _bad("plasma_tx.outputs", f"a list of at most {MAX_OUTPUTS}")
    inputs = []
    for index, item in enumerate(raw_inputs):
        if type(item) is not list or len(item) != 3:
            raise _bad(f"plasma_tx.inputs[{index}]", "[blknum, txindex, oindex]")
        blknum, txindex, oindex = item
        if type(blknum) is not int or type(txindex) is not int or type(oindex) is not int:
            raise _bad(f"plasma_tx.inputs[{index}]", "three integers")
        if not (
            1 <= blknum <= MAX_BLKNUM and 0 <= txindex < MAX_LEAVES and 0 <= oindex < MAX_OUTPUTS
        ):
            raise RemoteProtocolError(f"plasma_tx.inputs[{index}]: no such output position")
        inputs.append(TxInput(blknum, txindex, oindex))
    outputs = []
    for index, item in enumerate(raw_outputs):
        if type(item) is not list or len(item) != 2:
            raise _bad(f"plasma_tx.outputs[{index}]", "[owner, amount]")
        owner, amount = item
        if type(owner) is not bytes or len(owner) != 32:
            raise _bad(f"plasma_tx.outputs[{index}].owner", "32 bytes")
        if type(amount) is not int or not 0 <= amount <= U64_MAX:
            raise _bad(f"plasma_tx.outputs[{index}].amount", "u64")
        outputs.append(TxOutput(Address(owner), amount))
    return PlasmaTransaction(PlasmaId(plasma_id), tuple(inputs), tuple(outputs))


@dataclass(frozen=True, slots=True)
class SignedPlasmaTx(Record):
    tx_bytes: bytes = wire(Bytes(max_size=MAX_TX_BYTES))
    signatures: tuple[bytes, ...] = wire(ListOf(SIGNATURE, MAX_INPUTS))

    @property
    def tx_hash(self) -> bytes:
        return sha256(self.tx_bytes)

    @property
    def leaf(self) -> bytes:
        """This transaction's Merkle leaf: sha256(tx bytes || signatures)."""
        return sha256(self.tx_bytes, *self.signatures)


def check_signed_tx_value(value: object, path: str) -> SignedPlasmaTx:
    """Check a decoded `[tx_bytes, [signature, ...]]`, written out for the same reason as
    `check_tx_value` (blocks and submissions carry thousands); a test compares it with
    `SignedPlasmaTx.from_wire`."""
    if type(value) is not list or len(value) != 2:
        raise _bad(path, "[tx_bytes, signatures]")
    tx_bytes, signatures = value
    if type(tx_bytes) is not bytes or len(tx_bytes) > MAX_TX_BYTES:
        raise _bad(f"{path}.tx_bytes", f"bytes of at most {MAX_TX_BYTES}")
    if type(signatures) is not list or len(signatures) > MAX_INPUTS:
        raise _bad(f"{path}.signatures", f"a list of at most {MAX_INPUTS}")
    for signature in signatures:
        if type(signature) is not bytes or len(signature) != 64:
            raise _bad(f"{path}.signatures", "64-byte signatures")
    return SignedPlasmaTx(tx_bytes, tuple(signatures))


@dataclass(frozen=True, slots=True)
class DecodedTx:
    """A signed transaction whose bytes decoded strictly (signatures not yet checked)."""

    tx: PlasmaTransaction
    signed: SignedPlasmaTx
    tx_hash: bytes


def decode_signed_tx(signed: SignedPlasmaTx) -> DecodedTx:
    """Decode the transaction bytes; one signature per input. Raises `RemoteProtocolError`."""
    tx = PlasmaTransaction.decode(signed.tx_bytes)
    if len(signed.signatures) != len(tx.inputs):
        raise RemoteProtocolError(
            f"{len(tx.inputs)} inputs need as many signatures, got {len(signed.signatures)}"
        )
    return DecodedTx(tx, signed, hashlib.sha256(signed.tx_bytes).digest())


def sign_tx(tx: PlasmaTransaction, signers: list[Identity]) -> SignedPlasmaTx:
    """Sign `tx` by each input's owner, in input order."""
    tx_bytes = tx.encode()
    return SignedPlasmaTx(
        tx_bytes, tuple(signer.sign(SigningTag.PLASMA_TX, tx_bytes) for signer in signers)
    )


def tx_signature_valid(owner: bytes, tx_bytes: bytes, signature: bytes) -> bool:
    return is_valid(owner, SigningTag.PLASMA_TX, tx_bytes, signature)


def deposit_tx(plasma_id: PlasmaId, owner: Address, amount: int) -> SignedPlasmaTx:
    """The one transaction of a deposit block: no inputs, one output, no signatures."""
    tx = PlasmaTransaction(plasma_id, (), (TxOutput(owner, amount),))
    return SignedPlasmaTx(tx.encode(), ())


def deposit_root(plasma_id: PlasmaId, owner: Address, amount: int) -> bytes:
    return merkle_root([deposit_tx(plasma_id, owner, amount).leaf])


# -- confirmations ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Confirmation(Record):
    """An input owner's confirmation of a transaction in the block whose root it signed."""

    owner: Address = wire(BYTES32)
    signature: bytes = wire(SIGNATURE)


def sign_confirmation(identity: Identity, tx_hash: bytes, root: bytes) -> Confirmation:
    signature = identity.sign(SigningTag.PLASMA_CONFIRM, tx_hash + root)
    return Confirmation(identity.node_id, signature)


def confirmation_valid(owner: bytes, tx_hash: bytes, root: bytes, signature: bytes) -> bool:
    return is_valid(owner, SigningTag.PLASMA_CONFIRM, tx_hash + root, signature)
