"""The shell's upkeep of payment history (`net/history.py`), in virtual time under the autojump
clock (the store writes on trio's thread, nothing else does IO): the journal is compacted once
the node has been idle a moment, not while payments keep coming, unless the journal grows past
its high-water mark; whatever reads history sees every record; and with a retention period the
database stays bounded under a constant load, never losing a record the node still holds."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from p2pchan.core.payment.records import PaymentOutcome, PaymentRecord
from p2pchan.crypto.hashing import sha256
from p2pchan.net import history as history_module
from p2pchan.net.history import CHECK_SECONDS, IDLE_SECONDS, PaymentHistory
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.node_store import ChannelTables, StoreBatch
from p2pchan.storage.payment_history import (
    PaymentQuery,
    journal_events,
    page_payments,
    payment_counts,
    records_of,
)
from p2pchan.types import ChannelId, Secret, SecretHash

DAY_MS = 86_400_000


def virtual_ms() -> Callable[[], int]:
    """A wall clock that moves with trio's (virtual) clock."""
    return lambda: 1_000_000 + int(trio.current_time() * 1000)


async def pay(
    database: NodeDatabase, history: PaymentHistory, now_ms: int, *, final: bool = True
) -> SecretHash:
    """One payment of ours journalled as a step writes it: made and (unless not `final`)
    succeeded in the same step."""
    secret = Secret(os.urandom(32))
    payment_hash = SecretHash(sha256(secret))
    made = PaymentRecord(
        payment_hash, "out", b"p" * 32, ChannelId(b"c" * 32), 1, 0, "pending", secret, now_ms,
        None, "",
    )  # fmt: skip
    outcomes = [PaymentOutcome(payment_hash, "out", "succeeded", secret, now_ms, "")]
    batch = StoreBatch(payments={(payment_hash, "out"): made}, outcomes=outcomes if final else [])
    await database.run(lambda connection: ChannelTables().write(connection, batch))
    history.journalled(len(batch.payments) + len(batch.outcomes))
    return payment_hash


def stored_count(database: NodeDatabase) -> int:
    return sum(sum(by_status.values()) for by_status in database.run_now(payment_counts).values())


async def test_the_journal_is_compacted_when_the_node_is_idle_and_read_whole_on_demand(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, nursery: trio.Nursery
) -> None:
    database = NodeDatabase.open(tmp_path)
    try:
        history = PaymentHistory(database, keep_days=None, protected=set, now_ms=virtual_ms())
        await nursery.start(history.run)
        # Busy: a payment every 0.1 s for 3 s, nothing is compacted meanwhile.
        for _ in range(30):
            await pay(database, history, virtual_ms()())
            await trio.sleep(0.1)
        assert database.run_now(journal_events) == 60 and stored_count(database) == 0
        # Whatever reads history first compacts what is left: every record is there.
        await history.catch_up()
        assert database.run_now(journal_events) == 0 and stored_count(database) == 30
        # Idle for a moment after more payments: the compactor moves them on its own.
        for _ in range(5):
            await pay(database, history, virtual_ms()())
        assert database.run_now(journal_events) == 10
        await trio.sleep(IDLE_SECONDS + 2 * CHECK_SECONDS)  # virtual time
        assert database.run_now(journal_events) == 0 and stored_count(database) == 35
    finally:
        database.close()


async def test_a_long_journal_is_compacted_even_while_payments_keep_coming(
    autojump_clock: trio.testing.MockClock,
    tmp_path: Path,
    nursery: trio.Nursery,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(history_module, "HIGH_WATER_EVENTS", 40)
    monkeypatch.setattr(history_module, "BATCH_EVENTS", 8)
    database = NodeDatabase.open(tmp_path)
    try:
        history = PaymentHistory(database, keep_days=None, protected=set, now_ms=virtual_ms())
        await nursery.start(history.run)
        longest = 0
        for _ in range(200):  # never idle: a payment every 0.05 s for 10 s
            await pay(database, history, virtual_ms()())
            longest = max(longest, database.run_now(journal_events))
            await trio.sleep(0.05)
        assert stored_count(database) > 100  # moved while busy
        assert longest <= 40 + 2  # down to half the mark each time it was reached
    finally:
        database.close()


async def test_retention_keeps_the_database_bounded_under_a_constant_load(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """Payments kept 2 s, made 50 a second for 40 s: the records of the last seconds only,
    and a database file that stops growing once the deleted rows' pages are reused. A payment
    held by the node (pending, or with a lock still in a channel) is never pruned."""
    keep_seconds = 2.0
    database = NodeDatabase.open(tmp_path)
    held: set[SecretHash] = set()
    try:
        history = PaymentHistory(
            database,
            keep_days=keep_seconds * 1000 / DAY_MS,
            protected=lambda: set(held),
            now_ms=virtual_ms(),
        )
        await nursery.start(history.run)
        pending = await pay(database, history, virtual_ms()(), final=False)
        locked = await pay(database, history, virtual_ms()())
        held.add(locked)
        sizes = []
        for second in range(40):
            for _ in range(50):
                await pay(database, history, virtual_ms()())
                await trio.sleep(0.02)
            await history.catch_up()
            assert stored_count(database) <= 50 * (keep_seconds + 2) + 2
            pages = database.run_now(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
            sizes.append(pages)
            if second == 20:
                assert database.run_now(lambda c: records_of(c, locked))
                held.clear()  # its lock left the channel: it may go now
        assert sizes[-1] <= max(sizes[:10]) + 2  # bounded: later seconds reuse freed pages
        page = database.run_now(lambda c: page_payments(c, PaymentQuery(limit=10_000)))
        oldest = page[-1].record
        assert oldest.payment_hash == pending and oldest.status == "pending"
        assert not database.run_now(lambda c: records_of(c, locked))
        assert virtual_ms()() - page[-2].record.created_ms <= (keep_seconds + 2) * 1000
    finally:
        database.close()
