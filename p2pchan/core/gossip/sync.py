"""Sync on connect and now and then: what a peer that asked for everything newer than
`since_ms` lacks, what we ask for, and which peer we ask on a long session.

Announcements carry no timestamp, so a channel's announcement goes along with any of its
updates that qualify (and every announcement goes when `since_ms` is 0, a peer with an empty
graph); node announcements go last, after the channels that make them acceptable. The result
is packed into frame-sized `gossip_batch`es: a graph of a hundred channels is one or two frames.

What we ask for ourselves (`filter_since`) is the newest timestamp we hold from others, less
the clock skew we tolerate: anything signed while we were away is newer than that.

A flood sends each message over each link once, so one lost on a long session (expired while
it waited for its channel, refused while layer 1 lagged, missed by a busy node) would stay lost:
every `RESYNC_INTERVAL_MS` we ask one peer again, the one asked longest ago (`resync_peer`), so
each session is asked in turn and none twice within the interval. One re-sync costs what a
reconnect's sync costs, one peer at a time; the duplicates in the answer cost a look-up each.
"""

from __future__ import annotations

from p2pchan.core.gossip.state import GossipState
from p2pchan.types import NodeId
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


def resync_peer(state: GossipState, now_ms: int) -> NodeId | None:
    """The peer to ask again at `now_ms` (None: not yet, or no session old enough): one per
    interval, the one asked longest ago (ties by id), and none asked within the interval (so it
    never looks like a `sync_flood` to the peer)."""
    interval = state.config.resync_interval_ms
    if now_ms - state.last_resync_ms < interval:
        return None
    due = [(asked, peer) for peer, asked in state.sessions.items() if now_ms - asked >= interval]
    return min(due)[1] if due else None
