"""A gossip network wired by hand for tests: machines, links, and what each link carried.

Messages are delivered in order, or in an order a `random.Random` picks with nodes ticking at
random moments between deliveries (property tests), never through sockets or a clock.
"""

from __future__ import annotations

import random
from collections import Counter

from p2pchan.core.gossip import machine
from p2pchan.core.gossip.chain_view import ChainChannels
from p2pchan.core.gossip.outputs import GossipOutput, NotifyFault, SendGossip
from p2pchan.core.gossip.state import FeePolicy, GossipState
from p2pchan.crypto.keys import Identity
from p2pchan.types import ChannelId, NodeId
from p2pchan.wire.gossip_messages import GossipBatch, GossipMessage
from tests.unit.gossip_helpers import NOW_MS, channel_id, identity, open_on_chain, state_of

TICK_MS = 100


class Network:
    """Gossip states, the links between them, and every message each link carried."""

    def __init__(self, chain: ChainChannels, order: random.Random | None = None) -> None:
        self.chain = chain
        self.order = order
        self.identities: dict[NodeId, Identity] = {}
        self.states: dict[NodeId, GossipState] = {}
        self.links: dict[NodeId, set[NodeId]] = {}
        self.in_flight: list[tuple[NodeId, NodeId, GossipMessage]] = []
        # How often each link relayed each message in the flood (sync answers not counted:
        # a peer that asks for everything gets it, whatever the flood already brought).
        self.carried: Counter[tuple[NodeId, NodeId, object]] = Counter()
        self.faults: list[NotifyFault] = []
        self.now_ms = NOW_MS
        self.frames = 0
        self.frames_by_sender: Counter[NodeId] = Counter()

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
                    self.frames_by_sender[sender] += 1
                    self.in_flight.append((sender, target, message))
                    if output.peer is None and isinstance(message, GossipBatch):
                        for item in message.messages:  # relayed in the flood
                            self.carried[sender, target, item] += 1

    def settle(self) -> None:
        """Deliver everything and tick every node until nothing moves."""
        for _ in range(100):
            while self.in_flight:
                if self.order is None:
                    sender, receiver, message = self.in_flight.pop(0)
                else:
                    index = self.order.randrange(len(self.in_flight))
                    sender, receiver, message = self.in_flight.pop(index)
                outputs = machine.on_gossip(
                    self.states[receiver], sender, message, self.now_ms, self.chain
                )
                self.carry(receiver, outputs)
                if self.order is not None and self.order.random() < 0.2:
                    self.tick(self.order.choice(list(self.states)))
            self.now_ms += TICK_MS
            for node_id in self.states:
                self.tick(node_id)
            if not self.in_flight:
                return
        raise AssertionError("the flood did not settle")

    def tick(self, node_id: NodeId) -> None:
        state, me = self.states[node_id], self.identities[node_id]
        self.carry(node_id, machine.on_tick(state, self.now_ms, self.chain, me))

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


def build(
    count: int = 10, order: random.Random | None = None
) -> tuple[Network, list[NodeId], list[ChannelId]]:
    network = Network(ChainChannels(), order)
    nodes = [network.add(f"node {index}") for index in range(count)]
    ring = [(i, (i + 1) % count) for i in range(count)]
    chords = [(i, i + count // 2) for i in range(0, count // 2, 2)]
    pairs = list({frozenset(pair): pair for pair in ring + chords}.values())
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
