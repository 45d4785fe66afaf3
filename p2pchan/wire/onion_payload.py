"""What each hop finds in its layer of a payment's onion, and the reasons failures carry back.

A forwarding hop's payload is 49 bytes: kind 1, the next hop's node id (32), the amount to lock
towards it (8, big-endian) and the lock's expiry (8: the same E on every hop). The last hop's is
kind 2, the amount it must receive (8), the expiry (8), and for a spontaneous payment the secret
(32; absent when paying an invoice): 17 or 49 bytes. Both fit the onion's per-hop budget (56 and
96 bytes, `crypto/sphinx.py`). Fixed layouts, not msgpack: every hop of every payment decodes
one, and a fixed layout leaves nothing to check but lengths.

A failure's message, encrypted for the payer by the hop that failed (`crypto/sphinx_failure`), is
msgpack `[code, channel_id, update]`: why, which channel (the failing hop's outgoing one, or
empty when the hop is the payee), and for a failure about fees or limits the hop's current
signed `channel_update` (empty otherwise) — the payer's mission control and graph learn from
it.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from p2pchan.crypto.sphinx_failure import MAX_FAILURE_MESSAGE_SIZE
from p2pchan.errors import RemoteProtocolError
from p2pchan.types import Address, ChannelId, Secret
from p2pchan.wire.codec import pack, unpack

FORWARD = 1
FINAL = 2
_FORWARD = struct.Struct(">B32sQQ")
_FINAL = struct.Struct(">BQQ")
SECRET_SIZE = 32


@dataclass(frozen=True, slots=True)
class ForwardPayload:
    next_node: Address
    amount: int
    expiration_block: int

    def encode(self) -> bytes:
        return _FORWARD.pack(FORWARD, self.next_node, self.amount, self.expiration_block)


@dataclass(frozen=True, slots=True)
class FinalPayload:
    amount: int
    expiration_block: int
    secret: Secret | None  # spontaneous payments only

    def encode(self) -> bytes:
        head = _FINAL.pack(FINAL, self.amount, self.expiration_block)
        return head if self.secret is None else head + self.secret


def decode_payload(data: bytes) -> ForwardPayload | FinalPayload:
    """A hop's payload, strictly: exact lengths per kind (`RemoteProtocolError` otherwise)."""
    if not data:
        raise RemoteProtocolError("an empty onion payload")
    kind = data[0]
    if kind == FORWARD and len(data) == _FORWARD.size:
        _, next_node, amount, expiration = _FORWARD.unpack(data)
        return ForwardPayload(Address(next_node), amount, expiration)
    if kind == FINAL and len(data) in (_FINAL.size, _FINAL.size + SECRET_SIZE):
        _, amount, expiration = _FINAL.unpack_from(data)
        secret = data[_FINAL.size :] or None
        return FinalPayload(amount, expiration, None if secret is None else Secret(secret))
    raise RemoteProtocolError(f"an onion payload of kind {kind} and {len(data)} bytes")


@enum.unique
class FailureCode(enum.StrEnum):
    """Why a hop failed a payment (what the payer's retry learns)."""

    UNKNOWN_NEXT_HOP = "unknown_next_hop"  # no usable channel to the next node
    TEMPORARY_CHANNEL_FAILURE = "temporary_channel_failure"  # capacity, slots, offline
    FEE_INSUFFICIENT = "fee_insufficient"
    AMOUNT_BELOW_MINIMUM = "amount_below_minimum"
    AMOUNT_ABOVE_MAXIMUM = "amount_above_maximum"
    EXPIRY_TOO_SOON = "expiry_too_soon"
    EXPIRY_TOO_FAR = "expiry_too_far"
    BAD_PAYLOAD = "bad_payload"  # the onion's payload did not match the lock
    UNKNOWN_PAYMENT = "unknown_payment"  # the payee: no invoice, wrong amount, or expired
    EXPIRED_DOWNSTREAM = "expired_downstream"  # the next hop let the lock expire


MAX_UPDATE_SIZE = 300  # a signed channel_update (about 220 bytes), with room to spare


@dataclass(frozen=True, slots=True)
class FailureMessage:
    code: FailureCode
    channel_id: ChannelId | None
    update: bytes = b""  # the failing hop's signed channel_update (fee and limit failures)

    def encode(self) -> bytes:
        return pack([str(self.code), self.channel_id or b"", self.update])

    @classmethod
    def decode(cls, data: bytes) -> FailureMessage:
        value = unpack(data, max_len=MAX_FAILURE_MESSAGE_SIZE)
        if type(value) is not list or len(value) != 3:
            raise RemoteProtocolError("a failure message is [code, channel_id, update]")
        code, channel_id, update = value
        if (
            type(code) is not str
            or type(channel_id) is not bytes
            or len(channel_id) not in (0, 32)
            or type(update) is not bytes
            or len(update) > MAX_UPDATE_SIZE
        ):
            raise RemoteProtocolError("a malformed failure message")
        try:
            known = FailureCode(code)
        except ValueError:
            raise RemoteProtocolError(f"unknown failure code {code!r}") from None
        return cls(known, ChannelId(channel_id) if channel_id else None, update)
