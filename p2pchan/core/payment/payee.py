"""The payee's machine: decide on each incoming lock, and follow a claimed one to its end
(`state.PayeeStatus`).

We claim a lock only if what it carries for us (`incoming.Final`: a direct payload, or the last
layer of an onion) matches the lock, reveal_timeout < E - height, and either the payload's
secret hashes to the lock's secrethash (a spontaneous payment) or an open invoice of ours has
that hash and asks for at most the amount. A claimed lock's secret is
stored (with the payment's record, and the invoice marked paid) before it is revealed; any
other lock is failed (`lock_failed`), which lets the payer remove it.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.core.channel.state import Channel
from p2pchan.core.outputs import (
    NotifyPaymentFinal,
    Output,
    PersistInvoice,
    PersistPayment,
    PersistPaymentOutcome,
)
from p2pchan.core.payment import incoming, records
from p2pchan.core.payment.incoming import Final
from p2pchan.core.payment.records import PaymentRecord
from p2pchan.core.payment.state import OpenInvoice, Payee, PayeeStatus
from p2pchan.core.state import NodeState
from p2pchan.core.timing import too_close_to_claim
from p2pchan.crypto.hashing import sha256
from p2pchan.types import Secret, SecretHash
from p2pchan.wire.locks import HeldLock
from p2pchan.wire.onion_payload import FailureCode


@dataclass(frozen=True, slots=True)
class Claim:
    secret: Secret
    invoice: OpenInvoice | None


@dataclass(frozen=True, slots=True)
class Decline:
    reason: str


def decide_incoming(
    held: HeldLock,
    final: Final,
    *,
    height: int,
    reveal_timeout: int,
    now_ms: int,
    invoice: OpenInvoice | None,
) -> Claim | Decline:
    """Claim a lock meant for us, or say why not."""
    lock = held.lock
    if final.expiration != lock.expiration_block:
        return Decline("the payload does not match the lock")
    if final.amount > lock.amount or (final.shared_secret is None and final.amount != lock.amount):
        return Decline("the payload does not match the lock")
    if too_close_to_claim(lock.expiration_block, height, reveal_timeout):
        return Decline(f"expires at {lock.expiration_block}: too close to {height}")
    if final.secret is not None:
        if sha256(final.secret) != lock.secrethash:
            return Decline("the payload's secret does not match the lock")
        return Claim(final.secret, None)
    if invoice is None:
        return Decline("no invoice of ours has this payment hash")
    if invoice.invoice.is_expired(now_ms):
        return Decline("the invoice has expired")
    if lock.amount < invoice.invoice.amount:
        return Decline(f"pays {lock.amount}, the invoice asks {invoice.invoice.amount}")
    if lock.expiration_block - height < invoice.invoice.min_final_lock_timeout:
        return Decline("the lock expires sooner than the invoice requires")
    return Claim(invoice.record.secret, invoice)


def on_locks(
    state: NodeState, channel: Channel, locks: list[tuple[HeldLock, Final]]
) -> tuple[dict[SecretHash, Secret], dict[SecretHash, tuple[str, bytes | None]], list[Output]]:
    """Decide on the incoming locks meant for us. Returns the secrets to claim them with, the
    others' reasons (and encrypted failures, for routed payments), and the records to store
    before anything is revealed."""
    payments = state.payments
    records: list[Output] = []
    claims: dict[SecretHash, Secret] = {}
    declines: dict[SecretHash, tuple[str, bytes | None]] = {}
    for held, final in locks:
        secrethash = held.secrethash
        decision = decide_incoming(
            held,
            final,
            height=state.height,
            reveal_timeout=channel.config.reveal_timeout,
            now_ms=state.now_ms,
            invoice=payments.invoices.get(secrethash),
        )
        if isinstance(decision, Decline):
            failure = None
            if final.shared_secret is not None:
                failure = incoming.sealed(final.shared_secret, FailureCode.UNKNOWN_PAYMENT)
            declines[secrethash] = (decision.reason, failure)
            continue
        claims[secrethash] = decision.secret
        record = PaymentRecord(
            secrethash, "in", channel.partner, channel.channel_id, held.lock.amount, 0,
            "pending", decision.secret, state.now_ms, None, "",
        )  # fmt: skip
        payments.incoming[secrethash] = Payee(record)
        records.append(PersistPayment(record))
        if decision.invoice is not None:
            del payments.invoices[secrethash]  # paid: it takes no second payment
            records.append(PersistInvoice(decision.invoice.record._replace(status="paid")))
    return claims, declines, records


def finished(
    state: NodeState, secrethash: SecretHash, status: PayeeStatus, error: str = ""
) -> list[Output]:
    """A claimed payment ended: paid out to us (succeeded), or removed unpaid (failed)."""
    payee = state.payments.incoming.pop(secrethash, None)
    if payee is None:
        return []  # a lock we never claimed (declined, or a stranger's outcome)
    payee.check_move(status)
    outcome = records.outcome_of(payee.record, str(status), None, state.now_ms, error)
    return [PersistPaymentOutcome(outcome), NotifyPaymentFinal(payee.record, outcome)]
