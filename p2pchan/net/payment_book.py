"""The node's payments and invoices in memory: the records the store gets, the waiters the RPC
holds, and the payee's decisions on incoming locks.

The channel manager calls it inside each step: `records_for_signed` when our new locks are
signed into an update, `decide_incoming` when the partner's locks arrive, and `outcomes` for
what the core reports; everything it returns is written in the same transaction as the channel
state. `notify` then wakes whoever waits for a payment, after that write, and logs each payment
that became final (`payment_sent`, `payment_received`, `payment_failed`, at info): a log line
never tells of a payment before its record is on disk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
import trio

from p2pchan.core.channel.events import (
    IncomingRemoved,
    IncomingUnlocked,
    OutgoingRemoved,
    Output,
    SecretLearned,
)
from p2pchan.core.channel.state import Channel
from p2pchan.core.invoice import Invoice
from p2pchan.core.payment.payee import Claim, OpenInvoice, decide_incoming
from p2pchan.storage.channels import InvoiceRecord, PaymentOutcome, PaymentRecord, StoreBatch
from p2pchan.types import Secret, SecretHash
from p2pchan.wire.locks import HeldLock

log = structlog.get_logger(__name__)

# (direction, status, payment hash, peer, amount, error) of a payment that became final: kept
# as a bare tuple and turned into a log line only if info is logged (a few us per payment).
FinalLogged = tuple[str, str, SecretHash, bytes | None, int | None, str]


@dataclass
class OutgoingPayment:
    """A payment of ours in progress: its record once signed, and who waits for it."""

    record: PaymentRecord
    done: trio.Event = field(default_factory=trio.Event)
    signed: bool = False
    admission: trio.Event = field(default_factory=trio.Event)  # set once its channel decided
    refusal: str | None = None  # why its channel would not take it
    status: str = "pending"
    secret: Secret | None = None
    error: str = ""
    finished_ms: int | None = None


@dataclass
class PaymentBook:
    outgoing: dict[SecretHash, OutgoingPayment] = field(default_factory=dict)
    invoices: dict[SecretHash, tuple[Invoice, InvoiceRecord]] = field(default_factory=dict)
    incoming: dict[SecretHash, PaymentRecord] = field(default_factory=dict)
    paid_or_pending: set[SecretHash] = field(default_factory=set)  # ours: never pay these twice
    _finished: list[SecretHash] = field(default_factory=list)
    _to_log: list[FinalLogged] = field(default_factory=list)  # logged after the write

    # -- within a step (before the write) -----------------------------------------------------

    def records_for_signed(self, locks: tuple[HeldLock, ...], batch: StoreBatch) -> None:
        for held in locks:
            payment = self.outgoing.get(held.secrethash)
            if payment is not None and not payment.signed:
                payment.signed = True
                batch.payments[(held.secrethash, "out")] = payment.record
                self.paid_or_pending.add(held.secrethash)

    def decide_incoming(
        self,
        channel: Channel,
        locks: tuple[HeldLock, ...],
        *,
        height: int,
        now_ms: int,
        batch: StoreBatch,
    ) -> tuple[dict[SecretHash, Secret], dict[SecretHash, str]]:
        """Which incoming locks we claim (with their secrets) and which we fail (and why)."""
        claims: dict[SecretHash, Secret] = {}
        declines: dict[SecretHash, str] = {}
        for held in locks:
            entry = self.invoices.get(held.secrethash)
            open_invoice = None
            if entry is not None and entry[1].status == "open":
                open_invoice = OpenInvoice(entry[0], entry[1].secret)
            decision = decide_incoming(
                held,
                height=height,
                reveal_timeout=channel.config.reveal_timeout,
                now_ms=now_ms,
                invoice=open_invoice,
            )
            if isinstance(decision, Claim):
                claims[held.secrethash] = decision.secret
                record = PaymentRecord(
                    held.secrethash,
                    "in",
                    channel.partner,
                    channel.channel_id,
                    held.lock.amount,
                    0,
                    "pending",
                    decision.secret,
                    now_ms,
                    None,
                    "",
                )
                self.incoming[held.secrethash] = record
                batch.payments[(held.secrethash, "in")] = record
                if decision.invoice is not None and entry is not None:
                    paid = replace(entry[1], status="paid")
                    self.invoices[held.secrethash] = (entry[0], paid)
                    batch.invoices[held.secrethash] = paid
            else:
                declines[held.secrethash] = decision.reason
        return claims, declines

    def outcomes(self, outputs: list[Output], now_ms: int, batch: StoreBatch) -> None:
        """Payment records that become final with these core outputs."""
        for output in outputs:
            if isinstance(output, SecretLearned):
                self._finish_out(output.secrethash, "succeeded", output.secret, "", now_ms, batch)
            elif isinstance(output, OutgoingRemoved):
                for secrethash in output.secrethashes:
                    self._finish_out(secrethash, "failed", None, output.reason, now_ms, batch)
            elif isinstance(output, IncomingUnlocked):
                for held in output.locks:
                    self._finish_in(held.secrethash, "succeeded", "", now_ms, batch)
            elif isinstance(output, IncomingRemoved):
                for secrethash in output.secrethashes:
                    self._finish_in(secrethash, "failed", "lock removed unpaid", now_ms, batch)

    def _finish_out(
        self,
        secrethash: SecretHash,
        status: str,
        secret: Secret | None,
        error: str,
        now_ms: int,
        batch: StoreBatch,
    ) -> None:
        payment = self.outgoing.get(secrethash)
        if payment is not None and payment.status != "pending":
            return  # the first outcome is final (a removal after success changes nothing)
        batch.outcomes.append(PaymentOutcome(secrethash, "out", status, secret, now_ms, error))
        if status == "failed":
            self.paid_or_pending.discard(secrethash)  # it may be paid again
        if payment is not None:
            payment.status, payment.secret, payment.error = status, secret, error
            payment.finished_ms = now_ms
            self._finished.append(secrethash)
        record = payment.record if payment is not None else None
        peer, amount = (record.peer, record.amount) if record is not None else (None, None)
        self._to_log.append(("out", status, secrethash, peer, amount, error))

    def _finish_in(
        self, secrethash: SecretHash, status: str, error: str, now_ms: int, batch: StoreBatch
    ) -> None:
        record = self.incoming.pop(secrethash, None)
        if record is None:
            return
        batch.outcomes.append(PaymentOutcome(secrethash, "in", status, None, now_ms, error))
        self._to_log.append(("in", status, secrethash, record.peer, record.amount, error))

    # -- after the write --------------------------------------------------------------------

    def notify(self) -> None:
        """Wake the waiters of payments that became final (their records are stored), and log
        them."""
        logged, self._to_log = self._to_log, []
        if logged and log.is_enabled_for(logging.INFO):  # checked once a step, not per payment
            for direction, status, secrethash, peer, amount, error in logged:
                fields: dict[str, Any] = {"payment_hash": secrethash.hex(), "direction": direction}
                if peer is not None:
                    fields |= {"peer": peer.hex(), "amount": amount}
                if status == "failed":
                    log.info("payment_failed", reason=error, **fields)
                else:
                    log.info("payment_sent" if direction == "out" else "payment_received", **fields)
        finished, self._finished = self._finished, []
        for secrethash in finished:
            payment = self.outgoing.pop(secrethash, None)
            if payment is not None:
                payment.done.set()

    def fail_unsigned(self, secrethash: SecretHash, reason: str) -> None:
        """A payment whose lock was never signed (nothing was promised): fail it at once."""
        payment = self.outgoing.get(secrethash)
        if payment is not None and not payment.signed:
            payment.status, payment.error = "failed", reason
            self.outgoing.pop(secrethash).done.set()
