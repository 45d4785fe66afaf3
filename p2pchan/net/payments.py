"""Payments to direct peers: `send` (spontaneous), `pay` (an invoice), and invoices.

A payment becomes a lock on our channel with the payee, queued for the next update; its record
is written with the update that first carries it. `send` and `pay` wait until the payment is
final (the payee revealed the secret: succeeded; a proof without the lock was counter-signed:
failed), or return `pending` when their timeout runs out: never `failed` while the lock can
still be claimed.

A payment refused before anything was signed (no usable channel, the peer offline, no capacity)
promised nothing, so it fails at once, but it is still recorded as `failed` with its reason, in
a small write of its own (off the hot path), so `payments` shows why it never went out.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from typing import Any

import structlog
import trio

from p2pchan.core.channel.send import PaymentRefused
from p2pchan.core.invoice import DEFAULT_EXPIRY_SECONDS, Invoice, decode_invoice, encode_invoice
from p2pchan.core.payment.rules import PAYER_LOCK_TIMEOUT
from p2pchan.crypto.hashing import sha256
from p2pchan.errors import ChainError, UserError
from p2pchan.net.channels import ChannelManager, now_ms
from p2pchan.net.l1_link import L1Link
from p2pchan.net.payment_book import OutgoingPayment
from p2pchan.storage.channels import (
    InvoiceRecord,
    PaymentOutcome,
    PaymentRecord,
    StoreBatch,
    list_invoices,
    list_payments,
)
from p2pchan.types import Address, ChannelId, Secret, SecretHash, short_hex
from p2pchan.wire.hop_payload import PAYLOAD_VERSION, HopPayload
from p2pchan.wire.locks import HeldLock, Lock

log = structlog.get_logger(__name__)

PAYMENT_STATUSES = ("pending", "succeeded", "failed")


class PaymentService:
    def __init__(
        self,
        manager: ChannelManager,
        link: L1Link,
        *,
        is_online: Callable[[Address], bool] = lambda _peer: True,
    ) -> None:
        self.manager = manager
        self.link = link
        self.is_online = is_online

    async def send(self, payee: Address, amount: int) -> OutgoingPayment:
        """Start a spontaneous payment: the payee finds the secret in its hop payload."""
        secret = Secret(os.urandom(32))
        return await self.start(payee, amount, SecretHash(sha256(secret)), secret, secret)

    def check_invoice(self, text: str) -> Invoice:
        """Decode an invoice for this network and refuse it if it has expired."""
        invoice = decode_invoice(text, self.manager.chain_id)
        if invoice.is_expired(now_ms()):
            expired = datetime.datetime.fromtimestamp(invoice.expires_at_ms() / 1000, datetime.UTC)
            raise UserError(f"the invoice has expired (at {expired:%Y-%m-%d %H:%M:%S} UTC)")
        return invoice

    def decode(self, text: str) -> dict[str, Any]:
        """What an invoice asks for (the `decode` document), once checked as `pay` checks it."""
        invoice = self.check_invoice(text)
        return {
            "payee": invoice.payee.hex(),
            "amount": invoice.amount,
            "payment_hash": invoice.secrethash.hex(),
            "description": invoice.description,
            "created_ms": invoice.timestamp_ms,
            "expiry_seconds": invoice.expiry_seconds,
            "expires_ms": invoice.expires_at_ms(),
            "min_final_lock_timeout": invoice.min_final_lock_timeout,
            "route_hints": [invoice.route_hints.hex()] if invoice.route_hints else [],
        }

    async def pay(self, text: str) -> OutgoingPayment:
        """Start paying an invoice."""
        invoice = self.check_invoice(text)
        if invoice.amount == 0:
            raise UserError("the invoice asks for no amount")
        await self._refuse_paid_or_public(invoice)
        return await self.start(
            invoice.payee,
            invoice.amount,
            invoice.secrethash,
            None,
            None,
            min_lock_timeout=invoice.min_final_lock_timeout,
        )

    async def _refuse_paid_or_public(self, invoice: Invoice) -> None:
        secrethash = invoice.secrethash
        if secrethash in self.manager.book.outgoing:
            raise UserError("a payment of this invoice is already in progress")
        if secrethash in self.manager.book.paid_or_pending:
            raise UserError("this invoice was already paid (or a payment of it is pending)")
        known = self.manager.registered.get(secrethash)
        try:
            on_chain = known if known is not None else await self.link.secret_block(secrethash)
        except ChainError:
            on_chain = None  # layer 1 unreachable: our own view above still counts
        if on_chain is not None:
            raise UserError("the invoice's secret is already public on chain: do not pay it")

    async def start(
        self,
        payee: Address,
        amount: int,
        secrethash: SecretHash,
        payload_secret: Secret | None,
        known_secret: Secret | None,
        *,
        min_lock_timeout: int = 0,
    ) -> OutgoingPayment:
        """Queue the payment's lock on our channel with the payee; the step signs it at once
        if nothing is in flight, or it rides on the next update."""
        manager = self.manager
        if payee == manager.us:
            raise UserError("cannot pay ourselves")
        if amount <= 0:
            raise UserError("the amount must be positive")
        channel = manager.channel_with(payee)
        channel_id = ChannelId(b"") if channel is None else channel.channel_id
        try:
            if channel is None or not channel.takes_new_transfers:
                raise UserError(f"no usable channel with {short_hex(payee)}")
            if not self.is_online(payee):
                raise UserError(f"peer {short_hex(payee)} is offline: nothing was sent")
            window = min(channel.settle_timeout, channel.config.max_lock_timeout)
            lock_timeout = max(min(PAYER_LOCK_TIMEOUT, window), min_lock_timeout)
            if lock_timeout > window:
                raise UserError(f"the invoice wants a lock timeout of {min_lock_timeout} blocks")
        except UserError as refusal:
            await self._record_refused(secrethash, payee, channel_id, amount, str(refusal))
            raise
        expiration = manager.height + lock_timeout
        payload = HopPayload(PAYLOAD_VERSION, amount, expiration, payload_secret).encode()
        held = HeldLock(Lock(amount, expiration, secrethash), payload)
        # Checked again here, after any wait: a payment of the same hash may have started (or
        # been signed and finished) meanwhile, and its secret is then known to the payee.
        if secrethash in manager.book.outgoing:
            raise UserError("a payment with this payment hash is already in progress")
        if secrethash in manager.book.paid_or_pending:
            raise UserError("a payment with this payment hash was already paid (or is pending)")
        record = PaymentRecord(
            secrethash,
            "out",
            payee,
            channel.channel_id,
            amount,
            0,
            "pending",
            known_secret,
            now_ms(),
            None,
            "",
        )
        payment = OutgoingPayment(record)
        manager.book.outgoing[secrethash] = payment
        try:
            await manager.admit_payment(channel.channel_id, held, payment)
        except BaseException as error:
            if not payment.signed:
                manager.book.outgoing.pop(secrethash, None)
                if isinstance(error, PaymentRefused):
                    await self._record_refused(
                        secrethash, payee, channel.channel_id, amount, str(error)
                    )
            raise
        return payment

    async def wait_final(self, payment: OutgoingPayment, seconds: float | None) -> None:
        """Wait until the payment is final, or `seconds` (if given). One its channel dropped
        before it was ever signed is recorded as failed then (it was never written before)."""
        with trio.move_on_after(seconds if seconds is not None else float("inf")):
            await payment.done.wait()
        if payment.status == "failed" and not payment.signed:
            record = payment.record
            await self._record_refused(
                record.payment_hash, record.peer, record.channel_id, record.amount, payment.error
            )

    async def _record_refused(
        self,
        secrethash: SecretHash,
        payee: bytes,
        channel_id: ChannelId,
        amount: int,
        reason: str,
    ) -> None:
        """Store a payment that failed before it was signed, as `failed` with its reason.

        Not when a payment of this hash is live or was paid: its record must stay as it is."""
        manager = self.manager
        if secrethash in manager.book.outgoing or secrethash in manager.book.paid_or_pending:
            return
        at = now_ms()
        record = PaymentRecord(
            secrethash, "out", payee, channel_id, amount, 0, "pending", None, at, None, ""
        )
        outcome = PaymentOutcome(secrethash, "out", "failed", None, at, reason)
        batch = StoreBatch(payments={(secrethash, "out"): record}, outcomes=[outcome])
        with trio.CancelScope(shield=True):  # the caller may be going: the record still lands
            await manager.database.run(lambda c: manager.tables.write(c, batch))
        log.info(
            "payment_failed",
            payment_hash=secrethash.hex(),
            peer=payee.hex(),
            amount=amount,
            reason=reason,
            signed=False,
        )

    async def create_invoice(
        self, amount: int, description: str, expiry_seconds: int | None
    ) -> dict[str, Any]:
        manager = self.manager
        if amount <= 0:
            raise UserError("an invoice amount must be positive")
        secret = Secret(os.urandom(32))
        secrethash = SecretHash(sha256(secret))
        created = now_ms()
        expiry = expiry_seconds or DEFAULT_EXPIRY_SECONDS
        invoice = Invoice(
            manager.chain_id,
            manager.us,
            amount,
            secrethash,
            created,
            expiry,
            manager.config.reveal_timeout + 1,
            description,
            b"",
        )
        encoded = encode_invoice(manager.identity, invoice)
        record = InvoiceRecord(
            secrethash,
            secret,
            amount,
            description,
            encoded,
            created,
            invoice.expires_at_ms(),
            "open",
        )
        batch = StoreBatch(invoices={secrethash: record})
        await manager.database.run(lambda c: manager.tables.write(c, batch))
        manager.book.invoices[secrethash] = (invoice, record)
        return {
            "invoice": encoded,
            "payment_hash": secrethash.hex(),
            "amount": amount,
            "expires_ms": invoice.expires_at_ms(),
        }

    async def payments(
        self, *, payment_hash: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Every payment, newest first; only those whose hash starts with `payment_hash` (a hex
        prefix) and whose status is `status`, when given."""
        records = await self.manager.database.run(list_payments)
        if payment_hash is not None:
            records = [r for r in records if r.payment_hash.hex().startswith(payment_hash)]
        if status is not None:
            records = [r for r in records if r.status == status]
        return [
            {
                "payment_hash": r.payment_hash.hex(),
                "direction": r.direction,
                "peer": r.peer.hex(),
                "channel_id": r.channel_id.hex() or None,  # none: refused before any channel
                "amount": r.amount,
                "fee": r.fee,
                "status": r.status,
                "created_ms": r.created_ms,
                "finished_ms": r.finished_ms,
                "error": r.error,
            }
            for r in records
        ]

    async def invoices(self) -> list[dict[str, Any]]:
        records = await self.manager.database.run(list_invoices)
        now = now_ms()
        return [
            {
                "payment_hash": r.payment_hash.hex(),
                "amount": r.amount,
                "fee": 0,
                "status": "expired" if r.status == "open" and now >= r.expires_ms else r.status,
                "description": r.description,
                "invoice": r.encoded,
                "expires_ms": r.expires_ms,
            }
            for r in records
        ]


def payment_result(payment: OutgoingPayment) -> dict[str, Any]:
    """The `send`/`pay` result document (a contract of the CLI)."""
    record = payment.record
    finished = payment.finished_ms or now_ms()
    return {
        "status": payment.status,
        "payment_hash": record.payment_hash.hex(),
        "preimage": payment.secret.hex()
        if payment.secret and payment.status == "succeeded"
        else None,
        "amount": record.amount,
        "fee": record.fee,
        "route": [
            {
                "node_id": record.peer.hex(),
                "channel_id": record.channel_id.hex(),
                "amount": record.amount,
                "fee": 0,
            }
        ],
        "duration_ms": max(finished - record.created_ms, 0),
        "error": payment.error or None,
    }
