"""The p2pchan frame codec: how bytes travel once the Noise handshake is done.

Owns the frame format of DESIGN.md "Transport", sans-IO. Each frame is

    ENCRYPT(2-byte big-endian body length)   2 + 16 = 18 bytes
    ENCRYPT(body)                            len(body) + 16 bytes

with the sending direction's `CipherState`, empty associated data, and a body of at most 65535
bytes. Each direction counts its own nonces; whenever an encryption or decryption leaves a
direction's nonce at a multiple of 1000, that direction calls Noise's `rekey()` (with frames of two
encryptions this always falls between frames). A frame that fails to decrypt ends the connection:
the decryptor raises `CryptoError` and refuses any further input.

This is the hot path, so the per-frame Python work is kept small: one struct call per length, one
copy per ciphertext slice, the receive buffer a bytearray trimmed once per `feed()`.
"""

from __future__ import annotations

import struct

from p2pchan.crypto.noise import TAG_SIZE, CipherState, HandshakeState
from p2pchan.errors import CryptoError, LocalProtocolError

MAX_BODY_SIZE = 65535
LENGTH_SIZE = 2
HEADER_SIZE = LENGTH_SIZE + TAG_SIZE
"""The encrypted length prefix: 18 bytes."""
FRAME_OVERHEAD = HEADER_SIZE + TAG_SIZE
"""Bytes a frame adds to its body: 34."""
REKEY_INTERVAL = 1000
"""A direction rekeys each time its nonce reaches a multiple of this."""

_pack_length = struct.Struct(">H").pack
_EMPTY = b""


def frame_size(body_size: int) -> int:
    """Bytes on the wire for a body of `body_size` bytes."""
    return body_size + FRAME_OVERHEAD


class FrameEncryptor:
    """Seals bodies into frames with the sending cipher state."""

    __slots__ = ("_cipher",)

    def __init__(self, cipher: CipherState) -> None:
        if not cipher.has_key:
            raise LocalProtocolError("a frame encryptor needs a keyed cipher state")
        self._cipher = cipher

    @property
    def nonce(self) -> int:
        """How many encryptions this direction has done (two per frame)."""
        return self._cipher.nonce

    def encrypt(self, body: bytes) -> bytes:
        """The frame carrying `body`. Raises `LocalProtocolError` if `body` is over 65535 bytes."""
        size = len(body)
        if size > MAX_BODY_SIZE:
            raise LocalProtocolError(
                f"a frame body is at most {MAX_BODY_SIZE} bytes, this one is {size}"
            )
        cipher = self._cipher
        header = cipher.encrypt_with_ad(_EMPTY, _pack_length(size))
        if cipher.nonce % REKEY_INTERVAL == 0:
            cipher.rekey()
        sealed_body = cipher.encrypt_with_ad(_EMPTY, body)
        if cipher.nonce % REKEY_INTERVAL == 0:
            cipher.rekey()
        return header + sealed_body

    def __repr__(self) -> str:
        return f"FrameEncryptor(nonce={self._cipher.nonce})"


class FrameDecryptor:
    """Turns the received byte stream back into bodies, whatever the chunking.

    `feed()` takes any slice of the stream and returns every body it completes, buffering the rest.
    The buffer never holds more than one partial header or body (at most 65550 bytes).
    """

    __slots__ = ("_buffer", "_cipher", "_failed", "_in_body", "_needed")

    def __init__(self, cipher: CipherState) -> None:
        if not cipher.has_key:
            raise LocalProtocolError("a frame decryptor needs a keyed cipher state")
        self._cipher = cipher
        self._buffer = bytearray()
        self._needed = HEADER_SIZE  # bytes of the next ciphertext: a header or a sealed body
        self._in_body = False  # whether that ciphertext is a body (its header is decrypted)
        self._failed = False

    @property
    def nonce(self) -> int:
        """How many decryptions this direction has done (two per frame)."""
        return self._cipher.nonce

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete header or body."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        """Add received bytes; return the bodies of the frames they complete, in order.

        Raises `CryptoError` if a frame fails to decrypt, and on every call after that.
        """
        if self._failed:
            raise CryptoError("an earlier frame failed to decrypt; this connection is over")
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray | memoryview = buffer
        else:
            source = data
        bodies: list[bytes] = []
        cipher = self._cipher
        decrypt = cipher.decrypt_with_ad
        needed = self._needed
        in_body = self._in_body
        offset = 0
        try:
            with memoryview(source) as view:
                end = len(view)
                while end - offset >= needed:
                    plaintext = decrypt(_EMPTY, bytes(view[offset : offset + needed]))
                    offset += needed
                    if cipher.nonce % REKEY_INTERVAL == 0:
                        cipher.rekey()
                    if in_body:
                        bodies.append(plaintext)
                        needed = HEADER_SIZE
                        in_body = False
                    else:
                        needed = ((plaintext[0] << 8) | plaintext[1]) + TAG_SIZE
                        in_body = True
                if source is not buffer and offset < end:
                    buffer += view[offset:]
        except CryptoError:
            self._failed = True
            buffer.clear()
            raise
        if source is buffer:
            del buffer[:offset]
        self._needed = needed
        self._in_body = in_body
        return bodies

    def __repr__(self) -> str:
        return (
            f"FrameDecryptor(nonce={self._cipher.nonce}, buffered={len(self._buffer)}, "
            f"failed={self._failed})"
        )


class TransportCipher:
    """Both directions of one connection's frame codec."""

    __slots__ = ("decryptor", "encryptor", "handshake_hash", "remote_static")

    def __init__(
        self,
        send: CipherState,
        receive: CipherState,
        *,
        handshake_hash: bytes = b"",
        remote_static: bytes | None = None,
    ) -> None:
        self.encryptor = FrameEncryptor(send)
        self.decryptor = FrameDecryptor(receive)
        self.handshake_hash = handshake_hash
        self.remote_static = remote_static

    @classmethod
    def from_handshake(cls, handshake: HandshakeState) -> TransportCipher:
        """Split a completed handshake (raises `LocalProtocolError` if it is not complete)."""
        send, receive = handshake.split()
        return cls(
            send,
            receive,
            handshake_hash=handshake.handshake_hash,
            remote_static=handshake.remote_static,
        )

    def encrypt(self, body: bytes) -> bytes:
        return self.encryptor.encrypt(body)

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        return self.decryptor.feed(data)

    def __repr__(self) -> str:
        return f"TransportCipher(encryptor={self.encryptor!r}, decryptor={self.decryptor!r})"
