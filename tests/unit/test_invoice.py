"""Invoices as a payer meets them: one that round-trips, and each way one can be wrong
(not an invoice, cut short, mistyped, altered, for another network) refused with words that
say which."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest

from p2pchan.core.invoice import (
    PREFIX,
    Invoice,
    RouteHint,
    decode_invoice,
    encode_invoice,
    encode_route_hints,
    parse_invoice,
)
from p2pchan.crypto.keys import Identity
from p2pchan.crypto.signing import SigningTag
from p2pchan.errors import UserError
from p2pchan.types import ChainId, ChannelId, SecretHash
from p2pchan.wire.codec import pack

PAYEE = Identity(b"p" * 32)
CHAIN = ChainId(b"c" * 32)
INVOICE = Invoice(
    CHAIN, PAYEE.node_id, 1000, SecretHash(b"h" * 32), 1_700_000_000_000, 3600, 11, "tea", b""
)


def test_an_invoice_round_trips_and_is_checked_against_our_chain() -> None:
    text = encode_invoice(PAYEE, INVOICE)
    assert text.startswith(PREFIX)
    assert parse_invoice(text) == INVOICE == decode_invoice(f"  {text.upper()}\n", CHAIN)
    with pytest.raises(UserError, match=r"for another network \(chain 6363636363636363…"):
        decode_invoice(text, ChainId(b"d" * 32))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("lnbc1500n1xyz", "not an invoice: an invoice starts with 'p2pc1'"),
        ("p2pc1qqqq", "malformed invoice: its contents do not decode (cut short or mistyped?)"),
        ("p2pc1!!!!", "malformed invoice: not base32 after 'p2pc1' (cut short or mistyped?)"),
        ("p2pc1" + "a" * 5000, "not an invoice: longer than any invoice"),
    ],
)
def test_garbage_is_refused_with_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(UserError) as refused:
        parse_invoice(text)
    assert str(refused.value).startswith(reason)


def test_a_cut_short_or_altered_invoice_is_refused() -> None:
    text = encode_invoice(PAYEE, INVOICE)
    for cut in (len(text) - 1, len(text) // 2, len(PREFIX) + 3):
        with pytest.raises(UserError, match=r"malformed invoice: .*cut short or mistyped"):
            parse_invoice(text[:cut])
    # Signed data with a signature that is not the payee's.
    data = pack(INVOICE.to_wire())
    envelope = pack([data, Identity(b"m" * 32).sign(SigningTag.INVOICE, data)])
    forged = PREFIX + base64.b32encode(envelope).decode().rstrip("=").lower()
    with pytest.raises(UserError, match="not signed by its payee"):
        parse_invoice(forged)


def test_route_hints_round_trip_and_malformed_ones_are_refused() -> None:
    hints = (RouteHint(Identity(b"q" * 32).node_id, ChannelId(b"x" * 32), 1, 100),)
    hinted = replace(INVOICE, route_hints=encode_route_hints(hints))
    assert parse_invoice(encode_invoice(PAYEE, hinted)).hints() == hints
    for garbage in (b"\x91\x01", pack([[[b"short", b"x" * 32, 1, 1]]]), pack([[1] * 4] * 4)):
        broken = replace(INVOICE, route_hints=garbage)
        with pytest.raises(UserError, match="route hints do not decode"):
            parse_invoice(encode_invoice(PAYEE, broken))
