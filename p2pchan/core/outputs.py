"""What the node's transition asks the shell to do, in order, once the step is durable.

`Persist*` records are written first, all of one step in one transaction (persist before you
promise); then `Send*` messages go to peers, `ContractSend*` transactions to layer 1 (each asked
for again on later blocks until the chain shows it), and `Notify*` reaches whoever waits in the
shell (an RPC call, the peer scores, the log). Nothing internal to the core is an output.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.core.channel.state import Channel
from p2pchan.core.payment.records import InvoiceRecord, PaymentOutcome, PaymentRecord
from p2pchan.types import Address, ChannelId, Secret, SecretHash
from p2pchan.wire.balance_proof import SignedBalanceProof
from p2pchan.wire.channel_messages import ChannelMessage

# -- to peers ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendMessage:
    peer: Address
    message: ChannelMessage


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


Persist = (
    PersistChannel
    | PersistPayment
    | PersistPaymentOutcome
    | PersistInvoice
    | PersistSecret
    | PersistProcessedBlock
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


Notify = (
    NotifyFault
    | NotifyPaymentAdmitted
    | NotifyPaymentFinal
    | NotifyInvoiceCreated
    | NotifySettleResponse
    | NotifyRefused
)

Output = SendMessage | ContractSend | Persist | Notify
