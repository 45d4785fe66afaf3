"""Our own gossip: two partners announce their channel, set fees, announce themselves, and keep
their gossip fresh, over messages passed by hand."""

from __future__ import annotations

import pytest

from p2pchan.core.gossip import machine
from p2pchan.core.gossip.chain_view import ChainChannels
from p2pchan.core.gossip.outputs import GossipOutput, NotifyFault, PersistGossip, SendGossip
from p2pchan.core.gossip.state import (
    MINUTE_MS,
    RATE_BURST,
    REFRESH_MS,
    FeePolicy,
    GossipState,
)
from p2pchan.errors import LocalProtocolError, UserError
from p2pchan.wire.gossip_messages import (
    AnnouncementSignature,
    ChannelAnnouncement,
    ChannelUpdate,
    GossipBatch,
    GossipFilter,
    GossipMessage,
    NodeAnnouncement,
)
from tests.unit.gossip_helpers import (
    NOW_MS,
    channel_id,
    identity,
    open_on_chain,
    snapshot,
    state_of,
)

ALICE, BOB, MALLORY = identity("alice"), identity("bob"), identity("mallory")
AB = channel_id("alice-bob")
FEES = FeePolicy(fee_base=2, fee_ppm=300, min_amount=5, max_amount=10_000)


@pytest.fixture
def chain() -> ChainChannels:
    view = ChainChannels()
    open_on_chain(view, AB, ALICE, BOB)
    return view


def sent_to(outputs: list[GossipOutput], peer: bytes) -> list[GossipMessage]:
    return [
        message
        for output in outputs
        if isinstance(output, SendGossip) and output.peer == peer
        for message in output.messages
    ]


def flooded(outputs: list[GossipOutput]) -> list[object]:
    return [
        message
        for output in outputs
        if isinstance(output, SendGossip) and output.peer is None
        for batch in output.messages
        if isinstance(batch, GossipBatch)
        for message in batch.messages
    ]


def usable(
    state: GossipState, chain: ChainChannels, me: object, partner: object
) -> list[GossipOutput]:
    return machine.local_channel_usable(
        state,
        AB,
        partner.node_id,
        FEES,
        NOW_MS,
        chain,
        me,  # type: ignore[attr-defined]
    )


def test_two_partners_combine_their_halves_and_flood_the_announcement_and_updates(
    chain: ChainChannels,
) -> None:
    alice, bob = state_of(ALICE), state_of(BOB)
    from_alice = sent_to(usable(alice, chain, ALICE, BOB), BOB.node_id)
    from_bob = sent_to(usable(bob, chain, BOB, ALICE), ALICE.node_id)
    assert [type(m) for m in from_alice] == [AnnouncementSignature]
    assert alice.graph.channel(AB) is None  # half an announcement floods nothing
    for state, peer, messages in ((alice, BOB, from_bob), (bob, ALICE, from_alice)):
        outputs = machine.on_gossip(state, peer.node_id, messages[0], NOW_MS, chain)
        assert not [o for o in outputs if isinstance(o, NotifyFault)]
        assert state.local[AB].complete
        policy = state.graph.policy(AB, state.config.node_id)
        assert policy is not None and (policy.fee_base, policy.fee_ppm) == (2, 300)
    flood = flooded(machine.on_tick(alice, NOW_MS, chain, ALICE))
    assert [type(m) for m in flood] == [ChannelAnnouncement, ChannelUpdate]
    assert flood[0] == bob.channels[AB].announcement  # both built the same announcement
    # Bob hears Alice's update in the flood: both directions known on both sides.
    machine.on_gossip(bob, ALICE.node_id, GossipBatch(tuple(flood)), NOW_MS, chain)  # type: ignore[arg-type]
    assert bob.graph.policy(AB, ALICE.node_id) is not None


def test_a_half_that_comes_before_our_side_is_usable_waits_for_it(chain: ChainChannels) -> None:
    alice, bob = state_of(ALICE), state_of(BOB)
    [half] = sent_to(usable(bob, chain, BOB, ALICE), ALICE.node_id)
    assert machine.on_gossip(alice, BOB.node_id, half, NOW_MS, chain) == []
    usable(alice, chain, ALICE, BOB)
    assert alice.local[AB].complete
    assert alice.graph.channel(AB) is not None


def test_a_half_is_sent_again_on_reconnect_until_the_announcement_is_complete(
    chain: ChainChannels,
) -> None:
    alice, bob = state_of(ALICE), state_of(BOB)
    usable(alice, chain, ALICE, BOB)  # lost on the way
    [send] = machine.on_peer_connected(alice, BOB.node_id, NOW_MS)
    assert isinstance(send, SendGossip)
    [gossip_filter, half] = send.messages
    assert isinstance(gossip_filter, GossipFilter) and isinstance(half, AnnouncementSignature)
    machine.on_gossip(bob, ALICE.node_id, half, NOW_MS, chain)
    [half_back] = sent_to(usable(bob, chain, BOB, ALICE), ALICE.node_id)
    machine.on_gossip(alice, BOB.node_id, half_back, NOW_MS, chain)
    [send] = machine.on_peer_connected(alice, BOB.node_id, NOW_MS)
    assert isinstance(send, SendGossip)
    assert [type(m) for m in send.messages] == [GossipFilter]


def test_calling_usable_again_re_sends_only_a_missing_half(chain: ChainChannels) -> None:
    alice = state_of(ALICE)
    usable(alice, chain, ALICE, BOB)
    again = usable(alice, chain, ALICE, BOB)
    assert not [o for o in again if isinstance(o, PersistGossip)]
    assert [type(m) for m in sent_to(again, BOB.node_id)] == [AnnouncementSignature]
    with pytest.raises(LocalProtocolError):
        machine.local_channel_usable(alice, AB, MALLORY.node_id, FEES, NOW_MS, chain, ALICE)
    with pytest.raises(LocalProtocolError):
        machine.local_channel_usable(alice, AB, BOB.node_id, FEES, NOW_MS, chain, BOB)


def test_a_bad_half_or_one_from_a_stranger_is_refused_and_scored(chain: ChainChannels) -> None:
    alice, bob = state_of(ALICE), state_of(BOB)
    usable(alice, chain, ALICE, BOB)
    [half] = sent_to(usable(bob, chain, BOB, ALICE), ALICE.node_id)
    assert isinstance(half, AnnouncementSignature)
    before = snapshot(alice)
    for peer, message, code in (
        (BOB.node_id, AnnouncementSignature(AB, bytes(64)), "bad_signature"),
        (MALLORY.node_id, half, "not_partner"),
        (BOB.node_id, AnnouncementSignature(channel_id("other"), half.signature), "bad_signature"),
    ):
        [fault] = machine.on_gossip(alice, peer, message, NOW_MS, chain)
        assert isinstance(fault, NotifyFault) and fault.peer == peer
        assert fault.reason.startswith(code)
        assert snapshot(alice) == before


def test_set_local_policy_signs_a_newer_update_for_each_of_our_channels(
    chain: ChainChannels,
) -> None:
    alice, bob = state_of(ALICE), state_of(BOB)
    [half] = sent_to(usable(bob, chain, BOB, ALICE), ALICE.node_id)
    usable(alice, chain, ALICE, BOB)
    machine.on_gossip(alice, BOB.node_id, half, NOW_MS, chain)
    machine.flush(alice)
    # The clock has not moved (or went back): the new update is still strictly newer.
    outputs = machine.set_local_policy(alice, FeePolicy(fee_base=9), NOW_MS - 5, chain, ALICE)
    policy = alice.graph.policy(AB, ALICE.node_id)
    assert policy is not None and policy.fee_base == 9 and policy.timestamp_ms == NOW_MS + 1
    [persist] = [o for o in outputs if isinstance(o, PersistGossip)]
    assert persist.local[0].update.body.fee_base == 9
    assert [type(m) for m in flooded(machine.on_tick(alice, NOW_MS, chain, ALICE))] == [
        ChannelUpdate
    ]
    with pytest.raises(UserError, match="no channel"):
        machine.set_local_policy(alice, FEES, NOW_MS, chain, ALICE, [channel_id("not ours")])


def test_set_local_policy_refuses_more_changes_than_peers_accept(chain: ChainChannels) -> None:
    alice, bob = state_of(ALICE), state_of(BOB)
    [half] = sent_to(usable(bob, chain, BOB, ALICE), ALICE.node_id)
    usable(alice, chain, ALICE, BOB)
    machine.on_gossip(alice, BOB.node_id, half, NOW_MS, chain)
    for fee in range(RATE_BURST - 1):  # the first update used one of the burst
        machine.set_local_policy(alice, FeePolicy(fee_base=fee), NOW_MS, chain, ALICE)
    before = snapshot(alice)
    with pytest.raises(UserError, match="retry in"):
        machine.set_local_policy(alice, FeePolicy(fee_base=99), NOW_MS, chain, ALICE)
    assert snapshot(alice) == before
    machine.set_local_policy(alice, FeePolicy(fee_base=99), NOW_MS + MINUTE_MS, chain, ALICE)


def test_a_bad_fee_policy_is_one_clear_line() -> None:
    with pytest.raises(UserError, match="min_amount 5 exceeds max_amount 4"):
        FeePolicy(min_amount=5, max_amount=4)
    with pytest.raises(UserError, match="fee_base"):
        FeePolicy(fee_base=-1)
    with pytest.raises(UserError, match="fee_ppm"):
        FeePolicy(fee_ppm=2**32)


def test_our_node_is_announced_once_we_have_an_announced_channel(chain: ChainChannels) -> None:
    alice, bob = state_of(ALICE), state_of(BOB)
    assert machine.announce_node(alice, "alice", ["127.0.0.1:9735"], NOW_MS, chain, ALICE) == []
    assert alice.graph.node(ALICE.node_id) is None
    [half] = sent_to(usable(bob, chain, BOB, ALICE), ALICE.node_id)
    usable(alice, chain, ALICE, BOB)
    machine.on_gossip(alice, BOB.node_id, half, NOW_MS, chain)
    info = alice.graph.node(ALICE.node_id)
    assert info is not None and info.alias == "alice"
    flood = flooded(machine.on_tick(alice, NOW_MS, chain, ALICE))
    assert isinstance(flood[-1], NodeAnnouncement)
    # The same again changes nothing; a new address is a new, newer announcement.
    assert machine.announce_node(alice, "alice", ["127.0.0.1:9735"], NOW_MS, chain, ALICE) == []
    machine.announce_node(alice, "alice", ["10.0.0.1:9735"], NOW_MS, chain, ALICE)
    assert alice.graph.node(ALICE.node_id).addresses == ("10.0.0.1:9735",)  # type: ignore[union-attr]
    with pytest.raises(UserError, match="alias"):
        machine.announce_node(alice, "x" * 33, [], NOW_MS, chain, ALICE)
    with pytest.raises(UserError, match="addresses"):
        machine.announce_node(alice, "alice", ["no port"], NOW_MS, chain, ALICE)


def test_our_gossip_is_re_signed_before_peers_would_prune_it(chain: ChainChannels) -> None:
    alice, bob = state_of(ALICE), state_of(BOB)
    [half] = sent_to(usable(bob, chain, BOB, ALICE), ALICE.node_id)
    usable(alice, chain, ALICE, BOB)
    machine.on_gossip(alice, BOB.node_id, half, NOW_MS, chain)
    machine.announce_node(alice, "alice", [], NOW_MS, chain, ALICE)
    machine.flush(alice)
    assert flooded(machine.on_tick(alice, NOW_MS + REFRESH_MS, chain, ALICE)) == []
    later = NOW_MS + REFRESH_MS + 1
    flood = flooded(machine.on_tick(alice, later, chain, ALICE))
    assert [type(m) for m in flood] == [ChannelUpdate, NodeAnnouncement]
    assert alice.graph.policy(AB, ALICE.node_id).timestamp_ms == later  # type: ignore[union-attr]
    assert alice.graph.node(ALICE.node_id).timestamp_ms == later  # type: ignore[union-attr]


def test_closing_our_channel_forgets_our_record_of_it(chain: ChainChannels) -> None:
    alice = state_of(ALICE)
    usable(alice, chain, ALICE, BOB)
    [persist] = [
        o for o in machine.on_chain_channel_closed(alice, AB) if isinstance(o, PersistGossip)
    ]
    assert persist.removed_channels == (AB,)
    assert alice.local == {}
    [send] = machine.on_peer_connected(alice, BOB.node_id, NOW_MS)
    assert isinstance(send, SendGossip) and len(send.messages) == 1


def test_a_partner_that_lost_our_half_gets_the_whole_announcement(chain: ChainChannels) -> None:
    alice, bob = state_of(ALICE), state_of(BOB)
    [half_a] = sent_to(usable(alice, chain, ALICE, BOB), BOB.node_id)
    [half_b] = sent_to(usable(bob, chain, BOB, ALICE), ALICE.node_id)
    machine.on_gossip(alice, BOB.node_id, half_b, NOW_MS, chain)  # Alice complete; half_a lost
    [send] = machine.on_peer_connected(bob, ALICE.node_id, NOW_MS)
    assert isinstance(send, SendGossip)
    answer = machine.on_gossip(alice, BOB.node_id, send.messages[1], NOW_MS, chain)
    [batch] = sent_to(answer, BOB.node_id)
    machine.on_gossip(bob, ALICE.node_id, batch, NOW_MS, chain)
    assert bob.local[AB].complete and bob.graph.channel(AB) is not None
    # A late copy of Alice's half gets her the announcement back, which she takes as a
    # duplicate and answers nothing: no ping-pong.
    [back] = sent_to(machine.on_gossip(bob, ALICE.node_id, half_a, NOW_MS, chain), ALICE.node_id)
    assert machine.on_gossip(alice, BOB.node_id, back, NOW_MS, chain) == []
