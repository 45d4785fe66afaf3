"""The channel graph: channels, per-direction policies, nodes, and change tracking."""

from __future__ import annotations

import pytest

from p2pchan.core.routing.graph import ChannelGraph, GraphChannel, NodeInfo
from p2pchan.errors import LocalProtocolError, NoRoute
from tests.unit.routing_helpers import Net, channel_id, node, policy


def _channel(name: str, a: str, b: str, capacity: int = 1000) -> GraphChannel:
    node1, node2 = sorted((node(a), node(b)))
    return GraphChannel(channel_id(name), node1, node2, capacity, 100)


def test_channels_are_found_by_node_in_channel_id_order() -> None:
    graph = ChannelGraph()
    for name in ("x", "y", "z"):
        graph.add_channel(_channel(name, "A", name.upper()))
    ids = sorted(channel_id(name) for name in ("x", "y", "z"))
    assert [edge.channel_id for edge in graph.outgoing(node("A"))] == ids
    assert [edge.channel_id for edge in graph.incoming(node("A"))] == ids
    assert [c.channel_id for c in graph.channels_of(node("A"))] == ids
    assert [c.channel_id for c in graph.channels_of(node("X"))] == [channel_id("x")]
    assert graph.has_node(node("Y")) and not graph.has_node(node("Q"))
    assert graph.channel_count() == 3
    assert set(graph.node_ids()) == {node(n) for n in "AXYZ"}


def test_each_direction_has_its_own_policy_and_none_until_announced() -> None:
    graph = ChannelGraph()
    channel = _channel("c", "A", "B")
    graph.add_channel(channel)
    assert graph.policy(channel.channel_id, node("A")) is None
    assert graph.update_policy(channel.channel_id, node("A"), policy(base=5))
    assert graph.policy(channel.channel_id, node("A")) == policy(base=5)
    assert graph.policy(channel.channel_id, node("B")) is None
    edge = graph.edge(channel.channel_id, node("A"))
    assert edge is not None and edge.target == node("B")


def test_only_a_newer_policy_replaces_the_stored_one() -> None:
    graph = ChannelGraph()
    cid = _channel("c", "A", "B").channel_id
    graph.add_channel(_channel("c", "A", "B"))
    assert graph.update_policy(cid, node("A"), policy(base=1, timestamp_ms=10))
    assert not graph.update_policy(cid, node("A"), policy(base=2, timestamp_ms=10))
    assert not graph.update_policy(cid, node("A"), policy(base=3, timestamp_ms=9))
    assert graph.update_policy(cid, node("A"), policy(base=4, timestamp_ms=11))
    chosen = graph.policy(cid, node("A"))
    assert chosen is not None and chosen.fee_base == 4


def test_policy_updates_for_unknown_channels_or_strangers_are_refused() -> None:
    graph = ChannelGraph()
    graph.add_channel(_channel("c", "A", "B"))
    with pytest.raises(LocalProtocolError):
        graph.update_policy(channel_id("nope"), node("A"), policy())
    with pytest.raises(LocalProtocolError):
        graph.update_policy(channel_id("c"), node("C"), policy())
    with pytest.raises(LocalProtocolError):
        graph.remove_policy(channel_id("c"), node("C"))


def test_removing_a_policy_or_a_channel() -> None:
    graph = ChannelGraph()
    graph.add_channel(_channel("c", "A", "B"))
    graph.update_policy(channel_id("c"), node("A"), policy())
    assert graph.remove_policy(channel_id("c"), node("A"))
    assert not graph.remove_policy(channel_id("c"), node("A"))
    assert graph.policy(channel_id("c"), node("A")) is None
    assert graph.remove_channel(channel_id("c"))
    assert not graph.remove_channel(channel_id("c"))
    assert graph.channel(channel_id("c")) is None
    assert not graph.has_node(node("A")) and graph.outgoing(node("A")) == ()
    assert graph.channel_count() == 0


def test_a_known_channel_can_change_its_capacity_but_not_its_nodes() -> None:
    graph = ChannelGraph()
    assert graph.add_channel(_channel("c", "A", "B", capacity=1000))
    assert not graph.add_channel(_channel("c", "A", "B", capacity=5000))
    channel = graph.channel(channel_id("c"))
    assert channel is not None and channel.capacity == 5000
    assert all(edge.capacity == 5000 for edge in graph.channel_edges(channel_id("c")))
    with pytest.raises(LocalProtocolError):
        graph.add_channel(_channel("c", "A", "C"))


@pytest.mark.parametrize(
    "build",
    [
        lambda: GraphChannel(
            channel_id("c"), max(node("A"), node("B")), min(node("A"), node("B")), 1, 1
        ),
        lambda: GraphChannel(channel_id("c"), node("A"), node("A"), 1, 1),
        lambda: GraphChannel(b"short", *sorted((node("A"), node("B"))), 1, 1),
        lambda: GraphChannel(channel_id("c"), b"\x00" * 31, node("B"), 1, 1),
        lambda: GraphChannel(channel_id("c"), *sorted((node("A"), node("B"))), -1, 1),
        lambda: GraphChannel(channel_id("c"), *sorted((node("A"), node("B"))), 2**64, 1),
        lambda: policy(base=-1),
        lambda: policy(ppm=2**64),
    ],
)
def test_malformed_channels_and_policies_are_refused(build: object) -> None:
    with pytest.raises(LocalProtocolError):
        build()  # type: ignore[operator]


def test_node_announcements_newer_replace_and_nodes_without_channels_are_known() -> None:
    graph = ChannelGraph()
    assert graph.set_node(NodeInfo(node("A"), "alice", ("127.0.0.1:9000",), 5))
    assert not graph.set_node(NodeInfo(node("A"), "eve", (), 5))
    assert graph.set_node(NodeInfo(node("A"), "alice2", (), 6))
    info = graph.node(node("A"))
    assert info is not None and info.alias == "alice2"
    assert graph.has_node(node("A")) and list(graph.node_ids()) == [node("A")]
    assert graph.remove_node(node("A")) and not graph.has_node(node("A"))
    with pytest.raises(LocalProtocolError):
        graph.set_node(NodeInfo(b"short"))


def test_changes_are_tracked_by_slot_until_the_structure_changes() -> None:
    graph = ChannelGraph()
    graph.add_channel(_channel("c", "A", "B"))
    graph.add_channel(_channel("d", "B", "C"))
    start = graph.version
    assert graph.changes_since(start) == []
    graph.update_policy(channel_id("c"), node("A"), policy())
    graph.update_policy(channel_id("d"), node("C"), policy())
    graph.update_policy(channel_id("c"), node("A"), policy(timestamp_ms=2))
    slot_c = graph.edge(channel_id("c"), node("A")).slot  # type: ignore[union-attr]
    slot_d = graph.edge(channel_id("d"), node("C")).slot  # type: ignore[union-attr]
    assert sorted(graph.changes_since(start)) == sorted([slot_c, slot_d])
    middle = graph.version - 1
    assert graph.changes_since(middle) == [slot_c]
    pair = sorted(edge.slot for edge in graph.channel_edges(channel_id("d")))
    before_removal = graph.version
    graph.remove_channel(channel_id("d"))
    assert graph.edge_at(slot_d) is None
    assert sorted(graph.changes_since(before_removal)) == pair
    before_adding = graph.version
    graph.add_channel(_channel("e", "C", "D"))  # reuses the freed slots
    assert sorted(graph.changes_since(before_adding)) == pair
    assert [edge.channel_id for edge in map(graph.edge_at, pair) if edge] == [channel_id("e")] * 2


def test_every_change_reaches_routing_without_rebuilding_its_index() -> None:
    net = Net()
    net.path("A", "B", "D", forward=policy(base=1))
    net.path("A", "C", "D", forward=policy(base=5))
    first = net.route("A", "D", 1000)
    index = net.graph.index_cache
    assert first.hops[0].node_id == node("B")
    net.graph.update_policy(channel_id("B-D"), node("B"), policy(base=9, timestamp_ms=2))
    assert net.route("A", "D", 1000).hops[0].node_id == node("C")
    net.graph.update_policy(channel_id("C-D"), node("C"), policy(disabled=True, timestamp_ms=2))
    assert net.route("A", "D", 1000).fee == 9
    net.graph.add_channel(_channel("B-D", "B", "D", capacity=500))  # capacity shrinks
    assert net.route("A", "D", 400).fee == 9
    net.graph.remove_channel(channel_id("B-D"))
    with pytest.raises(NoRoute):
        net.route("A", "D", 400)
    net.channel("A", "D")  # a new channel, in a reused slot
    assert net.route("A", "D", 400).fee == 0
    net.channel("E", "F")
    net.channel("D", "E")  # new nodes too
    assert net.route("A", "F", 400).fee == 0
    assert net.graph.index_cache is index, "every change was applied in place"
