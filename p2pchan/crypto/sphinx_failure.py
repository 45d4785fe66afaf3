"""Onion failures: the reason a hop could not forward, sealed for the payer alone.

The failing hop i seals its message with the shared secret of the onion it peeled; each hop on
the way back (i-1 .. 0) wraps the packet with its own; the payer, who holds every shared
secret, unwraps hop by hop until one hop's key opens it, and so learns which hop failed and why.
No hop on the way learns who pays or what failed, and the packet is `FAILURE_SIZE` bytes on
every link, so its size tells nothing either.

    sealed  = ChaCha20-Poly1305(key "failure_seal", nonce 0, no associated data,
                                length (2, big-endian) || message || zero padding to 400)
    wrapped = sealed XOR ChaCha20 stream of key "failure_wrap"      (each hop back, i-1 .. 0)

The seal already encrypts, so the failing hop does not wrap too (BOLT 4's failing hop must:
its message is only MAC'd). One key per shared secret and nonce zero is sound because a hop
answers each onion once (a replay is refused by its shared secret), so it seals one message per
key; sealing two different messages under one shared secret would reveal their XOR to the
hops on the way back. A hop on the way that corrupts the packet makes it unreadable: the payer
then knows only that the failure came through its route (BOLT 4 has the same limit).
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from p2pchan.crypto.sphinx import (
    KEY_SIZE,
    MAC_SIZE,
    KeyLabel,
    OnionError,
    derive_key,
    keystream_xor,
)
from p2pchan.errors import LocalProtocolError

MAX_FAILURE_MESSAGE_SIZE = 400
"""Room for a reason code, the failing channel and its signed channel_update (~220 bytes)."""
_LENGTH_SIZE = 2
FAILURE_SIZE = _LENGTH_SIZE + MAX_FAILURE_MESSAGE_SIZE + MAC_SIZE
_NONCE_12 = bytes(12)


class MalformedFailure(OnionError):
    """A failure that hop `hop_index` sealed but whose contents break the format."""

    def __init__(self, hop_index: int, message: str) -> None:
        super().__init__(message)
        self.hop_index = hop_index


def failure_packet(shared_secret: bytes, message: bytes) -> bytes:
    """The failing hop's packet: `message` padded and sealed for the payer."""
    _check_secret(shared_secret)
    if len(message) > MAX_FAILURE_MESSAGE_SIZE:
        raise LocalProtocolError(
            f"a failure message is at most {MAX_FAILURE_MESSAGE_SIZE} bytes, got {len(message)}"
        )
    padding = bytes(MAX_FAILURE_MESSAGE_SIZE - len(message))
    plain = len(message).to_bytes(_LENGTH_SIZE, "big") + message + padding
    return ChaCha20Poly1305(derive_key(shared_secret, KeyLabel.FAILURE_SEAL)).encrypt(
        _NONCE_12, plain, None
    )


def wrap_failure(shared_secret: bytes, packet: bytes) -> bytes:
    """What a hop sends upstream for a failure `packet` it received from downstream."""
    _check_secret(shared_secret)
    _check_size(packet)
    return keystream_xor(derive_key(shared_secret, KeyLabel.FAILURE_WRAP), packet)


def read_failure(shared_secrets: Sequence[bytes], packet: bytes) -> tuple[int, bytes]:
    """On the payer: (index of the failing hop, its message). `OnionError` if no hop's key
    opens the packet; `MalformedFailure` if the hop that sealed it broke the format."""
    _check_size(packet)
    for index, secret in enumerate(shared_secrets):
        _check_secret(secret)
        try:
            plain = ChaCha20Poly1305(derive_key(secret, KeyLabel.FAILURE_SEAL)).decrypt(
                _NONCE_12, packet, None
            )
        except InvalidTag:
            packet = keystream_xor(derive_key(secret, KeyLabel.FAILURE_WRAP), packet)
            continue
        length = int.from_bytes(plain[:_LENGTH_SIZE], "big")
        end = _LENGTH_SIZE + length
        if length > MAX_FAILURE_MESSAGE_SIZE or any(plain[end:]):
            raise MalformedFailure(index, f"hop {index} sealed a malformed failure")
        return index, plain[_LENGTH_SIZE:end]
    raise OnionError("no hop of the route sealed this failure")


def _check_secret(shared_secret: bytes) -> None:
    if len(shared_secret) != KEY_SIZE:
        raise LocalProtocolError("an onion shared secret is 32 bytes")


def _check_size(packet: bytes) -> None:
    if len(packet) != FAILURE_SIZE:
        raise OnionError(f"a failure packet is {FAILURE_SIZE} bytes, got {len(packet)}")
