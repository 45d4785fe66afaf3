"""Nodes linked directly, with no sockets, through their one transition (`core.node`).

`Nodes` holds each node's `NodeState` and the messages in flight between them. `feed(name,
input)` runs one input through that node's transition and keeps its outputs: messages go on the
wire (delivered by `deliver`/`run`), records to a per-node list (`stored`), notifications to
`notified`. Channels are opened by feeding both nodes the layer-1 events a real chain would
emit, so the nodes track them exactly as they do in production.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from p2pchan.core.channel.state import Channel, ChannelConfig
from p2pchan.core.gossip.outputs import PersistGossip, SendGossip
from p2pchan.core.inputs import (
    ContractReceiveBlock,
    Input,
    ReceiveChannelMessages,
    ReceiveGossip,
    ReceiveHop,
    ReceivePeerConnected,
    Tick,
)
from p2pchan.core.node import transition
from p2pchan.core.outputs import (
    ContractSend,
    NotifyFault,
    Output,
    PersistChainView,
    PersistChannel,
    PersistForward,
    PersistForwardDone,
    PersistInvoice,
    PersistOnion,
    PersistOnionsExpired,
    PersistPayment,
    PersistPaymentOutcome,
    PersistProcessedBlock,
    PersistSecret,
    SendHop,
    SendMessage,
)
from p2pchan.core.state import NodeState
from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.l1.events import ChannelDeposited, ChannelOpened, Event
from p2pchan.types import Address, ChainId, ChannelId
from p2pchan.wire.channel_messages import ChannelMessage
from p2pchan.wire.gossip_messages import GossipMessage

CHAIN = ChainId(sha256(b"p2pchan node test chain"))
NOW_MS = 1_000_000
START_HEIGHT = 10

Persisted = (
    PersistChannel,
    PersistPayment,
    PersistPaymentOutcome,
    PersistInvoice,
    PersistSecret,
    PersistProcessedBlock,
    PersistForward,
    PersistForwardDone,
    PersistOnion,
    PersistOnionsExpired,
    PersistChainView,
    PersistGossip,
)


@dataclass
class Node:
    name: str
    identity: Identity
    state: NodeState
    stored: list[Output] = field(default_factory=list)
    notified: list[Output] = field(default_factory=list)
    duties: list[ContractSend] = field(default_factory=list)

    @property
    def node_id(self) -> Address:
        return self.identity.node_id

    def channel(self, channel_id: ChannelId) -> Channel:
        return self.state.channels[channel_id]


@dataclass
class Nodes:
    nodes: dict[str, Node] = field(default_factory=dict)
    wire: list[tuple[str, str, ChannelMessage]] = field(default_factory=list)  # from, to, msg
    gossip: list[tuple[str, str, GossipMessage]] = field(default_factory=list)
    delivered: list[tuple[str, str, ChannelMessage]] = field(default_factory=list)
    height: int = START_HEIGHT
    now_ms: int = NOW_MS

    @classmethod
    def create(cls, *names: str, config: ChannelConfig | None = None) -> Nodes:
        nodes = cls()
        for name in names:
            identity = Identity(sha256(b"node test key", name.encode()))
            state = NodeState(identity, CHAIN, config or ChannelConfig(max_in_flight=1))
            state.height = START_HEIGHT
            nodes.nodes[name] = Node(name, identity, state)
        return nodes

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def name_of(self, address: Address) -> str:
        return next(n.name for n in self.nodes.values() if n.node_id == address)

    # -- driving -----------------------------------------------------------------------------

    def feed(self, name: str, event: Input) -> list[Output]:
        """One step of a node; a mediator's decisions about its other channels are fed back at
        once, as the shell does once the step is durable."""
        node = self.nodes[name]
        _, outputs = transition(node.state, event)
        hops: dict[ChannelId, list[object]] = {}
        for output in outputs:
            if isinstance(output, SendMessage):
                self.wire.append((name, self.name_of(output.peer), output.message))
            elif isinstance(output, SendGossip):
                self._gossip_out(name, output)
            elif isinstance(output, SendHop):
                hops.setdefault(output.channel_id, []).append(output.event)
            elif isinstance(output, Persisted):
                node.stored.append(output)
            elif isinstance(output, NotifyFault) or type(output).__name__.startswith("Notify"):
                node.notified.append(output)
            else:
                node.duties.append(output)  # type: ignore[arg-type]
        for channel_id, events in hops.items():
            outputs += self.feed(name, ReceiveHop(channel_id, tuple(events), self.now_ms))
        return outputs

    def _gossip_out(self, name: str, output: SendGossip) -> None:
        online = self.nodes[name].state.online
        targets = [output.peer] if output.peer is not None else sorted(online - output.exclude)
        for peer in targets:
            for message in output.messages:
                self.gossip.append((name, self.name_of(peer), message))

    def tick(self, *names: str) -> None:
        for name in names or tuple(self.nodes):
            self.feed(name, Tick(self.now_ms))

    def settle_gossip(self, rounds: int = 10) -> None:
        """Ticks and gossip deliveries until nothing is left to say."""
        for _ in range(rounds):
            self.tick()
            if not self.gossip and not self.wire:
                return
            self.deliver()

    def deliver(self, count: int | None = None) -> int:
        """Deliver messages in flight, in order (all of them, or `count`)."""
        delivered = 0
        while (self.wire or self.gossip) and (count is None or delivered < count):
            if self.wire:
                sender, receiver, message = self.wire.pop(0)
                self.delivered.append((sender, receiver, message))
                peer = self.nodes[sender].node_id
                received = ReceiveChannelMessages(peer, message.channel_id, (message,), self.now_ms)
                self.feed(receiver, received)
            else:
                sender, receiver, gossip = self.gossip.pop(0)
                self.feed(receiver, ReceiveGossip(self.nodes[sender].node_id, gossip, self.now_ms))
            delivered += 1
        return delivered

    def block(self, events: Iterable[Event] = (), *, to: Iterable[str] | None = None) -> None:
        """A new block with these events, seen by every node (or those named)."""
        self.height += 1
        for name in to if to is not None else self.nodes:
            block = ContractReceiveBlock(self.height, tuple(events), {}, self.now_ms)
            self.feed(name, block)

    def connect(self, first: str, second: str) -> None:
        self.feed(first, ReceivePeerConnected(self.nodes[second].node_id))
        self.feed(second, ReceivePeerConnected(self.nodes[first].node_id))
        self.deliver()

    def open_channel(
        self, opener: str, partner: str, deposit: int, *, settle: int = 100
    ) -> ChannelId:
        """A channel funded by the opener, opened and deposited in one block both see."""
        channel_id = ChannelId(sha256(b"node test channel", opener.encode(), partner.encode()))
        a, b = self.nodes[opener].node_id, self.nodes[partner].node_id
        self.block(
            [ChannelOpened(channel_id, a, b, settle), ChannelDeposited(channel_id, a, deposit)]
        )
        self.deliver()
        return channel_id

    def of_type(self, name: str, kind: type) -> list[object]:
        node = self.nodes[name]
        return [o for o in node.stored + node.notified + list(node.duties) if isinstance(o, kind)]
