"""Our own gossip: announcing our channels with their partners, our fees, our node.

Once a channel is usable each partner signs the announcement and sends its half to the other
(`announcement_signature`); whoever holds both halves has the whole announcement and floods
it, and with it its own signed update of its direction. A half that comes before our side is
usable waits (bounded) until it is; a half we sent is sent again on every reconnect until the
announcement is complete, so a lost message only delays it.

Signing needs our identity, passed in (Ed25519 signatures are deterministic: still pure).
Our updates are re-signed when half the horizon old, so peers never prune our channels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from p2pchan.core.gossip.chain_view import ChainView
from p2pchan.core.gossip.outputs import GossipOutput, Step
from p2pchan.core.gossip.receive import (
    BAD_SIGNATURE,
    process_announcement,
    process_node,
    process_update,
)
from p2pchan.core.gossip.state import (
    MAX_PARTNER_SIGNATURES_PER_PEER,
    FeePolicy,
    GossipState,
    LocalChannel,
    rate_allows,
)
from p2pchan.crypto.keys import Identity
from p2pchan.crypto.signing import SigningTag, is_valid
from p2pchan.errors import (
    GossipRefused,
    InvalidGossip,
    LocalProtocolError,
    RemoteProtocolError,
    UserError,
)
from p2pchan.types import ChannelId, NodeId
from p2pchan.wire.gossip_messages import (
    ADDRESSES,
    ALIAS,
    AnnouncementSignature,
    ChannelAnnouncement,
    ChannelUpdate,
    ChannelUpdateBody,
    GossipBatch,
    NodeAnnouncement,
    NodeAnnouncementBody,
    announcement_data,
    sign_channel_update,
    sign_node_announcement,
)

NOT_PARTNER = 10


def _ordered(a: NodeId, b: NodeId) -> tuple[NodeId, NodeId]:
    return (a, b) if a < b else (b, a)


def _our_data(state: GossipState, channel_id: ChannelId, partner: NodeId) -> bytes:
    node1, node2 = _ordered(state.config.node_id, partner)
    return announcement_data(state.config.chain_id, channel_id, node1, node2)


def _combined(state: GossipState, local: LocalChannel) -> ChannelAnnouncement:
    assert local.partner_signature is not None
    ours, theirs = local.our_signature, local.partner_signature
    if state.config.node_id < local.partner:
        return ChannelAnnouncement(
            local.channel_id, state.config.node_id, local.partner, ours, theirs
        )
    return ChannelAnnouncement(local.channel_id, local.partner, state.config.node_id, theirs, ours)


def _next_timestamp(state: GossipState, channel_id: ChannelId, now_ms: int) -> int:
    """Now, or just after the newest update of ours we ever signed for this channel."""
    timestamp = now_ms
    stored = state.updates.get((channel_id, state.config.node_id))
    local = state.local.get(channel_id)
    for previous in (stored, local.update if local is not None else None):
        if previous is not None:
            timestamp = max(timestamp, previous.body.timestamp_ms + 1)
    return timestamp


def _sign_update(
    state: GossipState,
    identity: Identity,
    channel_id: ChannelId,
    policy: FeePolicy,
    timestamp_ms: int,
) -> ChannelUpdate:
    body = ChannelUpdateBody(
        state.config.chain_id,
        channel_id,
        state.config.node_id,
        timestamp_ms,
        policy.fee_base,
        policy.fee_ppm,
        policy.min_amount,
        policy.max_amount,
        policy.disabled,
    )
    return sign_channel_update(identity, body)


def _check_identity(state: GossipState, identity: Identity) -> None:
    if identity.node_id != state.config.node_id:
        raise LocalProtocolError("this gossip state belongs to another node")


def local_channel_usable(
    state: GossipState,
    channel_id: ChannelId,
    partner: NodeId,
    policy: FeePolicy,
    now_ms: int,
    chain: ChainView,
    identity: Identity,
) -> list[GossipOutput]:
    """Our channel with `partner` is usable: sign our half of its announcement and our update,
    send the half to the partner, and flood both once the partner's half is here. Calling it
    again (after a restart, on every reconnect) only re-sends our half while it is needed."""
    _check_identity(state, identity)
    if partner == state.config.node_id:
        raise LocalProtocolError("a channel's partner is another node")
    step = Step()
    local = state.local.get(channel_id)
    if local is not None:
        if local.partner != partner:
            raise LocalProtocolError(f"channel {channel_id.hex()} is with another partner")
        if not local.complete:
            step.send(partner, AnnouncementSignature(channel_id, local.our_signature))
        return step.outputs()
    our_signature = identity.sign(
        SigningTag.CHANNEL_ANNOUNCEMENT, _our_data(state, channel_id, partner)
    )
    update = _sign_update(
        state, identity, channel_id, policy, _next_timestamp(state, channel_id, now_ms)
    )
    known = state.channels.get(channel_id)
    stashed = state.partner_signatures.pop(channel_id, None)
    theirs = stashed[1] if stashed is not None and stashed[0] == partner else None
    if known is not None:  # the partner completed it first and we heard it in the flood
        announcement = known.announcement
        theirs = (
            announcement.signature1 if partner == announcement.node1 else announcement.signature2
        )
    local = LocalChannel(channel_id, partner, our_signature, theirs, update)
    state.local[channel_id] = local
    step.put_local(local)
    step.send(partner, AnnouncementSignature(channel_id, our_signature))
    if known is not None:
        process_update(state, step, None, update, now_ms, chain)
    elif theirs is not None:
        process_announcement(state, step, None, _combined(state, local), now_ms, chain)
    return step.outputs()


def receive_announcement_signature(
    state: GossipState,
    step: Step,
    peer: NodeId,
    message: AnnouncementSignature,
    now_ms: int,
    chain: ChainView,
) -> None:
    """The partner's half of a channel announcement: combine it with ours, or keep it until
    our side of the channel is usable."""
    channel_id = message.channel_id
    local = state.local.get(channel_id)
    known = state.channels.get(channel_id)
    if known is not None:
        if local is not None and local.partner == peer:
            # The partner lacks our half (it re-sends its own only while incomplete): the
            # whole announcement completes it, and it answers nothing back (no ping-pong).
            step.send(peer, GossipBatch((known.announcement,)))
        raise GossipRefused("duplicate", "channel already announced")
    if local is not None and local.partner != peer:
        raise InvalidGossip(
            "not_partner", "announcement_signature from a node not in the channel", NOT_PARTNER
        )
    if local is not None and local.complete:
        raise GossipRefused("duplicate", "announcement already complete")
    data = _our_data(state, channel_id, peer)
    if not is_valid(peer, SigningTag.CHANNEL_ANNOUNCEMENT, data, message.signature):
        raise InvalidGossip(
            "bad_signature", "announcement_signature not the sender's", BAD_SIGNATURE
        )
    if local is None:
        waiting = sum(1 for sender, _ in state.partner_signatures.values() if sender == peer)
        if waiting >= MAX_PARTNER_SIGNATURES_PER_PEER:
            raise GossipRefused("no_room", "too many announcement halves waiting from this peer")
        state.partner_signatures[channel_id] = (peer, message.signature)
        return
    local = replace(local, partner_signature=message.signature)
    state.local[channel_id] = local
    step.put_local(local)
    process_announcement(state, step, None, _combined(state, local), now_ms, chain)


def set_local_policy(
    state: GossipState,
    policy: FeePolicy,
    now_ms: int,
    chain: ChainView,
    identity: Identity,
    channel_ids: Iterable[ChannelId] | None = None,
) -> list[GossipOutput]:
    """`setfees`: a new signed update of our direction of each of our channels (or of those
    listed), flooded at once for announced channels. Refused as a whole (`UserError`) if a
    channel is not ours or a change would exceed the rate peers accept."""
    _check_identity(state, identity)
    ids = list(state.local) if channel_ids is None else list(dict.fromkeys(channel_ids))
    timestamps: dict[ChannelId, int] = {}
    for channel_id in ids:
        if channel_id not in state.local:
            raise UserError(f"no channel {channel_id.hex()} of ours to set fees on")
        timestamp = _next_timestamp(state, channel_id, now_ms)
        arrival = state.update_rates.get((channel_id, state.config.node_id))
        if channel_id in state.channels and not rate_allows(state.config, arrival, timestamp):
            wait_s = _rate_wait_s(state, arrival or 0, timestamp)
            raise UserError(
                f"fees of channel {channel_id.hex()} changed too often: retry in {wait_s} s"
            )
        timestamps[channel_id] = timestamp
    step = Step()
    for channel_id, timestamp in timestamps.items():
        update = _sign_update(state, identity, channel_id, policy, timestamp)
        local = replace(state.local[channel_id], update=update)
        state.local[channel_id] = local
        step.put_local(local)
        if channel_id in state.channels:
            process_update(state, step, None, update, now_ms, chain)
    return step.outputs()


def _rate_wait_s(state: GossipState, arrival: int, timestamp_ms: int) -> int:
    config = state.config
    allowed_from = arrival - (config.rate_burst - 1) * config.rate_interval_ms
    return max(1, -(-(allowed_from - timestamp_ms) // 1000))


def announce_node(
    state: GossipState,
    alias: str,
    addresses: Sequence[str],
    now_ms: int,
    chain: ChainView,
    identity: Identity,
) -> list[GossipOutput]:
    """Our node announcement (call at start-up and when alias or addresses change): flooded
    once we have an announced channel, re-signed when it is half the horizon old."""
    _check_identity(state, identity)
    try:
        ALIAS.check(alias, "alias")
        ADDRESSES.check(list(addresses), "addresses")
    except RemoteProtocolError as error:  # what the validators raise for a peer's input
        raise UserError(str(error).removeprefix("field ")) from None
    current = state.own_node or state.nodes.get(state.config.node_id)
    if (
        current is not None
        and current.body.alias == alias
        and current.body.addresses == tuple(addresses)
        and current.body.timestamp_ms >= now_ms - state.config.refresh_ms
    ):
        state.own_node = current
        return []
    timestamp = now_ms if current is None else max(now_ms, current.body.timestamp_ms + 1)
    step = Step()
    _sign_own_node(state, step, alias, tuple(addresses), timestamp, now_ms, chain, identity)
    return step.outputs()


def _sign_own_node(
    state: GossipState,
    step: Step,
    alias: str,
    addresses: tuple[str, ...],
    timestamp_ms: int,
    now_ms: int,
    chain: ChainView,
    identity: Identity,
) -> None:
    body = NodeAnnouncementBody(
        state.config.chain_id, state.config.node_id, timestamp_ms, alias, addresses
    )
    own: NodeAnnouncement = sign_node_announcement(identity, body)
    state.own_node = own
    if state.graph.outgoing(state.config.node_id):
        process_node(state, step, None, own, now_ms, chain)


def refresh_local(
    state: GossipState, step: Step, now_ms: int, chain: ChainView, identity: Identity
) -> None:
    """Re-sign our updates and node announcement that are half the horizon old."""
    _check_identity(state, identity)
    stale = now_ms - state.config.refresh_ms
    for channel_id, local in list(state.local.items()):
        if local.update.body.timestamp_ms >= stale:
            continue
        timestamp = _next_timestamp(state, channel_id, now_ms)
        body = replace(local.update.body, timestamp_ms=timestamp)
        local = replace(local, update=sign_channel_update(identity, body))
        state.local[channel_id] = local
        step.put_local(local)
        if channel_id in state.channels:
            process_update(state, step, None, local.update, now_ms, chain)
    own = state.own_node
    if own is not None and own.body.timestamp_ms < stale:
        timestamp = max(now_ms, own.body.timestamp_ms + 1)
        alias, addresses = own.body.alias, own.body.addresses
        _sign_own_node(state, step, alias, addresses, timestamp, now_ms, chain, identity)
