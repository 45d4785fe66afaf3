"""Noise XK: the official vectors, p2pchan's handshake sizes, and every way a handshake fails."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nacl.bindings
import pytest

from p2pchan.crypto.noise import (
    ACT_ONE_SIZE,
    ACT_THREE_SIZE,
    ACT_TWO_SIZE,
    MAX_NONCE,
    PROLOGUE,
    PROTOCOL_NAME,
    CipherState,
    HandshakeState,
)
from p2pchan.errors import CryptoError, LocalProtocolError

# The official vectors (cacophony, public domain), kept with the tests so a bare clone runs them.
VECTORS_PATH = Path(__file__).resolve().parents[1] / "vectors" / "noise_xk.json"
# Where the team's shared copy lives beside a checkout, when it does.
SHARED_VECTORS = Path(__file__).resolve().parents[3] / "shared" / "vectors" / "noise_xk.json"
NODE_ID = bytes(range(32))


def load_vector(protocol_name: str) -> dict[str, Any]:
    # A missing file must fail the test, never skip it.
    document = json.loads(VECTORS_PATH.read_text())
    matches = [v for v in document["vectors"] if v["protocol_name"] == protocol_name]
    assert len(matches) == 1, f"{VECTORS_PATH} has no single {protocol_name} vector"
    vector: dict[str, Any] = matches[0]
    return vector


def public_key(private_key: bytes) -> bytes:
    return bytes(nacl.bindings.crypto_scalarmult_base(private_key))


class Keys:
    """Fresh static and ephemeral keys for one initiator/responder pair."""

    def __init__(self) -> None:
        self.initiator_static = os.urandom(32)
        self.initiator_ephemeral = os.urandom(32)
        self.responder_static = os.urandom(32)
        self.responder_ephemeral = os.urandom(32)

    def initiator(self, remote_static: bytes | None = None) -> HandshakeState:
        return HandshakeState.initiator(
            self.initiator_static,
            remote_static or public_key(self.responder_static),
            ephemeral_private=self.initiator_ephemeral,
        )

    def responder(self, prologue: bytes = PROLOGUE) -> HandshakeState:
        return HandshakeState.responder(
            self.responder_static, ephemeral_private=self.responder_ephemeral, prologue=prologue
        )


def acts(keys: Keys) -> tuple[bytes, bytes, bytes]:
    """The three messages of a successful p2pchan handshake between `keys`."""
    initiator, responder = keys.initiator(), keys.responder()
    act_one = initiator.write_message(b"")
    responder.read_message(act_one)
    act_two = responder.write_message(b"")
    initiator.read_message(act_two)
    act_three = initiator.write_message(NODE_ID)
    return act_one, act_two, act_three


def responder_up_to(keys: Keys, act: int) -> tuple[HandshakeState, HandshakeState]:
    """Initiator and responder of `keys`, advanced so that `act` (1, 2 or 3) is the next read."""
    initiator, responder = keys.initiator(), keys.responder()
    if act >= 2:
        responder.read_message(initiator.write_message(b""))
    if act >= 3:
        initiator.read_message(responder.write_message(b""))
    return initiator, responder


def deliver(keys: Keys, act: int, message: bytes) -> bytes:
    """Have the right side of a fresh handshake read `message` as act `act`."""
    initiator, responder = responder_up_to(keys, act)
    reader = initiator if act == 2 else responder
    return reader.read_message(message)


# -- the official vectors -------------------------------------------------------------------------


def test_vectors_file_is_present() -> None:
    assert VECTORS_PATH.is_file(), f"the official Noise vectors are missing: {VECTORS_PATH}"


@pytest.mark.skipif(not SHARED_VECTORS.is_file(), reason="no shared vectors beside this checkout")
def test_our_copy_of_the_vectors_is_the_official_one() -> None:
    assert VECTORS_PATH.read_bytes() == SHARED_VECTORS.read_bytes()


@pytest.mark.parametrize(
    "protocol_name", ["Noise_XK_25519_ChaChaPoly_SHA256", "Noise_XK_25519_ChaChaPoly_BLAKE2b"]
)
def test_official_vector(protocol_name: str) -> None:
    vector = load_vector(protocol_name)
    h = bytes.fromhex
    hash_name = protocol_name.rsplit("_", 1)[1]
    initiator = HandshakeState.initiator(
        h(vector["init_static"]),
        h(vector["init_remote_static"]),
        ephemeral_private=h(vector["init_ephemeral"]),
        prologue=h(vector["init_prologue"]),
        hash_name=hash_name,
    )
    responder = HandshakeState.responder(
        h(vector["resp_static"]),
        ephemeral_private=h(vector["resp_ephemeral"]),
        prologue=h(vector["resp_prologue"]),
        hash_name=hash_name,
    )
    assert initiator.protocol_name == responder.protocol_name == protocol_name.encode()
    messages = vector["messages"]
    assert len(messages) > 3

    for index, message in enumerate(messages[:3]):
        writer, reader = (initiator, responder) if index % 2 == 0 else (responder, initiator)
        ciphertext = writer.write_message(h(message["payload"]))
        assert ciphertext.hex() == message["ciphertext"], f"handshake message {index}"
        assert reader.read_message(ciphertext) == h(message["payload"])

    assert initiator.is_complete and responder.is_complete
    assert initiator.handshake_hash.hex() == vector["handshake_hash"]
    assert responder.handshake_hash.hex() == vector["handshake_hash"]
    assert responder.remote_static == public_key(h(vector["init_static"]))
    assert initiator.remote_static == public_key(h(vector["resp_static"]))

    initiator_send, initiator_receive = initiator.split()
    responder_send, responder_receive = responder.split()
    for index, message in enumerate(messages[3:], start=3):
        # Transport messages keep alternating: odd indices go responder -> initiator.
        if index % 2 == 0:
            sender, receiver = initiator_send, responder_receive
        else:
            sender, receiver = responder_send, initiator_receive
        ciphertext = sender.encrypt_with_ad(b"", h(message["payload"]))
        assert ciphertext.hex() == message["ciphertext"], f"transport message {index}"
        assert receiver.decrypt_with_ad(b"", ciphertext) == h(message["payload"])


def test_p2pchan_protocol_is_the_sha256_suite() -> None:
    keys = Keys()
    assert keys.initiator().protocol_name == PROTOCOL_NAME
    assert PROLOGUE == b"p2pchan/1"


# -- a p2pchan handshake --------------------------------------------------------------------------


def test_p2pchan_handshake_sizes_and_keys() -> None:
    keys = Keys()
    initiator, responder = keys.initiator(), keys.responder()
    assert responder.remote_static is None

    act_one = initiator.write_message(b"")
    assert len(act_one) == ACT_ONE_SIZE == 48
    assert responder.read_message(act_one) == b""
    act_two = responder.write_message(b"")
    assert len(act_two) == ACT_TWO_SIZE == 48
    assert initiator.read_message(act_two) == b""
    assert not initiator.is_complete
    act_three = initiator.write_message(NODE_ID)
    assert len(act_three) == ACT_THREE_SIZE == 96
    assert initiator.is_complete and not responder.is_complete
    assert responder.read_message(act_three) == NODE_ID
    assert responder.is_complete

    assert responder.remote_static == public_key(keys.initiator_static)
    assert initiator.remote_static == public_key(keys.responder_static)
    assert initiator.handshake_hash == responder.handshake_hash
    assert len(initiator.handshake_hash) == 32

    initiator_send, initiator_receive = initiator.split()
    responder_send, responder_receive = responder.split()
    to_responder = initiator_send.encrypt_with_ad(b"", b"ping")
    assert responder_receive.decrypt_with_ad(b"", to_responder) == b"ping"
    to_initiator = responder_send.encrypt_with_ad(b"", b"pong")
    assert initiator_receive.decrypt_with_ad(b"", to_initiator) == b"pong"
    # The two directions use different keys.
    assert to_responder != initiator_receive.encrypt_with_ad(b"", b"ping")


def test_handshakes_with_fresh_ephemerals_differ() -> None:
    first, second = Keys(), Keys()
    second.initiator_static, second.responder_static = (
        first.initiator_static,
        first.responder_static,
    )
    assert acts(first)[0] != acts(second)[0]


# -- failures --------------------------------------------------------------------------------------


def test_wrong_responder_static_key_fails_at_act_one() -> None:
    # XK: the initiator mixes DH(e, rs) into the key before act one's payload tag, so a
    # responder holding a different static key cannot authenticate act one.
    keys = Keys()
    initiator = keys.initiator(remote_static=public_key(os.urandom(32)))
    act_one = initiator.write_message(b"")
    with pytest.raises(CryptoError):
        keys.responder().read_message(act_one)


def test_prologue_mismatch_fails_at_act_one() -> None:
    keys = Keys()
    act_one = keys.initiator().write_message(b"")
    with pytest.raises(CryptoError):
        keys.responder(prologue=b"p2pchan/2").read_message(act_one)


@pytest.mark.parametrize("act", [1, 2, 3])
def test_every_flipped_bit_in_an_act_fails(act: int) -> None:
    keys = Keys()
    message = acts(keys)[act - 1]
    assert deliver(keys, act, message) == (NODE_ID if act == 3 else b"")  # control
    for position in range(len(message)):
        for bit in (0x01, 0x80):
            tampered = bytearray(message)
            tampered[position] ^= bit
            with pytest.raises(CryptoError):
                deliver(keys, act, bytes(tampered))


@pytest.mark.parametrize("act", [1, 2, 3])
def test_truncated_or_extended_acts_fail(act: int) -> None:
    keys = Keys()
    message = acts(keys)[act - 1]
    for bad in (b"", message[:1], message[:32], message[:47], message[:-1], message + b"\x00"):
        with pytest.raises(CryptoError):
            deliver(keys, act, bad)


def test_low_order_ephemeral_key_is_refused() -> None:
    keys = Keys()
    act_one = keys.initiator().write_message(b"")
    with pytest.raises(CryptoError):
        keys.responder().read_message(bytes(32) + act_one[32:])


def test_low_order_remote_static_key_is_refused() -> None:
    initiator = Keys().initiator(remote_static=b"\x01" + bytes(31))
    with pytest.raises(CryptoError):
        initiator.write_message(b"")


def test_a_failed_handshake_refuses_further_use() -> None:
    keys = Keys()
    _, responder = responder_up_to(keys, 1)
    with pytest.raises(CryptoError):
        responder.read_message(bytes(48))
    with pytest.raises(LocalProtocolError, match="failed"):
        responder.read_message(acts(keys)[0])


def test_out_of_turn_calls() -> None:
    keys = Keys()
    initiator, responder = keys.initiator(), keys.responder()
    with pytest.raises(LocalProtocolError):
        initiator.read_message(bytes(48))
    with pytest.raises(LocalProtocolError):
        responder.write_message(b"")
    with pytest.raises(LocalProtocolError):
        initiator.split()
    with pytest.raises(LocalProtocolError):
        _ = initiator.handshake_hash

    act_one = initiator.write_message(b"")
    with pytest.raises(LocalProtocolError):
        initiator.write_message(b"")
    responder.read_message(act_one)
    with pytest.raises(LocalProtocolError):
        responder.read_message(act_one)
    act_two = responder.write_message(b"")
    initiator.read_message(act_two)
    responder.read_message(initiator.write_message(NODE_ID))

    for side in (initiator, responder):
        with pytest.raises(LocalProtocolError):
            side.write_message(b"")
        with pytest.raises(LocalProtocolError):
            side.read_message(bytes(96))
        side.split()
        with pytest.raises(LocalProtocolError):
            side.split()


def test_out_of_turn_call_does_not_break_the_handshake() -> None:
    keys = Keys()
    initiator, responder = keys.initiator(), keys.responder()
    with pytest.raises(LocalProtocolError):
        responder.write_message(b"")
    responder.read_message(initiator.write_message(b""))
    initiator.read_message(responder.write_message(b""))
    assert responder.read_message(initiator.write_message(NODE_ID)) == NODE_ID


def test_bad_local_arguments() -> None:
    key = os.urandom(32)
    with pytest.raises(LocalProtocolError):
        HandshakeState.initiator(key[:31], key, ephemeral_private=key)
    with pytest.raises(LocalProtocolError):
        HandshakeState.initiator(key, key + b"\x00", ephemeral_private=key)
    with pytest.raises(LocalProtocolError):
        HandshakeState.responder(key, ephemeral_private=b"")
    with pytest.raises(LocalProtocolError):
        HandshakeState.responder(key, ephemeral_private=key, hash_name="MD5")
    initiator = HandshakeState.initiator(key, public_key(key), ephemeral_private=key)
    with pytest.raises(LocalProtocolError):
        initiator.write_message(bytes(65535 - 48 + 1))
    assert len(initiator.write_message(bytes(65535 - 48))) == 65535


def test_no_key_material_in_reprs_or_errors() -> None:
    keys = Keys()
    secrets = [
        keys.initiator_static,
        keys.initiator_ephemeral,
        keys.responder_static,
        keys.responder_ephemeral,
    ]
    initiator, responder = keys.initiator(), keys.responder()
    texts = [repr(initiator), repr(responder)]
    responder.read_message(initiator.write_message(b""))
    act_two = responder.write_message(b"")
    with pytest.raises(CryptoError) as failure:
        initiator.read_message(act_two[:-1] + bytes([act_two[-1] ^ 1]))
    texts += [str(failure.value), repr(failure.value), repr(initiator)]
    texts.append(repr(CipherState(keys.initiator_static)))
    for text in texts:
        for secret in secrets:
            assert secret.hex() not in text
            assert repr(secret) not in text


# -- CipherState ----------------------------------------------------------------------------------


def aead_encrypt(key: bytes, nonce: int, ad: bytes, plaintext: bytes) -> bytes:
    nonce_bytes = bytes(4) + nonce.to_bytes(8, "little")
    return bytes(
        nacl.bindings.crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, ad, nonce_bytes, key)
    )


def test_cipher_state_encrypts_with_counting_nonce() -> None:
    key = os.urandom(32)
    cipher = CipherState(key)
    for nonce in range(3):
        assert cipher.nonce == nonce
        assert cipher.encrypt_with_ad(b"ad", b"hello") == aead_encrypt(key, nonce, b"ad", b"hello")


def test_cipher_state_rekey_per_spec_keeps_the_nonce() -> None:
    key = os.urandom(32)
    cipher = CipherState(key)
    cipher.set_nonce(7)
    cipher.rekey()
    assert cipher.nonce == 7
    new_key = aead_encrypt(key, MAX_NONCE, b"", bytes(32))[:32]
    assert cipher.encrypt_with_ad(b"", b"x") == aead_encrypt(new_key, 7, b"", b"x")
    assert cipher.nonce == 8


def test_cipher_state_failed_decrypt_keeps_the_nonce() -> None:
    key = os.urandom(32)
    sender, receiver = CipherState(key), CipherState(key)
    ciphertext = sender.encrypt_with_ad(b"", b"payload")
    for bad in (ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]), ciphertext[:15], b""):
        with pytest.raises(CryptoError):
            receiver.decrypt_with_ad(b"", bad)
        assert receiver.nonce == 0
    assert receiver.decrypt_with_ad(b"", ciphertext) == b"payload"
    assert receiver.nonce == 1


def test_cipher_state_without_key_passes_through() -> None:
    cipher = CipherState()
    assert not cipher.has_key
    assert cipher.encrypt_with_ad(b"ad", b"plain") == b"plain"
    assert cipher.decrypt_with_ad(b"ad", b"plain") == b"plain"
    with pytest.raises(LocalProtocolError):
        cipher.rekey()


def test_cipher_state_refuses_the_reserved_nonce() -> None:
    key = os.urandom(32)
    cipher = CipherState(key)
    cipher.set_nonce(MAX_NONCE - 1)
    cipher.encrypt_with_ad(b"", b"last")
    with pytest.raises(LocalProtocolError):
        cipher.encrypt_with_ad(b"", b"one too many")
    with pytest.raises(CryptoError):
        cipher.decrypt_with_ad(b"", bytes(16))
    with pytest.raises(LocalProtocolError):
        cipher.set_nonce(MAX_NONCE + 1)
