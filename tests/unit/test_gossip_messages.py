"""Gossip messages: round trips, the bytes each signature covers, and strict decoding.

Gossip comes from anyone, relayed by anyone: every malformed form must end as a
`RemoteProtocolError` at decoding, before the machine sees it, and no signature may pass for
another chain, another message or another signer.
"""

from __future__ import annotations

from typing import Any

import pytest

from p2pchan.crypto.signing import SigningTag, is_valid
from p2pchan.crypto.transport import MAX_BODY_SIZE
from p2pchan.errors import LocalProtocolError, RemoteProtocolError
from p2pchan.wire.codec import pack
from p2pchan.wire.gossip_messages import (
    MAX_BATCH_MESSAGES,
    AnnouncementSignature,
    ChannelAnnouncement,
    ChannelUpdate,
    ChannelUpdateBody,
    GossipBatch,
    GossipFilter,
    NodeAnnouncement,
    NodeAnnouncementBody,
    announcement_data,
    gossip_batches,
    sign_channel_update,
    sign_node_announcement,
)
from p2pchan.wire.peer_messages import PEER_MESSAGES, PeerType
from tests.unit.gossip_helpers import (
    CHAIN,
    NOW_MS,
    OTHER_CHAIN,
    announcement,
    channel_id,
    identity,
    node_announcement,
    update,
)

ALICE, BOB = identity("alice"), identity("bob")
CHANNEL = channel_id("alice-bob")


def decode(value: list[Any]) -> object:
    return PEER_MESSAGES.decode(pack(value))


def round_trip(message: Any) -> Any:
    decoded = PEER_MESSAGES.decode(PEER_MESSAGES.encode(message))
    assert decoded == message
    assert type(decoded) is type(message)
    return decoded


# -- round trips and signed bytes ---------------------------------------------------------


def test_every_gossip_message_round_trips() -> None:
    signed_update = update(CHANNEL, ALICE)
    node = node_announcement(ALICE, addresses=("127.0.0.1:9735", "[::1]:1", "example.org:65535"))
    round_trip(announcement(CHANNEL, ALICE, BOB))
    round_trip(AnnouncementSignature(CHANNEL, bytes(64)))
    assert round_trip(signed_update).body == signed_update.body
    assert round_trip(node).body == node.body
    round_trip(GossipFilter(0))
    round_trip(GossipFilter(2**64 - 1))
    batch = round_trip(GossipBatch((announcement(CHANNEL, ALICE, BOB), signed_update, node)))
    assert [type(m) for m in batch.messages] == [
        ChannelAnnouncement,
        ChannelUpdate,
        NodeAnnouncement,
    ]


def test_gossip_ids_are_even_so_a_node_that_does_not_know_them_hangs_up() -> None:
    gossip = [t for t in PeerType if 64 <= t < 80]
    assert len(gossip) == 6
    assert all(t % 2 == 0 for t in gossip)


def test_an_announcement_is_signed_by_both_nodes_over_chain_channel_and_nodes() -> None:
    message = announcement(CHANNEL, ALICE, BOB)
    data = pack([CHAIN, CHANNEL, message.node1, message.node2])
    assert data == announcement_data(CHAIN, CHANNEL, message.node1, message.node2)
    tag = SigningTag.CHANNEL_ANNOUNCEMENT
    assert is_valid(message.node1, tag, data, message.signature1)
    assert is_valid(message.node2, tag, data, message.signature2)
    assert message.signatures_valid(CHAIN)
    assert not message.signatures_valid(OTHER_CHAIN)  # no replay on another chain


def test_an_announcement_with_one_half_swapped_or_missing_is_not_valid() -> None:
    message = announcement(CHANNEL, ALICE, BOB)
    other = announcement(channel_id("other"), ALICE, BOB)
    for bad in (
        ChannelAnnouncement(CHANNEL, message.node1, message.node2, message.signature1, bytes(64)),
        ChannelAnnouncement(
            CHANNEL, message.node1, message.node2, message.signature2, message.signature1
        ),
        ChannelAnnouncement(
            CHANNEL, message.node1, message.node2, other.signature1, other.signature2
        ),
    ):
        assert not bad.signatures_valid(CHAIN)


def test_an_update_is_signed_over_the_exact_bytes_it_carries() -> None:
    signed = update(CHANNEL, ALICE, fee_base=7)
    assert signed.data == pack(signed.body.to_wire())
    assert signed.body.chain_id == CHAIN
    assert is_valid(ALICE.node_id, SigningTag.CHANNEL_UPDATE, signed.data, signed.signature)
    assert signed.signature_valid()
    # The signature is the update's, under its own tag: not an announcement's or a node's.
    assert not is_valid(ALICE.node_id, SigningTag.NODE_ANNOUNCEMENT, signed.data, signed.signature)
    other = update(CHANNEL, ALICE, fee_base=8)
    assert not ChannelUpdate(other.data, signed.signature, other.body).signature_valid()


def test_a_node_announcement_is_signed_over_the_exact_bytes_it_carries() -> None:
    signed = node_announcement(ALICE, alias="alice")
    assert signed.signature_valid()
    assert not NodeAnnouncement(signed.data, bytes(64), signed.body).signature_valid()
    assert not is_valid(ALICE.node_id, SigningTag.CHANNEL_UPDATE, signed.data, signed.signature)


def test_a_node_signs_only_its_own_update_and_announcement() -> None:
    body = update(CHANNEL, ALICE).body
    with pytest.raises(LocalProtocolError):
        sign_channel_update(BOB, body)
    node_body = node_announcement(ALICE).body
    with pytest.raises(LocalProtocolError):
        sign_node_announcement(BOB, node_body)


# -- malformed announcements --------------------------------------------------------------


def announcement_wire(**changes: Any) -> list[Any]:
    message = announcement(CHANNEL, ALICE, BOB)
    fields = {
        "channel_id": message.channel_id,
        "node1": message.node1,
        "node2": message.node2,
        "signature1": message.signature1,
        "signature2": message.signature2,
    }
    fields.update(changes)
    return [int(PeerType.CHANNEL_ANNOUNCEMENT), *fields.values()]


@pytest.mark.parametrize(
    "changes",
    [
        {"channel_id": bytes(31)},
        {"channel_id": "ab" * 32},
        {"node1": bytes(33)},
        {"node2": None},
        {"signature1": bytes(63)},
        {"signature2": 5},
    ],
)
def test_a_malformed_announcement_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(announcement_wire(**changes))


def test_an_announcement_must_list_its_nodes_in_order() -> None:
    message = announcement(CHANNEL, ALICE, BOB)
    with pytest.raises(RemoteProtocolError, match="node1 must sort before node2"):
        decode(announcement_wire(node1=message.node2, node2=message.node1))
    with pytest.raises(RemoteProtocolError):
        decode(announcement_wire(node2=message.node1))  # a channel with itself


@pytest.mark.parametrize("count", [4, 6])
def test_an_announcement_with_a_field_missing_or_extra_is_refused(count: int) -> None:
    value = announcement_wire()
    value = value[: 1 + count] if count < 5 else [*value, b""]
    with pytest.raises(RemoteProtocolError):
        decode(value)


def test_a_malformed_announcement_signature_is_refused() -> None:
    for value in ([CHANNEL, bytes(65)], [CHANNEL[:31], bytes(64)], [CHANNEL], [CHANNEL, None]):
        with pytest.raises(RemoteProtocolError):
            decode([int(PeerType.ANNOUNCEMENT_SIGNATURE), *value])


# -- malformed updates and node announcements ---------------------------------------------


def body_wire(**changes: Any) -> list[Any]:
    body = update(CHANNEL, ALICE).body
    fields = dict(zip(body._wire_names, body.to_wire(), strict=True))
    fields.update(changes)
    return list(fields.values())


def update_from(data: bytes, signature: Any = bytes(64)) -> object:
    return decode([int(PeerType.CHANNEL_UPDATE), data, signature])


@pytest.mark.parametrize(
    "changes",
    [
        {"chain_id": bytes(31)},
        {"channel_id": None},
        {"from_node": "alice"},
        {"timestamp_ms": -1},
        {"timestamp_ms": True},
        {"fee_base": 1.0},
        {"fee_ppm": 2**32},  # ppm is a u32
        {"min_amount": -5},
        {"max_amount": "10"},
        {"disabled": 0},  # a flag is a bool, not an int
    ],
)
def test_an_update_whose_signed_fields_are_malformed_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        update_from(pack(body_wire(**changes)))


def test_an_update_whose_data_is_not_one_canonical_array_is_refused() -> None:
    good = pack(body_wire())
    assert isinstance(update_from(good), ChannelUpdate)
    bad_forms = [
        good + b"\x00",  # trailing bytes
        good[:-1],  # truncated
        pack(body_wire()[:-1]),  # a field short
        pack([*body_wire(), False]),  # a field too many
        b"\x81\xa1a\x01",  # a map
        b"\xdc\x00\x09" + good[1:],  # the same array with a 16-bit length: not canonical
        b"",
        b"\xc1",  # never used
    ]
    for data in bad_forms:
        with pytest.raises(RemoteProtocolError):
            update_from(data)


def test_an_update_with_oversized_data_or_a_bad_signature_field_is_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        update_from(pack(body_wire()) + bytes(200))
    with pytest.raises(RemoteProtocolError):
        update_from(pack(body_wire()), bytes(63))
    with pytest.raises(RemoteProtocolError):
        update_from("text")  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError):
        decode([int(PeerType.CHANNEL_UPDATE), pack(body_wire())])


def node_wire(**changes: Any) -> list[Any]:
    body = node_announcement(ALICE).body
    fields = dict(zip(body._wire_names, body.to_wire(), strict=True))
    fields.update(changes)
    return [int(PeerType.NODE_ANNOUNCEMENT), pack(list(fields.values())), bytes(64)]


def test_a_node_announcement_with_limits_filled_round_trips() -> None:
    addresses = ("a" * 253 + ":65535", "[2001:db8::1]:9735", "10.0.0.1:1", "b.example:80")
    signed = node_announcement(ALICE, alias="é" * 32, addresses=addresses)
    assert round_trip(signed).body.addresses == addresses


@pytest.mark.parametrize(
    "changes",
    [
        {"alias": "x" * 33},
        {"alias": "bell\x07"},
        {"alias": "new\nline"},
        {"alias": b"alias"},
        {"addresses": ["127.0.0.1:1"] * 5},
        {"addresses": "127.0.0.1:1"},
        {"addresses": [b"127.0.0.1:1"]},
        {"addresses": ["127.0.0.1"]},  # no port
        {"addresses": [":9735"]},  # no host
        {"addresses": ["127.0.0.1:0"]},
        {"addresses": ["127.0.0.1:65536"]},
        {"addresses": ["127.0.0.1:+80"]},
        {"addresses": ["127.0.0.1:٨٠"]},  # non-ASCII digits
        {"addresses": ["127.0.0.1:000080"]},
        {"addresses": ["evil host:80"]},
        {"addresses": ["tab\thost:80"]},
        {"addresses": ["a" * 254 + ":80"]},
        {"timestamp_ms": -1},
        {"node_id": bytes(31)},
    ],
)
def test_a_malformed_node_announcement_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        decode(node_wire(**changes))


def test_gossip_filter_takes_one_u64() -> None:
    for value in ([-1], [True], [1.5], [], [1, 2], [2**64 - 1, 0]):
        with pytest.raises(RemoteProtocolError):
            decode([int(PeerType.GOSSIP_FILTER), *value])


# -- batches ------------------------------------------------------------------------------


def batch_of(*items: Any) -> object:
    return decode([int(PeerType.GOSSIP_BATCH), list(items)])


def wire_of(message: Any) -> list[Any]:
    return [message.TYPE_ID, *message.to_wire()]


def test_a_batch_skips_unknown_odd_kinds_added_later() -> None:
    signed = update(CHANNEL, ALICE)
    batch = batch_of([1_000_001, "new kind"], wire_of(signed))
    assert isinstance(batch, GossipBatch)
    assert batch.messages == (signed,)


@pytest.mark.parametrize(
    "item",
    [
        [int(PeerType.GOSSIP_BATCH), []],  # no batch in a batch
        [int(PeerType.GOSSIP_FILTER), 0],  # between direct peers only
        [int(PeerType.ANNOUNCEMENT_SIGNATURE), CHANNEL, bytes(64)],
        [int(PeerType.LOCKED_TRANSFER)],  # not gossip at all
        [int(PeerType.PING), 0, b""],
        [1_000_000, "unknown even"],
        [-1],
        [],
        "not a message",
        [True, 1],
    ],
)
def test_a_batch_carries_flooded_gossip_only(item: Any) -> None:
    with pytest.raises(RemoteProtocolError):
        batch_of(wire_of(update(CHANNEL, ALICE)), item)


@pytest.mark.parametrize("depth", [300, 900, 5000])
def test_a_deeply_nested_batch_is_refused_without_recursing(depth: int) -> None:
    # [74, [[74, [[74, ...]]]]]: each level an array of two, the id, an array of one.
    nested = b"\x92" + bytes([PeerType.GOSSIP_BATCH]) + b"\x91"
    with pytest.raises(RemoteProtocolError):
        PEER_MESSAGES.decode(nested * depth + b"\x90")


def test_a_batch_of_more_messages_than_allowed_is_refused() -> None:
    item = [1_000_001]
    with pytest.raises(RemoteProtocolError):
        batch_of(*[item] * (MAX_BATCH_MESSAGES + 1))


def test_a_bad_message_inside_a_batch_is_refused_with_its_position() -> None:
    bad = wire_of(update(CHANNEL, ALICE))
    bad[1] = bad[1] + b"\x00"
    with pytest.raises(RemoteProtocolError, match=r"messages\[1\]"):
        batch_of(wire_of(update(CHANNEL, ALICE)), bad)


def test_gossip_batches_fill_frames_in_order_and_every_frame_encodes() -> None:
    messages: list[Any] = []
    for index in range(600):
        channel = channel_id(f"c{index}")
        messages += [announcement(channel, ALICE, BOB), update(channel, ALICE, NOW_MS + index)]
    messages.append(node_announcement(ALICE, alias="a" * 32, addresses=("h" * 253 + ":1",) * 4))
    batches = gossip_batches(messages)
    assert len(batches) > 1
    assert [m for batch in batches for m in batch.messages] == messages
    for batch in batches:
        assert len(PEER_MESSAGES.encode(batch)) <= MAX_BODY_SIZE
    # Filled: every batch but the last would overflow with the next batch's first message.
    sizes = [len(PEER_MESSAGES.encode(batch)) for batch in batches]
    assert all(size > MAX_BODY_SIZE - 2000 for size in sizes[:-1])


def test_gossip_batches_of_nothing_is_no_batch() -> None:
    assert gossip_batches([]) == []


def test_update_body_holds_what_the_routing_policy_needs() -> None:
    body = ChannelUpdateBody(CHAIN, CHANNEL, ALICE.node_id, NOW_MS, 1, 2, 3, 4, True)
    assert round_trip(sign_channel_update(ALICE, body)).body == body
    node_body = NodeAnnouncementBody(CHAIN, ALICE.node_id, NOW_MS, "", ())
    assert round_trip(sign_node_announcement(ALICE, node_body)).body == node_body
