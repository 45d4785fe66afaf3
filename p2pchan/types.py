"""Identifier and amount types shared by every layer.

Ids are raw bytes inside the library and lowercase hex at the edges (CLI, JSON, logs). Amounts and
heights are unsigned 64-bit integers; `check_u64` is the one place that range is enforced for
values we compute ourselves (decoded values are checked by `p2pchan.wire.fields`).
"""

from __future__ import annotations

import json
import re
from typing import NewType

from p2pchan.errors import UserError

Address = NewType("Address", bytes)
"""A layer-1 account: a 32-byte Ed25519 public key."""

NodeId = NewType("NodeId", Address)
"""A node's identity; the same key is its layer-1 account."""

ChainId = NewType("ChainId", bytes)
ChannelId = NewType("ChannelId", bytes)
BlockHash = NewType("BlockHash", bytes)
TxHash = NewType("TxHash", bytes)
Secret = NewType("Secret", bytes)
SecretHash = NewType("SecretHash", bytes)
Locksroot = NewType("Locksroot", bytes)
Signature = NewType("Signature", bytes)
PlasmaId = NewType("PlasmaId", bytes)
"""A child chain on layer 1, derived from its creating transaction like a channel id."""

Amount = NewType("Amount", int)
BlockHeight = NewType("BlockHeight", int)
Nonce = NewType("Nonce", int)

U64_MAX = 2**64 - 1
HASH_SIZE = 32
KEY_SIZE = 32
SIGNATURE_SIZE = 64


def fits_u64(value: int) -> bool:
    return 0 <= value <= U64_MAX


def parse_hex(text: str, *, size: int, what: str) -> bytes:
    """Parse a lowercase or uppercase hex id of exactly `size` bytes, for user input."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise UserError(f"{what} is not hex: {text!r}") from None
    if len(raw) != size:
        raise UserError(f"{what} must be {size} bytes ({2 * size} hex digits), got {len(raw)}")
    return raw


def parse_address(text: str, what: str = "account") -> Address:
    return Address(parse_hex(text, size=KEY_SIZE, what=what))


def parse_amount(text: str | int, what: str = "amount") -> Amount:
    """Parse a non-negative integer amount that fits in u64, for user input."""
    if isinstance(text, bool):
        raise UserError(f"{what} must be an integer")
    if isinstance(text, int):
        value = text
    elif not isinstance(text, str):
        raise UserError(f"{what} must be an integer, got {type(text).__name__}")
    else:
        try:
            value = int(text, 10)
        except ValueError:
            raise UserError(f"{what} must be an integer, got {text!r}") from None
    if not fits_u64(value):
        raise UserError(f"{what} must be between 0 and {U64_MAX}, got {value}")
    return Amount(value)


_DIGITS = re.compile(r"[0-9]+")


def _amount_error(what: str, shown: str) -> UserError:
    return UserError(f"{what} must be a whole number from 1 to {U64_MAX}, got {shown}")


def parse_positive_amount(text: str, what: str = "amount") -> Amount:
    """A payment, deposit or grant typed by the operator: decimal digits, 1 to u64.

    Negative, zero, fractional, too large and garbled amounts all get the same message, so the
    rule is learnt at once whatever the mistake (`-5`, `0`, `1.5`, `2**64`, `5x`).
    """
    if len(text) > len(str(U64_MAX)) or not _DIGITS.fullmatch(text) or not 0 < int(text) <= U64_MAX:
        raise _amount_error(what, text if len(text) <= 40 else text[:40] + "…")
    return Amount(int(text))


def positive_amount(value: object, what: str = "amount") -> Amount:
    """The same rule for an amount read from JSON (a batch file, an RPC call): an integer, not
    a string, float or boolean that looks like one (`"10"`, `10.0`, `true` are refused)."""
    if type(value) is not int or not 0 < value <= U64_MAX:
        try:
            shown = json.dumps(value)
        except (TypeError, ValueError):
            shown = type(value).__name__
        raise _amount_error(what, shown)
    return Amount(value)


def short_hex(raw: bytes) -> str:
    """A wide id as people read it in one line of text: both ends, `8218798c…e9af20`."""
    text = raw.hex()
    return text if len(text) <= 15 else f"{text[:8]}…{text[-6:]}"
