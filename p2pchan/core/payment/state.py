"""The payment machines' states: one machine per payment and direction, keyed by secrethash,
each with an explicit status table.

A payer's payment waits for a free lock slot on its channel (nothing promised yet), is queued
for the channel's next update (still nothing promised), then locked: its lock is in an update we
signed, so the payee may claim it. It ends succeeded (we learned the secret: the proof of
payment) or failed (a proof without the lock was counter-signed, or the lock can no longer be
claimed by anyone); a routed payment whose lock was removed may instead go back to waiting,
with another route (a new attempt), until its timeout. A payee's payment starts when we claim
an incoming lock (the secret is stored, then revealed) and ends succeeded (the partner paid it
out) or failed (it was removed unpaid). A mediator's forward starts when we accept an
incoming lock whose onion says to pass it on: its outgoing lock is offered to the next channel,
then signed; it ends succeeded once we were paid upstream, or failed once the outgoing lock is
gone (and the incoming one failed in turn). Final payments leave memory: their records are in
the store.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from p2pchan.core.invoice import Invoice, RouteHint
from p2pchan.core.payment.records import InvoiceRecord, PaymentRecord
from p2pchan.core.routing.route import Route
from p2pchan.errors import LocalProtocolError
from p2pchan.types import Address, ChannelId, Secret, SecretHash
from p2pchan.wire.locks import HeldLock


class PayerStatus(enum.StrEnum):
    WAITING = "waiting"  # for a free lock slot on its channel
    QUEUED = "queued"  # for the channel's next update
    LOCKED = "locked"  # in an update we signed: the payee may claim it
    SUCCEEDED = "succeeded"
    FAILED = "failed"


PAYER_TRANSITIONS: dict[PayerStatus, frozenset[PayerStatus]] = {
    PayerStatus.WAITING: frozenset({PayerStatus.QUEUED, PayerStatus.FAILED}),
    PayerStatus.QUEUED: frozenset({PayerStatus.LOCKED, PayerStatus.FAILED}),
    # LOCKED -> WAITING: the lock of a routed attempt was removed; another route is tried.
    PayerStatus.LOCKED: frozenset({PayerStatus.SUCCEEDED, PayerStatus.FAILED, PayerStatus.WAITING}),
    PayerStatus.SUCCEEDED: frozenset(),
    PayerStatus.FAILED: frozenset(),
}


class PayeeStatus(enum.StrEnum):
    CLAIMED = "claimed"  # we revealed the secret of its lock
    SUCCEEDED = "succeeded"
    FAILED = "failed"


PAYEE_TRANSITIONS: dict[PayeeStatus, frozenset[PayeeStatus]] = {
    PayeeStatus.CLAIMED: frozenset({PayeeStatus.SUCCEEDED, PayeeStatus.FAILED}),
    PayeeStatus.SUCCEEDED: frozenset(),
    PayeeStatus.FAILED: frozenset(),
}


class Attempt(NamedTuple):
    """A routed payment's current attempt: what reading its failure and trying again need."""

    number: int  # 0, 1, ...: each attempt's onion has its own session key
    route: Route
    payload_secret: Secret | None  # a spontaneous payment's secret, for the payee's payload
    min_lock_timeout: int
    excluded: frozenset[ChannelId]  # channels earlier attempts failed on
    hints: tuple[RouteHint, ...] = ()  # the invoice's route hints
    failure: bytes | None = None  # the encrypted failure reported for this attempt's lock


class Payer(NamedTuple):
    """A payment of ours in progress: its record (pending until final) and its lock. (Named
    tuples, as the records: built several times per payment, at a quarter of a frozen
    dataclass's cost.)"""

    record: PaymentRecord
    held: HeldLock | None  # its lock, until signed (a payment restarted locked has none here)
    status: PayerStatus = PayerStatus.WAITING
    request_id: int = 0  # the action that started it (0 after a restart)
    attempt: Attempt | None = None  # a routed payment's (None: direct, or restarted)

    def moved_to(self, status: PayerStatus) -> Payer:
        self.check_move(status)
        # Twice per payment: built whole, faster than `_replace`.
        return Payer(self.record, self.held, status, self.request_id, self.attempt)

    def check_move(self, status: PayerStatus) -> None:
        """Raise unless the status table allows this move (a final move needs no new value:
        the payment leaves memory)."""
        if status not in PAYER_TRANSITIONS[self.status]:
            raise LocalProtocolError(f"a payment cannot go from {self.status} to {status}")

    @property
    def signed(self) -> bool:
        """Whether its lock was ever signed: then it may be claimed until proven otherwise."""
        return self.status == PayerStatus.LOCKED


class Payee(NamedTuple):
    """A payment to us whose lock we claimed."""

    record: PaymentRecord
    status: PayeeStatus = PayeeStatus.CLAIMED

    def moved_to(self, status: PayeeStatus) -> Payee:
        self.check_move(status)
        return Payee(self.record, status)

    def check_move(self, status: PayeeStatus) -> None:
        if status not in PAYEE_TRANSITIONS[self.status]:
            raise LocalProtocolError(f"a payment cannot go from {self.status} to {status}")


class ForwardStatus(enum.StrEnum):
    OFFERED = "offered"  # the outgoing lock goes to the next channel (nothing promised there)
    LOCKED = "locked"  # the outgoing lock is in an update we signed
    CLAIMED = "claimed"  # we know the secret: claiming upstream, paying downstream
    SUCCEEDED = "succeeded"  # paid upstream: the fee is ours
    FAILED = "failed"  # the outgoing lock is gone (or never went): failed upstream


FORWARD_TRANSITIONS: dict[ForwardStatus, frozenset[ForwardStatus]] = {
    ForwardStatus.OFFERED: frozenset({ForwardStatus.LOCKED, ForwardStatus.FAILED}),
    ForwardStatus.LOCKED: frozenset(
        {ForwardStatus.CLAIMED, ForwardStatus.SUCCEEDED, ForwardStatus.FAILED}
    ),
    # CLAIMED -> FAILED only if the upstream lock was removed although we knew its secret.
    ForwardStatus.CLAIMED: frozenset({ForwardStatus.SUCCEEDED, ForwardStatus.FAILED}),
    ForwardStatus.SUCCEEDED: frozenset(),
    ForwardStatus.FAILED: frozenset(),
}


class Forward(NamedTuple):
    """A lock we pass on: accepted on `in_channel`, offered on `out_channel` to `next_node`
    with the same secrethash and expiry, `in_amount - out_amount` being our fee."""

    secrethash: SecretHash
    in_channel: ChannelId
    out_channel: ChannelId
    next_node: Address
    in_amount: int
    out_amount: int
    expiration: int
    shared_secret: bytes  # of the onion we peeled: seals or wraps the failure for the payer
    created_ms: int
    status: ForwardStatus = ForwardStatus.OFFERED
    secret: Secret | None = None
    failure: bytes | None = None  # the next hop's encrypted failure, wrapped once we fail

    @property
    def fee(self) -> int:
        return self.in_amount - self.out_amount

    def moved_to(self, status: ForwardStatus) -> Forward:
        self.check_move(status)
        return self._replace(status=status)

    def check_move(self, status: ForwardStatus) -> None:
        if status not in FORWARD_TRANSITIONS[self.status]:
            raise LocalProtocolError(f"a forward cannot go from {self.status} to {status}")


@dataclass(frozen=True, slots=True)
class OpenInvoice:
    """An invoice of ours that can still be paid, with its record (and secret)."""

    invoice: Invoice
    record: InvoiceRecord


@dataclass
class Payments:
    """Every live payment and open invoice, nothing final: memory follows what is live, not
    history (final records are in the store, which the shell asks, e.g. whether an invoice was
    paid already: `ActionPay.paid_before`). Updated in place by the node's transition (its
    entries are immutable): a step touches a few payments among thousands, and copying the
    tables would cost each step in proportion to all of them (7 us per 1,000 entries per
    table, measured; a step of one payment costs about 100 us in all)."""

    outgoing: dict[SecretHash, Payer] = field(default_factory=dict)
    waiting: dict[ChannelId, list[SecretHash]] = field(default_factory=dict)  # in arrival order
    incoming: dict[SecretHash, Payee] = field(default_factory=dict)
    invoices: dict[SecretHash, OpenInvoice] = field(default_factory=dict)  # unexpired
    next_invoice_sweep_ms: int = 0  # expired invoices leave `invoices` then
    forwards: dict[SecretHash, Forward] = field(default_factory=dict)
    # Each onion we peeled (its replay tag), until its lock's expiry: a replay is refused.
    seen_onions: dict[bytes, int] = field(default_factory=dict)
