"""Payments over a channel to a direct peer: what a lock carries for its payee, and the
payee's decision to claim or fail each incoming lock.

The hop payload tells the payee what the payer meant: amount, expiry and, for a spontaneous
payment, the secret. (It travels inside the encrypted peer connection; with payments across
several hops it becomes the innermost layer of an onion.) The payee claims a lock only if the
payload matches the lock, reveal_timeout < E - height, and either the payload's secret hashes to
the lock's secrethash or an open invoice of ours has that hash and asks for at most the amount.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.core.direction import HeldLock
from p2pchan.core.invoice import Invoice
from p2pchan.crypto.hashing import sha256
from p2pchan.errors import RemoteProtocolError
from p2pchan.types import U64_MAX, Secret
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.fields import BYTES32, U8, U64, Optional
from p2pchan.wire.records import Record, wire

PAYLOAD_VERSION = 1
PAYER_LOCK_TIMEOUT = 50  # blocks from now to a new lock's expiry


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


@dataclass(frozen=True, slots=True)
class OpenInvoice:
    """An invoice of ours that can still be paid, with its secret."""

    invoice: Invoice
    secret: Secret


@dataclass(frozen=True, slots=True)
class Claim:
    secret: Secret
    invoice: OpenInvoice | None


@dataclass(frozen=True, slots=True)
class Decline:
    reason: str


def decide_incoming(
    held: HeldLock,
    *,
    height: int,
    reveal_timeout: int,
    now_ms: int,
    invoice: OpenInvoice | None,
) -> Claim | Decline:
    lock = held.lock
    try:
        payload = HopPayload.decode(held.payload)
    except RemoteProtocolError as error:
        return Decline(f"unreadable payload: {error}")
    if (payload.amount, payload.expiration_block) != (lock.amount, lock.expiration_block):
        return Decline("the payload does not match the lock")
    if lock.expiration_block - height <= reveal_timeout:
        return Decline(f"expires at {lock.expiration_block}: too close to {height}")
    if payload.secret is not None:
        if sha256(payload.secret) != lock.secrethash:
            return Decline("the payload's secret does not match the lock")
        return Claim(payload.secret, None)
    if invoice is None:
        return Decline("no invoice of ours has this payment hash")
    if invoice.invoice.is_expired(now_ms):
        return Decline("the invoice has expired")
    if lock.amount < invoice.invoice.amount:
        return Decline(f"pays {lock.amount}, the invoice asks {invoice.invoice.amount}")
    if lock.expiration_block - height < invoice.invoice.min_final_lock_timeout:
        return Decline("the lock expires sooner than the invoice requires")
    return Claim(invoice.secret, invoice)
