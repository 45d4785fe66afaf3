"""The gossip machine's entry points: one input each, the outputs returned.

    on_gossip(state, from_peer, message, now_ms, chain)    a peer's gossip message
    on_peer_connected(state, peer, now_ms)                 a session started: filter, halves
    on_peer_disconnected(state, peer)                      a session ended
    on_chain_block(state, events, now_ms, chain)           a block's contract events applied
    on_chain_channel_closed(state, channel_id)             one channel gone from layer 1
    on_tick(state, now_ms, chain, identity)                every ~100 ms: refresh, prune, flush,
                                                           and now and then a re-sync
    local_channel_usable / set_local_policy / announce_node (from `local.py`)

Accepted gossip is not sent at once: it waits in the outbox for the next tick, which sends
everything accepted since, grouped by the peers it came from, in frame-sized batches. In a
flood a node accepts many messages between two ticks, so each peer gets a frame or two per
tick instead of one frame per message. The tick interval is the relay delay of each hop.

No clock, no randomness, no IO: `now_ms` is the wall clock in milliseconds, `chain` the node's
view of layer 1 (`chain_view.py`), `identity` signs (deterministically) our own gossip.
"""

from __future__ import annotations

from collections.abc import Iterable

from p2pchan.core.gossip.chain_view import ChainView
from p2pchan.core.gossip.local import (
    announce_node,
    local_channel_usable,
    receive_announcement_signature,
    refresh_local,
    set_local_policy,
)
from p2pchan.core.gossip.outputs import GossipOutput, SendGossip, Step
from p2pchan.core.gossip.receive import (
    NOT_ON_CHAIN,
    process_announcement,
    process_flooded,
    remove_channel,
    remove_node,
    update_capacity,
)
from p2pchan.core.gossip.state import GossipState
from p2pchan.core.gossip.sync import filter_since, resync_peer, sync_for_peer
from p2pchan.crypto.keys import Identity
from p2pchan.errors import GossipRefused, InvalidGossip, LocalProtocolError
from p2pchan.l1.events import (
    ChannelClosed,
    ChannelCooperativelySettled,
    ChannelDeposited,
    ChannelSettled,
    Event,
)
from p2pchan.types import ChannelId, NodeId
from p2pchan.wire.gossip_messages import (
    AnnouncementSignature,
    ChannelAnnouncement,
    FloodMessage,
    GossipBatch,
    GossipFilter,
    GossipMessage,
    gossip_batches,
)

__all__ = [
    "announce_node",
    "flush",
    "local_channel_usable",
    "on_chain_block",
    "on_chain_channel_closed",
    "on_gossip",
    "on_peer_connected",
    "on_peer_disconnected",
    "on_tick",
    "prune",
    "set_local_policy",
]

SYNC_FLOOD = 10  # points for asking for a full sync twice in one session and one minute
BATCH_FAULT_LIMIT = 100  # the rest of a batch is dropped once its faults add up to this


def on_gossip(
    state: GossipState, from_peer: NodeId, message: GossipMessage, now_ms: int, chain: ChainView
) -> list[GossipOutput]:
    step = Step()
    try:
        if isinstance(message, GossipBatch):
            for item in message.messages:
                process_flooded(state, step, from_peer, item, now_ms, chain)
                if step.scored_points() >= BATCH_FAULT_LIMIT:
                    break  # a ban's worth already: spend no more signature checks on it
        elif isinstance(message, FloodMessage):
            process_flooded(state, step, from_peer, message, now_ms, chain)
        elif isinstance(message, AnnouncementSignature):
            receive_announcement_signature(state, step, from_peer, message, now_ms, chain)
        elif isinstance(message, GossipFilter):
            _receive_filter(state, step, from_peer, message, now_ms)
        else:
            raise LocalProtocolError(f"{type(message).__name__} is not a gossip message")
    except GossipRefused as error:
        step.refused(from_peer, error)
    return step.outputs()


def _receive_filter(
    state: GossipState, step: Step, peer: NodeId, message: GossipFilter, now_ms: int
) -> None:
    last = state.sync_requests.get(peer)
    if last is not None and now_ms - last < state.config.sync_interval_ms:
        raise InvalidGossip("sync_flood", "gossip_filter again in the same session", SYNC_FLOOD)
    state.sync_requests[peer] = now_ms
    batches = sync_for_peer(state, message.since_ms)
    if batches:
        step.send(peer, *batches)


def on_peer_connected(state: GossipState, peer: NodeId, now_ms: int) -> list[GossipOutput]:
    """A new session with `peer`: ask it for what we lack, and re-send the halves of our
    channels' announcements it may not have."""
    state.sync_requests.pop(peer, None)
    state.sessions[peer] = now_ms
    step = Step()
    halves = [
        AnnouncementSignature(local.channel_id, local.our_signature)
        for local in state.local.values()
        if local.partner == peer and not local.complete
    ]
    step.send(peer, GossipFilter(filter_since(state)), *halves)
    return step.outputs()


def on_peer_disconnected(state: GossipState, peer: NodeId) -> list[GossipOutput]:
    """The session with `peer` ended: it is not asked for a re-sync any more."""
    state.sessions.pop(peer, None)
    return []


def on_chain_block(
    state: GossipState, events: Iterable[Event], now_ms: int, chain: ChainView
) -> list[GossipOutput]:
    """Call once per block, with its contract events, after applying them to `chain`: closed
    channels leave the graph, deposits change capacities, and announcements that waited for
    layer 1 are accepted, or refused once it still does not show them a few blocks and at
    least `hold_min_blocks_ms` on."""
    step = Step()
    for event in events:
        if isinstance(event, (ChannelClosed, ChannelSettled, ChannelCooperativelySettled)):
            remove_channel(state, step, event.channel_id)
        elif isinstance(event, ChannelDeposited):
            on_chain = chain.channel(event.channel_id)
            if on_chain is not None:
                update_capacity(state, step, on_chain)
    config = state.config
    for channel_id, held in state.held_announcements.items():
        on_chain = chain.channel(channel_id)
        if on_chain is None and (
            chain.height < held.height + config.hold_blocks
            or now_ms < held.received_ms + config.hold_min_blocks_ms  # our view may lag
        ):
            continue
        state.held_announcements.pop(channel_id)
        assert isinstance(held.message, ChannelAnnouncement)
        if on_chain is None:
            step.refused(
                held.peer,
                InvalidGossip(
                    "not_on_chain",
                    f"layer 1 shows no channel {channel_id.hex()} {config.hold_blocks} blocks on",
                    NOT_ON_CHAIN,
                ),
            )
        else:  # checked again in full, as on arrival: layer 1 may show it closed by now
            process_announcement(state, step, held.peer, held.message, now_ms, chain)
    return step.outputs()


def on_chain_channel_closed(state: GossipState, channel_id: ChannelId) -> list[GossipOutput]:
    step = Step()
    remove_channel(state, step, channel_id)
    return step.outputs()


def on_tick(
    state: GossipState, now_ms: int, chain: ChainView, identity: Identity
) -> list[GossipOutput]:
    """Re-sign our gossip that is getting old, prune once a prune interval, drop what waited
    too long, send what was accepted since the last tick, and once a re-sync interval ask one
    peer in turn for what we lack (`sync.resync_peer`)."""
    step = Step()
    refresh_local(state, step, now_ms, chain, identity)
    if now_ms - state.last_prune_ms >= state.config.prune_interval_ms:
        _prune(state, step, now_ms)
    before = now_ms - state.config.hold_ms
    for queue in (state.held_updates, state.held_nodes, state.held_announcements):
        queue.expire(before)
    step.sends += flush(state)
    peer = resync_peer(state, now_ms)
    if peer is not None:
        state.sessions[peer] = state.last_resync_ms = now_ms
        step.send(peer, GossipFilter(filter_since(state)))
    return step.outputs()


def prune(state: GossipState, now_ms: int) -> list[GossipOutput]:
    step = Step()
    _prune(state, step, now_ms)
    return step.outputs()


def _prune(state: GossipState, step: Step, now_ms: int) -> None:
    """Forget updates and node announcements older than the horizon, and channels left with
    no update that were announced longer than the horizon ago (ours excepted)."""
    cutoff = now_ms - state.config.horizon_ms
    for key, update in list(state.updates.items()):
        if update.body.timestamp_ms < cutoff:
            del state.updates[key]
            state.update_rates.pop(key, None)
            state.graph.remove_policy(*key)
            step.remove_update(key)
    for channel_id, known in list(state.channels.items()):
        announcement = known.announcement
        if (
            known.announced_ms < cutoff
            and channel_id not in state.local
            and (channel_id, announcement.node1) not in state.updates
            and (channel_id, announcement.node2) not in state.updates
        ):
            remove_channel(state, step, channel_id)
    for node_id, node in list(state.nodes.items()):
        if node.body.timestamp_ms < cutoff:
            remove_node(state, step, node_id)
    for peer, asked in list(state.sync_requests.items()):
        if now_ms - asked >= state.config.sync_interval_ms:
            del state.sync_requests[peer]
    state.last_prune_ms = now_ms


def flush(state: GossipState) -> list[SendGossip]:
    """Everything accepted since the last flush, to every peer but those it came from."""
    groups: dict[frozenset[NodeId], list[FloodMessage]] = {}
    for pending in state.outbox.values():
        groups.setdefault(frozenset(pending.origins), []).append(pending.message)
    state.outbox.clear()
    return [
        SendGossip(None, tuple(gossip_batches(messages)), exclude)
        for exclude, messages in groups.items()
    ]
