"""A flood through gossip machines wired together by hand (no sockets, no clock).

Ten nodes on a ring with chords announce their channels, fees and themselves; every node must
end with the same graph, and no message may cross a link in the same direction twice (the
de-duplication that keeps a flood linear in the number of links). Then a fee change, a node
joining late (synced on connect) and a channel closing on layer 1.
"""

from __future__ import annotations

from p2pchan.core.gossip import machine
from p2pchan.core.gossip.state import FeePolicy
from p2pchan.l1.events import ChannelClosed
from p2pchan.types import Address
from tests.unit.gossip_network import build


def test_every_node_learns_every_channel_update_and_node_and_each_link_carries_each_once() -> None:
    network, nodes, channels = build()
    network.assert_converged()
    graph = network.states[nodes[0]].graph
    assert graph.channel_count() == len(channels)
    for channel in channels:
        edges = graph.channel_edges(channel)
        assert all(edge.policy is not None for edge in edges)
    assert all(graph.node(node) is not None for node in nodes)
    network.assert_each_message_crossed_each_link_once()
    assert network.faults == []
    # Batched: far fewer frames than messages relayed.
    assert network.frames < sum(network.carried.values()) / 2


def test_a_fee_change_reaches_every_node_once_per_link() -> None:
    network, nodes, _ = build()
    network.carried.clear()
    node = nodes[3]
    network.carry(
        node,
        machine.set_local_policy(
            network.states[node],
            FeePolicy(fee_base=77),
            network.now_ms,
            network.chain,
            network.identities[node],
        ),
    )
    network.settle()
    network.assert_converged()
    graph = network.states[nodes[7]].graph
    fees = [graph.policy(channel, node) for channel in network.states[node].local]
    assert fees and all(policy is not None and policy.fee_base == 77 for policy in fees)
    network.assert_each_message_crossed_each_link_once()


def test_a_node_that_joins_late_is_synced_on_connect() -> None:
    network, nodes, _ = build()
    late = network.add("late")
    network.connect(late, nodes[0])
    network.connect(late, nodes[5])
    network.settle()
    network.assert_converged()
    assert network.faults == []


def test_a_channel_closed_on_layer_1_leaves_every_graph() -> None:
    network, nodes, channels = build()
    event = ChannelClosed(channels[0], Address(nodes[0]), 5, 0, 0)
    network.chain.apply_block(network.chain.height + 1, [event])
    for state in network.states.values():
        machine.on_chain_block(state, [event], network.now_ms, network.chain)
    network.assert_converged()
    assert network.states[nodes[4]].graph.channel(channels[0]) is None
    assert network.states[nodes[4]].graph.channel_count() == len(channels) - 1
