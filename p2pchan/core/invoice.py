"""Invoices: a payee's signed request for a payment, as a `p2pc1...` string.

The string is "p2pc1" + lowercase base32 (no padding) of the msgpack array [data, signature];
`data` is the msgpack array (chain_id, payee, amount, secrethash, timestamp_ms, expiry_seconds,
min_final_lock_timeout, description, route_hints), signed by the payee with the invoice tag. The
chain id binds it to one network. Decoding checks everything and raises `UserError` saying
what is wrong: `parse_invoice` the format and signature (a batch file is checked so before the
node is asked), `decode_invoice` the chain too.

`route_hints` is the msgpack array of at most three hints `[node_id, channel_id, fee_base,
fee_ppm]`: channels over which the payee can be reached (their other end, and what that end
charges to forward towards the payee). A payer whose graph lacks the payee's channels (gossip
has not reached it yet) routes over them, once its own view of layer 1 shows them open.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from p2pchan.crypto.keys import Identity
from p2pchan.crypto.signing import SigningTag, is_valid
from p2pchan.errors import RemoteProtocolError, UserError
from p2pchan.types import Address, ChainId, ChannelId, SecretHash
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.fields import BYTES32, SIGNATURE, U32, U64, Bytes, ListOf, Text
from p2pchan.wire.records import Nested, Record, wire

PREFIX = "p2pc1"
MAX_INVOICE_BYTES = 2048
MAX_INVOICE_TEXT = (MAX_INVOICE_BYTES + 128) * 8 // 5 + 8  # base32 of the largest envelope
DEFAULT_EXPIRY_SECONDS = 3600
MAX_ROUTE_HINTS = 3


@dataclass(frozen=True, slots=True)
class RouteHint(Record):
    """The payee can be reached from `node_id` over `channel_id`, for these fees."""

    node_id: Address = wire(BYTES32)
    channel_id: ChannelId = wire(BYTES32)
    fee_base: int = wire(U64)
    fee_ppm: int = wire(U32)


@dataclass(frozen=True, slots=True)
class _Hints(Record):
    hints: tuple[RouteHint, ...] = wire(ListOf(Nested(RouteHint), MAX_ROUTE_HINTS))


def encode_route_hints(hints: tuple[RouteHint, ...]) -> bytes:
    return pack(_Hints(hints[:MAX_ROUTE_HINTS]).to_wire()) if hints else b""


@dataclass(frozen=True, slots=True)
class Invoice(Record):
    chain_id: ChainId = wire(BYTES32)
    payee: Address = wire(BYTES32)
    amount: int = wire(U64)
    secrethash: SecretHash = wire(BYTES32)
    timestamp_ms: int = wire(U64)
    expiry_seconds: int = wire(U32)
    min_final_lock_timeout: int = wire(U32)
    description: str = wire(Text(640))
    route_hints: bytes = wire(Bytes(max_size=512))  # `encode_route_hints` (empty: none)

    def expires_at_ms(self) -> int:
        return self.timestamp_ms + self.expiry_seconds * 1000

    def is_expired(self, now_ms: int) -> bool:
        return now_ms >= self.expires_at_ms()

    def hints(self) -> tuple[RouteHint, ...]:
        """The route hints (checked when the invoice was parsed)."""
        if not self.route_hints:
            return ()
        return _Hints.from_wire(unpack(self.route_hints, max_len=512), "route_hints").hints


@dataclass(frozen=True, slots=True)
class _Envelope(Record):
    data: bytes = wire(Bytes(max_size=MAX_INVOICE_BYTES))
    signature: bytes = wire(SIGNATURE)


def encode_invoice(identity: Identity, invoice: Invoice) -> str:
    if invoice.payee != identity.node_id:
        raise ValueError("an invoice is signed by its payee")
    data = pack(invoice.to_wire())
    envelope = pack([data, identity.sign(SigningTag.INVOICE, data)])
    return PREFIX + base64.b32encode(envelope).decode().rstrip("=").lower()


def parse_invoice(text: str) -> Invoice:
    """Parse an invoice string and check its payee's signature, whatever its chain (`UserError`
    saying what is wrong, in words a payer can act on)."""
    text = text.strip()
    if not text.lower().startswith(PREFIX):
        raise UserError(f"not an invoice: an invoice starts with {PREFIX!r}")
    body = text[len(PREFIX) :].upper()
    if len(body) > MAX_INVOICE_TEXT:
        raise UserError(f"not an invoice: longer than any invoice ({len(text)} characters)")
    try:
        raw = base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        raise UserError(
            "malformed invoice: not base32 after 'p2pc1' (cut short or mistyped?)"
        ) from None
    try:
        envelope = _Envelope.from_wire(unpack(raw, max_len=MAX_INVOICE_BYTES + 128), "invoice")
        invoice = Invoice.from_wire(unpack(envelope.data, max_len=MAX_INVOICE_BYTES), "invoice")
    except (ValueError, RemoteProtocolError):
        raise UserError(
            "malformed invoice: its contents do not decode (cut short or mistyped?)"
        ) from None
    if not is_valid(invoice.payee, SigningTag.INVOICE, envelope.data, envelope.signature):
        raise UserError("the invoice is not signed by its payee (altered after it was made?)")
    try:
        invoice.hints()
    except (ValueError, RemoteProtocolError):
        raise UserError("malformed invoice: its route hints do not decode") from None
    return invoice


def decode_invoice(text: str, chain_id: ChainId) -> Invoice:
    """Parse and check an invoice string for this chain (`UserError` with the reason)."""
    invoice = parse_invoice(text)
    if invoice.chain_id != chain_id:
        raise UserError(
            f"the invoice is for another network (chain {invoice.chain_id.hex()[:16]}…, "
            f"ours is {chain_id.hex()[:16]}…)"
        )
    return invoice
