"""Retention: records final for longer than the user keeps them are deleted, and nothing else:
never a pending payment, a record whose payment hash the node still holds a lock of (a dispute
or an on-chain unlock may need it), or an invoice that can still be paid."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pchan.core.payment.records import InvoiceRecord, PaymentOutcome, PaymentRecord
from p2pchan.crypto.hashing import sha256
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.node_store import ChannelTables, InvoiceQuery, StoreBatch, page_invoices
from p2pchan.storage.payment_history import (
    PaymentQuery,
    compact_all,
    page_payments,
    payment_counts,
)
from p2pchan.storage.retention import Pruned, prune_invoices, prune_payments
from p2pchan.types import ChannelId, Secret, SecretHash

DAY = 86_400_000
NOW = 100 * DAY
CUTOFF = NOW - 30 * DAY


@pytest.fixture
def database(tmp_path: Path) -> Iterator[NodeDatabase]:
    opened = NodeDatabase.open(tmp_path)
    yield opened
    opened.close()


def write(database: NodeDatabase, batch: StoreBatch) -> None:
    database.run_now(lambda connection: ChannelTables().write(connection, batch))
    database.run_now(compact_all)


def payment(database: NodeDatabase, created: int, finished: int | None) -> SecretHash:
    """A payment of ours made at `created`, final (succeeded) at `finished` unless None."""
    secret = Secret(os.urandom(32))
    payment_hash = SecretHash(sha256(secret))
    made = PaymentRecord(
        payment_hash, "out", b"p" * 32, ChannelId(b"c" * 32), 1, 0, "pending", secret, created,
        None, "",
    )  # fmt: skip
    outcomes = []
    if finished is not None:
        outcomes = [PaymentOutcome(payment_hash, "out", "succeeded", secret, finished, "")]
    write(database, StoreBatch(payments={(payment_hash, "out"): made}, outcomes=outcomes))
    return payment_hash


def listed(database: NodeDatabase) -> list[SecretHash]:
    page = database.run_now(lambda c: page_payments(c, PaymentQuery(limit=1000)))
    return [stored.record.payment_hash for stored in reversed(page)]


def prune_all(database: NodeDatabase, protected: set[bytes], limit: int) -> int:
    deleted, after = 0, 0
    while True:
        work = functools.partial(
            prune_payments, before_ms=CUTOFF, protected=protected, after=after, limit=limit
        )
        step: Pruned = database.run_now(work)
        deleted, after = deleted + step.deleted, step.after
        if step.done:
            return deleted


@pytest.mark.parametrize("limit", [1, 3, 5000], ids=["batches_of_1", "batches_of_3", "one_batch"])
def test_only_records_final_before_the_cutoff_and_not_held_are_pruned(
    database: NodeDatabase, limit: int
) -> None:
    old = [payment(database, CUTOFF - 10 * DAY + i, CUTOFF - 9 * DAY) for i in range(5)]
    pending = payment(database, CUTOFF - 8 * DAY, None)
    held = payment(database, CUTOFF - 7 * DAY, CUTOFF - 7 * DAY)  # its lock is still in a channel
    lately_final = payment(database, CUTOFF - 6 * DAY, CUTOFF + DAY)  # pending for a week
    more_old = payment(database, CUTOFF - 5 * DAY, CUTOFF - 5 * DAY)
    recent = [payment(database, CUTOFF + i, CUTOFF + i + 1) for i in range(3)]

    assert prune_all(database, {held}, limit) == 6
    assert listed(database) == [pending, held, lately_final, *recent]
    assert not {*old, more_old} & set(listed(database))
    counts = database.run_now(payment_counts)["out"]
    assert counts == {"pending": 1, "succeeded": 5, "failed": 0}
    # Once the lock is gone, the held record goes too; the pending one never.
    assert prune_all(database, set(), limit) == 1
    assert listed(database) == [pending, lately_final, *recent]


def invoice(database: NodeDatabase, created: int, expires: int, status: str) -> SecretHash:
    secret = Secret(os.urandom(32))
    payment_hash = SecretHash(sha256(secret))
    record = InvoiceRecord(payment_hash, secret, 5, "", "p2pc1...", created, expires, status)
    write(database, StoreBatch(invoices={payment_hash: record}))
    return payment_hash


def test_invoices_are_pruned_once_paid_or_expired_unless_held(database: NodeDatabase) -> None:
    paid = invoice(database, CUTOFF - DAY, CUTOFF, "paid")
    expired = invoice(database, CUTOFF - DAY, CUTOFF, "open")
    payable = invoice(database, CUTOFF - DAY, NOW + DAY, "open")  # a long expiry
    held = invoice(database, CUTOFF - DAY, CUTOFF, "paid")  # its payment is still pending
    recent = invoice(database, CUTOFF + 1, CUTOFF + 2, "paid")
    step = database.run_now(
        lambda c: prune_invoices(c, before_ms=CUTOFF, now_ms=NOW, protected={held}, limit=10)
    )
    assert (step.deleted, step.done) == (2, True)
    page = database.run_now(lambda c: page_invoices(c, InvoiceQuery(limit=10), NOW))
    assert [record.payment_hash for _, record in page] == [recent, held, payable]
    assert not {paid, expired} & {r.payment_hash for _, r in page}
