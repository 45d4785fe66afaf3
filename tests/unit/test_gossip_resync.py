"""Gossip heals itself: what a node lost while a message waited, or on a long session, comes
back.

A flood sends each message over each link once. Before these rules a message that expired in
a holding area was gone for good (the copies other peers relayed meanwhile had been dropped as
duplicates of it), and a session that lost a message never re-synced. Now a copy of a held
message restarts its wait, and every few minutes a node asks one peer in turn for what it lacks.
"""

from __future__ import annotations

from typing import Any

import pytest

from p2pchan.core.gossip import machine
from p2pchan.core.gossip.chain_view import ChainChannels
from p2pchan.core.gossip.outputs import GossipOutput, NotifyFault, PersistGossip, SendGossip
from p2pchan.core.gossip.state import (
    FUTURE_SKEW_MS,
    HOLD_MIN_BLOCKS_MS,
    HOLD_MS,
    MINUTE_MS,
    RESYNC_INTERVAL_MS,
    FeePolicy,
    GossipState,
)
from p2pchan.core.gossip.sync import filter_since
from p2pchan.core.inputs import ReceivePeerConnected, ReceivePeerDisconnected, Tick
from p2pchan.crypto.transport import MAX_BODY_SIZE
from p2pchan.types import NodeId
from p2pchan.wire.gossip_messages import GossipBatch, GossipFilter
from p2pchan.wire.peer_messages import PEER_MESSAGES
from tests.unit.gossip_helpers import (
    NOW_MS,
    announcement,
    channel_id,
    identity,
    node_announcement,
    open_on_chain,
    state_of,
    update,
)
from tests.unit.gossip_network import build
from tests.unit.node_helpers import Nodes

ALICE, BOB, CAROL, DAVE, ERIN, FRANK = (
    identity(n) for n in ("alice", "bob", "carol", "dave", "erin", "frank")
)
AB = channel_id("alice-bob")


@pytest.fixture
def chain() -> ChainChannels:
    view = ChainChannels()
    open_on_chain(view, AB, ALICE, BOB)
    return view


@pytest.fixture
def carol() -> GossipState:
    return state_of(CAROL)


def receive(
    state: GossipState, message: Any, chain: ChainChannels, *, peer: Any, now_ms: int
) -> list[GossipOutput]:
    return machine.on_gossip(state, peer.node_id, message, now_ms, chain)


def faults(outputs: list[GossipOutput]) -> list[NotifyFault]:
    return [output for output in outputs if isinstance(output, NotifyFault)]


def filters(outputs: list[GossipOutput]) -> list[tuple[NodeId | None, GossipFilter]]:
    return [
        (output.peer, message)
        for output in outputs
        if isinstance(output, SendGossip)
        for message in output.messages
        if isinstance(message, GossipFilter)
    ]


# -- a copy of a held message keeps it waiting ---------------------------------------------


def test_a_held_update_lives_on_while_peers_still_relay_it(
    carol: GossipState, chain: ChainChannels
) -> None:
    signed = update(AB, ALICE)
    receive(carol, signed, chain, peer=DAVE, now_ms=NOW_MS)  # held: no announcement yet
    receive(carol, signed, chain, peer=ERIN, now_ms=NOW_MS + 20_000)  # the same, relayed
    # Past the first copy's wait, within the second's: still held, not lost.
    machine.on_tick(carol, NOW_MS + HOLD_MS + 1, chain, CAROL)
    assert len(carol.held_updates) == 1
    receive(carol, announcement(AB, ALICE, BOB), chain, peer=BOB, now_ms=NOW_MS + 40_000)
    assert carol.graph.policy(AB, ALICE.node_id) is not None
    # And it still expires once nobody has sent it for the whole wait.
    other = channel_id("never announced")
    receive(carol, update(other, ALICE), chain, peer=DAVE, now_ms=NOW_MS + 40_000)
    machine.on_tick(carol, NOW_MS + 40_000 + HOLD_MS + 1, chain, CAROL)
    assert len(carol.held_updates) == 0


def test_only_an_identical_copy_restarts_the_wait(carol: GossipState, chain: ChainChannels) -> None:
    receive(carol, update(AB, ALICE, fee_base=1), chain, peer=DAVE, now_ms=NOW_MS)
    # Same direction and timestamp, other content (a signer that equivocates): dropped, and
    # it does not keep the first one waiting.
    conflicting = update(AB, ALICE, fee_base=2)
    outputs = receive(carol, conflicting, chain, peer=ERIN, now_ms=NOW_MS + 20_000)
    assert faults(outputs) == []
    machine.on_tick(carol, NOW_MS + HOLD_MS + 1, chain, CAROL)
    assert len(carol.held_updates) == 0


def test_a_held_node_announcement_lives_on_while_peers_still_relay_it(
    carol: GossipState, chain: ChainChannels
) -> None:
    signed = node_announcement(ALICE, alias="alice")
    receive(carol, signed, chain, peer=DAVE, now_ms=NOW_MS)
    receive(carol, signed, chain, peer=ERIN, now_ms=NOW_MS + 25_000)
    machine.on_tick(carol, NOW_MS + HOLD_MS + 1, chain, CAROL)
    receive(carol, announcement(AB, ALICE, BOB), chain, peer=BOB, now_ms=NOW_MS + 50_000)
    assert carol.graph.node(ALICE.node_id) is not None


def test_copies_of_a_held_announcement_do_not_put_off_its_refusal(
    carol: GossipState, chain: ChainChannels
) -> None:
    """Otherwise a peer could keep an invented channel held, unscored, forever."""
    invented = announcement(channel_id("invented"), ALICE, BOB)
    outputs: list[GossipOutput] = []
    for block in range(3):  # a copy every block: the wait still ends on time
        now_ms = NOW_MS + block * HOLD_MIN_BLOCKS_MS // 2
        receive(carol, invented, chain, peer=DAVE, now_ms=now_ms)
        chain.apply_block(chain.height + 1, [])
        outputs = machine.on_chain_block(carol, [], now_ms, chain)
    [fault] = faults(outputs)
    assert (fault.peer, fault.points) == (DAVE.node_id, 10)
    assert fault.reason.startswith("not_on_chain")


# -- the periodic re-sync ------------------------------------------------------------------


def test_an_update_lost_while_it_waited_comes_back_with_the_next_resync(
    chain: ChainChannels,
) -> None:
    """The loss `bench gossip` once showed: an update expires while its channel's
    announcement is late, the copies were dropped, and only a re-sync brings it back."""
    carol, dave = state_of(CAROL), state_of(DAVE)
    machine.on_peer_connected(carol, DAVE.node_id, NOW_MS)
    machine.on_peer_connected(dave, CAROL.node_id, NOW_MS)
    for message in (announcement(AB, ALICE, BOB), update(AB, ALICE), update(AB, BOB)):
        receive(dave, message, chain, peer=ALICE, now_ms=NOW_MS)
    receive(carol, update(AB, ALICE), chain, peer=DAVE, now_ms=NOW_MS)  # before its channel
    machine.on_tick(carol, NOW_MS + HOLD_MS + 1, chain, CAROL)  # expired
    later = NOW_MS + 2 * HOLD_MS
    receive(carol, announcement(AB, ALICE, BOB), chain, peer=DAVE, now_ms=later)
    receive(carol, update(AB, BOB), chain, peer=DAVE, now_ms=later)
    assert carol.graph.policy(AB, ALICE.node_id) is None  # lost: nothing would bring it back

    at = NOW_MS + RESYNC_INTERVAL_MS
    [(peer, request)] = filters(machine.on_tick(carol, at, chain, CAROL))
    assert peer == DAVE.node_id
    assert request == GossipFilter(NOW_MS - FUTURE_SKEW_MS)  # as on connect
    answer = machine.on_gossip(dave, CAROL.node_id, request, at, chain)
    assert faults(answer) == []  # not a sync_flood: the session's first ask was 5 minutes ago
    for output in answer:
        assert isinstance(output, SendGossip) and output.peer == CAROL.node_id
        for message in output.messages:
            assert faults(machine.on_gossip(carol, DAVE.node_id, message, at, chain)) == []
    assert carol.graph.policy(AB, ALICE.node_id) is not None


def test_messages_lost_on_a_long_session_are_repaired_and_the_graphs_converge() -> None:
    network, nodes, channels = build(10)
    lost = nodes[5]
    # Node 5 misses a fee change entirely (busy, its frames dropped), its sessions stay up.
    links = {peer: set(network.links[peer]) for peer in network.links}
    for peer in network.links[lost]:
        network.links[peer].discard(lost)
    network.links[lost] = set()
    network.carry(
        nodes[0],
        machine.set_local_policy(
            network.states[nodes[0]],
            FeePolicy(fee_base=77),
            network.now_ms + 1,
            network.chain,
            network.identities[nodes[0]],
        ),
    )
    network.settle()
    network.links.update(links)
    with pytest.raises(AssertionError):
        network.assert_converged()
    # Five minutes on, every node asks one of its peers again; no peer takes it for a flood.
    network.now_ms += RESYNC_INTERVAL_MS
    network.settle()
    network.assert_converged()
    assert network.faults == []
    assert channels


def test_each_resync_asks_the_peer_asked_longest_ago_one_per_interval(
    carol: GossipState, chain: ChainChannels
) -> None:
    peers = sorted((DAVE.node_id, ERIN.node_id, FRANK.node_id))
    for peer in peers:
        machine.on_peer_connected(carol, peer, NOW_MS)

    def asked_at(now_ms: int) -> list[NodeId | None]:
        return [peer for peer, _ in filters(machine.on_tick(carol, now_ms, chain, CAROL))]

    assert asked_at(NOW_MS + RESYNC_INTERVAL_MS - 1) == []  # each was asked on connect
    assert asked_at(NOW_MS + RESYNC_INTERVAL_MS) == [peers[0]]
    assert asked_at(NOW_MS + RESYNC_INTERVAL_MS + MINUTE_MS) == []  # one per interval
    assert asked_at(NOW_MS + 2 * RESYNC_INTERVAL_MS) == [peers[1]]
    assert asked_at(NOW_MS + 3 * RESYNC_INTERVAL_MS) == [peers[2]]
    # A session that just started was asked on connect: the next in turn is asked instead.
    machine.on_peer_connected(carol, peers[0], NOW_MS + 4 * RESYNC_INTERVAL_MS - MINUTE_MS)
    assert asked_at(NOW_MS + 4 * RESYNC_INTERVAL_MS) == [peers[1]]
    # A peer that left is not asked; with no session old enough, nobody is.
    machine.on_peer_disconnected(carol, peers[2])
    assert asked_at(NOW_MS + 5 * RESYNC_INTERVAL_MS) == [peers[0]]
    machine.on_peer_disconnected(carol, peers[0])
    machine.on_peer_disconnected(carol, peers[1])
    assert asked_at(NOW_MS + 9 * RESYNC_INTERVAL_MS) == []
    assert carol.sessions == {}


def test_a_peer_that_answers_every_resync_is_never_flooded_by_it(
    carol: GossipState, chain: ChainChannels
) -> None:
    """The asker keeps to one ask a peer per interval, far inside the once-a-minute limit."""
    dave = state_of(DAVE)
    machine.on_peer_connected(carol, DAVE.node_id, NOW_MS)
    machine.on_gossip(dave, CAROL.node_id, GossipFilter(0), NOW_MS, chain)
    now = NOW_MS
    for _ in range(60 * 60 * 10):  # an hour of ticks, every 100 ms
        now += 100
        for peer, request in filters(machine.on_tick(carol, now, chain, CAROL)):
            assert peer == DAVE.node_id
            assert faults(machine.on_gossip(dave, CAROL.node_id, request, now, chain)) == []
    assert carol.last_resync_ms == NOW_MS + 12 * RESYNC_INTERVAL_MS


def test_the_node_asks_a_connected_peer_again_on_its_tick_and_not_once_it_left() -> None:
    nodes = Nodes.create("alice", "bob")
    bob = nodes["bob"].node_id
    start = nodes.now_ms
    nodes.feed("alice", Tick(start))  # the shell's first steps bring the time before peers
    [(peer, _)] = filters(nodes.feed("alice", ReceivePeerConnected(bob)))  # on connect
    assert filters(nodes.feed("alice", Tick(start + RESYNC_INTERVAL_MS - 100))) == []
    [(peer, _)] = filters(nodes.feed("alice", Tick(start + RESYNC_INTERVAL_MS)))
    assert peer == NodeId(bob)
    nodes.feed("alice", ReceivePeerDisconnected(bob))
    assert filters(nodes.feed("alice", Tick(start + 3 * RESYNC_INTERVAL_MS))) == []


# -- what one re-sync costs ----------------------------------------------------------------


def graph_of_50_nodes_and_100_channels() -> tuple[GossipState, ChainChannels]:
    """A node that knows the `bench gossip` graph: 100 channels (a ring through 50 nodes and
    50 chords), both directions' updates, and 50 node announcements."""
    chain = ChainChannels()
    state = state_of(CAROL)
    people = [identity(f"bench node {index}") for index in range(50)]
    pairs = [(i, (i + 1) % 50) for i in range(50)] + [(i, (i + 17) % 50) for i in range(50)]
    for i, j in pairs:
        channel = channel_id(f"bench {i}-{j}")
        open_on_chain(chain, channel, people[i], people[j])
        messages = [
            announcement(channel, people[i], people[j]),
            update(channel, people[i], NOW_MS - i),
            update(channel, people[j], NOW_MS - j),
        ]
        for message in messages:
            assert faults(receive(state, message, chain, peer=DAVE, now_ms=NOW_MS)) == []
    for index, person in enumerate(people):
        signed = node_announcement(person, NOW_MS - index, alias=f"n{index}")
        assert faults(receive(state, signed, chain, peer=DAVE, now_ms=NOW_MS)) == []
    machine.flush(state)
    return state, chain


def test_one_resync_on_the_bench_graph_is_one_filter_and_two_frames_and_changes_nothing() -> None:
    """What one re-sync costs on a 50-node, 100-channel graph whose messages are all recent
    (as in `bench gossip`): the whole graph, in as few frames as it fits; the asker, already
    knowing all of it, drops every message at the look-up, stores and relays nothing."""
    dave, chain = graph_of_50_nodes_and_100_channels()
    carol, _ = graph_of_50_nodes_and_100_channels()
    request = GossipFilter(filter_since(carol))
    request_bytes = len(PEER_MESSAGES.encode(request))
    answer = machine.on_gossip(dave, CAROL.node_id, request, NOW_MS, chain)
    [send] = answer
    assert isinstance(send, SendGossip)
    batches = [message for message in send.messages if isinstance(message, GossipBatch)]
    assert len(batches) == len(send.messages) == 2
    assert sum(len(batch.messages) for batch in batches) == 100 + 200 + 50
    answer_bytes = sum(len(PEER_MESSAGES.encode(batch)) for batch in batches)
    assert request_bytes < 16
    assert answer_bytes <= 2 * MAX_BODY_SIZE
    for batch in batches:
        outputs = machine.on_gossip(carol, DAVE.node_id, batch, NOW_MS, chain)
        assert not [o for o in outputs if isinstance(o, (PersistGossip, NotifyFault))]
    assert machine.flush(carol) == []
