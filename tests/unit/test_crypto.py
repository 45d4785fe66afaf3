"""Identities, key files, domain-tagged signatures, balance proofs and lock encoding.

A signature made for one purpose must never pass for another; a key file others can read must
never be loaded; a locksroot must hash exactly the bytes the contract hashes.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import struct
from pathlib import Path

import nacl.bindings
import nacl.exceptions
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchan.crypto.keys import (
    Identity,
    load_key_file,
    write_key_file,
    x25519_public_key,
)
from p2pchan.crypto.signing import SigningTag, is_valid, verify
from p2pchan.errors import CryptoError, KeyFileError, RemoteProtocolError
from p2pchan.types import ChainId, ChannelId, Locksroot, SecretHash
from p2pchan.wire.balance_proof import (
    BalanceProof,
    SignedBalanceProof,
    counter_sign,
    decode_checked,
    sign_balance_proof,
)
from p2pchan.wire.locks import (
    EMPTY_LOCKSROOT,
    LOCK_SIZE,
    Lock,
    decode_locks,
    encode_locks,
    locksroot,
)

ALICE = Identity(bytes([1]) * 32)
BOB = Identity(bytes([2]) * 32)
MALLORY = Identity(bytes([3]) * 32)
CHAIN_ID = ChainId(bytes([0xC1]) * 32)
CHANNEL_ID = ChannelId(bytes([0xCA]) * 32)


def flip_bit(data: bytes, index: int, bit: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ (1 << bit)]) + data[index + 1 :]


# -- signatures -------------------------------------------------------------------------------


def test_sign_verify_round_trip() -> None:
    signature = ALICE.sign(SigningTag.BALANCE_PROOF, b"payload")
    assert len(signature) == 64
    verify(ALICE.node_id, SigningTag.BALANCE_PROOF, b"payload", signature)
    assert is_valid(ALICE.node_id, SigningTag.BALANCE_PROOF, b"payload", signature)


def test_signature_covers_the_tag_then_the_exact_bytes() -> None:
    # What is signed is tag || data, checkable with plain libsodium; data alone is not signed.
    signature = ALICE.sign(SigningTag.INVOICE, b"x")
    signed_message = SigningTag.INVOICE.value + b"x"
    assert nacl.bindings.crypto_sign_open(signature + signed_message, ALICE.node_id)
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl.bindings.crypto_sign_open(signature + b"x", ALICE.node_id)


@pytest.mark.parametrize(
    "other", [tag for tag in SigningTag if tag is not SigningTag.BALANCE_PROOF]
)
def test_signature_is_not_valid_for_another_tag(other: SigningTag) -> None:
    signature = ALICE.sign(SigningTag.BALANCE_PROOF, b"payload")
    assert not is_valid(ALICE.node_id, other, b"payload", signature)
    with pytest.raises(CryptoError, match=f"bad {other.name.lower()} signature"):
        verify(ALICE.node_id, other, b"payload", signature)


def test_flipped_bits_in_data_or_signature_fail() -> None:
    data = b"transferred 100"
    signature = ALICE.sign(SigningTag.L1_TRANSACTION, data)
    for index in range(len(data)):
        assert not is_valid(
            ALICE.node_id, SigningTag.L1_TRANSACTION, flip_bit(data, index), signature
        )
    for index, bit in itertools.product(range(64), (0, 7)):
        assert not is_valid(
            ALICE.node_id, SigningTag.L1_TRANSACTION, data, flip_bit(signature, index, bit)
        )
    assert not is_valid(ALICE.node_id, SigningTag.L1_TRANSACTION, data + b"\x00", signature)


def test_signature_is_not_valid_for_another_key() -> None:
    signature = ALICE.sign(SigningTag.COOP_SETTLE, b"settle")
    assert not is_valid(BOB.node_id, SigningTag.COOP_SETTLE, b"settle", signature)


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [(bytes(31), bytes(64)), (bytes(33), bytes(64)), (ALICE.node_id, bytes(63)), (b"", b"")],
)
def test_malformed_key_or_signature_is_a_crypto_error(public_key: bytes, signature: bytes) -> None:
    with pytest.raises(CryptoError):
        verify(public_key, SigningTag.INVOICE, b"x", signature)
    assert not is_valid(public_key, SigningTag.INVOICE, b"x", signature)


def test_no_signing_tag_is_a_prefix_of_another() -> None:
    # If one tag were a prefix of another, tag_a || data could equal tag_b || other_data.
    tags = [tag.value for tag in SigningTag]
    assert len(set(tags)) == len(tags)
    for first, second in itertools.permutations(tags, 2):
        assert not second.startswith(first), (first, second)


# -- identities and key files ----------------------------------------------------------------


def test_identity_repr_does_not_show_the_secret() -> None:
    seed = bytes(range(32))
    identity = Identity(seed)
    secret_key = nacl.bindings.crypto_sign_seed_keypair(seed)[1]
    for shown in (repr(identity), str(identity), f"{identity!r}"):
        assert seed.hex() not in shown
        assert seed.hex().upper() not in shown
        assert secret_key.hex() not in shown
        assert identity.node_id.hex() in shown


def test_identity_from_seed_is_deterministic() -> None:
    assert Identity(bytes(32)).node_id == Identity(bytes(32)).node_id
    assert Identity(bytes(32)).seed() == bytes(32)
    with pytest.raises(CryptoError):
        Identity(bytes(31))


def test_key_file_is_written_0600_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    identity = Identity.generate()
    write_key_file(path, identity)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().strip() == identity.seed().hex()
    assert load_key_file(path).node_id == identity.node_id


def test_key_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        write_key_file(tmp_path / "node.key", ALICE)
    finally:
        os.umask(previous)
    assert (tmp_path / "node.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o620, 0o602, 0o610, 0o601, 0o666])
def test_key_file_accessible_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, ALICE)
    path.chmod(mode)
    with pytest.raises(KeyFileError, match="chmod 600") as raised:
        load_key_file(path)
    assert f"{mode:o}" in str(raised.value)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_key_file_readable_only_by_its_owner_loads(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, ALICE)
    path.chmod(mode)
    assert load_key_file(path).node_id == ALICE.node_id


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"zz" * 32 + b"\n", "is not hex"),
        (b"", "32-byte seed"),
        (b"ab" * 31 + b"\n", "32-byte seed"),
        (b"ab" * 33 + b"\n", "32-byte seed"),
        (b"abc", "is not hex"),
        (b"\xff\xfe" * 32, "is not hex"),  # not even text
        (bytes(32), "is not hex"),  # a raw seed instead of hex
    ],
)
def test_key_file_with_bad_content_is_refused(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=reason):
        load_key_file(path)


def test_key_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    write_key_file(path, ALICE)
    with pytest.raises(KeyFileError, match="already exists"):
        write_key_file(path, BOB)
    assert load_key_file(path).node_id == ALICE.node_id


def test_missing_key_file_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="p2pchan node init"):
        load_key_file(tmp_path / "node.key")


# -- X25519 conversion -----------------------------------------------------------------------


def test_x25519_public_key_matches_libsodium() -> None:
    for identity in (ALICE, BOB, MALLORY, Identity.generate()):
        expected = nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(identity.node_id)
        assert x25519_public_key(identity.node_id) == expected
        # and the private side agrees with it
        assert nacl.bindings.crypto_scalarmult_base(identity.x25519_private_key()) == expected


def invalid_ed25519_key() -> bytes:
    """32 bytes that libsodium refuses to convert (not a point, or of small order)."""
    for counter in range(1000):
        candidate = hashlib.sha256(counter.to_bytes(4, "big")).digest()
        try:
            nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(candidate)
        except Exception:
            return candidate
    raise AssertionError("no invalid Ed25519 public key found")


def test_x25519_of_an_invalid_key_is_a_crypto_error() -> None:
    with pytest.raises(CryptoError, match="not a valid Ed25519 public key"):
        x25519_public_key(invalid_ed25519_key())


@pytest.mark.parametrize("length", [0, 31, 33])
def test_x25519_of_a_wrong_length_key_is_a_crypto_error(length: int) -> None:
    with pytest.raises(CryptoError):
        x25519_public_key(bytes(length))


def test_x25519_of_a_mutable_buffer_is_converted_not_a_type_error() -> None:
    """The conversion is cached by its argument: a bytearray (unhashable) is copied first."""
    expected = x25519_public_key(ALICE.node_id)
    assert x25519_public_key(bytearray(ALICE.node_id)) == expected  # type: ignore[arg-type]
    with pytest.raises(CryptoError):
        x25519_public_key(bytearray(invalid_ed25519_key()))  # type: ignore[arg-type]


# -- balance proofs --------------------------------------------------------------------------


def alice_proof(nonce: int = 1, transferred: int = 10) -> BalanceProof:
    return BalanceProof(
        chain_id=CHAIN_ID,
        channel_id=CHANNEL_ID,
        sender=ALICE.node_id,
        nonce=nonce,
        transferred_amount=transferred,
        locked_amount=0,
        locksroot=EMPTY_LOCKSROOT,
    )


def test_signed_proof_decodes_and_verifies() -> None:
    signed = sign_balance_proof(ALICE, alice_proof())
    assert decode_checked(signed) == alice_proof()
    assert signed.counter_signature is None
    assert not signed.counter_signature_valid(BOB.node_id)


def test_a_node_signs_only_its_own_direction() -> None:
    with pytest.raises(ValueError, match="its own direction"):
        sign_balance_proof(BOB, alice_proof())


def test_counter_signature_is_valid_only_as_an_ack() -> None:
    signed = sign_balance_proof(ALICE, alice_proof())
    acked = counter_sign(BOB, signed)
    assert acked.counter_signature is not None
    assert acked.counter_signature_valid(BOB.node_id)
    assert not acked.counter_signature_valid(ALICE.node_id)
    # Bob's ack can never pass for a proof Bob signed, whatever bytes it is paired with.
    for data in (acked.data, acked.ack_data()):
        assert not is_valid(BOB.node_id, SigningTag.BALANCE_PROOF, data, acked.counter_signature)
    forged = SignedBalanceProof(acked.ack_data(), acked.counter_signature, None)
    with pytest.raises(RemoteProtocolError):
        decode_checked(forged)


def test_counter_signature_covers_the_senders_signature() -> None:
    acked = counter_sign(BOB, sign_balance_proof(ALICE, alice_proof()))
    assert acked.counter_signature is not None
    other = sign_balance_proof(ALICE, alice_proof(nonce=2))
    moved = SignedBalanceProof(other.data, other.signature, acked.counter_signature)
    assert not moved.counter_signature_valid(BOB.node_id)


def test_decode_checked_rejects_a_forged_signature() -> None:
    honest = sign_balance_proof(ALICE, alice_proof())
    # Mallory signs a proof that names Alice as its sender.
    forged_signature = MALLORY.sign(SigningTag.BALANCE_PROOF, honest.data)
    with pytest.raises(RemoteProtocolError, match="not its sender's"):
        decode_checked(SignedBalanceProof(honest.data, forged_signature, None))
    # Alice's signature over other bytes (a higher transferred amount) does not carry over.
    richer = alice_proof(transferred=10_000).encode()
    with pytest.raises(RemoteProtocolError, match="not its sender's"):
        decode_checked(SignedBalanceProof(richer, honest.signature, None))


def test_decode_checked_rejects_malformed_proof_bytes() -> None:
    honest = sign_balance_proof(ALICE, alice_proof())
    for data in (honest.data + b"\x00", honest.data[:-1], b"\x80"):
        signature = ALICE.sign(SigningTag.BALANCE_PROOF, data)
        with pytest.raises(RemoteProtocolError):
            decode_checked(SignedBalanceProof(data, signature, None))


def test_signed_proof_survives_the_wire() -> None:
    acked = counter_sign(BOB, sign_balance_proof(ALICE, alice_proof()))
    received = SignedBalanceProof.from_wire(acked.to_wire())
    assert received == acked
    assert decode_checked(received) == alice_proof()
    assert received.counter_signature_valid(BOB.node_id)


# -- locks -----------------------------------------------------------------------------------


def test_locksroot_of_no_locks_is_the_hash_of_nothing() -> None:
    assert locksroot([]) == hashlib.sha256(b"").digest()
    assert hashlib.sha256(b"").digest() == EMPTY_LOCKSROOT


def test_lock_encoding_is_amount_expiration_secrethash() -> None:
    secrethash = SecretHash(bytes(range(32)))
    lock = Lock(amount=0x0102030405060708, expiration_block=2**64 - 1, secrethash=secrethash)
    encoded = lock.encode()
    assert len(encoded) == LOCK_SIZE == 48
    assert encoded == struct.pack(">QQ", 0x0102030405060708, 2**64 - 1) + secrethash
    assert encoded[:8] == bytes([1, 2, 3, 4, 5, 6, 7, 8])


def test_locksroot_hashes_the_locks_in_the_order_added() -> None:
    first = Lock(1, 100, SecretHash(bytes([1]) * 32))
    second = Lock(2, 200, SecretHash(bytes([2]) * 32))
    assert locksroot([first, second]) == hashlib.sha256(first.encode() + second.encode()).digest()
    assert locksroot([first, second]) != locksroot([second, first])


locks_strategy = st.lists(
    st.builds(
        Lock,
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**64 - 1),
        st.binary(min_size=32, max_size=32).map(SecretHash),
    ),
    max_size=10,
)


@settings(max_examples=100, deadline=None)
@given(locks_strategy)
def test_decode_locks_inverts_encode_locks(locks: list[Lock]) -> None:
    blob = encode_locks(locks)
    assert len(blob) == LOCK_SIZE * len(locks)
    assert decode_locks(blob) == tuple(locks)
    assert locksroot(decode_locks(blob)) == Locksroot(hashlib.sha256(blob).digest())


@pytest.mark.parametrize("length", [1, 47, 49, 95, 97])
def test_lock_blob_of_a_bad_length_is_the_peers_fault(length: int) -> None:
    with pytest.raises(RemoteProtocolError, match="not a multiple of 48"):
        decode_locks(bytes(length))


def test_empty_lock_blob_is_no_locks() -> None:
    assert decode_locks(b"") == ()
