"""Sync on connect: what a peer that asked for everything newer than `since_ms` lacks.

Announcements carry no timestamp, so a channel's announcement goes along with any of its
updates that qualify (and every announcement goes when `since_ms` is 0, a peer with an empty
graph); node announcements go last, after the channels that make them acceptable. The result
is packed into frame-sized `gossip_batch`es: a graph of a hundred channels is one or two frames.

What we ask for ourselves (`filter_since`) is the newest timestamp we hold from others, less
the clock skew we tolerate: anything signed while we were away is newer than that.
"""

from __future__ import annotations

from p2pchan.core.gossip.state import GossipState
from p2pchan.wire.gossip_messages import FloodMessage, GossipBatch, gossip_batches


def messages_since(state: GossipState, since_ms: int) -> list[FloodMessage]:
    messages: list[FloodMessage] = []
    for channel_id, known in state.channels.items():
        announcement = known.announcement
        updates = [
            update
            for node in (announcement.node1, announcement.node2)
            if (update := state.updates.get((channel_id, node))) is not None
            and update.body.timestamp_ms > since_ms
        ]
        if updates or since_ms == 0:
            messages.append(announcement)
            messages += updates
    messages += [node for node in state.nodes.values() if node.body.timestamp_ms > since_ms]
    return messages


def sync_for_peer(state: GossipState, since_ms: int) -> list[GossipBatch]:
    return gossip_batches(messages_since(state, since_ms))


def filter_since(state: GossipState) -> int:
    """The `since_ms` of the `gossip_filter` we send on connect (0 for an empty graph)."""
    ours = state.config.node_id
    newest = max(
        (u.body.timestamp_ms for u in state.updates.values() if u.body.from_node != ours),
        default=0,
    )
    newest = max(
        newest,
        max(
            (n.body.timestamp_ms for n in state.nodes.values() if n.body.node_id != ours), default=0
        ),
    )
    return max(newest - state.config.future_skew_ms, 0) if newest else 0
