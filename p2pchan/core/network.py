"""The node's side of gossip: what it tells the gossip machine (`core.gossip`) of its peers,
its channels, its fees and layer 1, and the gossip machine's outputs as the node's.

The node keeps a view of every channel on layer 1 (`chain_view`), applied from each block
before gossip hears of the block, so gossip reads a view exactly as current as the node's own
height; a channel of ours is announced once it is usable (open on layer 1, with a partner that
may take payments).
"""

from __future__ import annotations

from p2pchan.core.gossip import machine as gossip
from p2pchan.core.inputs import (
    ActionAnnounceNode,
    ActionSetFees,
    ContractReceiveBlock,
    ReceiveGossip,
)
from p2pchan.core.outputs import NotifyFeesSet, Output, PersistChainView, from_gossip
from p2pchan.core.state import NodeState
from p2pchan.types import Address, NodeId


def peer_connected(state: NodeState, peer: Address) -> list[Output]:
    """Ask the peer for what we lack; re-send our halves of announcements it may lack."""
    return from_gossip(gossip.on_peer_connected(state.network, NodeId(peer), state.now_ms))


def peer_disconnected(state: NodeState, peer: Address) -> list[Output]:
    """The peer is not asked for a re-sync any more."""
    return from_gossip(gossip.on_peer_disconnected(state.network, NodeId(peer)))


def received(state: NodeState, event: ReceiveGossip) -> list[Output]:
    peer = NodeId(event.peer)
    found = gossip.on_gossip(state.network, peer, event.message, event.now_ms, state.chain_view)
    return from_gossip(found)


def set_fees(state: NodeState, event: ActionSetFees) -> list[Output]:
    """New fees over our channels, gossiped at once; the old ones still count for a while."""
    network = state.network
    ids = list(network.local) if event.channel_ids is None else list(event.channel_ids)
    before = {cid: network.local[cid].update.body for cid in ids if cid in network.local}
    found = gossip.set_local_policy(
        network, event.policy, event.now_ms, state.chain_view, state.identity, event.channel_ids
    )
    if event.channel_ids is None:
        state.fee_policy = event.policy
    for channel_id, body in before.items():
        state.previous_policies[channel_id] = (body, event.now_ms)
    updates = tuple(network.local[cid].update for cid in ids if cid in network.local)
    return [*from_gossip(found), NotifyFeesSet(updates)]


def announce_node(state: NodeState, event: ActionAnnounceNode) -> list[Output]:
    found = gossip.announce_node(
        state.network,
        event.alias,
        event.addresses,
        event.now_ms,
        state.chain_view,
        state.identity,
    )
    return from_gossip(found)


def block(state: NodeState, event: ContractReceiveBlock) -> list[Output]:
    """Every channel layer 1 shows, for gossip (stored with the block that changed it); then
    gossip hears of the block."""
    view = state.chain_view
    if event.height <= view.height:
        return []
    changed = view.apply_block(event.height, event.events)
    outputs: list[Output] = []
    if changed or event.checkpoint:
        outputs.append(PersistChainView(view, tuple(changed)))
    found = gossip.on_chain_block(state.network, event.events, event.now_ms, view)
    return outputs + from_gossip(found)


def announce_usable(state: NodeState) -> list[Output]:
    """Our channels that are usable and not announced yet: sign our half and our update."""
    outputs: list[Output] = []
    network = state.network
    for channel in state.channels.values():
        if (
            channel.channel_id not in network.local
            and channel.takes_new_transfers
            and state.chain_view.channel(channel.channel_id) is not None
        ):
            outputs += from_gossip(
                gossip.local_channel_usable(
                    network,
                    channel.channel_id,
                    NodeId(channel.partner),
                    state.fee_policy,
                    state.now_ms,
                    state.chain_view,
                    state.identity,
                )
            )
    return outputs


def tick(state: NodeState, now_ms: int) -> list[Output]:
    """Send what was accepted since the last tick; refresh, prune, and now and then re-sync."""
    return from_gossip(gossip.on_tick(state.network, now_ms, state.chain_view, state.identity))
