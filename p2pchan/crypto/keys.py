"""Ed25519 identities and key files.

A node's identity is an Ed25519 key pair; its public key is its node id and its layer-1 account.
The key file holds the 32-byte seed as hex, mode 0600; loading refuses a file that group or others
can read. The X25519 keys Noise needs are converted from the Ed25519 ones (libsodium).
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

import nacl.bindings
import nacl.exceptions

from p2pchan.crypto.signing import SigningTag, sign_detached
from p2pchan.errors import CryptoError, KeyFileError
from p2pchan.types import KEY_SIZE, Address, NodeId

KEY_FILE_NAME = "node.key"


class Identity:
    """An Ed25519 key pair. Its repr never shows the secret."""

    __slots__ = ("_secret_key", "node_id")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != KEY_SIZE:
            raise CryptoError("an Ed25519 seed is 32 bytes")
        public_key, secret_key = nacl.bindings.crypto_sign_seed_keypair(seed)
        self._secret_key: bytes = secret_key
        self.node_id = NodeId(Address(public_key))

    @classmethod
    def generate(cls) -> Identity:
        """A fresh identity from the OS random source (shell code only; the core takes keys)."""
        return cls(os.urandom(KEY_SIZE))

    def sign(self, tag: SigningTag, data: bytes) -> bytes:
        return sign_detached(self._secret_key, tag, data)

    def x25519_private_key(self) -> bytes:
        """This identity's static Noise key, converted from the Ed25519 secret key."""
        return bytes(nacl.bindings.crypto_sign_ed25519_sk_to_curve25519(self._secret_key))

    def seed(self) -> bytes:
        return bytes(nacl.bindings.crypto_sign_ed25519_sk_to_seed(self._secret_key))

    def __repr__(self) -> str:
        return f"Identity(node_id={self.node_id.hex()})"


def x25519_public_key(node_id: bytes) -> bytes:
    """The X25519 public key of a node id (`crypto_sign_ed25519_pk_to_curve25519`).

    Cached: the conversion is pure and costs about one X25519 multiplication (libsodium checks
    the point), and a payer converts the same few mediators' ids for every onion. An invalid id
    raises, and exceptions are not cached."""
    return _x25519_public_key(bytes(node_id))  # hashable whatever the caller passed


@functools.lru_cache(maxsize=4096)
def _x25519_public_key(node_id: bytes) -> bytes:
    try:
        return bytes(nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(node_id))
    except (nacl.exceptions.CryptoError, ValueError, TypeError, RuntimeError):
        raise CryptoError("not a valid Ed25519 public key") from None


def write_key_file(path: Path, identity: Identity) -> None:
    """Create `path` holding the identity's seed, mode 0600, durably. Never overwrites."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"key file {path} already exists; refusing to overwrite it") from None
    try:
        os.write(fd, identity.seed().hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_key_file(path: Path) -> Identity:
    """Load an identity; refuse a key file that group or others can read or write."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise KeyFileError(f"no key file at {path}; run `p2pchan node init` first") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file {path} is accessible by others (mode {stat.S_IMODE(mode):o}); "
            f"run `chmod 600 {path}`"
        )
    try:
        text = path.read_bytes().decode("ascii").strip()
        seed = bytes.fromhex(text)
    except OSError as error:
        raise KeyFileError(f"cannot read key file {path}: {error.strerror or error}") from None
    except ValueError:  # UnicodeDecodeError included
        raise KeyFileError(f"key file {path} is not hex") from None
    if len(seed) != KEY_SIZE:
        raise KeyFileError(f"key file {path} must hold a 32-byte seed")
    return Identity(seed)
