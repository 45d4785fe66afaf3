"""The payments journal: a payment refused before it was signed is kept as `failed` with its
reason; a later attempt of the same payment hash (an invoice paid again) is a new record, not
swallowed by the failed one; outcomes of payments never recorded show nothing."""

from __future__ import annotations

from pathlib import Path

from p2pchan.core.payment.records import PaymentOutcome, PaymentRecord
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.node_store import ChannelTables, StoreBatch, fold_payments, list_payments
from p2pchan.types import ChannelId, Secret, SecretHash

HASH = SecretHash(b"h" * 32)
PEER = b"p" * 32
CHANNEL = ChannelId(b"c" * 32)


def created(at: int, channel: ChannelId = CHANNEL) -> PaymentRecord:
    return PaymentRecord(HASH, "out", PEER, channel, 70, 0, "pending", None, at, None, "")


def test_a_refused_payment_is_failed_with_its_reason_and_may_be_paid_again(
    tmp_path: Path,
) -> None:
    database = NodeDatabase.open(tmp_path)
    tables = ChannelTables()
    try:

        def write(batch: StoreBatch) -> None:
            database.run_now(lambda connection: tables.write(connection, batch))

        # Refused before any channel took it: creation and failure in one row.
        refused = PaymentOutcome(HASH, "out", "failed", None, 10, "peer p is offline")
        write(StoreBatch(payments={(HASH, "out"): created(10, ChannelId(b""))}, outcomes=[refused]))
        (record,) = database.run_now(list_payments)
        assert (record.status, record.error, record.finished_ms) == (
            "failed",
            "peer p is offline",
            10,
        )
        assert record.channel_id == b""

        # Paid again once the peer is back: the new attempt is the record now.
        write(StoreBatch(payments={(HASH, "out"): created(20)}))
        (record,) = database.run_now(list_payments)
        assert (record.status, record.created_ms, record.channel_id) == ("pending", 20, CHANNEL)
        secret = Secret(b"s" * 32)
        write(StoreBatch(outcomes=[PaymentOutcome(HASH, "out", "succeeded", secret, 30, "")]))
        # A stray outcome after success, and one of a payment never recorded, change nothing.
        write(StoreBatch(outcomes=[PaymentOutcome(HASH, "out", "failed", None, 40, "late")]))
        other = SecretHash(b"o" * 32)
        write(StoreBatch(outcomes=[PaymentOutcome(other, "out", "failed", None, 40, "?")]))
        folded = database.run_now(fold_payments)
        assert list(folded) == [(HASH, "out")]
        assert (folded[HASH, "out"].status, folded[HASH, "out"].secret) == ("succeeded", secret)
        # A creation while a payment is pending or done is not a new attempt.
        write(StoreBatch(payments={(HASH, "out"): created(50)}))
        assert database.run_now(fold_payments)[HASH, "out"].created_ms == 20
    finally:
        database.close()
