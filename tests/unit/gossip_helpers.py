"""Signed gossip for tests: named identities, a chain view, and message builders."""

from __future__ import annotations

import hashlib

from p2pchan.core.gossip.chain_view import ChainChannel, ChainChannels
from p2pchan.core.gossip.state import GossipConfig, GossipState
from p2pchan.crypto.keys import Identity
from p2pchan.crypto.signing import SigningTag
from p2pchan.l1.events import ChannelDeposited, ChannelOpened
from p2pchan.types import Address, ChainId, ChannelId
from p2pchan.wire.gossip_messages import (
    ChannelAnnouncement,
    ChannelUpdate,
    ChannelUpdateBody,
    NodeAnnouncement,
    NodeAnnouncementBody,
    announcement_data,
    sign_channel_update,
    sign_node_announcement,
)

CHAIN = ChainId(hashlib.sha256(b"test chain").digest())
OTHER_CHAIN = ChainId(hashlib.sha256(b"another chain").digest())
NOW_MS = 1_700_000_000_000
CAPACITY = 1_000
SETTLE_TIMEOUT = 100


def identity(name: str) -> Identity:
    return Identity(hashlib.sha256(b"identity:" + name.encode()).digest())


def channel_id(name: str) -> ChannelId:
    return ChannelId(hashlib.sha256(b"channel:" + name.encode()).digest())


def ordered(a: Identity, b: Identity) -> tuple[Identity, Identity]:
    return (a, b) if a.node_id < b.node_id else (b, a)


def announcement(
    channel: ChannelId, a: Identity, b: Identity, chain: ChainId = CHAIN
) -> ChannelAnnouncement:
    first, second = ordered(a, b)
    data = announcement_data(chain, channel, first.node_id, second.node_id)
    return ChannelAnnouncement(
        channel,
        first.node_id,
        second.node_id,
        first.sign(SigningTag.CHANNEL_ANNOUNCEMENT, data),
        second.sign(SigningTag.CHANNEL_ANNOUNCEMENT, data),
    )


def update(
    channel: ChannelId,
    signer: Identity,
    timestamp_ms: int = NOW_MS,
    *,
    fee_base: int = 1,
    fee_ppm: int = 100,
    min_amount: int = 1,
    max_amount: int = 10**6,
    disabled: bool = False,
    chain: ChainId = CHAIN,
) -> ChannelUpdate:
    body = ChannelUpdateBody(
        chain,
        channel,
        signer.node_id,
        timestamp_ms,
        fee_base,
        fee_ppm,
        min_amount,
        max_amount,
        disabled,
    )
    return sign_channel_update(signer, body)


def forged(
    message: ChannelUpdate | NodeAnnouncement, by: Identity
) -> ChannelUpdate | NodeAnnouncement:
    """The same signed bytes with another node's signature over them."""
    tag = (
        SigningTag.CHANNEL_UPDATE
        if isinstance(message, ChannelUpdate)
        else SigningTag.NODE_ANNOUNCEMENT
    )
    return type(message)(message.data, by.sign(tag, message.data), message.body)  # type: ignore[arg-type]


def node_announcement(
    signer: Identity,
    timestamp_ms: int = NOW_MS,
    alias: str = "node",
    addresses: tuple[str, ...] = ("127.0.0.1:9735",),
    chain: ChainId = CHAIN,
) -> NodeAnnouncement:
    body = NodeAnnouncementBody(chain, signer.node_id, timestamp_ms, alias, addresses)
    return sign_node_announcement(signer, body)


def open_on_chain(
    chain: ChainChannels, channel: ChannelId, a: Identity, b: Identity, capacity: int = CAPACITY
) -> None:
    chain.apply_block(
        chain.height + 1,
        [
            ChannelOpened(channel, Address(a.node_id), Address(b.node_id), SETTLE_TIMEOUT),
            ChannelDeposited(channel, Address(a.node_id), capacity),
        ],
    )


def chain_channel(channel: ChannelId, a: Identity, b: Identity) -> ChainChannel:
    return ChainChannel(channel, Address(a.node_id), Address(b.node_id), SETTLE_TIMEOUT, CAPACITY)


def state_of(owner: Identity, **config: int) -> GossipState:
    return GossipState(GossipConfig(CHAIN, owner.node_id, **config))  # type: ignore[arg-type]


def snapshot(state: GossipState) -> object:
    """Everything a refused input must leave as it was, the routing graph included."""
    graph = state.graph
    return (
        dict(state.channels),
        dict(state.updates),
        dict(state.nodes),
        dict(state.update_rates),
        dict(state.node_rates),
        [
            list(queue.items())
            for queue in (state.held_announcements, state.held_updates, state.held_nodes)
        ],
        dict(state.partner_signatures),
        dict(state.local),
        state.own_node,
        [(key, pending.message, set(pending.origins)) for key, pending in state.outbox.items()],
        dict(state.sync_requests),
        sorted(graph.channels(), key=lambda c: c.channel_id),
        sorted(
            (edge.channel_id, edge.source, edge.policy)
            for channel in graph.channels()
            for edge in graph.channel_edges(channel.channel_id)
        ),
        sorted((node_id, graph.node(node_id)) for node_id in graph.node_ids()),
    )
