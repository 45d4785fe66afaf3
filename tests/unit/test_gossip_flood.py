"""A flood through gossip machines wired together by hand (no sockets, no clock).

Ten nodes on a ring with chords announce their channels, fees and themselves; every node must
end with the same graph, and no message may cross a link in the same direction twice (the
de-duplication that keeps a flood linear in the number of links). Then a fee change, a node
joining late (synced on connect) and a channel closing on layer 1.
"""

from __future__ import annotations

from collections import Counter, deque

from p2pchan.core.gossip import machine
from p2pchan.core.gossip.chain_view import ChainChannels
from p2pchan.core.gossip.outputs import GossipOutput, NotifyFault, SendGossip
from p2pchan.core.gossip.state import FeePolicy, GossipState
from p2pchan.crypto.keys import Identity
from p2pchan.l1.events import ChannelClosed
from p2pchan.types import Address, ChannelId, NodeId
from p2pchan.wire.gossip_messages import GossipBatch, GossipMessage
from tests.unit.gossip_helpers import NOW_MS, channel_id, identity, open_on_chain, state_of

TICK_MS = 100


class Network:
    """Gossip states, the links between them, and every message each link carried."""

    def __init__(self, chain: ChainChannels) -> None:
        self.chain = chain
        self.identities: dict[NodeId, Identity] = {}
        self.states: dict[NodeId, GossipState] = {}
        self.links: dict[NodeId, set[NodeId]] = {}
        self.in_flight: deque[tuple[NodeId, NodeId, GossipMessage]] = deque()
        self.carried: Counter[tuple[NodeId, NodeId, object]] = Counter()
        self.faults: list[NotifyFault] = []
        self.now_ms = NOW_MS
        self.frames = 0

    def add(self, name: str) -> NodeId:
        me = identity(name)
        self.identities[me.node_id] = me
        self.states[me.node_id] = state_of(me)
        self.links[me.node_id] = set()
        return me.node_id

    def connect(self, a: NodeId, b: NodeId) -> None:
        self.links[a].add(b)
        self.links[b].add(a)
        self.carry(a, machine.on_peer_connected(self.states[a], b, self.now_ms))
        self.carry(b, machine.on_peer_connected(self.states[b], a, self.now_ms))

    def carry(self, sender: NodeId, outputs: list[GossipOutput]) -> None:
        for output in outputs:
            if isinstance(output, NotifyFault):
                self.faults.append(output)
            if not isinstance(output, SendGossip):
                continue
            if output.peer is not None:
                targets = [output.peer] if output.peer in self.links[sender] else []
            else:
                targets = sorted(self.links[sender] - output.exclude)
            for target in targets:
                for message in output.messages:
                    self.frames += 1
                    self.in_flight.append((sender, target, message))
                    if isinstance(message, GossipBatch):
                        for item in message.messages:
                            self.carried[sender, target, item] += 1

    def settle(self) -> None:
        """Deliver everything and tick every node until nothing moves."""
        for _ in range(100):
            while self.in_flight:
                sender, receiver, message = self.in_flight.popleft()
                outputs = machine.on_gossip(
                    self.states[receiver], sender, message, self.now_ms, self.chain
                )
                self.carry(receiver, outputs)
            self.now_ms += TICK_MS
            for node_id, state in self.states.items():
                identity_ = self.identities[node_id]
                self.carry(node_id, machine.on_tick(state, self.now_ms, self.chain, identity_))
            if not self.in_flight:
                return
        raise AssertionError("the flood did not settle")

    def open_channel(self, a: NodeId, b: NodeId, name: str, fees: FeePolicy) -> ChannelId:
        channel = channel_id(name)
        open_on_chain(self.chain, channel, self.identities[a], self.identities[b])
        for me, partner in ((a, b), (b, a)):
            outputs = machine.local_channel_usable(
                self.states[me],
                channel,
                partner,
                fees,
                self.now_ms,
                self.chain,
                self.identities[me],
            )
            self.carry(me, outputs)
        return channel

    def view(self, node_id: NodeId) -> object:
        graph = self.states[node_id].graph
        return (
            sorted(graph.channels(), key=lambda channel: channel.channel_id),
            sorted(
                (edge.channel_id, edge.source, edge.policy)
                for channel in graph.channels()
                for edge in graph.channel_edges(channel.channel_id)
            ),
            sorted((node, graph.node(node)) for node in graph.node_ids()),
        )

    def assert_converged(self) -> None:
        views = {node_id: self.view(node_id) for node_id in self.states}
        first = next(iter(views.values()))
        assert all(view == first for view in views.values())

    def assert_each_message_crossed_each_link_once(self) -> None:
        repeated = {key: count for key, count in self.carried.items() if count > 1}
        assert repeated == {}


def build(count: int = 10) -> tuple[Network, list[NodeId], list[ChannelId]]:
    network = Network(ChainChannels())
    nodes = [network.add(f"node {index}") for index in range(count)]
    pairs = [(i, (i + 1) % count) for i in range(count)] + [
        (i, i + count // 2) for i in range(0, count // 2, 2)
    ]
    for i, j in pairs:
        network.connect(nodes[i], nodes[j])
    channels = [
        network.open_channel(nodes[i], nodes[j], f"{i}-{j}", FeePolicy(fee_base=i, fee_ppm=j))
        for i, j in pairs
    ]
    for index, node in enumerate(nodes):
        network.carry(
            node,
            machine.announce_node(
                network.states[node],
                f"node {index}",
                [f"127.0.0.1:{9000 + index}"],
                network.now_ms,
                network.chain,
                network.identities[node],
            ),
        )
    network.settle()
    return network, nodes, channels


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
