"""Interop with an independent Noise implementation: the `noiseprotocol` package (dev dependency).

Both handshake directions, with static keys converted from Ed25519 identities as p2pchan does,
then p2pchan frames each way across several rekeys.
"""

from __future__ import annotations

import os

import pytest
from noise.connection import Keypair, NoiseConnection

from p2pchan.crypto.keys import Identity, x25519_public_key
from p2pchan.crypto.noise import (
    ACT_ONE_SIZE,
    ACT_THREE_SIZE,
    ACT_TWO_SIZE,
    PROLOGUE,
    PROTOCOL_NAME,
    HandshakeState,
)
from p2pchan.crypto.transport import HEADER_SIZE, TransportCipher
from p2pchan.errors import CryptoError

FRAME_COUNT = 1200  # 2,400 encryptions per direction: two rekeys each way
REKEY_INTERVAL = 1000  # DESIGN.md: each direction rekeys every 1000 nonces


def their_side(identity: Identity, *, initiator: bool, remote: Identity | None) -> NoiseConnection:
    connection = NoiseConnection.from_name(PROTOCOL_NAME)
    if initiator:
        connection.set_as_initiator()
    else:
        connection.set_as_responder()
    connection.set_prologue(PROLOGUE)
    connection.set_keypair_from_private_bytes(Keypair.STATIC, identity.x25519_private_key())
    if remote is not None:
        connection.set_keypair_from_public_bytes(
            Keypair.REMOTE_STATIC, x25519_public_key(remote.node_id)
        )
    connection.start_handshake()
    return connection


def their_remote_static(handshake_state: object) -> bytes:
    """The static key noiseprotocol's responder learnt (its HandshakeState, kept by the caller:
    the connection drops it once the handshake is done)."""
    public_bytes: bytes = handshake_state.rs.public_bytes  # type: ignore[attr-defined]
    return public_bytes


class TheirFrames:
    """p2pchan's frame format spoken through noiseprotocol's transport API."""

    def __init__(self, connection: NoiseConnection) -> None:
        self.connection = connection

    def _after(self, cipher_state: object, rekey: object) -> None:
        if cipher_state.n % REKEY_INTERVAL == 0:  # type: ignore[attr-defined]
            rekey()  # type: ignore[operator]

    def encrypt(self, body: bytes) -> bytes:
        connection = self.connection
        state = connection.noise_protocol.cipher_state_encrypt
        header = connection.encrypt(len(body).to_bytes(2, "big"))
        self._after(state, connection.rekey_outbound_cipher)
        sealed = connection.encrypt(body)
        self._after(state, connection.rekey_outbound_cipher)
        return bytes(header + sealed)

    def decrypt(self, frame: bytes) -> bytes:
        connection = self.connection
        state = connection.noise_protocol.cipher_state_decrypt
        length = int.from_bytes(connection.decrypt(frame[:HEADER_SIZE]), "big")
        self._after(state, connection.rekey_inbound_cipher)
        body = connection.decrypt(frame[HEADER_SIZE:])
        self._after(state, connection.rekey_inbound_cipher)
        assert len(body) == length
        return bytes(body)


def exchange_frames(ours: TransportCipher, theirs: TheirFrames) -> None:
    for index in range(FRAME_COUNT):
        body = os.urandom(index % 300)
        assert theirs.decrypt(ours.encrypt(body)) == body, f"our frame {index}"
        body = os.urandom((index * 7) % 300)
        assert ours.feed(theirs.encrypt(body)) == [body], f"their frame {index}"
    # Both directions really rekeyed: nonces went past several multiples of 1000.
    assert ours.encryptor.nonce == ours.decryptor.nonce == 2 * FRAME_COUNT > 2 * REKEY_INTERVAL


def test_our_initiator_with_their_responder() -> None:
    our_identity, their_identity = Identity.generate(), Identity.generate()
    ours = HandshakeState.initiator(
        our_identity.x25519_private_key(),
        x25519_public_key(their_identity.node_id),
        ephemeral_private=os.urandom(32),
    )
    theirs = their_side(their_identity, initiator=False, remote=None)

    act_one = ours.write_message(b"")
    assert len(act_one) == ACT_ONE_SIZE
    assert theirs.read_message(act_one) == b""
    act_two = bytes(theirs.write_message(b""))
    assert len(act_two) == ACT_TWO_SIZE
    assert ours.read_message(act_two) == b""
    act_three = ours.write_message(our_identity.node_id)
    assert len(act_three) == ACT_THREE_SIZE
    their_handshake_state = theirs.noise_protocol.handshake_state
    assert theirs.read_message(act_three) == our_identity.node_id

    assert ours.is_complete and theirs.handshake_finished
    assert ours.handshake_hash == theirs.get_handshake_hash()
    # What the responder checks in p2pchan: the node id in act three converts to the static key.
    assert their_remote_static(their_handshake_state) == x25519_public_key(our_identity.node_id)
    exchange_frames(TransportCipher.from_handshake(ours), TheirFrames(theirs))


def test_their_initiator_with_our_responder() -> None:
    our_identity, their_identity = Identity.generate(), Identity.generate()
    ours = HandshakeState.responder(
        our_identity.x25519_private_key(), ephemeral_private=os.urandom(32)
    )
    theirs = their_side(their_identity, initiator=True, remote=our_identity)

    act_one = bytes(theirs.write_message(b""))
    assert len(act_one) == ACT_ONE_SIZE
    assert ours.read_message(act_one) == b""
    act_two = ours.write_message(b"")
    assert len(act_two) == ACT_TWO_SIZE
    assert theirs.read_message(act_two) == b""
    act_three = bytes(theirs.write_message(their_identity.node_id))
    assert len(act_three) == ACT_THREE_SIZE
    assert ours.read_message(act_three) == their_identity.node_id

    assert ours.is_complete and theirs.handshake_finished
    assert ours.handshake_hash == theirs.get_handshake_hash()
    assert ours.remote_static == x25519_public_key(their_identity.node_id)
    exchange_frames(TransportCipher.from_handshake(ours), TheirFrames(theirs))


def test_their_initiator_with_the_wrong_responder_key_is_refused() -> None:
    our_identity, stranger = Identity.generate(), Identity.generate()
    ours = HandshakeState.responder(
        our_identity.x25519_private_key(), ephemeral_private=os.urandom(32)
    )
    theirs = their_side(Identity.generate(), initiator=True, remote=stranger)
    with pytest.raises(CryptoError):
        ours.read_message(bytes(theirs.write_message(b"")))
