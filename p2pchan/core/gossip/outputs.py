"""What the gossip machine asks the shell to do, in order: persist, score, send.

Every entry point returns `PersistGossip` first (at most one per input, so a batch of a
hundred updates is one database transaction), then `NotifyFault`s, then `SendGossip`s. The
shell writes the records before it sends anything (persist before you promise).

`Step` is the machine's scratch pad for one input: it merges the records of everything the
input changed, so an update accepted and then replaced within one batch is written once.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.core.gossip.state import KnownChannel, LocalChannel, UpdateKey
from p2pchan.errors import GossipRefused
from p2pchan.types import ChannelId, NodeId
from p2pchan.wire.gossip_messages import ChannelUpdate, GossipMessage, NodeAnnouncement


@dataclass(frozen=True, slots=True)
class SendGossip:
    """Send `messages` (each fits one frame), in order, to `peer`; or, when `peer` is None, to
    every connected peer except those in `exclude` (they sent us these messages)."""

    peer: NodeId | None
    messages: tuple[GossipMessage, ...]
    exclude: frozenset[NodeId] = frozenset()


@dataclass(frozen=True, slots=True)
class NotifyFault:
    """`peer` sent invalid gossip: add `points` to its misbehaviour score. A `budgeted` fault is
    one an honest peer commits now and then by timing: scored only beyond the per-minute budget
    the shell keeps for such faults."""

    peer: NodeId
    points: int
    reason: str
    budgeted: bool = False


@dataclass(frozen=True, slots=True)
class PersistGossip:
    """Rows to write in one transaction (`p2pchan.storage.gossip.write_gossip`): each put
    replaces the stored row with that key; a removed channel takes its updates and our local
    record of it along."""

    channels: tuple[KnownChannel, ...] = ()
    updates: tuple[ChannelUpdate, ...] = ()
    nodes: tuple[NodeAnnouncement, ...] = ()
    local: tuple[LocalChannel, ...] = ()
    removed_channels: tuple[ChannelId, ...] = ()
    removed_updates: tuple[UpdateKey, ...] = ()
    removed_nodes: tuple[NodeId, ...] = ()


GossipOutput = PersistGossip | NotifyFault | SendGossip


def _key(update: ChannelUpdate) -> UpdateKey:
    return update.body.channel_id, update.body.from_node


class Step:
    """Collects the outputs of one input."""

    __slots__ = (
        "channels",
        "faults",
        "local",
        "nodes",
        "removed_channels",
        "removed_nodes",
        "removed_updates",
        "sends",
        "updates",
    )

    def __init__(self) -> None:
        self.channels: dict[ChannelId, KnownChannel] = {}
        self.updates: dict[UpdateKey, ChannelUpdate] = {}
        self.nodes: dict[NodeId, NodeAnnouncement] = {}
        self.local: dict[ChannelId, LocalChannel] = {}
        self.removed_channels: dict[ChannelId, None] = {}
        self.removed_updates: dict[UpdateKey, None] = {}
        self.removed_nodes: dict[NodeId, None] = {}
        self.faults: list[NotifyFault] = []
        self.sends: list[SendGossip] = []

    def put_channel(self, known: KnownChannel) -> None:
        channel_id = known.announcement.channel_id
        self.removed_channels.pop(channel_id, None)
        self.channels[channel_id] = known

    def remove_channel(self, channel_id: ChannelId) -> None:
        self.channels.pop(channel_id, None)
        self.local.pop(channel_id, None)
        for key in [key for key in self.updates if key[0] == channel_id]:
            del self.updates[key]
        self.removed_channels[channel_id] = None

    def put_update(self, update: ChannelUpdate) -> None:
        key = _key(update)
        self.removed_updates.pop(key, None)
        self.updates[key] = update

    def remove_update(self, key: UpdateKey) -> None:
        self.updates.pop(key, None)
        self.removed_updates[key] = None

    def put_node(self, announcement: NodeAnnouncement) -> None:
        node_id = announcement.body.node_id
        self.removed_nodes.pop(node_id, None)
        self.nodes[node_id] = announcement

    def remove_node(self, node_id: NodeId) -> None:
        self.nodes.pop(node_id, None)
        self.removed_nodes[node_id] = None

    def put_local(self, local: LocalChannel) -> None:
        self.local[local.channel_id] = local

    def refused(self, peer: NodeId | None, error: GossipRefused) -> None:
        """Score `peer` for a refusal that is its fault (our own gossip is never scored)."""
        if peer is not None and error.points:
            self.faults.append(NotifyFault(peer, error.points, str(error), error.budgeted))

    def scored_points(self) -> int:
        """Points of the faults so far that are scored whatever the budget."""
        return sum(fault.points for fault in self.faults if not fault.budgeted)

    def send(self, peer: NodeId, *messages: GossipMessage) -> None:
        self.sends.append(SendGossip(peer, messages))

    def outputs(self) -> list[GossipOutput]:
        outputs: list[GossipOutput] = []
        if (
            self.channels
            or self.updates
            or self.nodes
            or self.local
            or self.removed_channels
            or self.removed_updates
            or self.removed_nodes
        ):
            outputs.append(
                PersistGossip(
                    tuple(self.channels.values()),
                    tuple(self.updates.values()),
                    tuple(self.nodes.values()),
                    tuple(self.local.values()),
                    tuple(self.removed_channels),
                    tuple(self.removed_updates),
                    tuple(self.removed_nodes),
                )
            )
        outputs += self.faults
        outputs += self.sends
        return outputs
