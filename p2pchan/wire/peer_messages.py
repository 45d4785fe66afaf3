"""Messages between peers, sent inside Noise frames (body ≤ 65535 bytes).

Each is `[type_id, ...fields]` with ids from `PeerType`, never reused. Unknown even ids end the
connection; unknown odd ids are skipped. Channel and gossip messages join this registry as they
are built.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from p2pchan.crypto.transport import MAX_BODY_SIZE
from p2pchan.types import ChainId
from p2pchan.wire.codec import MessageRegistry
from p2pchan.wire.fields import BYTES32, U16, Bytes, Text
from p2pchan.wire.records import Record, wire

PROTOCOL_VERSION = 1
MAX_FEATURES = 64
PONG_SUPPRESSED = 65532  # a ping asking for at least this many bytes wants no pong


@enum.unique
class PeerType(enum.IntEnum):
    INIT = 16
    PING = 18
    PONG = 20
    GOODBYE = 22
    # channels (p2pchan/wire/channel_messages.py)
    LOCKED_TRANSFER = 32
    UNLOCK = 34
    LOCK_EXPIRED = 36
    LOCK_REMOVED = 38
    PROCESSED = 40
    ERROR = 42
    LOCK_FAILED = 44
    REVEAL_SECRET = 46
    CHANNEL_SYNC = 48
    SETTLE_REQUEST = 50
    SETTLE_RESPONSE = 52
    # gossip (p2pchan/wire/gossip_messages.py)
    CHANNEL_ANNOUNCEMENT = 64
    ANNOUNCEMENT_SIGNATURE = 66
    CHANNEL_UPDATE = 68
    NODE_ANNOUNCEMENT = 70
    GOSSIP_FILTER = 72
    GOSSIP_BATCH = 74
    # Plasma (p2pchan/wire/plasma_messages.py): odd, so a peer without Plasma skips them
    PLASMA_CONFIRMATIONS = 81
    PLASMA_CONFIRMATIONS_REQUEST = 83


PEER_MESSAGES = MessageRegistry("peer", PeerType, max_message_size=MAX_BODY_SIZE)


class PeerMessage(Record):
    __slots__ = ()


@PEER_MESSAGES.message(PeerType.INIT)
@dataclass(frozen=True, slots=True)
class Init(PeerMessage):
    """Sent by both sides right after the handshake, without waiting for the other's."""

    version: int = wire(U16)
    chain_id: ChainId = wire(BYTES32)
    features: bytes = wire(Bytes(max_size=MAX_FEATURES))


@PEER_MESSAGES.message(PeerType.PING)
@dataclass(frozen=True, slots=True)
class Ping(PeerMessage):
    """Keep-alive. The receiver answers with a pong of `pong_length` bytes of padding, unless
    `pong_length` ≥ 65532 (a ping that only pads the line)."""

    pong_length: int = wire(U16)
    padding: bytes = wire(Bytes(max_size=MAX_BODY_SIZE - 16))


@PEER_MESSAGES.message(PeerType.PONG)
@dataclass(frozen=True, slots=True)
class Pong(PeerMessage):
    padding: bytes = wire(Bytes(max_size=MAX_BODY_SIZE - 16))


@PEER_MESSAGES.message(PeerType.GOODBYE)
@dataclass(frozen=True, slots=True)
class Goodbye(PeerMessage):
    """A clean disconnect (shutdown, or a reason the other side should see in its logs)."""

    reason: str = wire(Text(256))
