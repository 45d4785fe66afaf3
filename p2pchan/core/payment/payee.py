"""The payee's decision to claim or fail each incoming lock.

It claims a lock only if its hop payload matches the lock, reveal_timeout < E - height, and
either the payload's secret hashes to the lock's secrethash or an open invoice of ours has that
hash and asks for at most the amount.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.core.invoice import Invoice
from p2pchan.crypto.hashing import sha256
from p2pchan.errors import RemoteProtocolError
from p2pchan.types import Secret
from p2pchan.wire.hop_payload import HopPayload
from p2pchan.wire.locks import HeldLock


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
