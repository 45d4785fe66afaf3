"""The Noise handshake p2pchan connections start with: `Noise_XK_25519_ChaChaPoly_SHA256`.

Owns the Noise objects of the spec (revision 34, section 5) -- `CipherState`, `SymmetricState` and
`HandshakeState` -- for the one pattern p2pchan uses:

    XK:
      <- s
      ...
      -> e, es
      <- e, ee
      -> s, se

The hash is pluggable (SHA256 or BLAKE2b) so both official XK test vectors can be replayed; p2pchan
itself uses SHA256. This module is sans-IO: bytes in, bytes out, no clock and no randomness (the
caller passes the ephemeral private key). The frame codec on top of the split cipher states lives
in `p2pchan.crypto.transport`.

Errors: calling a method out of turn (or with malformed local arguments) raises
`LocalProtocolError`; a received message that is too short, fails to decrypt or carries a key
whose Diffie-Hellman result is all zeros raises `CryptoError`, and the handshake is then dead.
Reprs and error messages never show key material.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from collections.abc import Callable
from typing import NamedTuple

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from p2pchan.errors import CryptoError, LocalProtocolError

PROTOCOL_NAME = b"Noise_XK_25519_ChaChaPoly_SHA256"
PROLOGUE = b"p2pchan/1"

DH_SIZE = 32
KEY_SIZE = 32
TAG_SIZE = 16
MAX_MESSAGE_SIZE = 65535
MAX_NONCE = 2**64 - 1
"""Reserved by Noise: a cipher state whose nonce reaches it refuses to encrypt or decrypt."""

ACT_ONE_SIZE = 48
"""`-> e, es` with an empty payload: 32-byte ephemeral key, 16-byte tag."""
ACT_TWO_SIZE = 48
"""`<- e, ee` with an empty payload."""
ACT_THREE_SIZE = 96
"""`-> s, se` carrying the initiator's 32-byte node id: encrypted static key (48) + payload (48)."""

# ChaChaPoly's 96-bit nonce: 32 zero bits, then the 64-bit counter little-endian.
_pack_nonce = struct.Struct("<4xQ").pack
_REKEY_NONCE = _pack_nonce(MAX_NONCE)
_ZERO_KEY = bytes(KEY_SIZE)


class CipherState:
    """A key and a nonce (Noise 5.1). Without a key it passes plaintext through, as Noise says.

    A failed decryption leaves the nonce where it was. `rekey()` replaces the key with the first
    32 bytes of ENCRYPT(k, 2**64-1, b"", 32 zero bytes) and leaves the nonce alone.

    ChaCha20-Poly1305 (IETF) comes from `cryptography`, whose calls cost a third of pynacl's
    binding wrappers on this, the transport's hottest path; the key lives in its cipher object.
    """

    __slots__ = ("_key", "_nonce")

    def __init__(self, key: bytes | None = None) -> None:
        if key is not None and (type(key) is not bytes or len(key) != KEY_SIZE):
            raise LocalProtocolError("a cipher key is 32 bytes")
        self._key = None if key is None else ChaCha20Poly1305(key)
        self._nonce = 0

    @property
    def has_key(self) -> bool:
        return self._key is not None

    @property
    def nonce(self) -> int:
        """The nonce the next encryption or decryption will use."""
        return self._nonce

    def set_nonce(self, nonce: int) -> None:
        if not 0 <= nonce <= MAX_NONCE:
            raise LocalProtocolError("a nonce is an unsigned 64-bit integer")
        self._nonce = nonce

    def encrypt_with_ad(self, ad: bytes, plaintext: bytes) -> bytes:
        key = self._key
        if key is None:
            return plaintext
        nonce = self._nonce
        if nonce >= MAX_NONCE:
            raise LocalProtocolError("this cipher state has used up its nonces")
        ciphertext = key.encrypt(_pack_nonce(nonce), plaintext, ad)
        self._nonce = nonce + 1
        return ciphertext

    def decrypt_with_ad(self, ad: bytes, ciphertext: bytes) -> bytes:
        key = self._key
        if key is None:
            return ciphertext
        nonce = self._nonce
        if nonce >= MAX_NONCE:
            raise CryptoError("this cipher state has used up its nonces")
        if len(ciphertext) < TAG_SIZE:
            raise CryptoError("a ciphertext is shorter than its authentication tag")
        try:
            plaintext = key.decrypt(_pack_nonce(nonce), ciphertext, ad)
        except InvalidTag:
            raise CryptoError("a ciphertext failed authentication") from None
        self._nonce = nonce + 1
        return plaintext

    def rekey(self) -> None:
        key = self._key
        if key is None:
            raise LocalProtocolError("a cipher state without a key cannot rekey")
        self._key = ChaCha20Poly1305(key.encrypt(_REKEY_NONCE, _ZERO_KEY, b"")[:KEY_SIZE])

    def __repr__(self) -> str:
        return f"CipherState(has_key={self.has_key}, nonce={self._nonce})"


class _Hash(NamedTuple):
    """One Noise hash function: its name, HASHLEN, HASH() and HMAC-HASH()."""

    name: str
    size: int
    digest: Callable[[bytes], bytes]
    hmac: Callable[[bytes, bytes], bytes]


_HASHES = {
    "SHA256": _Hash(
        "SHA256",
        32,
        lambda data: hashlib.sha256(data).digest(),
        lambda key, data: hmac.digest(key, data, "sha256"),
    ),
    "BLAKE2b": _Hash(
        "BLAKE2b",
        64,
        lambda data: hashlib.blake2b(data).digest(),
        lambda key, data: hmac.digest(key, data, hashlib.blake2b),
    ),
}


class SymmetricState:
    """The chaining key, the handshake hash and the handshake's cipher state (Noise 5.2)."""

    __slots__ = ("_chaining_key", "_cipher", "_handshake_hash", "_hash")

    def __init__(self, protocol_name: bytes, hash_name: str = "SHA256") -> None:
        hash_functions = _HASHES.get(hash_name)
        if hash_functions is None:
            raise LocalProtocolError(f"unsupported Noise hash {hash_name!r}")
        self._hash = hash_functions
        if len(protocol_name) <= hash_functions.size:
            handshake_hash = protocol_name.ljust(hash_functions.size, b"\x00")
        else:
            handshake_hash = hash_functions.digest(protocol_name)
        self._handshake_hash = handshake_hash
        self._chaining_key = handshake_hash
        self._cipher = CipherState()

    @property
    def handshake_hash(self) -> bytes:
        return self._handshake_hash

    def _hkdf2(self, input_key_material: bytes) -> tuple[bytes, bytes]:
        hmac_hash = self._hash.hmac
        temp_key = hmac_hash(self._chaining_key, input_key_material)
        output1 = hmac_hash(temp_key, b"\x01")
        output2 = hmac_hash(temp_key, output1 + b"\x02")
        return output1, output2

    def mix_key(self, input_key_material: bytes) -> None:
        self._chaining_key, temp_key = self._hkdf2(input_key_material)
        self._cipher = CipherState(temp_key[:KEY_SIZE])

    def mix_hash(self, data: bytes) -> None:
        self._handshake_hash = self._hash.digest(self._handshake_hash + data)

    def encrypt_and_hash(self, plaintext: bytes) -> bytes:
        ciphertext = self._cipher.encrypt_with_ad(self._handshake_hash, plaintext)
        self.mix_hash(ciphertext)
        return ciphertext

    def decrypt_and_hash(self, ciphertext: bytes) -> bytes:
        plaintext = self._cipher.decrypt_with_ad(self._handshake_hash, ciphertext)
        self.mix_hash(ciphertext)
        return plaintext

    def split(self) -> tuple[CipherState, CipherState]:
        """(initiator-to-responder, responder-to-initiator) cipher states."""
        temp_key1, temp_key2 = self._hkdf2(b"")
        return CipherState(temp_key1[:KEY_SIZE]), CipherState(temp_key2[:KEY_SIZE])

    def __repr__(self) -> str:
        return f"SymmetricState(hash={self._hash.name}, cipher={self._cipher!r})"


class Role(enum.Enum):
    INITIATOR = "initiator"
    RESPONDER = "responder"


# The XK message patterns. Message i is written by the initiator when i is even, else by the
# responder. The pre-message `<- s` (both sides hash the responder's static key) is applied in
# the constructor.
_MESSAGE_PATTERNS: tuple[tuple[str, ...], ...] = (("e", "es"), ("e", "ee"), ("s", "se"))

# Size of each message without its payload: 32 for `e`, 48 for `s` (it is encrypted: in XK a key
# is always set by then), 16 for the payload's tag (likewise always encrypted).
_MESSAGE_OVERHEAD = (48, 48, 64)

# Which of our keys and which of the peer's each DH token combines (the first letter of a token
# names the initiator's key, the second the responder's).
_DH_KEYS: dict[tuple[Role, str], tuple[str, str]] = {
    (Role.INITIATOR, "ee"): ("e", "e"),
    (Role.RESPONDER, "ee"): ("e", "e"),
    (Role.INITIATOR, "es"): ("e", "s"),
    (Role.RESPONDER, "es"): ("s", "e"),
    (Role.INITIATOR, "se"): ("s", "e"),
    (Role.RESPONDER, "se"): ("e", "s"),
}

# The state machine: at each step, what each role must do. A step not in the table means the
# handshake is complete; anything else is out of turn and raises LocalProtocolError.
_TURNS: dict[tuple[Role, int], str] = {
    (Role.INITIATOR, 0): "write",
    (Role.RESPONDER, 0): "read",
    (Role.INITIATOR, 1): "read",
    (Role.RESPONDER, 1): "write",
    (Role.INITIATOR, 2): "write",
    (Role.RESPONDER, 2): "read",
}


def _check_key(key: bytes, what: str) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != DH_SIZE:
        raise LocalProtocolError(f"{what} must be {DH_SIZE} bytes")
    return bytes(key)


def _dh(private_key: bytes, public_key: bytes) -> bytes:
    try:
        return bytes(nacl.bindings.crypto_scalarmult(private_key, public_key))
    except nacl.exceptions.RuntimeError:
        # libsodium refuses a low-order point, whose shared secret would be all zeros.
        raise CryptoError("a Noise public key is of low order") from None


class HandshakeState:
    """One side of a Noise XK handshake (Noise 5.3). Build it with `initiator()`/`responder()`.

    Call `write_message`/`read_message` in turn (initiator: write, read, write; responder: read,
    write, read), then `split()` once to get this side's (send, receive) cipher states.
    """

    __slots__ = (
        "_ephemeral_private",
        "_ephemeral_public",
        "_failed",
        "_remote_ephemeral",
        "_remote_static",
        "_role",
        "_split_done",
        "_static_private",
        "_static_public",
        "_step",
        "_symmetric",
        "protocol_name",
    )

    def __init__(
        self,
        role: Role,
        static_private: bytes,
        remote_static_public: bytes | None,
        ephemeral_private: bytes,
        prologue: bytes,
        hash_name: str,
    ) -> None:
        self._role = role
        self._static_private = _check_key(static_private, "the static private key")
        self._ephemeral_private = _check_key(ephemeral_private, "the ephemeral private key")
        self._static_public = bytes(nacl.bindings.crypto_scalarmult_base(self._static_private))
        self._ephemeral_public = bytes(
            nacl.bindings.crypto_scalarmult_base(self._ephemeral_private)
        )
        self._remote_ephemeral: bytes | None = None
        self._remote_static: bytes | None = None
        self._step = 0
        self._failed = False
        self._split_done = False
        self.protocol_name = b"Noise_XK_25519_ChaChaPoly_" + hash_name.encode()
        self._symmetric = SymmetricState(self.protocol_name, hash_name)
        self._symmetric.mix_hash(bytes(prologue))
        if role is Role.INITIATOR:
            if remote_static_public is None:
                raise LocalProtocolError("the initiator must know the responder's static key")
            self._remote_static = _check_key(remote_static_public, "the remote static key")
            self._symmetric.mix_hash(self._remote_static)
        else:
            self._symmetric.mix_hash(self._static_public)

    @classmethod
    def initiator(
        cls,
        static_private: bytes,
        remote_static_public: bytes,
        *,
        ephemeral_private: bytes,
        prologue: bytes = PROLOGUE,
        hash_name: str = "SHA256",
    ) -> HandshakeState:
        """The side that connects and already knows the responder's static key."""
        return cls(
            Role.INITIATOR,
            static_private,
            remote_static_public,
            ephemeral_private,
            prologue,
            hash_name,
        )

    @classmethod
    def responder(
        cls,
        static_private: bytes,
        *,
        ephemeral_private: bytes,
        prologue: bytes = PROLOGUE,
        hash_name: str = "SHA256",
    ) -> HandshakeState:
        """The side that accepts; it learns the initiator's static key from message three."""
        return cls(Role.RESPONDER, static_private, None, ephemeral_private, prologue, hash_name)

    @property
    def role(self) -> Role:
        return self._role

    @property
    def is_complete(self) -> bool:
        return self._step == len(_MESSAGE_PATTERNS)

    @property
    def remote_static(self) -> bytes | None:
        """The peer's X25519 static key: given to the initiator, learnt by the responder."""
        return self._remote_static

    @property
    def handshake_hash(self) -> bytes:
        """The final handshake hash `h`, which both sides share (for channel binding)."""
        if not self.is_complete:
            raise LocalProtocolError("the handshake hash is only final once the handshake is")
        return self._symmetric.handshake_hash

    def write_message(self, payload: bytes = b"") -> bytes:
        step = self._begin("write")
        if len(payload) > MAX_MESSAGE_SIZE - _MESSAGE_OVERHEAD[step]:
            raise LocalProtocolError("a Noise message is at most 65535 bytes")
        symmetric = self._symmetric
        parts: list[bytes] = []
        try:
            for token in _MESSAGE_PATTERNS[step]:
                if token == "e":
                    parts.append(self._ephemeral_public)
                    symmetric.mix_hash(self._ephemeral_public)
                elif token == "s":
                    parts.append(symmetric.encrypt_and_hash(self._static_public))
                else:
                    symmetric.mix_key(self._dh_token(token))
            parts.append(symmetric.encrypt_and_hash(bytes(payload)))
        except BaseException:
            self._failed = True
            raise
        self._advance()
        return b"".join(parts)

    def read_message(self, message: bytes) -> bytes:
        """Process the peer's next message; return its decrypted payload."""
        step = self._begin("read")
        message = bytes(message)
        symmetric = self._symmetric
        try:
            if not _MESSAGE_OVERHEAD[step] <= len(message) <= MAX_MESSAGE_SIZE:
                raise CryptoError(
                    f"Noise message {step + 1} has {len(message)} bytes, "
                    f"need {_MESSAGE_OVERHEAD[step]} to {MAX_MESSAGE_SIZE}"
                )
            offset = 0
            for token in _MESSAGE_PATTERNS[step]:
                if token == "e":
                    self._remote_ephemeral = message[offset : offset + DH_SIZE]
                    offset += DH_SIZE
                    symmetric.mix_hash(self._remote_ephemeral)
                elif token == "s":
                    sealed_key = message[offset : offset + DH_SIZE + TAG_SIZE]
                    offset += DH_SIZE + TAG_SIZE
                    self._remote_static = symmetric.decrypt_and_hash(sealed_key)
                else:
                    symmetric.mix_key(self._dh_token(token))
            payload = symmetric.decrypt_and_hash(message[offset:])
        except BaseException:
            self._failed = True
            raise
        self._advance()
        return payload

    def split(self) -> tuple[CipherState, CipherState]:
        """This side's (send, receive) cipher states. Only once, and only when complete."""
        if not self.is_complete:
            raise LocalProtocolError("split() before the handshake is complete")
        if self._split_done:
            raise LocalProtocolError("split() may be called once: its keys must not be reused")
        self._split_done = True
        initiator_to_responder, responder_to_initiator = self._symmetric.split()
        if self._role is Role.INITIATOR:
            return initiator_to_responder, responder_to_initiator
        return responder_to_initiator, initiator_to_responder

    def _begin(self, action: str) -> int:
        if self._failed:
            raise LocalProtocolError("this handshake already failed; start a new one")
        expected = _TURNS.get((self._role, self._step))
        if expected is None:
            raise LocalProtocolError("the handshake is complete; use split()")
        if expected != action:
            raise LocalProtocolError(
                f"out of turn: the {self._role.value} must {expected} message {self._step + 1}"
            )
        return self._step

    def _advance(self) -> None:
        self._step += 1
        if self.is_complete:
            # Nothing needs the private keys any more; drop our references to them.
            self._static_private = b""
            self._ephemeral_private = b""

    def _dh_token(self, token: str) -> bytes:
        local, remote = _DH_KEYS[self._role, token]
        private_key = self._ephemeral_private if local == "e" else self._static_private
        public_key = self._remote_ephemeral if remote == "e" else self._remote_static
        assert public_key is not None, "XK always has the remote key by the time it is used"
        return _dh(private_key, public_key)

    def __repr__(self) -> str:
        return (
            f"HandshakeState(role={self._role.value}, step={self._step}, "
            f"complete={self.is_complete}, failed={self._failed})"
        )
