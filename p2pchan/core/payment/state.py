"""The payment machines' states: one machine per payment and direction, keyed by secrethash,
each with an explicit status table.

A payer's payment waits for a free lock slot on its channel (nothing promised yet), is queued
for the channel's next update (still nothing promised), then locked: its lock is in an update we
signed, so the payee may claim it. It ends succeeded (we learned the secret: the proof of
payment) or failed (a proof without the lock was counter-signed, or the lock can no longer be
claimed by anyone). A payee's payment starts when we claim an incoming lock (the secret is
stored, then revealed) and ends succeeded (the partner paid it out) or failed (it was removed
unpaid). Final payments leave memory: their records are in the store.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from p2pchan.core.invoice import Invoice
from p2pchan.core.payment.records import InvoiceRecord, PaymentRecord
from p2pchan.errors import LocalProtocolError
from p2pchan.types import ChannelId, SecretHash
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
    PayerStatus.LOCKED: frozenset({PayerStatus.SUCCEEDED, PayerStatus.FAILED}),
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


class Payer(NamedTuple):
    """A payment of ours in progress: its record (pending until final) and its lock. (Named
    tuples, as the records: built several times per payment, at a quarter of a frozen
    dataclass's cost.)"""

    record: PaymentRecord
    held: HeldLock | None  # its lock, until signed (a payment restarted locked has none here)
    status: PayerStatus = PayerStatus.WAITING
    request_id: int = 0  # the action that started it (0 after a restart)

    def moved_to(self, status: PayerStatus) -> Payer:
        self.check_move(status)
        return Payer(self.record, self.held, status, self.request_id)

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
