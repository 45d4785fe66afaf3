"""The gossip machine's rules, one by one, as a node sees a peer's gossip.

Carol watches a network she is not part of, and Mallory (or Dave, an honest relay) sends her
gossip. Every refusal must leave Carol's state untouched (her routing graph included) and be
scored against the sender exactly when it is the sender's fault.
"""

from __future__ import annotations

from typing import Any

import pytest

from p2pchan.core.gossip import machine
from p2pchan.core.gossip.chain_view import ChainChannels
from p2pchan.core.gossip.outputs import GossipOutput, NotifyFault, PersistGossip, SendGossip
from p2pchan.core.gossip.receive import check_channel_update
from p2pchan.core.gossip.state import (
    FUTURE_SKEW_MS,
    HOLD_MIN_BLOCKS_MS,
    HOLD_MS,
    HORIZON_MS,
    MINUTE_MS,
    RATE_BURST,
    GossipState,
)
from p2pchan.errors import GossipRefused, InvalidGossip, LocalProtocolError
from p2pchan.l1.events import (
    ChannelClosed,
    ChannelCooperativelySettled,
    ChannelDeposited,
    ChannelOpened,
    ChannelSettled,
)
from p2pchan.types import Address
from p2pchan.wire.gossip_messages import (
    ChannelAnnouncement,
    ChannelUpdate,
    FloodMessage,
    GossipBatch,
    GossipFilter,
)
from p2pchan.wire.peer_messages import Ping
from tests.unit.gossip_helpers import (
    CAPACITY,
    NOW_MS,
    OTHER_CHAIN,
    SETTLE_TIMEOUT,
    announcement,
    channel_id,
    forged,
    identity,
    node_announcement,
    open_on_chain,
    snapshot,
    state_of,
    update,
)

ALICE, BOB, CAROL, DAVE, MALLORY = (
    identity(n) for n in ("alice", "bob", "carol", "dave", "mallory")
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
    state: GossipState,
    message: Any,
    chain: ChainChannels,
    *,
    peer: Any = None,
    now_ms: int = NOW_MS,
) -> list[GossipOutput]:
    return machine.on_gossip(state, (peer or MALLORY).node_id, message, now_ms, chain)


def faults(outputs: list[GossipOutput]) -> list[NotifyFault]:
    return [output for output in outputs if isinstance(output, NotifyFault)]


def persisted(outputs: list[GossipOutput]) -> list[PersistGossip]:
    return [output for output in outputs if isinstance(output, PersistGossip)]


def flooded(state: GossipState) -> list[tuple[list[FloodMessage], frozenset[bytes]]]:
    """What the next flush sends: each group's messages and the peers excluded."""
    sends = machine.flush(state)
    assert all(send.peer is None for send in sends)
    return [
        (
            [
                m
                for batch in send.messages
                if isinstance(batch, GossipBatch)
                for m in batch.messages
            ],
            send.exclude,
        )
        for send in sends
    ]


def assert_refused(
    state: GossipState,
    message: Any,
    chain: ChainChannels,
    *,
    code: str,
    points: int | None,
    budgeted: bool = False,
    now_ms: int = NOW_MS,
) -> None:
    """Refused with `code`: state untouched, nothing persisted or sent, scored `points`."""
    before = snapshot(state)
    outputs = receive(state, message, chain, now_ms=now_ms)
    assert snapshot(state) == before
    assert not persisted(outputs)
    assert not [o for o in outputs if isinstance(o, SendGossip)]
    if points is None:
        assert faults(outputs) == []
    else:
        [fault] = faults(outputs)
        assert fault.peer == MALLORY.node_id
        assert fault.points == points
        assert fault.reason.startswith(code)
        assert fault.budgeted == budgeted


def announced(state: GossipState, chain: ChainChannels) -> None:
    assert not faults(receive(state, announcement(AB, ALICE, BOB), chain, peer=DAVE))
    assert state.graph.channel(AB) is not None


# -- channel announcements ----------------------------------------------------------------


def test_an_announcement_of_a_channel_open_on_layer_1_is_accepted_with_its_capacity(
    carol: GossipState, chain: ChainChannels
) -> None:
    message = announcement(AB, ALICE, BOB)
    outputs = receive(carol, message, chain, peer=DAVE)
    assert faults(outputs) == []
    [persist] = persisted(outputs)
    assert [known.announcement for known in persist.channels] == [message]
    graph_channel = carol.graph.channel(AB)
    assert graph_channel is not None
    assert (graph_channel.capacity, graph_channel.settle_timeout) == (CAPACITY, SETTLE_TIMEOUT)
    assert flooded(carol) == [([message], frozenset({DAVE.node_id}))]


def test_a_deposit_on_layer_1_changes_an_announced_channel_capacity(
    carol: GossipState, chain: ChainChannels
) -> None:
    announced(carol, chain)
    event = ChannelDeposited(AB, Address(BOB.node_id), 500)
    chain.apply_block(chain.height + 1, [event])
    outputs = machine.on_chain_block(carol, [event], NOW_MS, chain)
    assert carol.graph.channel(AB).capacity == CAPACITY + 500  # type: ignore[union-attr]
    [persist] = persisted(outputs)
    assert persist.channels[0].capacity == CAPACITY + 500


def test_an_announcement_between_other_nodes_than_layer_1_shows_is_refused_and_scored(
    carol: GossipState, chain: ChainChannels
) -> None:
    assert_refused(carol, announcement(AB, ALICE, MALLORY), chain, code="wrong_nodes", points=20)


def test_an_announcement_of_a_channel_closed_on_layer_1_is_refused_and_scored(
    carol: GossipState, chain: ChainChannels
) -> None:
    chain.apply_block(chain.height + 1, [ChannelClosed(AB, Address(ALICE.node_id), 2, 0, 0)])
    assert_refused(
        carol, announcement(AB, ALICE, BOB), chain, code="channel_closed", points=5, budgeted=True
    )


@pytest.mark.parametrize("which", ["first", "second", "other chain", "other channel"])
def test_an_announcement_with_a_bad_signature_is_refused_and_scored(
    carol: GossipState, chain: ChainChannels, which: str
) -> None:
    good = announcement(AB, ALICE, BOB)
    bad = {
        "first": ChannelAnnouncement(AB, good.node1, good.node2, bytes(64), good.signature2),
        "second": ChannelAnnouncement(AB, good.node1, good.node2, good.signature1, good.signature1),
        "other chain": announcement(AB, ALICE, BOB, chain=OTHER_CHAIN),
        "other channel": ChannelAnnouncement(
            AB, good.node1, good.node2, *_signatures(announcement(channel_id("x"), ALICE, BOB))
        ),
    }[which]
    assert_refused(carol, bad, chain, code="bad_signature", points=20)


def _signatures(message: ChannelAnnouncement) -> tuple[bytes, bytes]:
    return message.signature1, message.signature2


def test_an_announcement_layer_1_does_not_show_yet_waits_unscored_for_the_next_blocks(
    carol: GossipState, chain: ChainChannels
) -> None:
    channel = channel_id("carol lags")
    message = announcement(channel, ALICE, BOB)
    outputs = receive(carol, message, chain, peer=DAVE)
    assert outputs == []
    assert carol.graph.channel(channel) is None
    # The block that opens it arrives: the announcement is taken and flooded, unscored.
    events = [ChannelOpened(channel, Address(BOB.node_id), Address(ALICE.node_id), 50)]
    chain.apply_block(chain.height + 1, events)
    outputs = machine.on_chain_block(carol, events, NOW_MS, chain)
    assert faults(outputs) == []
    assert carol.graph.channel(channel).settle_timeout == 50  # type: ignore[union-attr]
    assert flooded(carol) == [([message], frozenset({DAVE.node_id}))]


def test_an_announcement_layer_1_still_does_not_show_blocks_later_is_scored(
    carol: GossipState, chain: ChainChannels
) -> None:
    message = announcement(channel_id("invented"), ALICE, BOB)
    assert receive(carol, message, chain) == []
    later = NOW_MS + HOLD_MIN_BLOCKS_MS
    for _ in range(2):  # within the wait: nothing
        chain.apply_block(chain.height + 1, [])
        assert machine.on_chain_block(carol, [], later, chain) == []
    chain.apply_block(chain.height + 1, [])
    [fault] = faults(machine.on_chain_block(carol, [], later, chain))
    assert (fault.peer, fault.points) == (MALLORY.node_id, 10)
    assert fault.reason.startswith("not_on_chain")
    assert len(carol.held_announcements) == 0
    assert carol.graph.channel_count() == 0


def test_an_honest_announcement_waits_while_our_chain_view_catches_up(
    carol: GossipState, chain: ChainChannels
) -> None:
    """Our view lags layer 1: queued blocks are applied back to back, the channel's block
    still ahead. Blocks alone do not refuse (and score) the honest peer; its channel shows."""
    channel = channel_id("ahead of us")
    message = announcement(channel, ALICE, BOB)
    assert receive(carol, message, chain, peer=DAVE) == []
    for step in range(5):  # five blocks within a second
        chain.apply_block(chain.height + 1, [])
        assert machine.on_chain_block(carol, [], NOW_MS + 200 * step, chain) == []
    events = [ChannelOpened(channel, Address(ALICE.node_id), Address(BOB.node_id), 50)]
    chain.apply_block(chain.height + 1, events)
    assert faults(machine.on_chain_block(carol, events, NOW_MS + 1_000, chain)) == []
    assert carol.graph.channel(channel) is not None


def test_a_held_announcement_that_layer_1_shows_between_other_nodes_is_scored(
    carol: GossipState, chain: ChainChannels
) -> None:
    channel = channel_id("lie")
    receive(carol, announcement(channel, ALICE, BOB), chain)
    events = [ChannelOpened(channel, Address(ALICE.node_id), Address(DAVE.node_id), 50)]
    chain.apply_block(chain.height + 1, events)
    [fault] = faults(machine.on_chain_block(carol, events, NOW_MS, chain))
    assert fault.reason.startswith("wrong_nodes")
    assert carol.graph.channel(channel) is None


def test_a_held_announcement_is_dropped_unscored_when_the_chain_stalls(
    carol: GossipState, chain: ChainChannels
) -> None:
    receive(carol, announcement(channel_id("later"), ALICE, BOB), chain)
    outputs = machine.on_tick(carol, NOW_MS + HOLD_MS + 1, chain, CAROL)
    assert faults(outputs) == []
    assert len(carol.held_announcements) == 0


def test_a_known_announcement_again_is_a_duplicate_not_relayed_twice(
    carol: GossipState, chain: ChainChannels
) -> None:
    message = announcement(AB, ALICE, BOB)
    receive(carol, message, chain, peer=DAVE)
    outputs = receive(carol, message, chain, peer=ALICE)
    assert outputs == []
    [(messages, exclude)] = flooded(carol)
    assert messages == [message]
    assert exclude == {DAVE.node_id, ALICE.node_id}  # neither gets it back


# -- channel updates ----------------------------------------------------------------------


def test_an_update_sets_its_direction_policy_in_the_routing_graph(
    carol: GossipState, chain: ChainChannels
) -> None:
    announced(carol, chain)
    machine.flush(carol)
    signed = update(AB, ALICE, fee_base=3, fee_ppm=7, min_amount=2, max_amount=900)
    outputs = receive(carol, signed, chain, peer=DAVE)
    assert faults(outputs) == []
    policy = carol.graph.policy(AB, ALICE.node_id)
    assert policy is not None
    assert (policy.fee_base, policy.fee_ppm, policy.min_amount, policy.max_amount) == (3, 7, 2, 900)
    assert policy.timestamp_ms == NOW_MS
    assert carol.graph.policy(AB, BOB.node_id) is None
    [persist] = persisted(outputs)
    assert persist.updates == (signed,)
    assert flooded(carol) == [([signed], frozenset({DAVE.node_id}))]


def test_the_newest_timestamp_wins_and_older_or_equal_ones_are_dropped_unscored(
    carol: GossipState, chain: ChainChannels
) -> None:
    announced(carol, chain)
    receive(carol, update(AB, ALICE, NOW_MS, fee_base=1), chain, peer=DAVE)
    receive(carol, update(AB, ALICE, NOW_MS + 5, fee_base=2), chain, peer=DAVE)
    assert carol.graph.policy(AB, ALICE.node_id).fee_base == 2  # type: ignore[union-attr]
    assert_refused(carol, update(AB, ALICE, NOW_MS + 5, fee_base=9), chain, code="", points=None)
    assert_refused(carol, update(AB, ALICE, NOW_MS + 4, fee_base=9), chain, code="", points=None)
    with pytest.raises(GossipRefused, match="stale") as refused:
        check_channel_update(carol, update(AB, ALICE, NOW_MS + 1), NOW_MS, chain)
    assert not isinstance(refused.value, InvalidGossip)


def test_an_update_dated_more_than_ten_minutes_ahead_is_refused_and_scored(
    carol: GossipState, chain: ChainChannels
) -> None:
    announced(carol, chain)
    ahead = update(AB, ALICE, NOW_MS + FUTURE_SKEW_MS + 1)
    assert_refused(carol, ahead, chain, code="future_timestamp", points=10)
    assert not faults(receive(carol, update(AB, ALICE, NOW_MS + FUTURE_SKEW_MS), chain))


def test_an_update_older_than_the_horizon_is_dropped_unscored(
    carol: GossipState, chain: ChainChannels
) -> None:
    announced(carol, chain)
    old = update(AB, ALICE, NOW_MS - HORIZON_MS - 1)
    assert_refused(carol, old, chain, code="expired", points=None)


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda: forged(update(AB, ALICE), MALLORY), "bad_signature"),
        (lambda: update(AB, ALICE, chain=OTHER_CHAIN), "wrong_chain"),
        (lambda: update(AB, MALLORY), "not_a_participant"),
        (lambda: update(AB, ALICE, min_amount=10, max_amount=9), "bad_limits"),
    ],
)
def test_an_invalid_update_is_refused_and_scored(
    carol: GossipState, chain: ChainChannels, make: Any, code: str
) -> None:
    announced(carol, chain)
    assert_refused(carol, make(), chain, code=code, points=20)


def test_updates_beyond_the_rate_of_a_direction_are_dropped_and_scored_as_budgeted(
    carol: GossipState, chain: ChainChannels
) -> None:
    announced(carol, chain)
    for index in range(RATE_BURST):
        assert not faults(receive(carol, update(AB, ALICE, NOW_MS + index), chain))
    assert_refused(
        carol,
        update(AB, ALICE, NOW_MS + RATE_BURST),
        chain,
        code="rate_limited",
        points=2,
        budgeted=True,
    )
    # The other direction has its own allowance.
    assert not faults(receive(carol, update(AB, BOB, NOW_MS), chain))
    # Allowance comes back with the signer's clock: one update a minute.
    later = NOW_MS + MINUTE_MS + RATE_BURST
    assert not faults(receive(carol, update(AB, ALICE, later), chain, now_ms=later))
    assert faults(receive(carol, update(AB, ALICE, later + 1), chain, now_ms=later))


def test_an_update_that_overtakes_its_announcement_waits_for_it(
    carol: GossipState, chain: ChainChannels
) -> None:
    signed = update(AB, ALICE)
    assert receive(carol, signed, chain, peer=DAVE) == []  # held, unscored
    assert carol.graph.channel(AB) is None
    message = announcement(AB, ALICE, BOB)
    outputs = receive(carol, message, chain, peer=BOB)
    assert faults(outputs) == []
    assert carol.graph.policy(AB, ALICE.node_id) is not None
    # Relayed in order: the announcement first, to everyone but who sent each.
    assert flooded(carol) == [
        ([message], frozenset({BOB.node_id})),
        ([signed], frozenset({DAVE.node_id})),
    ]


def test_a_held_update_whose_channel_never_comes_is_dropped_unscored(
    carol: GossipState, chain: ChainChannels
) -> None:
    receive(carol, update(channel_id("never"), ALICE), chain)
    assert len(carol.held_updates) == 1
    outputs = machine.on_tick(carol, NOW_MS + HOLD_MS + 1, chain, CAROL)
    assert faults(outputs) == []
    assert len(carol.held_updates) == 0


def test_a_held_update_with_a_bad_signature_is_scored_at_once(
    carol: GossipState, chain: ChainChannels
) -> None:
    assert_refused(
        carol,
        forged(update(channel_id("x"), ALICE), MALLORY),
        chain,
        code="bad_signature",
        points=20,
    )


def test_an_update_of_a_channel_closed_on_layer_1_is_dropped_unscored(
    carol: GossipState, chain: ChainChannels
) -> None:
    chain.apply_block(chain.height + 1, [ChannelClosed(AB, Address(ALICE.node_id), 2, 0, 0)])
    assert_refused(carol, update(AB, ALICE), chain, code="channel_closed", points=None)


def test_the_holding_area_is_bounded_per_peer(chain: ChainChannels) -> None:
    carol = state_of(CAROL, max_held_per_peer=3)
    for index in range(5):
        receive(carol, update(channel_id(f"unknown {index}"), ALICE), chain)
    assert len(carol.held_updates) == 3
    receive(carol, update(channel_id("from dave"), ALICE), chain, peer=DAVE)
    assert len(carol.held_updates) == 4


# -- node announcements -------------------------------------------------------------------


def test_a_node_is_announced_only_once_it_has_an_announced_channel(
    carol: GossipState, chain: ChainChannels
) -> None:
    signed = node_announcement(ALICE, alias="alice")
    assert receive(carol, signed, chain, peer=DAVE) == []  # waits for a channel
    assert carol.graph.node(ALICE.node_id) is None
    announced(carol, chain)
    info = carol.graph.node(ALICE.node_id)
    assert info is not None
    assert (info.alias, info.addresses) == ("alice", ("127.0.0.1:9735",))
    newer = node_announcement(ALICE, NOW_MS + 1, alias="alice 2")
    receive(carol, newer, chain)
    assert carol.graph.node(ALICE.node_id).alias == "alice 2"  # type: ignore[union-attr]
    assert_refused(
        carol, node_announcement(ALICE, NOW_MS + 1, alias="x"), chain, code="", points=None
    )


def test_a_node_announcement_without_a_channel_is_dropped_after_a_while(
    carol: GossipState, chain: ChainChannels
) -> None:
    receive(carol, node_announcement(DAVE), chain)
    machine.on_tick(carol, NOW_MS + HOLD_MS + 1, chain, CAROL)
    announced(carol, chain)
    assert carol.graph.node(DAVE.node_id) is None


@pytest.mark.parametrize(
    ("make", "code", "points"),
    [
        (lambda: forged(node_announcement(ALICE), MALLORY), "bad_signature", 20),
        (lambda: node_announcement(ALICE, chain=OTHER_CHAIN), "wrong_chain", 20),
        (lambda: node_announcement(ALICE, NOW_MS + FUTURE_SKEW_MS + 1), "future_timestamp", 10),
        (lambda: node_announcement(ALICE, NOW_MS - HORIZON_MS - 1), "expired", None),
    ],
)
def test_an_invalid_node_announcement_is_refused(
    carol: GossipState, chain: ChainChannels, make: Any, code: str, points: int | None
) -> None:
    announced(carol, chain)
    assert_refused(carol, make(), chain, code=code, points=points)


# -- layer 1 closes, pruning --------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        ChannelClosed(AB, Address(ALICE.node_id), 2, 0, 0),
        ChannelSettled(AB, 1, 2, 0, 0),
        ChannelCooperativelySettled(AB, 1, 2),
    ],
)
def test_a_channel_closed_on_layer_1_leaves_the_graph_with_its_updates_and_lone_nodes(
    carol: GossipState, chain: ChainChannels, event: Any
) -> None:
    announced(carol, chain)
    receive(carol, update(AB, ALICE), chain)
    receive(carol, node_announcement(ALICE), chain)
    chain.apply_block(chain.height + 1, [event])
    outputs = machine.on_chain_block(carol, [event], NOW_MS, chain)
    assert carol.graph.channel(AB) is None
    assert carol.graph.node(ALICE.node_id) is None
    assert carol.channels == {} and carol.updates == {} and carol.nodes == {}
    [persist] = persisted(outputs)
    assert persist.removed_channels == (AB,)
    assert persist.removed_nodes == (ALICE.node_id,)
    assert flooded(carol) == []  # nothing of it relayed any more


def test_pruning_drops_updates_older_than_the_horizon_then_their_channel(
    carol: GossipState, chain: ChainChannels
) -> None:
    announced(carol, chain)
    receive(carol, update(AB, ALICE, NOW_MS), chain)
    receive(carol, update(AB, BOB, NOW_MS + MINUTE_MS), chain, now_ms=NOW_MS + MINUTE_MS)
    receive(carol, node_announcement(ALICE), chain)
    outputs = machine.prune(carol, NOW_MS + HORIZON_MS + 1)
    assert carol.graph.policy(AB, ALICE.node_id) is None
    assert carol.graph.policy(AB, BOB.node_id) is not None
    assert carol.graph.node(ALICE.node_id) is None  # its announcement is as old
    [persist] = persisted(outputs)
    assert persist.removed_updates == ((AB, ALICE.node_id),)
    machine.prune(carol, NOW_MS + MINUTE_MS + HORIZON_MS + 1)
    assert carol.graph.channel(AB) is None  # no update left and announced long ago
    assert carol.channels == {}


def test_a_fresh_announcement_without_updates_is_not_pruned(
    carol: GossipState, chain: ChainChannels
) -> None:
    announced(carol, chain)
    machine.prune(carol, NOW_MS + 1)
    assert carol.graph.channel(AB) is not None


def test_on_tick_prunes_once_a_prune_interval(carol: GossipState, chain: ChainChannels) -> None:
    announced(carol, chain)
    receive(carol, update(AB, ALICE), chain)
    machine.on_tick(carol, NOW_MS, chain, CAROL)
    assert carol.last_prune_ms == NOW_MS
    later = NOW_MS + HORIZON_MS + 1
    carol.last_prune_ms = later - 1  # pruned a moment ago
    machine.on_tick(carol, later, chain, CAROL)
    assert (AB, ALICE.node_id) in carol.updates
    machine.on_tick(carol, later + MINUTE_MS, chain, CAROL)
    assert (AB, ALICE.node_id) not in carol.updates


# -- batches, sync, misuse ----------------------------------------------------------------


def test_a_batch_applies_each_message_and_scores_each_bad_one(
    carol: GossipState, chain: ChainChannels
) -> None:
    good = [announcement(AB, ALICE, BOB), update(AB, ALICE), update(AB, BOB)]
    batch = GossipBatch((good[0], forged(update(AB, ALICE, NOW_MS + 1), MALLORY), *good[1:]))
    outputs = receive(carol, batch, chain)
    [fault] = faults(outputs)
    assert fault.reason.startswith("bad_signature")
    [persist] = persisted(outputs)  # one transaction for the whole batch
    assert len(persist.channels) == 1 and len(persist.updates) == 2
    [(messages, _)] = flooded(carol)
    assert messages == good


def test_a_gossip_filter_is_answered_with_what_is_newer_once_a_session(
    carol: GossipState, chain: ChainChannels
) -> None:
    announced(carol, chain)
    receive(carol, update(AB, ALICE, NOW_MS - 10), chain)
    receive(carol, update(AB, BOB, NOW_MS), chain)
    outputs = receive(carol, GossipFilter(NOW_MS - 5), chain, peer=DAVE)
    [send] = outputs
    assert isinstance(send, SendGossip) and send.peer == DAVE.node_id
    [batch] = send.messages
    assert isinstance(batch, GossipBatch)
    assert [type(m) for m in batch.messages] == [ChannelAnnouncement, ChannelUpdate]
    assert batch.messages[1].body.from_node == BOB.node_id  # type: ignore[union-attr]
    # Asking again in the same session costs points; a new session may ask again.
    [fault] = faults(receive(carol, GossipFilter(0), chain, peer=DAVE))
    assert fault.reason.startswith("sync_flood")
    machine.on_peer_connected(carol, DAVE.node_id, NOW_MS)
    assert not faults(receive(carol, GossipFilter(0), chain, peer=DAVE))


def test_on_connect_a_node_asks_for_what_is_newer_than_it_heard_from_others(
    carol: GossipState, chain: ChainChannels
) -> None:
    [send] = machine.on_peer_connected(carol, DAVE.node_id, NOW_MS)
    assert isinstance(send, SendGossip)
    assert send.messages == (GossipFilter(0),)  # an empty graph: everything
    announced(carol, chain)
    receive(carol, update(AB, ALICE, NOW_MS - 5), chain)
    [send] = machine.on_peer_connected(carol, DAVE.node_id, NOW_MS)
    assert isinstance(send, SendGossip)
    assert send.messages == (GossipFilter(NOW_MS - 5 - FUTURE_SKEW_MS),)


def test_a_message_that_is_not_gossip_is_a_shell_bug(
    carol: GossipState, chain: ChainChannels
) -> None:
    with pytest.raises(LocalProtocolError):
        receive(carol, Ping(0, b""), chain)


def test_the_routing_graph_is_usable_for_routes_after_gossip(
    carol: GossipState, chain: ChainChannels
) -> None:
    from p2pchan.core.routing.pathfind import find_route

    announced(carol, chain)
    receive(carol, update(AB, ALICE, fee_base=0, fee_ppm=0, min_amount=0), chain)
    route = find_route(
        carol.graph,
        ALICE.node_id,
        BOB.node_id,
        10,
        local_balances={AB: 500},
        lock_timeout=50,
        fee_cap=10,
        now_ms=NOW_MS,
    )
    assert [hop.channel_id for hop in route.hops] == [AB]


def test_a_batch_stops_being_checked_once_its_faults_are_worth_a_ban(
    carol: GossipState, chain: ChainChannels
) -> None:
    announced(carol, chain)
    bad = [forged(update(AB, ALICE, NOW_MS + index), MALLORY) for index in range(20)]
    outputs = receive(carol, GossipBatch((*bad, update(AB, BOB))), chain)  # type: ignore[arg-type]
    assert sum(fault.points for fault in faults(outputs)) == 100
    assert carol.graph.policy(AB, BOB.node_id) is None  # the rest was not looked at
