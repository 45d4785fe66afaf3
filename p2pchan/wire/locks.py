"""Hash-time locks and the locksroot that commits to a direction's pending locks.

A lock is (amount, expiration_block, secrethash). Its canonical encoding is 48 bytes:
amount (8 bytes big-endian) || expiration_block (8 bytes big-endian) || secrethash (32).
The locksroot is sha256 over the pending locks' encodings in the order they were added
(sha256(b"") when none), so the contract can check a list of locks with one hash. A
`HeldLock` is a lock as a channel message carries it: with its hop payload.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from p2pchan.crypto.hashing import sha256
from p2pchan.errors import RemoteProtocolError
from p2pchan.types import Locksroot, SecretHash
from p2pchan.wire.fields import BYTES32, U64
from p2pchan.wire.records import Record, wire

LOCK_SIZE = 48
_AMOUNT_AND_EXPIRY = struct.Struct(">QQ")
EMPTY_LOCKSROOT = Locksroot(sha256(b""))


@dataclass(frozen=True, slots=True)
class Lock(Record):
    amount: int = wire(U64)
    expiration_block: int = wire(U64)
    secrethash: SecretHash = wire(BYTES32)

    def encode(self) -> bytes:
        return _AMOUNT_AND_EXPIRY.pack(self.amount, self.expiration_block) + self.secrethash


def encode_locks(locks: Iterable[Lock]) -> bytes:
    """The concatenated canonical encodings, as hashed into the locksroot."""
    return b"".join(lock.encode() for lock in locks)


def decode_locks(blob: bytes) -> tuple[Lock, ...]:
    if len(blob) % LOCK_SIZE:
        raise RemoteProtocolError(f"lock list of {len(blob)} bytes is not a multiple of 48")
    locks = []
    for offset in range(0, len(blob), LOCK_SIZE):
        amount, expiration = _AMOUNT_AND_EXPIRY.unpack_from(blob, offset)
        secrethash = SecretHash(blob[offset + 16 : offset + LOCK_SIZE])
        locks.append(Lock(amount, expiration, secrethash))
    return tuple(locks)


def locksroot(locks: Iterable[Lock]) -> Locksroot:
    return Locksroot(sha256(encode_locks(locks)))


@dataclass(frozen=True, slots=True)
class HeldLock:
    """A pending lock and the hop payload that came with it (the payee's instructions)."""

    lock: Lock
    payload: bytes = b""
    secrethash: SecretHash = field(init=False, compare=False, repr=False)  # the lock's, cached

    def __post_init__(self) -> None:
        object.__setattr__(self, "secrethash", self.lock.secrethash)
