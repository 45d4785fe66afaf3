"""Payment and invoice records: what the node keeps of each payment and invoice, in its
database and in `payments` / `invoices`.

A payment has one record per direction (`out`: we pay, `in`: we are paid), created pending and
made final once (`PaymentOutcome`): succeeded or failed, with the secret (the payer's proof of
payment) or the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.types import ChannelId, Secret, SecretHash

PAYMENT_STATUSES = ("pending", "succeeded", "failed")


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    payment_hash: SecretHash
    direction: str  # "out" (we pay) or "in" (we are paid)
    peer: bytes
    channel_id: ChannelId
    amount: int
    fee: int
    status: str  # pending, succeeded, failed
    secret: Secret | None
    created_ms: int
    finished_ms: int | None
    error: str


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    payment_hash: SecretHash
    secret: Secret
    amount: int
    description: str
    encoded: str
    created_ms: int
    expires_ms: int
    status: str  # open, paid


@dataclass(frozen=True, slots=True)
class PaymentOutcome:
    """A pending payment record becoming final."""

    payment_hash: SecretHash
    direction: str
    status: str  # succeeded, failed
    secret: Secret | None
    finished_ms: int
    error: str
