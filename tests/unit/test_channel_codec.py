"""The stored form of a channel: what is written comes back exactly, and an unreadable blob is a
clear StoreError, never a half-read channel. (The channel state machine round-trips random
states through the codec on every simulated crash; these are the fixed cases.)"""

from __future__ import annotations

from dataclasses import replace

import pytest

from p2pchan.core.channel import chain as channel_chain
from p2pchan.core.channel.state import Channel, ChannelStatus
from p2pchan.errors import StoreError
from p2pchan.storage.channel_codec import FORMAT_VERSION, decode_channel, encode_channel
from p2pchan.wire.codec import pack, unpack
from tests.unit.channel_helpers import Pair


def stored(channel: Channel) -> Channel:
    """What the store keeps: all but locks queued in memory for the next update (nothing was
    promised about them yet; a restart fails their payments)."""
    return replace(channel, ours=replace(channel.ours, queued_locks=()))


def busy_pair() -> Pair:
    """Locks both ways, acked and in flight, a known secret, and a lock still queued."""
    pair = Pair.open()
    pair.queue("a", pair.lock(100, 1), pair.lock(40, 2))
    pair.flush("a")
    pair.reveal("b", 1)
    pair.queue("b", pair.lock(30, 3))
    pair.flush("b")
    pair.queue("a", pair.lock(25, 4))
    assert pair.next_update("a") is not None  # stays in flight
    assert pair.a.ours.queued_locks
    return pair


def test_a_channel_with_locks_both_ways_and_an_update_in_flight_comes_back_exactly() -> None:
    pair = busy_pair()
    for channel in (pair.a, pair.b):
        assert channel.ours.in_flight or channel.theirs.accepted.locks
        assert decode_channel(encode_channel(channel)) == stored(channel)


def test_the_closing_state_comes_back_exactly() -> None:
    pair = busy_pair()
    closing = replace(
        pair.a.moved_to(ChannelStatus.CLOSING), close_requested=True, close_cheat=True
    )
    assert decode_channel(encode_channel(closing)) == stored(closing)
    closed, _ = channel_chain.on_closed(pair.b, pair.a.us, 40, 1, 2)
    restored = decode_channel(encode_channel(closed))
    assert restored == closed
    assert (restored.chain_nonce_ours, restored.chain_nonce_theirs) == (1, 2)


def test_a_blob_of_another_format_is_refused_by_name() -> None:
    value = unpack(encode_channel(Pair.open().a), max_len=1 << 20)
    value[0] = FORMAT_VERSION + 1
    with pytest.raises(StoreError, match=f"unknown channel format {FORMAT_VERSION + 1}"):
        decode_channel(pack(value))


@pytest.mark.parametrize(
    "blob",
    [b"", b"\xc1", pack([FORMAT_VERSION]), pack({"not": "a list"}), pack([FORMAT_VERSION, 1, 2])],
)
def test_garbage_is_a_store_error(blob: bytes) -> None:
    with pytest.raises(StoreError, match="a stored channel is unreadable"):
        decode_channel(blob)


def test_a_truncated_blob_is_a_store_error() -> None:
    blob = encode_channel(busy_pair().a)
    for cut in (1, len(blob) // 2, len(blob) - 1):
        with pytest.raises(StoreError):
            decode_channel(blob[:cut])
