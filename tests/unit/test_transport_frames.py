"""The p2pchan frame codec: round trips under any chunking, size limits, rekeying, tampering."""

from __future__ import annotations

import random

import nacl.bindings
import pytest

from p2pchan.crypto.noise import CipherState, HandshakeState
from p2pchan.crypto.transport import (
    FRAME_OVERHEAD,
    HEADER_SIZE,
    MAX_BODY_SIZE,
    REKEY_INTERVAL,
    FrameDecryptor,
    FrameEncryptor,
    TransportCipher,
    frame_size,
)
from p2pchan.errors import CryptoError, LocalProtocolError

INITIATOR_STATIC = bytes(range(1, 33))
RESPONDER_STATIC = bytes(range(101, 133))
NODE_ID = bytes(32)


def completed_handshake(seed: int = 0) -> tuple[HandshakeState, HandshakeState]:
    """A finished handshake; the same seed always gives the same keys."""
    rng = random.Random(seed)
    initiator = HandshakeState.initiator(
        INITIATOR_STATIC,
        nacl.bindings.crypto_scalarmult_base(RESPONDER_STATIC),
        ephemeral_private=rng.randbytes(32),
    )
    responder = HandshakeState.responder(RESPONDER_STATIC, ephemeral_private=rng.randbytes(32))
    responder.read_message(initiator.write_message(b""))
    initiator.read_message(responder.write_message(b""))
    responder.read_message(initiator.write_message(NODE_ID))
    return initiator, responder


def transport_pair(seed: int = 0) -> tuple[TransportCipher, TransportCipher]:
    initiator, responder = completed_handshake(seed)
    return TransportCipher.from_handshake(initiator), TransportCipher.from_handshake(responder)


def random_bodies(rng: random.Random, count: int) -> list[bytes]:
    sizes = [rng.choice([0, 1, 2, 17, 100, 1000, rng.randrange(5000)]) for _ in range(count)]
    return [rng.randbytes(size) for size in sizes]


def flip_bit(data: bytes, position: int, bit: int = 0x01) -> bytes:
    tampered = bytearray(data)
    tampered[position] ^= bit
    return bytes(tampered)


def test_round_trip_both_directions() -> None:
    alice, bob = transport_pair()
    frame = alice.encrypt(b"hello bob")
    assert len(frame) == frame_size(9) == 9 + FRAME_OVERHEAD == 9 + 34
    assert bob.feed(frame) == [b"hello bob"]
    assert alice.feed(bob.encrypt(b"hello alice")) == [b"hello alice"]
    assert alice.handshake_hash == bob.handshake_hash != b""
    assert alice.remote_static == nacl.bindings.crypto_scalarmult_base(RESPONDER_STATIC)
    assert bob.remote_static == nacl.bindings.crypto_scalarmult_base(INITIATOR_STATIC)


def test_feeding_one_byte_at_a_time() -> None:
    alice, bob = transport_pair()
    bodies = [b"", b"x", bytes(range(256)) * 4, b"", bytes(MAX_BODY_SIZE)]
    stream = b"".join(alice.encrypt(body) for body in bodies)
    received: list[bytes] = []
    for index in range(len(stream)):
        received += bob.feed(stream[index : index + 1])
    assert received == bodies
    assert all(type(body) is bytes for body in received)
    assert bob.decryptor.buffered == 0


@pytest.mark.parametrize("seed", range(8))
def test_random_chunking(seed: int) -> None:
    rng = random.Random(seed)
    alice, bob = transport_pair(seed)
    bodies = random_bodies(rng, 300)
    stream = b"".join(alice.encrypt(body) for body in bodies)
    received: list[bytes] = []
    offset = 0
    while offset < len(stream):
        size = rng.choice([1, 2, HEADER_SIZE - 1, HEADER_SIZE, 50, 1000, rng.randrange(20000)])
        chunk = stream[offset : offset + max(size, 1)]
        offset += len(chunk)
        wrapped = rng.choice([bytes, bytearray, memoryview])(chunk)
        received += bob.feed(wrapped)
    assert received == bodies
    assert bob.decryptor.buffered == 0


def test_partial_frame_waits_for_the_rest() -> None:
    alice, bob = transport_pair()
    frame = alice.encrypt(b"body")
    assert bob.feed(frame[:HEADER_SIZE]) == []
    assert bob.feed(frame[HEADER_SIZE:-1]) == []
    assert bob.decryptor.buffered == len(frame) - HEADER_SIZE - 1
    assert bob.feed(frame[-1:] + alice.encrypt(b"next")[:5]) == [b"body"]


def test_body_size_limits() -> None:
    alice, bob = transport_pair()
    largest = bytes(range(256)) * 255 + bytes(range(255))
    assert len(largest) == MAX_BODY_SIZE == 65535
    assert bob.feed(alice.encrypt(b"")) == [b""]
    frame = alice.encrypt(largest)
    assert len(frame) == 65535 + 34
    assert bob.feed(frame) == [largest]

    nonce_before = alice.encryptor.nonce
    with pytest.raises(LocalProtocolError):
        alice.encrypt(bytes(MAX_BODY_SIZE + 1))
    assert alice.encryptor.nonce == nonce_before
    assert bob.feed(alice.encrypt(b"still fine")) == [b"still fine"]


def test_rekey_every_1000_nonces_in_both_directions() -> None:
    frame_count = 2500
    alice, bob = transport_pair(seed=7)
    alice_frames: list[bytes] = []
    for index in range(frame_count):
        to_bob = index.to_bytes(4, "big") * (index % 9)
        frame = alice.encrypt(to_bob)
        alice_frames.append(frame)
        assert bob.feed(frame) == [to_bob]
        to_alice = index.to_bytes(3, "big") * (index % 5)
        assert alice.feed(bob.encrypt(to_alice)) == [to_alice]
    for side in (alice, bob):
        assert side.encryptor.nonce == side.decryptor.nonce == 2 * frame_count

    # A receive state for alice -> bob that nobody rekeys: the same handshake run again.
    _, twin_responder = completed_handshake(seed=7)
    _, never_rekeyed = twin_responder.split()

    def header_opens(cipher: CipherState, frame_index: int) -> bool:
        cipher.set_nonce(2 * frame_index)
        try:
            cipher.decrypt_with_ad(b"", alice_frames[frame_index][:HEADER_SIZE])
        except CryptoError:
            return False
        return True

    assert header_opens(never_rekeyed, 400)  # control: same key before the first rekey
    assert header_opens(never_rekeyed, 499)
    assert not header_opens(never_rekeyed, 500)
    assert not header_opens(never_rekeyed, 600)

    # Rekeying by hand exactly when the nonce reaches 1000 opens frames 500 to 999 again.
    _, twin_responder = completed_handshake(seed=7)
    _, rekeyed_once = twin_responder.split()
    rekeyed_once.set_nonce(REKEY_INTERVAL)
    rekeyed_once.rekey()
    assert header_opens(rekeyed_once, 500)
    assert header_opens(rekeyed_once, 600)
    assert not header_opens(rekeyed_once, 1000)


def test_flipped_bit_in_length_fails_and_ends_the_stream() -> None:
    alice, bob = transport_pair()
    assert bob.feed(alice.encrypt(b"first")) == [b"first"]
    frame = alice.encrypt(b"second")
    for position in (0, 1, HEADER_SIZE - 1):
        fresh_alice, fresh_bob = transport_pair()
        fresh_frame = fresh_alice.encrypt(b"second")
        with pytest.raises(CryptoError):
            fresh_bob.feed(flip_bit(fresh_frame, position))
    with pytest.raises(CryptoError):
        bob.feed(flip_bit(frame, 0, 0x80))
    with pytest.raises(CryptoError):
        bob.feed(frame)  # the genuine frame is refused too: the stream is over
    with pytest.raises(CryptoError):
        bob.feed(b"")
    assert bob.decryptor.buffered == 0


def test_flipped_bit_in_body_fails_and_ends_the_stream() -> None:
    alice, bob = transport_pair()
    frame = alice.encrypt(b"some body")
    for position in (HEADER_SIZE, len(frame) - 17, len(frame) - 1):
        fresh_alice, fresh_bob = transport_pair()
        fresh_frame = fresh_alice.encrypt(b"some body")
        with pytest.raises(CryptoError):
            fresh_bob.feed(flip_bit(fresh_frame, position))
    # Split so that the bad body arrives in a later feed than its header.
    tampered = flip_bit(frame, HEADER_SIZE + 3)
    assert bob.feed(tampered[: HEADER_SIZE + 2]) == []
    with pytest.raises(CryptoError):
        bob.feed(tampered[HEADER_SIZE + 2 :])
    with pytest.raises(CryptoError):
        bob.feed(alice.encrypt(b"later"))


def test_replayed_and_reflected_frames_fail() -> None:
    alice, bob = transport_pair()
    frame = alice.encrypt(b"pay 5")
    assert bob.feed(frame) == [b"pay 5"]
    with pytest.raises(CryptoError):
        bob.feed(frame)

    alice, bob = transport_pair()
    with pytest.raises(CryptoError):
        alice.feed(alice.encrypt(b"to myself"))


def test_codec_needs_a_completed_handshake_and_keys() -> None:
    initiator, _ = completed_handshake()
    fresh = HandshakeState.responder(RESPONDER_STATIC, ephemeral_private=bytes(range(32)))
    with pytest.raises(LocalProtocolError):
        TransportCipher.from_handshake(fresh)
    TransportCipher.from_handshake(initiator)
    with pytest.raises(LocalProtocolError):
        TransportCipher.from_handshake(initiator)  # split only once
    with pytest.raises(LocalProtocolError):
        FrameEncryptor(CipherState())
    with pytest.raises(LocalProtocolError):
        FrameDecryptor(CipherState())
