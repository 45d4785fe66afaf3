"""The node's whole state as its core sees it: our key, every channel, every live payment,
forward and open invoice, the peers online, the chain height and the secrets registered on
layer 1, what gossip knows of the network (its graph) and what failures taught us about it.

One `NodeState` per node, changed only by `core.node.transition`. Its tables are updated in
place, their entries never (channels and payments are immutable values): a step changes one
channel and a few payments among thousands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2pchan.core.channel.state import Channel, ChannelConfig, ChannelStatus
from p2pchan.core.gossip.chain_view import ChainChannels
from p2pchan.core.gossip.state import FeePolicy, GossipConfig, GossipState
from p2pchan.core.payment.state import Payments
from p2pchan.core.routing.graph import ChannelGraph
from p2pchan.core.routing.mission import MissionControl
from p2pchan.crypto.keys import Identity
from p2pchan.types import Address, ChainId, ChannelId, NodeId, SecretHash
from p2pchan.wire.gossip_messages import ChannelUpdateBody


@dataclass
class NodeState:
    identity: Identity
    chain_id: ChainId
    config: ChannelConfig
    # Dev attack mode `withhold-reveal`: decide nothing about incoming locks.
    withhold_decisions: bool = False
    height: int = 0  # the highest block whose events we processed
    now_ms: int = 0  # the newest time an input brought
    registered: dict[SecretHash, int] = field(default_factory=dict)
    channels: dict[ChannelId, Channel] = field(default_factory=dict)
    online: set[Address] = field(default_factory=set)
    payments: Payments = field(default_factory=Payments)
    fee_policy: FeePolicy = field(default_factory=FeePolicy)  # for channels we announce
    gossip: GossipState | None = None  # built from the chain id and our id when not given
    chain_view: ChainChannels = field(default_factory=ChainChannels)
    mission: MissionControl = field(default_factory=MissionControl)
    # Our policy over a channel before its last change, and when it changed (a mediator takes
    # it for ten minutes more: payers may have routed with it).
    previous_policies: dict[ChannelId, tuple[ChannelUpdateBody, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.gossip is None:
            self.gossip = GossipState(GossipConfig(self.chain_id, NodeId(self.identity.node_id)))

    @property
    def us(self) -> Address:
        return self.identity.node_id

    @property
    def network(self) -> GossipState:
        """What gossip knows (always set once the state is built)."""
        assert self.gossip is not None
        return self.gossip

    @property
    def graph(self) -> ChannelGraph:
        return self.network.graph

    def channel_with(self, partner: Address) -> Channel | None:
        """Our channel with this peer that is opening or open, if any (one per pair)."""
        for channel in self.channels.values():
            if channel.partner == partner and channel.status in (
                ChannelStatus.OPENING,
                ChannelStatus.OPEN,
            ):
                return channel
        return None
