"""Gossip messages: how every node learns the channel graph from its peers.

Three kinds flood the network: `channel_announcement` (a layer-1 channel and its two nodes,
signed by both), `channel_update` (one direction's fees, limits and disabled flag, signed by its
forwarding node) and `node_announcement` (alias and addresses). Two stay between direct peers:
`announcement_signature` (one partner's half of an announcement) and `gossip_filter` ("send me
everything newer than this", on connect). `gossip_batch` carries many flooded messages in one
frame: a flood of a hundred updates to five peers is five frames, not five hundred.

Signed bytes. An announcement's are `pack([chain_id, channel_id, node1, node2])`, rebuilt by the
verifier from the message and its own chain id; msgpack has one encoding of four 32-byte strings,
so the rebuilt bytes are the ones signed. An update or node announcement carries its signed
bytes (`data`, as `SignedBalanceProof` does): the verifier checks the bytes it received and
reads the fields from them. Those bytes must also be the canonical encoding of their fields, so
one content has one byte form (no malleable duplicates).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

from p2pchan.crypto.keys import Identity
from p2pchan.crypto.signing import SigningTag, is_valid
from p2pchan.crypto.transport import MAX_BODY_SIZE
from p2pchan.errors import LocalProtocolError, RemoteProtocolError
from p2pchan.types import ChainId, ChannelId, NodeId
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.fields import BOOL, BYTES32, SIGNATURE, U32, U64, Bytes, ListOf, fail
from p2pchan.wire.peer_messages import PEER_MESSAGES, PeerMessage, PeerType
from p2pchan.wire.records import Record, wire

MAX_ALIAS = 32  # characters
MAX_ADDRESSES = 4
MAX_HOST = 253  # a DNS name's limit
MAX_UPDATE_DATA = 160  # the canonical encoding is 145 bytes at most
MAX_NODE_DATA = 2048  # 32 four-byte characters and four 259-character addresses fit
MAX_BATCH_MESSAGES = 1024
_BATCH_OVERHEAD = 8  # [type_id, [...]]: two array headers and the id, rounded up


# -- field validators ---------------------------------------------------------------------


class Printable:
    """A string of at most `max_len` printable characters (no control characters: aliases are
    shown in terminals)."""

    __slots__ = ("max_len",)
    plain = True

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def check(self, value: object, path: str) -> str:
        if type(value) is not str:
            raise fail(path, "str", value)
        if len(value) > self.max_len:
            raise RemoteProtocolError(f"field {path}: {len(value)} chars, at most {self.max_len}")
        if not value.isprintable():
            raise RemoteProtocolError(f"field {path}: control characters are not allowed")
        return value

    def to_wire(self, value: str) -> str:
        return value


class HostPort:
    """A `host:port` address: a printable host of at most 253 characters without spaces
    (a name, an IPv4 address or a bracketed IPv6 one), and a decimal port 1-65535."""

    __slots__ = ()
    plain = True

    def check(self, value: object, path: str) -> str:
        if type(value) is not str:
            raise fail(path, "str", value)
        host, colon, port = value.rpartition(":")
        if (
            not colon
            or not host
            or len(host) > MAX_HOST
            or not host.isprintable()
            or " " in host
            or not (port.isascii() and port.isdigit() and len(port) <= 5)
            or not 1 <= int(port) <= 65535
        ):
            raise RemoteProtocolError(f"field {path}: expected host:port, got {value[:40]!r}")
        return value

    def to_wire(self, value: str) -> str:
        return value


ALIAS = Printable(MAX_ALIAS)
ADDRESSES = ListOf(HostPort(), MAX_ADDRESSES)


# -- signed payloads ----------------------------------------------------------------------


def announcement_data(
    chain_id: ChainId, channel_id: ChannelId, node1: NodeId, node2: NodeId
) -> bytes:
    """What both nodes of a channel sign (tag `CHANNEL_ANNOUNCEMENT`) to announce it."""
    return pack([chain_id, channel_id, node1, node2])


@dataclass(frozen=True, slots=True)
class ChannelUpdateBody(Record):
    """One direction's policy: `from_node` forwards over `channel_id` at these fees and limits."""

    chain_id: ChainId = wire(BYTES32)
    channel_id: ChannelId = wire(BYTES32)
    from_node: NodeId = wire(BYTES32)
    timestamp_ms: int = wire(U64)
    fee_base: int = wire(U64)
    fee_ppm: int = wire(U32)
    min_amount: int = wire(U64)
    max_amount: int = wire(U64)
    disabled: bool = wire(BOOL)


@dataclass(frozen=True, slots=True)
class NodeAnnouncementBody(Record):
    chain_id: ChainId = wire(BYTES32)
    node_id: NodeId = wire(BYTES32)
    timestamp_ms: int = wire(U64)
    alias: str = wire(ALIAS)
    addresses: tuple[str, ...] = wire(ADDRESSES)


@dataclass(frozen=True, slots=True)
class _Envelope(Record):
    """How an update or node announcement travels: its signed bytes and the signature."""

    data: bytes = wire(Bytes(max_size=MAX_NODE_DATA))
    signature: bytes = wire(SIGNATURE)


B = TypeVar("B", bound=Record)


def _open_envelope(
    value: object, path: str, body_type: type[B], max_data: int
) -> tuple[bytes, bytes, B]:
    envelope = _Envelope.from_wire(value, path)
    data = envelope.data
    if len(data) > max_data:
        raise RemoteProtocolError(f"field {path}.data: {len(data)} bytes, at most {max_data}")
    try:
        value = unpack(data, max_len=max_data)
    except RemoteProtocolError as error:
        raise RemoteProtocolError(f"field {path}.data: {error}") from None
    body = body_type.from_wire(value, f"{path}.data")
    if pack(body.to_wire()) != data:
        raise RemoteProtocolError(f"field {path}.data: not the canonical encoding")
    return data, envelope.signature, body


# -- messages -----------------------------------------------------------------------------


class GossipMessage(PeerMessage):
    __slots__ = ()
    TYPE_ID: ClassVar[int]  # set by the registry


class FloodMessage(GossipMessage):
    """A message relayed to every peer: an announcement or an update."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _AnnouncementFields(Record):
    channel_id: ChannelId = wire(BYTES32)
    node1: NodeId = wire(BYTES32)
    node2: NodeId = wire(BYTES32)
    signature1: bytes = wire(SIGNATURE)
    signature2: bytes = wire(SIGNATURE)


@PEER_MESSAGES.message(PeerType.CHANNEL_ANNOUNCEMENT)
@dataclass(frozen=True, slots=True)
class ChannelAnnouncement(FloodMessage):
    """A layer-1 channel between `node1 < node2`, signed by both over `announcement_data`.
    Its capacity is not in it: every receiver reads that from layer 1."""

    channel_id: ChannelId
    node1: NodeId
    node2: NodeId
    signature1: bytes
    signature2: bytes

    def to_wire(self) -> list[Any]:
        return [self.channel_id, self.node1, self.node2, self.signature1, self.signature2]

    @classmethod
    def from_wire(cls, value: object, path: str | None = None) -> Self:
        where = path or cls.__name__
        fields = _AnnouncementFields.from_wire(value, where)
        if not fields.node1 < fields.node2:
            raise RemoteProtocolError(f"{where}: node1 must sort before node2")
        return cls(
            fields.channel_id, fields.node1, fields.node2, fields.signature1, fields.signature2
        )

    def signatures_valid(self, chain_id: ChainId) -> bool:
        data = announcement_data(chain_id, self.channel_id, self.node1, self.node2)
        tag = SigningTag.CHANNEL_ANNOUNCEMENT
        return is_valid(self.node1, tag, data, self.signature1) and is_valid(
            self.node2, tag, data, self.signature2
        )


@PEER_MESSAGES.message(PeerType.ANNOUNCEMENT_SIGNATURE)
@dataclass(frozen=True, slots=True)
class AnnouncementSignature(GossipMessage):
    """One partner's signature of its channel's announcement, sent to the other partner (only)
    once the channel is usable, so either can combine the two halves."""

    channel_id: ChannelId = wire(BYTES32)
    signature: bytes = wire(SIGNATURE)


@PEER_MESSAGES.message(PeerType.CHANNEL_UPDATE)
@dataclass(frozen=True, slots=True)
class ChannelUpdate(FloodMessage):
    """A signed `ChannelUpdateBody`: `data` is its exact signed bytes, `body` read from them."""

    data: bytes
    signature: bytes
    body: ChannelUpdateBody = field(compare=False, repr=False)

    def to_wire(self) -> list[Any]:
        return [self.data, self.signature]

    @classmethod
    def from_wire(cls, value: object, path: str | None = None) -> Self:
        data, signature, body = _open_envelope(
            value, path or cls.__name__, ChannelUpdateBody, MAX_UPDATE_DATA
        )
        return cls(data, signature, body)

    def signature_valid(self) -> bool:
        return is_valid(self.body.from_node, SigningTag.CHANNEL_UPDATE, self.data, self.signature)


@PEER_MESSAGES.message(PeerType.NODE_ANNOUNCEMENT)
@dataclass(frozen=True, slots=True)
class NodeAnnouncement(FloodMessage):
    """A signed `NodeAnnouncementBody`, carried as its exact signed bytes like an update."""

    data: bytes
    signature: bytes
    body: NodeAnnouncementBody = field(compare=False, repr=False)

    def to_wire(self) -> list[Any]:
        return [self.data, self.signature]

    @classmethod
    def from_wire(cls, value: object, path: str | None = None) -> Self:
        data, signature, body = _open_envelope(
            value, path or cls.__name__, NodeAnnouncementBody, MAX_NODE_DATA
        )
        return cls(data, signature, body)

    def signature_valid(self) -> bool:
        return is_valid(self.body.node_id, SigningTag.NODE_ANNOUNCEMENT, self.data, self.signature)


@PEER_MESSAGES.message(PeerType.GOSSIP_FILTER)
@dataclass(frozen=True, slots=True)
class GossipFilter(GossipMessage):
    """Sent on connect: send me every update and node announcement with a timestamp above
    `since_ms`, each with its channel's announcement (0: everything)."""

    since_ms: int = wire(U64)


_FLOOD_TYPES = frozenset(
    {PeerType.CHANNEL_ANNOUNCEMENT, PeerType.CHANNEL_UPDATE, PeerType.NODE_ANNOUNCEMENT}
)
_KNOWN_TYPES = frozenset(int(type_id) for type_id in PeerType)


class FloodList:
    """The messages of a batch: flooded kinds only (no batch in a batch, nothing between
    partners only); unknown odd ids are skipped, for gossip kinds added later."""

    __slots__ = ()
    plain = False

    def check(self, value: object, path: str) -> tuple[FloodMessage, ...]:
        if type(value) is not list or len(value) > MAX_BATCH_MESSAGES:
            raise RemoteProtocolError(f"field {path}: a list of at most {MAX_BATCH_MESSAGES}")
        messages: list[FloodMessage] = []
        for index, item in enumerate(value):
            where = f"{path}[{index}]"
            # Look at the id before decoding, so a nested batch is refused without recursing.
            if type(item) is not list or not item or type(item[0]) is not int:
                raise RemoteProtocolError(f"field {where}: expected [type_id, ...]")
            type_id = item[0]
            if type_id > 0 and type_id % 2 == 1 and type_id not in _KNOWN_TYPES:
                continue
            if type_id not in _FLOOD_TYPES:
                raise RemoteProtocolError(f"field {where}: type {type_id} is not flooded gossip")
            message = PEER_MESSAGES.decode_value(item, where)
            assert isinstance(message, FloodMessage)
            messages.append(message)
        return tuple(messages)

    def to_wire(self, value: tuple[FloodMessage, ...]) -> list[Any]:
        return [_message_wire(message) for message in value]


@PEER_MESSAGES.message(PeerType.GOSSIP_BATCH)
@dataclass(frozen=True, slots=True)
class GossipBatch(GossipMessage):
    """Flooded messages in one frame, handled in order as if sent one by one."""

    messages: tuple[FloodMessage, ...] = wire(FloodList())


# -- building -----------------------------------------------------------------------------


def sign_channel_update(identity: Identity, body: ChannelUpdateBody) -> ChannelUpdate:
    if body.from_node != identity.node_id:
        raise LocalProtocolError("a node signs only updates of its own direction")
    data = pack(body.to_wire())
    return ChannelUpdate(data, identity.sign(SigningTag.CHANNEL_UPDATE, data), body)


def sign_node_announcement(identity: Identity, body: NodeAnnouncementBody) -> NodeAnnouncement:
    if body.node_id != identity.node_id:
        raise LocalProtocolError("a node announces only itself")
    data = pack(body.to_wire())
    return NodeAnnouncement(data, identity.sign(SigningTag.NODE_ANNOUNCEMENT, data), body)


def _message_wire(message: FloodMessage) -> list[Any]:
    return [message.TYPE_ID, *message.to_wire()]


def gossip_batches(messages: Iterable[FloodMessage]) -> list[GossipBatch]:
    """Pack flooded messages, in order, into as few frame-sized batches as they fit."""
    budget = MAX_BODY_SIZE - _BATCH_OVERHEAD
    batches: list[GossipBatch] = []
    current: list[FloodMessage] = []
    size = 0
    for message in messages:
        length = len(pack(_message_wire(message)))
        if current and (size + length > budget or len(current) == MAX_BATCH_MESSAGES):
            batches.append(GossipBatch(tuple(current)))
            current, size = [], 0
        current.append(message)
        size += length
    if current:
        batches.append(GossipBatch(tuple(current)))
    return batches
