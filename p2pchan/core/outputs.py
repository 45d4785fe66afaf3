"""What the node's transition asks the shell to do, in order, once the step is durable.

`Persist*` records are written first, all of one step in one transaction (persist before you
promise); then `Send*` messages go to peers, `ContractSend*` transactions to layer 1 (each asked
for again on later blocks until the chain shows it), and `Notify*` reaches whoever waits in the
shell (an RPC call, the peer scores, the log). Nothing internal to the core is an output.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from p2pchan.core.channel.state import Channel
from p2pchan.core.gossip import outputs as gossip_outputs
from p2pchan.core.gossip.chain_view import ChainChannels
from p2pchan.core.gossip.outputs import PersistGossip, SendGossip
from p2pchan.core.payment.records import InvoiceRecord, PaymentOutcome, PaymentRecord
from p2pchan.types import Address, ChannelId, Secret, SecretHash
from p2pchan.wire.balance_proof import SignedBalanceProof
from p2pchan.wire.channel_messages import ChannelMessage

if TYPE_CHECKING:
    from p2pchan.core.payment.state import Forward

# -- to peers ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendMessage:
    peer: Address
    message: ChannelMessage


# `SendGossip` (from `core.gossip.outputs`): gossip for one peer, or for every peer online.


@dataclass(frozen=True, slots=True)
class SendHop:
    """A mediator's decision about another channel than the one it handled (forward a lock,
    claim or fail an incoming one): the shell feeds it back as `inputs.ReceiveHop` for
    `channel_id` once this step is durable (DESIGN.md "Architecture"). Hops of many steps may
    share one input, and so one outgoing update."""

    channel_id: ChannelId
    event: Any  # a `core.channel.machine` ClaimLocks, FailLocks or QueueLocks


# -- to layer 1 -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContractSendRegisterSecret:
    channel_id: ChannelId
    secret: Secret


@dataclass(frozen=True, slots=True)
class ContractSendClose:
    channel_id: ChannelId
    proofs: tuple[SignedBalanceProof, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class ContractSendUpdate:
    channel_id: ChannelId
    proofs: tuple[SignedBalanceProof, ...]


@dataclass(frozen=True, slots=True)
class ContractSendSettle:
    channel_id: ChannelId


@dataclass(frozen=True, slots=True)
class ContractSendUnlock:
    channel_id: ChannelId
    sender: Address
    locks: bytes  # the 48-byte lock encodings hashing to the settled locksroot


@dataclass(frozen=True, slots=True)
class ContractSendCooperativeSettle:
    channel_id: ChannelId
    terms: bytes
    signature_a: bytes
    signature_b: bytes


ContractSend = (
    ContractSendRegisterSecret
    | ContractSendClose
    | ContractSendUpdate
    | ContractSendSettle
    | ContractSendUnlock
    | ContractSendCooperativeSettle
)


# -- to the store ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PersistChannel:
    channel: Channel


@dataclass(frozen=True, slots=True)
class PersistPayment:
    """A new payment record (pending, or failed before anything was promised)."""

    record: PaymentRecord


@dataclass(frozen=True, slots=True)
class PersistPaymentOutcome:
    outcome: PaymentOutcome


@dataclass(frozen=True, slots=True)
class PersistInvoice:
    record: InvoiceRecord


@dataclass(frozen=True, slots=True)
class PersistSecret:
    """A secret registered on layer 1, and its block."""

    secrethash: SecretHash
    block: int


@dataclass(frozen=True, slots=True)
class PersistProcessedBlock:
    height: int


@dataclass(frozen=True, slots=True)
class PersistForward:
    """A forward in progress (new, or its secret learned)."""

    forward: Forward


@dataclass(frozen=True, slots=True)
class PersistForwardDone:
    """A forward ended: its stored state goes, its record (amount passed on, fee) is kept."""

    record: PaymentRecord
    outcome: PaymentOutcome


@dataclass(frozen=True, slots=True)
class PersistOnion:
    """An onion we peeled (its replay tag), kept until its lock's expiry."""

    tag: bytes
    expiration: int


@dataclass(frozen=True, slots=True)
class PersistOnionsExpired:
    """Forget the onions of locks that expired before this height."""

    height: int


@dataclass(frozen=True, slots=True)
class PersistChainView:
    """Channels of layer 1 whose record changed in a block (`view.channel(id)` is the new
    record, None once settled), and the view's height, with that block's processing."""

    view: ChainChannels
    changed: tuple[ChannelId, ...]


# `PersistGossip` (from `core.gossip.outputs`): the graph's rows one input changed.


Persist = (
    PersistChannel
    | PersistPayment
    | PersistPaymentOutcome
    | PersistInvoice
    | PersistSecret
    | PersistProcessedBlock
    | PersistForward
    | PersistForwardDone
    | PersistOnion
    | PersistOnionsExpired
    | PersistChainView
    | PersistGossip
)


# -- to whoever waits in the shell --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotifyFault:
    """The peer broke the protocol: score it. A `budgeted` fault is one an honest peer commits
    now and then by timing (a retryable refusal): scored only beyond a budget per minute."""

    peer: Address
    points: float
    reason: str
    budgeted: bool = False


@dataclass(frozen=True, slots=True)
class NotifyPaymentAdmitted:
    """A payment of ours was queued on a channel (`refusal` None) or refused before anything
    was signed (then it is final too). `request_id`: the `Action*` that started it."""

    request_id: int
    payment_hash: SecretHash
    refusal: str | None


@dataclass(frozen=True, slots=True)
class NotifyPaymentFinal:
    """A payment became final (durably): succeeded (with the secret, the proof of payment) or
    failed (with the reason). `record` is as it was while pending; `outcome` makes it final
    (`payment.records.made_final` joins them, if anyone needs the two as one)."""

    record: PaymentRecord
    outcome: PaymentOutcome


@dataclass(frozen=True, slots=True)
class NotifyInvoiceCreated:
    record: InvoiceRecord


@dataclass(frozen=True, slots=True)
class NotifySettleResponse:
    """The partner answered our cooperative-settle request: None if it signed, else why not."""

    channel_id: ChannelId
    refusal: str | None


@dataclass(frozen=True, slots=True)
class NotifyRefused:
    """The partner refused an update of ours (logged by the shell)."""

    peer: Address
    channel_id: ChannelId
    nonce: int
    code: str
    reason: str
    retryable: bool


@dataclass(frozen=True, slots=True)
class NotifyFeesSet:
    """`setfees` took effect: the new signed update of each channel direction it changed."""

    updates: tuple[Any, ...]  # `wire.gossip_messages.ChannelUpdate`


Notify = (
    NotifyFault
    | NotifyPaymentAdmitted
    | NotifyPaymentFinal
    | NotifyInvoiceCreated
    | NotifySettleResponse
    | NotifyRefused
    | NotifyFeesSet
)

Output = SendMessage | SendGossip | SendHop | ContractSend | Persist | Notify


def from_gossip(outputs: Iterable[gossip_outputs.GossipOutput]) -> list[Output]:
    """The gossip machine's outputs as the node's (its faults scored like any other)."""
    converted: list[Output] = []
    for output in outputs:
        if isinstance(output, gossip_outputs.NotifyFault):
            converted.append(
                NotifyFault(Address(output.peer), output.points, output.reason, output.budgeted)
            )
        else:
            converted.append(output)
    return converted
