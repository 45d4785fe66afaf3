"""The gossip machine's state, its limits, and the records it keeps about our own channels.

`GossipState` is mutable, like the routing graph it keeps in sync: gossip arrives in floods, and
copying tables of thousands of entries per message would cost more than the work itself. Only
the functions of this package write it (`receive.py`, `local.py`, `machine.py`), and each checks
an input completely before writing anything, so a refused input leaves it untouched.

The limits are the protocol's (docs/PROTOCOL.md, "Gossip"): a two-week horizon, ten minutes of
clock skew, a rate per channel direction of one update a minute with a burst of ten, and short,
bounded holding areas for gossip that arrived before what it depends on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from p2pchan.core.routing.graph import ChannelGraph
from p2pchan.errors import UserError
from p2pchan.types import U64_MAX, ChainId, ChannelId, NodeId, fits_u64
from p2pchan.wire.gossip_messages import (
    ChannelAnnouncement,
    ChannelUpdate,
    FloodMessage,
    NodeAnnouncement,
)

MINUTE_MS = 60_000
HORIZON_MS = 14 * 24 * 60 * MINUTE_MS  # updates older than this are pruned
REFRESH_MS = 7 * 24 * 60 * MINUTE_MS  # we re-sign our own updates this old
FUTURE_SKEW_MS = 10 * MINUTE_MS  # timestamps further ahead of our clock are refused
RATE_INTERVAL_MS = MINUTE_MS  # sustained: one update per channel direction (or node) a minute
RATE_BURST = 10  # ... after a burst of this many
HOLD_MS = 30_000  # an update or node announcement waits this long for its channel
# An announcement waits for layer 1 to show its channel this many blocks of our chain view, and
# at least HOLD_MIN_BLOCKS_MS: blocks alone would refuse (and score) an honest peer while our
# view catches up on queued blocks back to back, the channel's block still ahead of us. (Past
# HOLD_MS it is dropped unscored, as any held message: layer 1 gave us no blocks meanwhile.)
HOLD_BLOCKS = 3
HOLD_MIN_BLOCKS_MS = 10_000
MAX_HELD = 1024  # per holding area
MAX_HELD_PER_PEER = 64  # per holding area and peer
MAX_PARTNER_SIGNATURES_PER_PEER = 16
SYNC_INTERVAL_MS = MINUTE_MS  # a peer may ask for a full sync once a session, or once a minute
PRUNE_INTERVAL_MS = MINUTE_MS
SYNC_MARGIN_MS = FUTURE_SKEW_MS  # how far before our newest timestamp we ask peers to start
# Every 5 minutes we ask one connected peer in turn (the one asked longest ago, never one asked
# less than 5 minutes ago) for what we lack, as on connect: a message lost on a long session (it
# expired while held, or a busy node missed it) comes back. Why 5: what we ask for starts 10
# minutes (the skew margin) before our newest timestamp, so a message lost now is still inside
# the window at the next re-sync, with 5 minutes to spare for clocks and holds; and a peer asked
# every 5 minutes at the most stays far from the once-a-minute limit it enforces.
RESYNC_INTERVAL_MS = 5 * MINUTE_MS

UpdateKey = tuple[ChannelId, NodeId]


@dataclass(frozen=True, slots=True)
class GossipConfig:
    chain_id: ChainId
    node_id: NodeId
    horizon_ms: int = HORIZON_MS
    refresh_ms: int = REFRESH_MS
    future_skew_ms: int = FUTURE_SKEW_MS
    rate_interval_ms: int = RATE_INTERVAL_MS
    rate_burst: int = RATE_BURST
    hold_ms: int = HOLD_MS
    hold_blocks: int = HOLD_BLOCKS
    hold_min_blocks_ms: int = HOLD_MIN_BLOCKS_MS
    max_held: int = MAX_HELD
    max_held_per_peer: int = MAX_HELD_PER_PEER
    sync_interval_ms: int = SYNC_INTERVAL_MS
    prune_interval_ms: int = PRUNE_INTERVAL_MS
    resync_interval_ms: int = RESYNC_INTERVAL_MS


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """What we charge to forward over one of our channel directions, and its amount limits."""

    fee_base: int = 1
    fee_ppm: int = 100
    min_amount: int = 1
    max_amount: int = U64_MAX
    disabled: bool = False

    def __post_init__(self) -> None:
        for name in ("fee_base", "min_amount", "max_amount"):
            value = getattr(self, name)
            if type(value) is not int or not fits_u64(value):
                raise UserError(f"{name} must be an integer from 0 to {U64_MAX}, got {value!r}")
        if type(self.fee_ppm) is not int or not 0 <= self.fee_ppm < 2**32:
            raise UserError(f"fee_ppm must be an integer from 0 to {2**32 - 1}")
        if self.min_amount > self.max_amount:
            raise UserError(f"min_amount {self.min_amount} exceeds max_amount {self.max_amount}")


@dataclass(frozen=True, slots=True)
class KnownChannel:
    """An accepted announcement, with what layer 1 said of it and when we accepted it."""

    announcement: ChannelAnnouncement
    capacity: int
    settle_timeout: int
    announced_ms: int


@dataclass(frozen=True, slots=True)
class LocalChannel:
    """One of our channels: our half of its announcement, the partner's once received, and
    our newest signed update of our direction (flooded once the announcement is complete)."""

    channel_id: ChannelId
    partner: NodeId
    our_signature: bytes
    partner_signature: bytes | None
    update: ChannelUpdate

    @property
    def complete(self) -> bool:
        return self.partner_signature is not None


@dataclass(frozen=True, slots=True)
class Held:
    """Gossip waiting for what it depends on; `peer` (None: ours) is scored if it turns out bad.
    `height` is our chain view's height when it came (an announcement waits a few blocks)."""

    message: FloodMessage
    peer: NodeId | None
    received_ms: int
    height: int = 0


K = TypeVar("K")


class HeldQueue(Generic[K]):
    """A bounded holding area, oldest first, at most `per_peer` entries from any one peer."""

    __slots__ = ("_by_peer", "_entries", "limit", "per_peer")

    def __init__(self, limit: int, per_peer: int) -> None:
        self.limit = limit
        self.per_peer = per_peer
        self._entries: dict[K, Held] = {}
        self._by_peer: dict[NodeId | None, int] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    def get(self, key: K) -> Held | None:
        return self._entries.get(key)

    def items(self) -> Iterator[tuple[K, Held]]:
        return iter(list(self._entries.items()))

    def add(self, key: K, held: Held) -> bool:
        """Hold `held` under `key` (replacing what was there); False if there is no room."""
        self.pop(key)
        if len(self._entries) >= self.limit or self._by_peer.get(held.peer, 0) >= self.per_peer:
            return False
        self._entries[key] = held
        self._by_peer[held.peer] = self._by_peer.get(held.peer, 0) + 1
        return True

    def refresh(self, key: K, message: FloodMessage, received_ms: int) -> None:
        """The same `message` came again while it waits: its wait starts again from
        `received_ms` (its holder and peer stay as they were)."""
        held = self._entries.get(key)
        if held is not None and held.message == message and received_ms > held.received_ms:
            del self._entries[key]  # to the end: the entries stay oldest first
            self._entries[key] = replace(held, received_ms=received_ms)

    def pop(self, key: K) -> Held | None:
        held = self._entries.pop(key, None)
        if held is not None:
            left = self._by_peer[held.peer] - 1
            if left:
                self._by_peer[held.peer] = left
            else:
                del self._by_peer[held.peer]
        return held

    def expire(self, before_ms: int) -> list[Held]:
        """Drop and return what was received before `before_ms`."""
        old = [key for key, held in self._entries.items() if held.received_ms < before_ms]
        return [held for key in old if (held := self.pop(key)) is not None]


@dataclass(slots=True)
class Pending:
    """A message waiting in the outbox for the next flush, and the peers it came from (it is
    not sent back to them)."""

    message: FloodMessage
    origins: set[NodeId] = field(default_factory=set)


class GossipState:
    """Everything gossip knows; see the module comment for who writes it."""

    __slots__ = (
        "channels",
        "config",
        "graph",
        "held_announcements",
        "held_nodes",
        "held_updates",
        "last_prune_ms",
        "last_resync_ms",
        "local",
        "node_rates",
        "nodes",
        "outbox",
        "own_node",
        "partner_signatures",
        "sessions",
        "sync_requests",
        "update_rates",
        "updates",
    )

    def __init__(self, config: GossipConfig) -> None:
        self.config = config
        self.graph = ChannelGraph()  # kept in step with channels, updates and nodes
        self.channels: dict[ChannelId, KnownChannel] = {}
        self.updates: dict[UpdateKey, ChannelUpdate] = {}  # the newest per channel direction
        self.nodes: dict[NodeId, NodeAnnouncement] = {}
        # Rate limits: per direction (and per node), the theoretical arrival time of the next
        # update in the update's own clock (GCRA; see `rate_allows`). Written only on accept.
        self.update_rates: dict[UpdateKey, int] = {}
        self.node_rates: dict[NodeId, int] = {}
        limit, per_peer = config.max_held, config.max_held_per_peer
        self.held_announcements: HeldQueue[ChannelId] = HeldQueue(limit, per_peer)
        self.held_updates: HeldQueue[UpdateKey] = HeldQueue(limit, per_peer)
        self.held_nodes: HeldQueue[NodeId] = HeldQueue(limit, per_peer)
        # A partner's verified half of an announcement that came before our channel was usable.
        self.partner_signatures: dict[ChannelId, tuple[NodeId, bytes]] = {}
        self.local: dict[ChannelId, LocalChannel] = {}
        self.own_node: NodeAnnouncement | None = None  # ours, flooded once we have a channel
        self.outbox: dict[object, Pending] = {}  # key: what the message is about (see keys)
        self.sync_requests: dict[NodeId, int] = {}  # when each peer last asked for a sync
        self.sessions: dict[NodeId, int] = {}  # connected peers: when we last asked each for one
        self.last_prune_ms = 0
        self.last_resync_ms = 0


# -- rate limit (GCRA over the signer's timestamps) -------------------------------------------
# Counting in the update's own timestamps, not our clock, gives every node the same verdict on
# the same sequence, and a signer cannot mint allowance by dating updates ahead: the future
# limit caps that at ten minutes' worth.


def rate_allows(config: GossipConfig, arrival: int | None, timestamp_ms: int) -> bool:
    if arrival is None:
        return True
    return timestamp_ms >= arrival - (config.rate_burst - 1) * config.rate_interval_ms


def rate_next(config: GossipConfig, arrival: int | None, timestamp_ms: int) -> int:
    start = timestamp_ms if arrival is None else max(arrival, timestamp_ms)
    return start + config.rate_interval_ms


# -- outbox keys: one pending message per subject, a newer one replaces an older ---------------


def announcement_key(channel_id: ChannelId) -> object:
    return ("channel", channel_id)


def update_key(key: UpdateKey) -> object:
    return ("update", *key)


def node_key(node_id: NodeId) -> object:
    return ("node", node_id)
