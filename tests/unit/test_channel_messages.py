"""Strict decoding of the hot-path channel formats: a locked_transfer's flat lock list and the
hop payload each lock carries. Anything malformed is a RemoteProtocolError, never accepted.
(Integers above u64 cannot even be encoded in msgpack, so negatives cover the range checks.)"""

from __future__ import annotations

import pytest

from p2pchan.errors import RemoteProtocolError
from p2pchan.types import ChannelId, Secret, SecretHash
from p2pchan.wire.balance_proof import SignedBalanceProof
from p2pchan.wire.channel_messages import MAX_LOCKS_PER_MESSAGE, MAX_PAYLOAD, LockedTransfer
from p2pchan.wire.codec import pack
from p2pchan.wire.hop_payload import HopPayload
from p2pchan.wire.locks import HeldLock, Lock
from p2pchan.wire.peer_messages import PEER_MESSAGES, PeerType

CHANNEL = ChannelId(bytes(32))
PROOF = SignedBalanceProof(b"\x90", bytes(64), None)
GOOD = [5, 100, bytes(32), b"payload"]


def transfer_with(locks: object) -> bytes:
    return pack([int(PeerType.LOCKED_TRANSFER), CHANNEL, PROOF.to_wire(), locks])


def test_a_locked_transfer_round_trips_with_its_locks_in_order() -> None:
    locks = tuple(
        HeldLock(Lock(i + 1, 50 + i, SecretHash(bytes([i]) * 32)), b"p") for i in range(3)
    )
    message = LockedTransfer(CHANNEL, PROOF, locks)
    decoded = PEER_MESSAGES.decode(PEER_MESSAGES.encode(message))
    assert decoded == message
    assert [held.secrethash for held in decoded.locks] == [h.secrethash for h in locks]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "lock",
    [
        [True, 100, bytes(32), b""],  # a bool is not an amount
        [5.0, 100, bytes(32), b""],  # nor a float
        [-1, 100, bytes(32), b""],
        [5, -1, bytes(32), b""],
        [5, 100, bytes(31), b""],  # a secrethash is 32 bytes
        [5, 100, "x" * 32, b""],
        [5, 100, bytes(32), b"x" * (MAX_PAYLOAD + 1)],
        [5, 100, bytes(32), "payload"],
        [5, 100, bytes(32)],  # a field short
        [5, 100, bytes(32), b"", b""],  # a field too many
        {"amount": 5},
        [[5, 100, bytes(32)], b""],  # the old nested layout
    ],
)
def test_a_malformed_lock_is_refused(lock: object) -> None:
    with pytest.raises(RemoteProtocolError):
        PEER_MESSAGES.decode(transfer_with([GOOD, lock]))


def test_more_locks_than_a_message_may_carry_are_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        PEER_MESSAGES.decode(transfer_with([GOOD] * (MAX_LOCKS_PER_MESSAGE + 1)))


def test_a_hop_payload_round_trips() -> None:
    for secret in (None, Secret(bytes(range(32)))):
        payload = HopPayload(1, 7, 99, secret)
        assert HopPayload.decode(payload.encode()) == payload


@pytest.mark.parametrize(
    "value",
    [
        [2, 7, 99, None],  # unknown version
        [True, 7, 99, None],
        [1, True, 99, None],
        [1, 7, -1, None],
        [1, 7, 99, bytes(31)],
        [1, 7, 99, "secret"],
        [1, 7, 99],
        {"version": 1},
    ],
)
def test_a_malformed_hop_payload_is_refused(value: object) -> None:
    with pytest.raises(RemoteProtocolError):
        HopPayload.decode(pack(value))
