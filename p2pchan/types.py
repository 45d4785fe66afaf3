"""Identifier and amount types shared by every layer.

Ids are raw bytes inside the library and lowercase hex at the edges (CLI, JSON, logs). Amounts and
heights are unsigned 64-bit integers; `check_u64` is the one place that range is enforced for
values we compute ourselves (decoded values are checked by `p2pchan.wire.fields`).
"""

from __future__ import annotations

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
