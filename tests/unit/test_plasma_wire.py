"""Plasma's shared byte formats: the depth-16 Merkle tree and proofs, output positions,
transactions (strict decoding), signatures and confirmations."""

from __future__ import annotations

import hashlib

import pytest

from p2pchan.crypto.merkle import (
    DEPTH,
    EMPTY,
    EMPTY_LEAF,
    EMPTY_ROOT,
    MAX_LEAVES,
    PROOF_SIZE,
    MerkleTree,
    merkle_root,
    root_from_proof,
    verify_proof,
)
from p2pchan.crypto.signing import SigningTag, is_valid
from p2pchan.errors import CryptoError, RemoteProtocolError
from p2pchan.types import U64_MAX, PlasmaId
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.peer_messages import PEER_MESSAGES
from p2pchan.wire.plasma import (
    MAX_BLKNUM,
    PlasmaTransaction,
    SignedPlasmaTx,
    TxInput,
    TxOutput,
    confirmation_valid,
    decode_signed_tx,
    deposit_root,
    deposit_tx,
    is_deposit_block,
    is_valid_utxo_pos,
    sign_confirmation,
    sign_tx,
    split_utxo_pos,
    tx_signature_valid,
    utxo_pos,
)
from p2pchan.wire.plasma_messages import PlasmaConfirmations, PlasmaConfirmationsRequest
from tests.unit.chain_helpers import identity

ALICE, BOB = identity(1), identity(2)
PLASMA = PlasmaId(b"\x42" * 32)


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaves(count: int) -> list[bytes]:
    return [h(index.to_bytes(4, "big")) for index in range(count)]


# -- Merkle ---------------------------------------------------------------------------------


def test_empty_leaves_are_sha256_of_nothing_and_the_tree_has_depth_16() -> None:
    assert h(b"") == EMPTY_LEAF
    node = EMPTY_LEAF
    for _ in range(DEPTH):
        node = h(node + node)
    assert EMPTY_ROOT == node == merkle_root([])
    assert MAX_LEAVES == 65_536 and PROOF_SIZE == 512


def test_the_root_of_two_leaves_by_hand() -> None:
    first, second = leaves(2)
    node = h(first + second)
    for level in range(1, DEPTH):
        node = h(node + EMPTY[level])
    assert merkle_root([first, second]) == node


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 13])
def test_every_proof_verifies_and_only_for_its_leaf_index_and_root(count: int) -> None:
    items = leaves(count)
    tree = MerkleTree(items)
    for index, leaf in enumerate(items):
        proof = tree.proof(index)
        assert len(proof) == PROOF_SIZE
        assert verify_proof(leaf, index, proof, tree.root)
        assert not verify_proof(leaf, index ^ 1, proof, tree.root)
        assert not verify_proof(h(b"other"), index, proof, tree.root)
        assert not verify_proof(leaf, index, proof, merkle_root(leaves(count + 1)))


def test_a_full_tree_and_its_last_leaf() -> None:
    items = leaves(MAX_LEAVES)
    tree = MerkleTree(items)
    assert verify_proof(items[-1], MAX_LEAVES - 1, tree.proof(MAX_LEAVES - 1), tree.root)
    with pytest.raises(CryptoError):
        MerkleTree([*items, EMPTY_LEAF])


def test_malformed_proofs_are_refused() -> None:
    tree = MerkleTree(leaves(3))
    proof = tree.proof(1)
    for bad_proof, index in ((proof[:-1], 1), (proof + b"x", 1), (proof, MAX_LEAVES), (proof, -1)):
        assert not verify_proof(leaves(3)[1], index, bad_proof, tree.root)
        with pytest.raises(CryptoError):
            root_from_proof(leaves(3)[1], index, bad_proof)
    with pytest.raises(CryptoError):
        tree.proof(3)


# -- positions ------------------------------------------------------------------------------


def test_utxo_positions() -> None:
    assert utxo_pos(1000, 2, 1) == 1000 * 10**9 + 2 * 10**4 + 1
    assert split_utxo_pos(utxo_pos(7, 65_535, 1)) == (7, 65_535, 1)
    assert is_valid_utxo_pos(utxo_pos(1, 0, 0))
    assert is_valid_utxo_pos(utxo_pos(MAX_BLKNUM, MAX_LEAVES - 1, 1))
    assert utxo_pos(MAX_BLKNUM, 99_999, 9_999) <= U64_MAX
    for bad in (0, utxo_pos(1, 0, 2), utxo_pos(1, MAX_LEAVES, 0), utxo_pos(MAX_BLKNUM + 1, 0, 0)):
        assert not is_valid_utxo_pos(bad)
    assert is_deposit_block(1) and is_deposit_block(1999) and not is_deposit_block(2000)


# -- transactions ---------------------------------------------------------------------------


def transfer() -> PlasmaTransaction:
    return PlasmaTransaction(
        PLASMA,
        (TxInput(1000, 3, 1), TxInput(1, 0, 0)),
        (TxOutput(BOB.node_id, 5), TxOutput(ALICE.node_id, 6)),
    )


def test_a_transaction_round_trips_and_is_signed_per_input() -> None:
    tx = transfer()
    assert PlasmaTransaction.decode(tx.encode()) == tx
    signed = sign_tx(tx, [ALICE, BOB])
    decoded = decode_signed_tx(signed)
    assert decoded.tx == tx and decoded.tx_hash == h(signed.tx_bytes) == signed.tx_hash
    assert signed.leaf == h(signed.tx_bytes + signed.signatures[0] + signed.signatures[1])
    assert tx_signature_valid(ALICE.node_id, signed.tx_bytes, signed.signatures[0])
    assert tx_signature_valid(BOB.node_id, signed.tx_bytes, signed.signatures[1])
    assert not tx_signature_valid(BOB.node_id, signed.tx_bytes, signed.signatures[0])
    assert is_valid(ALICE.node_id, SigningTag.PLASMA_TX, signed.tx_bytes, signed.signatures[0])
    assert SignedPlasmaTx.from_wire(unpack(pack(signed.to_wire()), max_len=4096)) == signed


@pytest.mark.parametrize(
    "value",
    [
        [PLASMA, [[1, 0, 0]] * 3, [[ALICE.node_id, 1]]],  # three inputs
        [PLASMA, [], [[ALICE.node_id, 1]] * 3],  # three outputs
        [PLASMA, [[1, 0, 2]], [[ALICE.node_id, 1]]],  # output index 2
        [PLASMA, [[0, 0, 0]], [[ALICE.node_id, 1]]],  # block 0
        [PLASMA, [[MAX_BLKNUM + 1, 0, 0]], [[ALICE.node_id, 1]]],  # position beyond u64
        [PLASMA, [[1, 65_536, 0]], [[ALICE.node_id, 1]]],  # no such tree slot
        [PLASMA, [[1, 0, 0]], [[ALICE.node_id, -1]]],  # negative amount
        [PLASMA, [[1, 0, 0]], [[ALICE.node_id, True]]],  # a bool is not an amount
        [PLASMA[:31], [], []],  # short plasma id
        [PLASMA, [], [], b"extra"],  # an extra field
        [PLASMA, [[1, 0]], []],  # a short input
    ],
)
def test_malformed_transactions_are_refused(value: list[object]) -> None:
    with pytest.raises(RemoteProtocolError):
        PlasmaTransaction.decode(pack(value))


def test_trailing_bytes_and_oversize_are_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        PlasmaTransaction.decode(transfer().encode() + b"\x00")
    with pytest.raises(RemoteProtocolError):
        PlasmaTransaction.decode(pack([PLASMA, [], [], b"x" * 2000]))


def test_one_signature_per_input() -> None:
    signed = sign_tx(transfer(), [ALICE, BOB])
    with pytest.raises(RemoteProtocolError):
        decode_signed_tx(SignedPlasmaTx(signed.tx_bytes, signed.signatures[:1]))
    with pytest.raises(RemoteProtocolError):
        SignedPlasmaTx.from_wire([signed.tx_bytes, [bytes(64)] * 3])


def test_deposit_transactions() -> None:
    signed = deposit_tx(PLASMA, ALICE.node_id, 50)
    decoded = decode_signed_tx(signed)
    assert decoded.tx == PlasmaTransaction(PLASMA, (), (TxOutput(ALICE.node_id, 50),))
    assert signed.signatures == ()
    assert deposit_root(PLASMA, ALICE.node_id, 50) == merkle_root([signed.leaf])


def test_confirmations_are_domain_separated_and_bound_to_the_root() -> None:
    signed = sign_tx(transfer(), [ALICE, BOB])
    root = b"\x11" * 32
    confirmation = sign_confirmation(ALICE, signed.tx_hash, root)
    assert confirmation.owner == ALICE.node_id
    assert confirmation_valid(ALICE.node_id, signed.tx_hash, root, confirmation.signature)
    assert not confirmation_valid(ALICE.node_id, signed.tx_hash, bytes(32), confirmation.signature)
    assert not confirmation_valid(BOB.node_id, signed.tx_hash, root, confirmation.signature)
    # A transaction signature never passes for a confirmation, nor the other way.
    assert not tx_signature_valid(ALICE.node_id, signed.tx_hash + root, confirmation.signature)


def test_confirmations_between_peers_round_trip_and_decode_strictly() -> None:
    alice = identity(1)
    plasma_id = PlasmaId(b"\x42" * 32)
    tx_hash = hashlib.sha256(b"tx").digest()
    confirmation = sign_confirmation(alice, tx_hash, b"\x07" * 32)
    for message in (
        PlasmaConfirmations(plasma_id, tx_hash, (confirmation,)),
        PlasmaConfirmationsRequest(plasma_id, tx_hash),
    ):
        assert PEER_MESSAGES.decode(PEER_MESSAGES.encode(message)) == message
    assert PlasmaConfirmations.TYPE_ID % 2 == 1 and PlasmaConfirmationsRequest.TYPE_ID % 2 == 1
    too_many = pack([81, plasma_id, tx_hash, [confirmation.to_wire()] * 3])
    short_hash = pack([83, plasma_id, b"\x01" * 31])
    for body in (too_many, short_hash):
        with pytest.raises(RemoteProtocolError):
            PEER_MESSAGES.decode(body)
