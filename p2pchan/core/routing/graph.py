"""The channel graph a payer routes over: channels, each direction's policy, and nodes.

Gossip changes policies all the time (every `channel_update`) and a payer asks for routes in
between, so the graph is a mutable structure kept ready for both, not a frozen value rebuilt per
change: one policy update replaces one field of one `DirectedEdge`, O(1). Each node keeps its
incoming and outgoing edges sorted by channel id, so a search visits them in an order that
depends on the graph's content only, never on the order gossip arrived in (determinism).

Every directed edge owns an integer `slot` (a removed channel's two slots are reused by a later
one); `version` counts changes and `changes_since` names the slots changed after a version, so a
derived numeric index (`bounds.py`) follows every change, a new channel included, by slot
instead of rebuilding.

Pure: no IO, no clock. Inputs come from gossip that is already verified and strictly decoded;
malformed ones are a caller's bug (`LocalProtocolError`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from p2pchan.errors import LocalProtocolError
from p2pchan.types import HASH_SIZE, KEY_SIZE, fits_u64


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """What one direction's forwarding node announced: fees, amount limits, disabled flag."""

    fee_base: int
    fee_ppm: int
    min_amount: int
    max_amount: int
    disabled: bool
    timestamp_ms: int

    def __post_init__(self) -> None:
        for name in ("fee_base", "fee_ppm", "min_amount", "max_amount", "timestamp_ms"):
            value = getattr(self, name)
            if type(value) is not int or not fits_u64(value):
                raise LocalProtocolError(f"policy {name} must be a u64, got {value!r}")


@dataclass(frozen=True, slots=True)
class GraphChannel:
    """A channel open on layer 1; `node1 < node2`, capacity is its total deposit."""

    channel_id: bytes
    node1: bytes
    node2: bytes
    capacity: int
    settle_timeout: int

    def __post_init__(self) -> None:
        if len(self.channel_id) != HASH_SIZE:
            raise LocalProtocolError("a channel id is 32 bytes")
        if len(self.node1) != KEY_SIZE or len(self.node2) != KEY_SIZE:
            raise LocalProtocolError("a node id is 32 bytes")
        if not self.node1 < self.node2:
            raise LocalProtocolError("a channel's node1 sorts before its node2")
        for name in ("capacity", "settle_timeout"):
            value = getattr(self, name)
            if type(value) is not int or not fits_u64(value):
                raise LocalProtocolError(f"channel {name} must be a u64, got {value!r}")

    def other(self, node_id: bytes) -> bytes:
        if node_id == self.node1:
            return self.node2
        if node_id == self.node2:
            return self.node1
        raise LocalProtocolError("that node is not in this channel")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node's announcement; optional (a node is known from its channels alone)."""

    node_id: bytes
    alias: str = ""
    addresses: tuple[str, ...] = ()
    timestamp_ms: int = 0


class DirectedEdge:
    """One direction of a channel: `source` forwards to `target` under `policy` (None: unusable).

    Mutable on purpose (see the module comment); only the graph writes it. The channel's
    id, capacity and settle timeout are copied here so the search reads one object per edge.
    """

    __slots__ = (
        "capacity",
        "channel",
        "channel_id",
        "policy",
        "settle_timeout",
        "slot",
        "source",
        "target",
    )

    def __init__(self, channel: GraphChannel, source: bytes, target: bytes, slot: int) -> None:
        self.channel = channel
        self.channel_id = channel.channel_id
        self.capacity = channel.capacity
        self.settle_timeout = channel.settle_timeout
        self.source = source
        self.target = target
        self.slot = slot
        self.policy: ChannelPolicy | None = None

    def __repr__(self) -> str:
        ends = f"{self.source.hex()[:8]}->{self.target.hex()[:8]}"
        return f"DirectedEdge({self.channel_id.hex()[:8]} {ends})"


def _channel_key(edge: DirectedEdge) -> bytes:
    return edge.channel_id


class ChannelGraph:
    """Channels, policies and nodes, with look-ups by node and change tracking by slot."""

    def __init__(self) -> None:
        self._channels: dict[bytes, tuple[DirectedEdge, DirectedEdge]] = {}
        self._incoming: dict[bytes, list[DirectedEdge]] = {}
        self._outgoing: dict[bytes, list[DirectedEdge]] = {}
        self._nodes: dict[bytes, NodeInfo] = {}
        self._slots: list[DirectedEdge | None] = []
        self._free_pairs: list[int] = []
        self._changed: dict[int, int] = {}  # slot -> version of its last change, oldest first
        self.version = 0
        self.index_cache: object | None = None  # owned by bounds.py

    # -- channels -------------------------------------------------------------------------

    def add_channel(self, channel: GraphChannel) -> bool:
        """Add a channel, or update the capacity and settle timeout of a known one.

        Returns True if the channel is new. A known id with other endpoints is refused.
        """
        known = self._channels.get(channel.channel_id)
        if known is not None:
            old = known[0].channel
            if (old.node1, old.node2) != (channel.node1, channel.node2):
                raise LocalProtocolError("a known channel id cannot change its nodes")
            if old != channel:
                for edge in known:
                    edge.channel = channel
                    edge.capacity = channel.capacity
                    edge.settle_timeout = channel.settle_timeout
                    self._mark(edge.slot)
            return False
        if self._free_pairs:
            first = self._free_pairs.pop()
        else:
            first = len(self._slots)
            self._slots += [None, None]
        forward = DirectedEdge(channel, channel.node1, channel.node2, first)
        backward = DirectedEdge(channel, channel.node2, channel.node1, first + 1)
        self._channels[channel.channel_id] = (forward, backward)
        for edge in (forward, backward):
            self._slots[edge.slot] = edge
            bisect.insort(self._outgoing.setdefault(edge.source, []), edge, key=_channel_key)
            bisect.insort(self._incoming.setdefault(edge.target, []), edge, key=_channel_key)
            self._mark(edge.slot)
        return True

    def remove_channel(self, channel_id: bytes) -> bool:
        """Forget a channel (closed on layer 1) and both its policies. False if unknown."""
        edges = self._channels.pop(channel_id, None)
        if edges is None:
            return False
        for edge in edges:
            _remove_sorted(self._outgoing, edge.source, edge)
            _remove_sorted(self._incoming, edge.target, edge)
            self._slots[edge.slot] = None
            self._mark(edge.slot)
        self._free_pairs.append(edges[0].slot)
        return True

    def channel(self, channel_id: bytes) -> GraphChannel | None:
        edges = self._channels.get(channel_id)
        return None if edges is None else edges[0].channel

    def channels(self) -> Iterator[GraphChannel]:
        for forward, _ in self._channels.values():
            yield forward.channel

    def channel_count(self) -> int:
        return len(self._channels)

    # -- policies -------------------------------------------------------------------------

    def edge(self, channel_id: bytes, from_node: bytes) -> DirectedEdge | None:
        """The direction of `channel_id` that `from_node` forwards on, if both are known."""
        edges = self._channels.get(channel_id)
        if edges is None:
            return None
        for edge in edges:
            if edge.source == from_node:
                return edge
        return None

    def channel_edges(self, channel_id: bytes) -> tuple[DirectedEdge, ...]:
        """Both directions of a channel (node1's first), or () if unknown."""
        return self._channels.get(channel_id, ())

    def policy(self, channel_id: bytes, from_node: bytes) -> ChannelPolicy | None:
        edge = self.edge(channel_id, from_node)
        return None if edge is None else edge.policy

    def update_policy(self, channel_id: bytes, from_node: bytes, policy: ChannelPolicy) -> bool:
        """Set one direction's policy if it is newer than the stored one; True if it replaced.

        The channel must be known and `from_node` one of its nodes (gossip checks both before).
        """
        edge = self._known_edge(channel_id, from_node)
        current = edge.policy
        if current is not None and policy.timestamp_ms <= current.timestamp_ms:
            return False
        edge.policy = policy
        self._mark(edge.slot)
        return True

    def remove_policy(self, channel_id: bytes, from_node: bytes) -> bool:
        """Forget one direction's policy (it becomes unusable). False if it had none."""
        edge = self._known_edge(channel_id, from_node)
        if edge.policy is None:
            return False
        edge.policy = None
        self._mark(edge.slot)
        return True

    def _known_edge(self, channel_id: bytes, from_node: bytes) -> DirectedEdge:
        if channel_id not in self._channels:
            raise LocalProtocolError(f"unknown channel {channel_id.hex()}")
        edge = self.edge(channel_id, from_node)
        if edge is None:
            raise LocalProtocolError(f"{from_node.hex()} is not a node of that channel")
        return edge

    # -- nodes ----------------------------------------------------------------------------

    def set_node(self, info: NodeInfo) -> bool:
        """Store a node's announcement if newer than the stored one; True if it replaced."""
        if len(info.node_id) != KEY_SIZE:
            raise LocalProtocolError("a node id is 32 bytes")
        current = self._nodes.get(info.node_id)
        if current is not None and info.timestamp_ms <= current.timestamp_ms:
            return False
        self._nodes[info.node_id] = info
        return True

    def remove_node(self, node_id: bytes) -> bool:
        """Forget a node's announcement (its channels stay until removed)."""
        return self._nodes.pop(node_id, None) is not None

    def node(self, node_id: bytes) -> NodeInfo | None:
        return self._nodes.get(node_id)

    def has_node(self, node_id: bytes) -> bool:
        """Known from a channel or from an announcement."""
        return node_id in self._outgoing or node_id in self._nodes

    def node_ids(self) -> Iterator[bytes]:
        """Every node with a channel, then announced nodes without one."""
        yield from self._outgoing
        for node_id in self._nodes:
            if node_id not in self._outgoing:
                yield node_id

    def channels_of(self, node_id: bytes) -> list[GraphChannel]:
        return [edge.channel for edge in self._outgoing.get(node_id, ())]

    def outgoing(self, node_id: bytes) -> Sequence[DirectedEdge]:
        """The directions `node_id` forwards on, by channel id."""
        return self._outgoing.get(node_id, ())

    def incoming(self, node_id: bytes) -> Sequence[DirectedEdge]:
        """The directions that end at `node_id`, by channel id."""
        return self._incoming.get(node_id, ())

    # -- change tracking for derived indexes ----------------------------------------------

    @property
    def slot_count(self) -> int:
        return len(self._slots)

    def edge_at(self, slot: int) -> DirectedEdge | None:
        return self._slots[slot]

    def changes_since(self, version: int) -> list[int]:
        """Slots changed (added, removed, re-policied, resized) after `version`, newest first."""
        changed = []
        for slot, at in reversed(self._changed.items()):
            if at <= version:
                break
            changed.append(slot)
        return changed

    def _mark(self, slot: int) -> None:
        self.version += 1
        self._changed.pop(slot, None)
        self._changed[slot] = self.version


def _remove_sorted(table: dict[bytes, list[DirectedEdge]], node: bytes, edge: DirectedEdge) -> None:
    edges = table[node]
    index = bisect.bisect_left(edges, edge.channel_id, key=_channel_key)
    del edges[index]
    if not edges:
        del table[node]
