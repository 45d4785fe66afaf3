"""The acceptance rules of flooded gossip, one message at a time, and what accepting does.

Each `check_*` reads the state and raises `GossipRefused` (dropped, not scored) or
`InvalidGossip` (scored against the sender) without writing anything; it returns whether the
message can be taken now or must wait for what it depends on. The checks run cheapest first and
the signature last: a duplicate (the same message from a second peer, the common case in a
flood) costs a dictionary look-up, never a signature check.

`process_*` runs a check and then accepts, holds or refuses. Accepting writes the state, the
routing graph, the step's records, and queues the message in the outbox for the next flush;
a channel's announcement releases the updates and node announcements held for it.

A held message is not known yet: an identical copy of a held update or node announcement
(another peer relaying it) restarts its 30 s wait, so it expires only once no peer has sent it
for that long. A held announcement keeps its first arrival's height: it is refused, and scored,
a few blocks on, and restarting that wait would let a sender keep a fake one held, unscored,
by sending it again every block. What is lost anyway comes back with the next re-sync
(`sync.py`).
"""

from __future__ import annotations

from dataclasses import replace

from p2pchan.core.gossip.chain_view import ChainChannel, ChainView
from p2pchan.core.gossip.outputs import Step
from p2pchan.core.gossip.state import (
    GossipState,
    Held,
    KnownChannel,
    Pending,
    UpdateKey,
    announcement_key,
    node_key,
    rate_allows,
    rate_next,
    update_key,
)
from p2pchan.core.routing.graph import ChannelPolicy, GraphChannel, NodeInfo
from p2pchan.errors import GossipRefused, InvalidGossip
from p2pchan.types import ChannelId, NodeId
from p2pchan.wire.gossip_messages import (
    ChannelAnnouncement,
    ChannelUpdate,
    FloodMessage,
    NodeAnnouncement,
)

# Points against the sender. Never honest: a bad signature, another chain, a channel between
# other nodes, an update by a third node, limits that contradict each other (20, as for a
# malformed message). Likely dishonest: a channel layer 1 still does not show after a few
# blocks, a timestamp far ahead (10). Honest now and then by timing, so budgeted: a channel that
# closed a block ago, more updates than the rate allows (a relay that saw them in another order).
BAD_SIGNATURE = 20
WRONG_CHAIN = 20
WRONG_NODES = 20
NOT_A_PARTICIPANT = 20
BAD_LIMITS = 20
NOT_ON_CHAIN = 10
FUTURE_TIMESTAMP = 10
CHANNEL_CLOSED = 5
RATE_LIMITED = 2


# -- channel announcements ---------------------------------------------------------------


def check_channel_announcement(
    state: GossipState, message: ChannelAnnouncement, chain: ChainView
) -> ChainChannel | None:
    """Its layer-1 channel if it can be accepted now, None if layer 1 does not show the
    channel yet (hold it: our view may lag the sender's by a block)."""
    channel_id = message.channel_id
    if channel_id in state.channels or channel_id in state.held_announcements:
        raise GossipRefused("duplicate", "channel already announced")
    on_chain = chain.channel(channel_id)
    if on_chain is not None:
        if not on_chain.is_between(message.node1, message.node2):
            raise InvalidGossip(
                "wrong_nodes", "layer 1 shows that channel between other nodes", WRONG_NODES
            )
        if not on_chain.is_open:
            raise InvalidGossip(
                "channel_closed", "layer 1 shows that channel closed", CHANNEL_CLOSED, budgeted=True
            )
    if not message.signatures_valid(state.config.chain_id):
        raise InvalidGossip(
            "bad_signature", "channel_announcement not signed by both nodes", BAD_SIGNATURE
        )
    return on_chain


def process_announcement(
    state: GossipState,
    step: Step,
    peer: NodeId | None,
    message: ChannelAnnouncement,
    now_ms: int,
    chain: ChainView,
) -> None:
    try:
        on_chain = check_channel_announcement(state, message, chain)
    except GossipRefused as error:
        note_duplicate(state, announcement_key(message.channel_id), message, peer)
        step.refused(peer, error)
        return
    if on_chain is None:
        state.held_announcements.add(message.channel_id, Held(message, peer, now_ms, chain.height))
        return
    accept_announcement(state, step, peer, message, on_chain, now_ms, chain)


def accept_announcement(
    state: GossipState,
    step: Step,
    peer: NodeId | None,
    message: ChannelAnnouncement,
    on_chain: ChainChannel,
    now_ms: int,
    chain: ChainView,
) -> None:
    channel_id = message.channel_id
    known = KnownChannel(message, on_chain.capacity, on_chain.settle_timeout, now_ms)
    state.channels[channel_id] = known
    state.graph.add_channel(
        GraphChannel(
            channel_id, message.node1, message.node2, on_chain.capacity, on_chain.settle_timeout
        )
    )
    step.put_channel(known)
    enqueue(state, announcement_key(channel_id), message, peer)
    state.partner_signatures.pop(channel_id, None)
    local = state.local.get(channel_id)
    if local is not None:
        if not local.complete:
            theirs = message.signature1 if local.partner == message.node1 else message.signature2
            local = replace(local, partner_signature=theirs)
            state.local[channel_id] = local
            step.put_local(local)
        process_update(state, step, None, local.update, now_ms, chain)
    for node in (message.node1, message.node2):
        held = state.held_updates.pop((channel_id, node))
        if held is not None:
            assert isinstance(held.message, ChannelUpdate)
            process_update(state, step, held.peer, held.message, now_ms, chain)
    for node in (message.node1, message.node2):
        held = state.held_nodes.pop(node)
        if held is not None:
            assert isinstance(held.message, NodeAnnouncement)
            process_node(state, step, held.peer, held.message, now_ms, chain)
    own = state.own_node
    if own is not None and state.config.node_id in (message.node1, message.node2):
        process_node(state, step, None, own, now_ms, chain)


def update_capacity(state: GossipState, step: Step, on_chain: ChainChannel) -> None:
    """A deposit changed a known channel's capacity on layer 1."""
    known = state.channels.get(on_chain.channel_id)
    if known is None or known.capacity == on_chain.capacity:
        return
    known = replace(known, capacity=on_chain.capacity)
    state.channels[on_chain.channel_id] = known
    announcement = known.announcement
    state.graph.add_channel(
        GraphChannel(
            on_chain.channel_id,
            announcement.node1,
            announcement.node2,
            known.capacity,
            known.settle_timeout,
        )
    )
    step.put_channel(known)


def remove_channel(state: GossipState, step: Step, channel_id: ChannelId) -> None:
    """Forget a channel (closed on layer 1, or pruned) with its updates, what waits for it,
    our local record of it, and the announcements of nodes left without a channel."""
    known = state.channels.pop(channel_id, None)
    state.held_announcements.pop(channel_id)
    state.partner_signatures.pop(channel_id, None)
    state.outbox.pop(announcement_key(channel_id), None)
    local = state.local.pop(channel_id, None)
    nodes = [state.config.node_id, local.partner] if local is not None else []
    if known is not None:
        state.graph.remove_channel(channel_id)
        nodes = [known.announcement.node1, known.announcement.node2]
    for node in nodes:
        key = (channel_id, node)
        state.updates.pop(key, None)
        state.update_rates.pop(key, None)
        state.held_updates.pop(key)
        state.outbox.pop(update_key(key), None)
    if known is None and local is None:
        return
    step.remove_channel(channel_id)
    for node in nodes:
        if node in state.nodes and not state.graph.outgoing(node):
            remove_node(state, step, node)


def remove_node(state: GossipState, step: Step, node_id: NodeId) -> None:
    del state.nodes[node_id]
    state.node_rates.pop(node_id, None)
    state.graph.remove_node(node_id)
    state.outbox.pop(node_key(node_id), None)
    step.remove_node(node_id)


# -- channel updates ----------------------------------------------------------------------


def _check_fresh(state: GossipState, timestamp_ms: int, now_ms: int, what: str) -> None:
    config = state.config
    if timestamp_ms > now_ms + config.future_skew_ms:
        raise InvalidGossip(
            "future_timestamp",
            f"{what} dated {timestamp_ms - now_ms} ms ahead of our clock",
            FUTURE_TIMESTAMP,
        )
    if timestamp_ms < now_ms - config.horizon_ms:
        raise GossipRefused("expired", f"{what} older than the horizon")


def check_channel_update(
    state: GossipState, update: ChannelUpdate, now_ms: int, chain: ChainView
) -> bool:
    """True if the update can be accepted now, False if its channel is not announced yet
    (hold it: an update often overtakes its channel's announcement)."""
    body = update.body
    if body.chain_id != state.config.chain_id:
        raise InvalidGossip("wrong_chain", "channel_update for another chain", WRONG_CHAIN)
    if body.min_amount > body.max_amount:
        raise InvalidGossip("bad_limits", "channel_update min_amount above max_amount", BAD_LIMITS)
    key = (body.channel_id, body.from_node)
    current = state.updates.get(key)
    if current is not None and body.timestamp_ms <= current.body.timestamp_ms:
        raise GossipRefused(
            "duplicate" if current == update else "stale", "not newer than the stored update"
        )
    _check_fresh(state, body.timestamp_ms, now_ms, "channel_update")
    known = state.channels.get(body.channel_id)
    if known is None:
        on_chain = chain.channel(body.channel_id)
        if on_chain is not None and not on_chain.is_open:
            raise GossipRefused("channel_closed", "layer 1 shows that channel closed")
        held = state.held_updates.get(key)
        if held is not None:
            assert isinstance(held.message, ChannelUpdate)
            if body.timestamp_ms <= held.message.body.timestamp_ms:
                raise GossipRefused("duplicate", "a newer update is already waiting")
        if not update.signature_valid():
            raise InvalidGossip(
                "bad_signature", "channel_update not signed by its node", BAD_SIGNATURE
            )
        return False
    announcement = known.announcement
    if body.from_node not in (announcement.node1, announcement.node2):
        raise InvalidGossip(
            "not_a_participant", "channel_update by a node not in the channel", NOT_A_PARTICIPANT
        )
    if not rate_allows(state.config, state.update_rates.get(key), body.timestamp_ms):
        raise InvalidGossip(
            "rate_limited", "too many updates of one channel direction", RATE_LIMITED, budgeted=True
        )
    if not update.signature_valid():
        raise InvalidGossip("bad_signature", "channel_update not signed by its node", BAD_SIGNATURE)
    return True


def process_update(
    state: GossipState,
    step: Step,
    peer: NodeId | None,
    update: ChannelUpdate,
    now_ms: int,
    chain: ChainView,
) -> None:
    body = update.body
    key = (body.channel_id, body.from_node)
    try:
        ready = check_channel_update(state, update, now_ms, chain)
    except GossipRefused as error:
        note_duplicate(state, update_key(key), update, peer)
        state.held_updates.refresh(key, update, now_ms)
        step.refused(peer, error)
        return
    if not ready:
        state.held_updates.add(key, Held(update, peer, now_ms, chain.height))
        return
    accept_update(state, step, peer, key, update)


def accept_update(
    state: GossipState, step: Step, peer: NodeId | None, key: UpdateKey, update: ChannelUpdate
) -> None:
    body = update.body
    state.updates[key] = update
    state.update_rates[key] = rate_next(
        state.config, state.update_rates.get(key), body.timestamp_ms
    )
    policy = ChannelPolicy(
        body.fee_base,
        body.fee_ppm,
        body.min_amount,
        body.max_amount,
        body.disabled,
        body.timestamp_ms,
    )
    state.graph.update_policy(body.channel_id, body.from_node, policy)
    step.put_update(update)
    enqueue(state, update_key(key), update, peer)


# -- node announcements -------------------------------------------------------------------


def check_node_announcement(
    state: GossipState, announcement: NodeAnnouncement, now_ms: int
) -> bool:
    """True if it can be accepted now, False if the node has no announced channel yet (hold
    it: a node is announced only once it has a channel, and the channel may still be coming)."""
    body = announcement.body
    if body.chain_id != state.config.chain_id:
        raise InvalidGossip("wrong_chain", "node_announcement for another chain", WRONG_CHAIN)
    current = state.nodes.get(body.node_id)
    if current is not None and body.timestamp_ms <= current.body.timestamp_ms:
        raise GossipRefused(
            "duplicate" if current == announcement else "stale",
            "not newer than the stored announcement",
        )
    _check_fresh(state, body.timestamp_ms, now_ms, "node_announcement")
    if not state.graph.outgoing(body.node_id):
        held = state.held_nodes.get(body.node_id)
        if held is not None:
            assert isinstance(held.message, NodeAnnouncement)
            if body.timestamp_ms <= held.message.body.timestamp_ms:
                raise GossipRefused("duplicate", "a newer announcement is already waiting")
        if not announcement.signature_valid():
            raise InvalidGossip(
                "bad_signature", "node_announcement not signed by its node", BAD_SIGNATURE
            )
        return False
    if not rate_allows(state.config, state.node_rates.get(body.node_id), body.timestamp_ms):
        raise InvalidGossip(
            "rate_limited", "too many announcements of one node", RATE_LIMITED, budgeted=True
        )
    if not announcement.signature_valid():
        raise InvalidGossip(
            "bad_signature", "node_announcement not signed by its node", BAD_SIGNATURE
        )
    return True


def process_node(
    state: GossipState,
    step: Step,
    peer: NodeId | None,
    announcement: NodeAnnouncement,
    now_ms: int,
    chain: ChainView,
) -> None:
    node_id = announcement.body.node_id
    try:
        ready = check_node_announcement(state, announcement, now_ms)
    except GossipRefused as error:
        note_duplicate(state, node_key(node_id), announcement, peer)
        state.held_nodes.refresh(node_id, announcement, now_ms)
        step.refused(peer, error)
        return
    if not ready:
        state.held_nodes.add(node_id, Held(announcement, peer, now_ms, chain.height))
        return
    body = announcement.body
    state.nodes[node_id] = announcement
    state.node_rates[node_id] = rate_next(
        state.config, state.node_rates.get(node_id), body.timestamp_ms
    )
    state.graph.set_node(NodeInfo(node_id, body.alias, body.addresses, body.timestamp_ms))
    step.put_node(announcement)
    enqueue(state, node_key(node_id), announcement, peer)


def process_flooded(
    state: GossipState,
    step: Step,
    peer: NodeId | None,
    message: FloodMessage,
    now_ms: int,
    chain: ChainView,
) -> None:
    if isinstance(message, ChannelAnnouncement):
        process_announcement(state, step, peer, message, now_ms, chain)
    elif isinstance(message, ChannelUpdate):
        process_update(state, step, peer, message, now_ms, chain)
    else:
        assert isinstance(message, NodeAnnouncement)
        process_node(state, step, peer, message, now_ms, chain)


# -- the outbox ---------------------------------------------------------------------------


def enqueue(state: GossipState, key: object, message: FloodMessage, peer: NodeId | None) -> None:
    """Queue an accepted message for the next flush, replacing an older one on the same
    subject (it moves to the end, after the announcement it may depend on)."""
    state.outbox.pop(key, None)
    state.outbox[key] = Pending(message, set() if peer is None else {peer})


def note_duplicate(
    state: GossipState, key: object, message: FloodMessage, peer: NodeId | None
) -> None:
    """The same message came from another peer before we relayed it: do not send it back."""
    pending = state.outbox.get(key)
    if peer is not None and pending is not None and pending.message == message:
        pending.origins.add(peer)
