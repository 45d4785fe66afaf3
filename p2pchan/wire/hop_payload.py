"""The hop payload: what a lock carries for the hop that receives it.

For a direct payment it tells the payee what the payer meant: amount, expiry and, for a
spontaneous payment, the secret. It travels inside the encrypted peer connection; with payments
across several hops it becomes the innermost layer of an onion. Strictly decoded: every
incoming lock's payload is decoded once.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.errors import RemoteProtocolError
from p2pchan.types import U64_MAX, Secret
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.fields import BYTES32, U8, U64, Optional
from p2pchan.wire.records import Record, wire

PAYLOAD_VERSION = 1


@dataclass(frozen=True, slots=True)
class HopPayload(Record):
    version: int = wire(U8)
    amount: int = wire(U64)
    expiration_block: int = wire(U64)
    secret: Secret | None = wire(Optional(BYTES32))  # spontaneous payments only

    def encode(self) -> bytes:
        return pack([self.version, self.amount, self.expiration_block, self.secret])

    @classmethod
    def decode(cls, data: bytes) -> HopPayload:
        """Strict, and direct: every incoming lock's payload is decoded once."""
        value = unpack(data, max_len=256)
        if type(value) is not list or len(value) != 4:
            raise RemoteProtocolError("a hop payload is [version, amount, expiration, secret]")
        version, amount, expiration, secret = value
        if version != PAYLOAD_VERSION or type(version) is not int:
            raise RemoteProtocolError(f"unknown hop payload version {version!r}")
        if type(amount) is not int or type(expiration) is not int:
            raise RemoteProtocolError("hop payload amount and expiration are integers")
        if not (0 <= amount <= U64_MAX and 0 <= expiration <= U64_MAX):
            raise RemoteProtocolError("hop payload amount or expiration out of range")
        if secret is not None and (type(secret) is not bytes or len(secret) != 32):
            raise RemoteProtocolError("a hop payload secret is 32 bytes")
        return cls(version, amount, expiration, None if secret is None else Secret(secret))
