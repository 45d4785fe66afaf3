"""The node's whole state as its core sees it: our key, every channel, every live payment and
open invoice, the peers online, the chain height and the secrets registered on layer 1.

One `NodeState` per node, changed only by `core.node.transition`. Its tables are updated in
place, their entries never (channels and payments are immutable values): a step changes one
channel and a few payments among thousands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2pchan.core.channel.state import Channel, ChannelConfig, ChannelStatus
from p2pchan.core.payment.state import Payments
from p2pchan.crypto.keys import Identity
from p2pchan.types import Address, ChainId, ChannelId, SecretHash


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

    @property
    def us(self) -> Address:
        return self.identity.node_id

    def channel_with(self, partner: Address) -> Channel | None:
        """Our channel with this peer that is opening or open, if any (one per pair)."""
        for channel in self.channels.values():
            if channel.partner == partner and channel.status in (
                ChannelStatus.OPENING,
                ChannelStatus.OPEN,
            ):
                return channel
        return None

    def held_secrethashes(self) -> set[SecretHash]:
        """Every payment hash the node still holds something of: a live payment, or a lock in
        a channel not done with layer 1 (acked, in flight, dropped but live, the partner's,
        or one still to unlock on chain). Records of these are never pruned: a dispute or an
        on-chain unlock may yet need them."""
        payments = self.payments
        held: set[SecretHash] = set(payments.outgoing) | set(payments.incoming)
        for channel in self.channels.values():
            if channel.status == ChannelStatus.SETTLED and not channel.settled_unlocks:
                continue
            held.update(lock.secrethash for lock in channel.ours.all_locks())
            held.update(lock.secrethash for lock in channel.ours.queued_locks)
            held.update(lock.secrethash for lock in channel.theirs.accepted.locks)
            held.update(channel.theirs.known_secrets)
            for settled in channel.settled_unlocks:
                held.update(lock.secrethash for lock in settled.locks)
        return held
