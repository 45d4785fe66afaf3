"""Incoming locks: read what each asks of us, and hand it to the payee or the mediator.

A lock's payload is either a direct payload (`wire.hop_payload`: our channel partner pays us)
or an onion (`crypto.sphinx`, exactly `ONION_SIZE` bytes: a payment routed over hops). We peel
an onion with our X25519 key and the lock's secrethash as associated data: tampering fails its
MAC. A peeled onion's shared secret is remembered (as a replay tag) until the lock's expiry, and
a second lock bringing the same onion is refused, also after a restart (`PersistOnion`). The
layer we find says either "you are the payee" (`Final`) or "pass it on" (`Onward`).

A lock we cannot read is failed: with an encrypted failure for the payer when we could derive
the onion's shared secret (our own reason, sealed), else without one (the hop before us then
seals its own).
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from p2pchan.crypto.sphinx import ONION_SIZE, peel_onion
from p2pchan.crypto.sphinx_failure import failure_packet
from p2pchan.errors import RemoteProtocolError
from p2pchan.types import ChannelId, Secret
from p2pchan.wire.hop_payload import HopPayload
from p2pchan.wire.locks import HeldLock
from p2pchan.wire.onion_payload import (
    FailureCode,
    FailureMessage,
    FinalPayload,
    ForwardPayload,
    decode_payload,
)

REPLAY_TAG_SIZE = 16


class Final(NamedTuple):
    """We are the payee: the amount and expiry the payer meant for us, and (a spontaneous
    payment) the secret. `shared_secret`: the onion's, if it came through one."""

    amount: int
    expiration: int
    secret: Secret | None
    shared_secret: bytes | None
    replay_tag: bytes | None


class Onward(NamedTuple):
    """We are asked to forward: lock `payload.amount` towards `payload.next_node`, expiring at
    `payload.expiration_block`, carrying `packet` (the onion for the next hop)."""

    payload: ForwardPayload
    packet: bytes
    shared_secret: bytes
    replay_tag: bytes


class Unreadable(NamedTuple):
    reason: str
    failure: bytes | None  # sealed for the payer, when we could derive the shared secret


def replay_tag(shared_secret: bytes) -> bytes:
    """What we keep of a peeled onion to know it again (not the secret itself)."""
    return hashlib.blake2b(shared_secret, digest_size=REPLAY_TAG_SIZE).digest()


def read(held: HeldLock, x25519_key: bytes, seen: dict[bytes, int]) -> Final | Onward | Unreadable:
    """What `held`'s payload asks of us. A replay (its onion in `seen`) is `Unreadable`."""
    if len(held.payload) != ONION_SIZE:
        try:
            direct = HopPayload.decode(held.payload)
        except RemoteProtocolError as error:
            return Unreadable(f"unreadable payload: {error}", None)
        return Final(direct.amount, direct.expiration_block, direct.secret, None, None)
    try:
        peeled = peel_onion(held.payload, x25519_key, held.secrethash)
    except RemoteProtocolError as error:
        return Unreadable(f"bad onion: {error}", None)
    tag = replay_tag(peeled.shared_secret)
    if tag in seen:
        # Sealing a second failure under one shared secret would leak: fail it bare.
        return Unreadable("a replayed onion", None)
    try:
        payload = decode_payload(peeled.payload)
    except RemoteProtocolError as error:
        return Unreadable(f"bad onion payload: {error}", bad_payload(peeled.shared_secret))
    if isinstance(payload, FinalPayload) and peeled.next_packet is None:
        return Final(
            payload.amount, payload.expiration_block, payload.secret, peeled.shared_secret, tag
        )
    if isinstance(payload, ForwardPayload) and peeled.next_packet is not None:
        return Onward(payload, peeled.next_packet, peeled.shared_secret, tag)
    return Unreadable(
        "the onion's payload does not fit its place", bad_payload(peeled.shared_secret)
    )


def shared_secret_of(held: HeldLock, x25519_key: bytes) -> bytes | None:
    """The shared secret of the onion `held` carries, peeled again (a lock read before: its
    replay tag is known, and it is not checked here); None for a direct payload or an onion
    that does not peel."""
    if len(held.payload) != ONION_SIZE:
        return None
    try:
        return peel_onion(held.payload, x25519_key, held.secrethash).shared_secret
    except RemoteProtocolError:
        return None


def sealed(
    shared_secret: bytes,
    code: FailureCode,
    channel_id: ChannelId | None = None,
    update: bytes = b"",
) -> bytes:
    """Our own failure, sealed for the payer (`update`: our current signed channel_update, for
    a failure about fees or limits)."""
    return failure_packet(shared_secret, FailureMessage(code, channel_id, update).encode())


def bad_payload(shared_secret: bytes) -> bytes:
    return sealed(shared_secret, FailureCode.BAD_PAYLOAD)
