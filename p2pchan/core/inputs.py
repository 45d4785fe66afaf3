"""Everything that can happen to a node, as the inputs of its one transition (`core.node`).

`Receive*` is a peer's doing, `Action*` the user's (through the RPC), `ContractReceive*` layer 1's,
`Tick` the clock's. Time, randomness (secrets) and facts only layer 1 or the store can tell
arrive inside the inputs: the core reads no clock, draws no random number and does no IO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from p2pchan.core.gossip.state import FeePolicy
from p2pchan.core.invoice import Invoice
from p2pchan.l1.events import Event
from p2pchan.types import Address, ChannelId, Secret
from p2pchan.wire.channel_messages import ChannelMessage
from p2pchan.wire.gossip_messages import GossipMessage

# -- peers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivePeerConnected:
    """A session with this peer started: re-sync every channel with it."""

    peer: Address


@dataclass(frozen=True, slots=True)
class ReceivePeerDisconnected:
    peer: Address


@dataclass(frozen=True, slots=True)
class ReceiveChannelMessages:
    """Messages of one channel that arrived together from this peer (one step, one disk sync)."""

    peer: Address
    channel_id: ChannelId
    messages: tuple[ChannelMessage, ...]
    now_ms: int


@dataclass(frozen=True, slots=True)
class ReceiveGossip:
    peer: Address
    message: GossipMessage
    now_ms: int


@dataclass(frozen=True, slots=True)
class ReceiveHop:
    """What mediators decided about this channel while handling others (`outputs.SendHop`),
    fed back after those steps were durable: `events` in order."""

    channel_id: ChannelId
    events: tuple[Any, ...]
    now_ms: int


# -- the user ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActionSend:
    """Pay `amount` to `payee` spontaneously: `secret` (fresh, random) goes in its payload.
    `request_id` names the caller in `NotifyPaymentAdmitted`. It is admitted to its channel
    on the next `Tick`."""

    request_id: int
    payee: Address
    amount: int
    secret: Secret
    now_ms: int


@dataclass(frozen=True, slots=True)
class ActionPay:
    """Pay an invoice (decoded and checked for this chain). `registered_block`: where layer 1
    has its secret registered already, if anywhere (then paying it would give money away).
    `paid_before`: whether the store holds a payment of ours with its hash that succeeded,
    looked up by the shell in the step that feeds this (history stays on disk: the core keeps
    only live payments); None, nobody looked, and the core refuses to pay."""

    request_id: int
    invoice: Invoice
    registered_block: int | None
    now_ms: int
    paid_before: bool | None = None


@dataclass(frozen=True, slots=True)
class ActionCreateInvoice:
    amount: int
    description: str
    expiry_seconds: int
    secret: Secret  # fresh, random
    now_ms: int


@dataclass(frozen=True, slots=True)
class ActionTrackChannel:
    """We opened this channel on layer 1 (before the chain shows it): track it from now on."""

    channel_id: ChannelId
    partner: Address
    settle_timeout: int


@dataclass(frozen=True, slots=True)
class ActionSetFees:
    """`setfees`: our forwarding policy over these channels (None: all of ours, and the
    default for new ones)."""

    policy: FeePolicy
    channel_ids: tuple[ChannelId, ...] | None
    now_ms: int


@dataclass(frozen=True, slots=True)
class ActionAnnounceNode:
    """Our alias and addresses, for our node announcement (at start)."""

    alias: str
    addresses: tuple[str, ...]
    now_ms: int


@dataclass(frozen=True, slots=True)
class ActionCloseCooperatively:
    channel_id: ChannelId


@dataclass(frozen=True, slots=True)
class ActionForceClose:
    channel_id: ChannelId
    cheat: bool = False  # dev attack mode: close with none of our own sent proofs


# -- layer 1 ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettledNonces:
    """The nonces of the proofs a channel settled with, read from its layer-1 record (the
    settle event does not carry them)."""

    nonce_a: int
    nonce_b: int


@dataclass(frozen=True, slots=True)
class ContractReceiveBlock:
    """One layer-1 block: its contract events, in order. `checkpoint`: record the block as
    processed (re-applying a block changes nothing, so quiet blocks need not each be)."""

    height: int
    events: tuple[Event, ...]
    settled: dict[ChannelId, SettledNonces]
    now_ms: int
    checkpoint: bool = True
    view_only: bool = False  # processed before: replayed only for the view of layer 1 (gossip)


# -- the clock --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: payments waiting are admitted to their channels (those that arrived since
    the last tick share one update), those that waited too long for a slot give up, and gossip
    accepted since the last tick goes out."""

    now_ms: int


@dataclass(frozen=True, slots=True)
class Resume:
    """The node restarted and caught up with layer 1: what a crash may have lost of a
    mediator's decisions about its other channels is derived again (forwards whose outgoing
    lock was never signed fail upstream, those whose secret we know claim upstream again,
    incoming locks whose forward failed are failed again); our channels' gossip is offered
    again."""

    now_ms: int


Input = (
    ReceivePeerConnected
    | ReceivePeerDisconnected
    | ReceiveChannelMessages
    | ReceiveGossip
    | ReceiveHop
    | ActionSetFees
    | ActionAnnounceNode
    | ActionSend
    | ActionPay
    | ActionCreateInvoice
    | ActionTrackChannel
    | ActionCloseCooperatively
    | ActionForceClose
    | ContractReceiveBlock
    | Tick
    | Resume
)
