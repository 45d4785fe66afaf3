"""The payments table: the journal compacted into it keeps every attempt with its outcome and
reason; pending records made final by a later batch; pages through history return every record
exactly once, newest first, whatever the limit, status and payment-hash prefix; the lookups by
hash work across epochs; an old journal moves in when a database is upgraded."""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchan.core.outputs import PersistForwardDone
from p2pchan.core.payment.records import InvoiceRecord, PaymentOutcome, PaymentRecord, RouteHop
from p2pchan.crypto.hashing import sha256
from p2pchan.net.api.payments import payment_json
from p2pchan.storage import payment_history
from p2pchan.storage.db import MIGRATIONS, NodeDatabase
from p2pchan.storage.node_store import ChannelTables, InvoiceQuery, StoreBatch, page_invoices
from p2pchan.storage.payment_history import (
    PaymentQuery,
    StoredPayment,
    compact,
    compact_all,
    journal_events,
    load_pending,
    page_payments,
    paid_before,
    payment_counts,
    records_of,
)
from p2pchan.types import ChannelId, Secret, SecretHash
from p2pchan.wire.codec import pack

PEER = b"p" * 32
CHANNEL = ChannelId(b"c" * 32)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[NodeDatabase]:
    opened = NodeDatabase.open(tmp_path)
    yield opened
    opened.close()


@pytest.fixture
def small_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Epochs of 8 records, so that a few dozen records span several."""
    monkeypatch.setattr(payment_history, "EPOCH_BITS", 3)


def write(database: NodeDatabase, batch: StoreBatch) -> None:
    database.run_now(lambda connection: ChannelTables().write(connection, batch))


def compacted(database: NodeDatabase, max_events: int = 1 << 30) -> int:
    return database.run_now(lambda connection: compact_all(connection, max_events))


def record(
    payment_hash: bytes,
    at: int,
    *,
    direction: str = "out",
    channel: ChannelId = CHANNEL,
    secret: Secret | None = None,
    amount: int = 70,
) -> PaymentRecord:
    return PaymentRecord(
        SecretHash(payment_hash), direction, PEER, channel, amount, 0, "pending", secret, at,
        None, "",
    )  # fmt: skip


def outcome(
    payment_hash: bytes,
    status: str,
    at: int,
    *,
    direction: str = "out",
    secret: Secret | None = None,
    error: str = "",
) -> PaymentOutcome:
    return PaymentOutcome(SecretHash(payment_hash), direction, status, secret, at, error)


def page(database: NodeDatabase, **query: object) -> list[StoredPayment]:
    return database.run_now(lambda c: page_payments(c, PaymentQuery(**query)))  # type: ignore[arg-type]


HASH = SecretHash(b"h" * 32)


def test_attempts_outcomes_and_reasons_survive_compaction(database: NodeDatabase) -> None:
    # Refused before any channel took it: creation and failure in one journal row.
    refused = outcome(HASH, "failed", 10, error="peer p is offline")
    write(
        database,
        StoreBatch(
            payments={(HASH, "out"): record(HASH, 10, channel=ChannelId(b""))}, outcomes=[refused]
        ),
    )
    # Paid again once the peer is back: a second attempt, which succeeds.
    write(database, StoreBatch(payments={(HASH, "out"): record(HASH, 20)}))
    secret = Secret(b"s" * 32)
    write(database, StoreBatch(outcomes=[outcome(HASH, "succeeded", 30, secret=secret)]))
    # A stray outcome after success, and one of a payment never recorded, change nothing; a
    # creation while an attempt is pending is not a new attempt: it replaces its record.
    write(database, StoreBatch(outcomes=[outcome(HASH, "failed", 40, error="late")]))
    other = SecretHash(b"o" * 32)
    write(database, StoreBatch(outcomes=[outcome(other, "failed", 40, error="?")]))
    third = SecretHash(b"t" * 32)
    write(database, StoreBatch(payments={(third, "in"): record(third, 50, direction="in")}))
    again = record(third, 50, direction="in", amount=71)
    write(database, StoreBatch(payments={(third, "in"): again}))
    assert compacted(database) == 3

    newest_first = [(s.record.payment_hash, s.record.status) for s in page(database)]
    assert newest_first == [(third, "pending"), (HASH, "succeeded"), (HASH, "failed")]
    first, second = reversed(database.run_now(lambda c: records_of(c, HASH)))
    assert (first.record.status, first.record.error, first.record.finished_ms) == (
        "failed",
        "peer p is offline",
        10,
    )
    assert first.record.channel_id == b""
    assert (second.record.status, second.record.secret, second.record.created_ms) == (
        "succeeded",
        secret,
        20,
    )
    assert second.record.finished_ms == 30 and second.record.error == ""
    assert database.run_now(lambda c: paid_before(c, HASH))
    assert not database.run_now(lambda c: paid_before(c, other))
    assert database.run_now(load_pending) == [again]
    counts = database.run_now(payment_counts)
    assert counts == {
        "out": {"pending": 0, "succeeded": 1, "failed": 1},
        "in": {"pending": 1, "succeeded": 0, "failed": 0},
        "forward": {"pending": 0, "succeeded": 0, "failed": 0},
    }


def test_a_payment_pending_at_one_compaction_is_made_final_by_a_later_one(
    database: NodeDatabase,
) -> None:
    secret = Secret(os.urandom(32))
    paid = SecretHash(sha256(secret))
    failed = SecretHash(os.urandom(32))  # an invoice's: no secret known while pending
    write(
        database,
        StoreBatch(
            payments={
                (paid, "out"): record(paid, 100, secret=secret),
                (failed, "out"): record(failed, 100),
            }
        ),
    )
    compacted(database)
    assert {r.payment_hash for r in database.run_now(load_pending)} == {paid, failed}
    write(
        database,
        StoreBatch(
            outcomes=[
                outcome(paid, "succeeded", 150, secret=secret),
                outcome(failed, "failed", 170, error="lock expired"),
            ]
        ),
    )
    write(database, StoreBatch(outcomes=[outcome(paid, "failed", 180, error="too late")]))
    compacted(database)
    assert database.run_now(load_pending) == []
    by_hash = {s.record.payment_hash: s.record for s in page(database)}
    assert (by_hash[paid].status, by_hash[paid].finished_ms, by_hash[paid].secret) == (
        "succeeded",
        150,
        secret,
    )
    assert (by_hash[failed].status, by_hash[failed].error) == ("failed", "lock expired")
    assert database.run_now(payment_counts)["out"] == {"pending": 0, "succeeded": 1, "failed": 1}
    # The hash is left out of a row only where its secret gives it.
    stored = database.run_now(
        lambda c: c.execute("SELECT payment_hash FROM payments ORDER BY id").fetchall()
    )
    assert [None if h is None else bytes(h) for (h,) in stored] == [None, failed]


def test_compaction_goes_in_bounded_batches_in_journal_order(database: NodeDatabase) -> None:
    hashes = [SecretHash(os.urandom(32)) for _ in range(10)]
    for at, payment_hash in enumerate(hashes):
        write(database, StoreBatch(payments={(payment_hash, "out"): record(payment_hash, at)}))
    steps = []
    while True:
        step = database.run_now(lambda c: compact(c, 3))
        steps.append((step.journal_rows, step.records))
        if step.done:
            break
    assert steps == [(3, 3), (3, 3), (3, 3), (1, 1)]
    assert [s.record.payment_hash for s in page(database)] == hashes[::-1]
    assert [s.index for s in page(database)] == list(range(10, 0, -1))


def fill(database: NodeDatabase, count: int) -> list[StoredPayment]:
    """`count` final records of both statuses and directions, compacted in several batches;
    all of them, newest first."""
    for at in range(count):
        secret = Secret(os.urandom(32))
        payment_hash = SecretHash(sha256(secret))
        direction = "in" if at % 3 == 0 else "out"
        status = "failed" if at % 4 == 0 else "succeeded"
        made = record(payment_hash, at, direction=direction, secret=secret, amount=at + 1)
        write(
            database,
            StoreBatch(
                payments={(payment_hash, direction): made},
                outcomes=[outcome(payment_hash, status, at + 1, direction=direction)],
            ),
        )
        if at % 7 == 6:
            compacted(database)
    compacted(database)
    return page(database, limit=count + 1)


@settings(max_examples=30, deadline=None)
@given(
    limit=st.integers(1, 12),
    status=st.sampled_from([None, "succeeded", "failed", "pending"]),
    prefix_digits=st.integers(0, 12),
    by_offset=st.booleans(),
)
def test_paging_returns_every_record_exactly_once_newest_first(
    tmp_path_factory: pytest.TempPathFactory,
    limit: int,
    status: str | None,
    prefix_digits: int,
    by_offset: bool,
) -> None:
    database = NodeDatabase.open(tmp_path_factory.mktemp("db"))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(payment_history, "EPOCH_BITS", 3)  # several epochs
            everything = fill(database, 40)
            assert [s.index for s in everything] == list(range(40, 0, -1))
            # A prefix of some record's hash (its first digits match a few others, or not).
            prefix = everything[17].record.payment_hash.hex()[:prefix_digits] or None
            expected = [
                s for s in everything
                if (status is None or s.record.status == status)
                and (prefix is None or s.record.payment_hash.hex().startswith(prefix))
            ]  # fmt: skip
            pages: list[list[StoredPayment]] = []
            cursor, offset = None, 0
            while True:
                query = {"limit": limit, "status": status, "hash_prefix": prefix}
                query |= {"offset": offset} if by_offset else {"before": cursor}
                pages.append(page(database, **query))
                if len(pages[-1]) < limit:
                    break
                cursor, offset = pages[-1][-1].index, offset + limit
            assert [s for one in pages for s in one] == expected
    finally:
        database.close()


@pytest.mark.usefixtures("small_epochs")
def test_a_hash_is_found_in_any_epoch_whole_or_by_its_start(database: NodeDatabase) -> None:
    everything = fill(database, 50)
    for stored in everything[::7]:
        payment_hash = stored.record.payment_hash
        assert database.run_now(functools.partial(records_of, payment_hash=payment_hash)) == [
            stored
        ]
        for digits in (1, 4, 10, 11, 64):
            prefix = payment_hash.hex()[:digits]
            found = page(database, hash_prefix=prefix, limit=100)
            assert stored in found
            assert all(s.record.payment_hash.hex().startswith(prefix) for s in found)
        expected = stored.record.direction == "out" and stored.record.status == "succeeded"
        assert (
            database.run_now(functools.partial(paid_before, payment_hash=payment_hash)) is expected
        )
    assert database.run_now(lambda c: records_of(c, os.urandom(32))) == []


def history_migration() -> int:
    """The place of the migration that made the payments table (the schema before it had
    payments only in the journal)."""
    (place,) = [n for n, script in enumerate(MIGRATIONS) if "CREATE TABLE payments " in script]
    return place


@pytest.mark.parametrize("events_of", ["before routes", "with routes"])
def test_an_old_journal_moves_into_the_table_when_the_database_is_upgraded(
    tmp_path: Path, events_of: str
) -> None:
    """A database of the releases before, its payments only in the journal (a routed payment
    with its hops and fee, a forward, once journal rows had 11 elements), upgrades and its
    journal moves in: the same records, with their routes."""
    version = history_migration()
    connection = sqlite3.connect(tmp_path / "node.sqlite", isolation_level=None)
    for script in MIGRATIONS[:version]:
        for statement in filter(str.strip, script.split(";")):
            connection.execute(statement)
    connection.execute(f"PRAGMA user_version = {version}")
    secret = os.urandom(32)
    paid, pending, forwarded = sha256(secret), os.urandom(32), os.urandom(32)
    hops = [[b"m" * 32, CHANNEL, 6, 1], [PEER, b"d" * 32, 5, 0]]
    events = [
        [paid, "out", PEER, CHANNEL, 5, 1, "pending", secret, 1000, "", hops],
        [pending, "in", PEER, CHANNEL, 7, 0, "pending", os.urandom(32), 1001, "", []],
        [forwarded, "forward", PEER, CHANNEL, 9, 2, "pending", None, 1002, "", []],
        [forwarded, "forward", None, None, None, None, "failed", None, 1003, "expired"],
    ]
    if events_of == "before routes":
        events = [event[:10] for event in events]
    connection.execute("INSERT INTO payment_journal (events) VALUES (?)", (pack(events),))
    done = [[paid, "out", None, None, None, None, "succeeded", secret, 1500, ""]]
    connection.execute("INSERT INTO payment_journal (events) VALUES (?)", (pack(done),))
    connection.close()

    database = NodeDatabase.open(tmp_path)
    try:
        version_now = database.run_now(lambda c: c.execute("PRAGMA user_version").fetchone())
        assert version_now == (len(MIGRATIONS),)
        assert [r.payment_hash for r in database.run_now(load_pending)] == [pending]
        assert compacted(database) == 3
        listed = [
            (s.record.payment_hash, s.record.direction, s.record.status) for s in page(database)
        ]
        assert listed == [
            (forwarded, "forward", "failed"),
            (pending, "in", "pending"),
            (paid, "out", "succeeded"),
        ]
        [routed] = database.run_now(lambda c: records_of(c, paid))
        route = () if events_of == "before routes" else (
            RouteHop(b"m" * 32, CHANNEL, 6, 1), RouteHop(PEER, b"d" * 32, 5, 0)
        )  # fmt: skip
        assert (routed.record.fee, routed.record.route) == (1, route)
        assert [r.payment_hash for r in database.run_now(load_pending)] == [pending]
        rows = database.run_now(
            lambda c: c.execute("SELECT count(*) FROM payment_journal").fetchone()
        )
        assert rows == (0,)
    finally:
        database.close()


def test_invoices_page_newest_first_by_status_hash_and_cursor(database: NodeDatabase) -> None:
    now = 10_000
    made = []
    for number in range(12):
        secret = Secret(os.urandom(32))
        status = "paid" if number % 3 == 0 else "open"
        expires = now - 1 if number % 3 == 1 else now + 1  # 1, 4, 7, 10: expired
        invoice = InvoiceRecord(
            SecretHash(sha256(secret)), secret, 5, f"#{number}", "p2pc1...", number, expires, status
        )
        write(database, StoreBatch(invoices={invoice.payment_hash: invoice}))
        made.append(invoice)

    def listed(**query: Any) -> list[tuple[int, InvoiceRecord]]:
        return database.run_now(lambda c: page_invoices(c, InvoiceQuery(**query), now))

    assert [r.description for _, r in listed()] == [f"#{n}" for n in range(11, -1, -1)]
    numbers = {"paid": [9, 6, 3, 0], "expired": [10, 7, 4, 1], "open": [11, 8, 5, 2]}
    for status, expected in numbers.items():
        assert [r.description for _, r in listed(status=status)] == [f"#{n}" for n in expected]
    pages, cursor = [], None
    while page := listed(limit=5, before=cursor):
        pages.append(page)
        cursor = page[-1][0]
    assert [len(p) for p in pages] == [5, 5, 2]
    assert [r for p in pages for _, r in p] == made[::-1]
    for invoice in made[::5]:
        for digits in (1, 3, 64):
            prefix = invoice.payment_hash.hex()[:digits]
            found = [r for _, r in listed(hash_prefix=prefix)]
            assert invoice in found and all(r.payment_hash.hex().startswith(prefix) for r in found)


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["create", "succeeded", "failed", "compact"]),
        st.integers(0, 3),  # which payment hash
        st.sampled_from(["out", "in"]),
    ),
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(operations=OPERATIONS)
def test_a_restart_finds_the_same_pending_payments_in_the_journal_as_once_compacted(
    tmp_path_factory: pytest.TempPathFactory, operations: list[tuple[str, int, str]]
) -> None:
    """Start-up reads the journal over the table without compacting it: the payments it finds
    pending are those compaction would leave pending."""
    database = NodeDatabase.open(tmp_path_factory.mktemp("db"))
    try:
        hashes = [SecretHash(bytes([n]) * 32) for n in range(4)]
        events = 0
        for at, (operation, which, direction) in enumerate(operations):
            payment_hash = hashes[which]
            if operation == "compact":
                compacted(database)
                events = 0
                continue
            if operation == "create":  # a new attempt, or another route of a pending one
                made = record(payment_hash, at, direction=direction, amount=at + 1)
                if at % 2:
                    made = made._replace(fee=at, route=(RouteHop(PEER, CHANNEL, at + 1, at),))
                batch = StoreBatch(payments={(payment_hash, direction): made})
            else:
                batch = StoreBatch(
                    outcomes=[outcome(payment_hash, operation, at, direction=direction)]
                )
            write(database, batch)
            events += 1
        assert database.run_now(journal_events) == events
        before = database.run_now(load_pending)
        compacted(database)
        assert database.run_now(load_pending) == before
        assert database.run_now(journal_events) == 0
        pending = [s.record for s in page(database, status="pending", limit=99)]
        assert pending == before[::-1]
    finally:
        database.close()


@pytest.mark.parametrize("compact_between", [False, True], ids=["one_batch", "table_row"])
def test_a_retry_over_another_route_replaces_the_pending_record_and_keeps_its_hops(
    tmp_path: Path, compact_between: bool
) -> None:
    """The payer tries another route after a hop failed: the same attempt, its record now the
    new route's (first channel, fee, hops), whether the first route's record was compacted
    already or not; once final and after a restart, `payments` shows that route."""
    database = NodeDatabase.open(tmp_path)
    try:
        first = record(HASH, 10)._replace(
            fee=3, route=(RouteHop(b"m" * 32, CHANNEL, 73, 3), RouteHop(PEER, CHANNEL, 70, 0))
        )
        write(database, StoreBatch(payments={(HASH, "out"): first}))
        if compact_between:
            compacted(database)
        other = ChannelId(b"d" * 32)
        second = record(HASH, 10, channel=other)._replace(
            fee=7,
            route=(
                RouteHop(b"n" * 32, other, 77, 2),
                RouteHop(b"o" * 32, CHANNEL, 75, 5),
                RouteHop(PEER, CHANNEL, 70, 0),
            ),
        )
        write(database, StoreBatch(payments={(HASH, "out"): second}))
        assert database.run_now(load_pending) == [second]
        secret = Secret(b"s" * 32)
        write(database, StoreBatch(outcomes=[outcome(HASH, "succeeded", 25, secret=secret)]))
        assert compacted(database) == (0 if compact_between else 1)
    finally:
        database.close()

    database = NodeDatabase.open(tmp_path)  # a restart
    try:
        [stored] = page(database)
        assert stored.record == second._replace(status="succeeded", secret=secret, finished_ms=25)
        listed = payment_json(stored.record, stored.index)
        assert (listed["fee"], listed["channel_id"], listed["status"]) == (
            7,
            other.hex(),
            "succeeded",
        )
        assert listed["route"] == [(b"n" * 32).hex(), (b"o" * 32).hex(), PEER.hex()]
        assert database.run_now(payment_counts)["out"] == {
            "pending": 0,
            "succeeded": 1,
            "failed": 0,
        }
    finally:
        database.close()


def test_a_forward_is_recorded_with_the_fee_it_earned(database: NodeDatabase) -> None:
    """A mediator's record of a payment it passed on (made and final in one step), listed as
    a forward and never taken for a payment of its own at start-up."""
    made = record(HASH, 5, direction="forward")._replace(amount=100, fee=5)
    done = outcome(HASH, "succeeded", 9, direction="forward", secret=Secret(b"z" * 32))
    write(database, StoreBatch.of([PersistForwardDone(made, done)]))
    assert database.run_now(load_pending) == []
    compacted(database)
    [stored] = page(database)
    assert (stored.record.direction, stored.record.fee, stored.record.status) == (
        "forward",
        5,
        "succeeded",
    )
    assert database.run_now(payment_counts)["forward"] == {
        "pending": 0,
        "succeeded": 1,
        "failed": 0,
    }
    assert not database.run_now(lambda c: paid_before(c, HASH))  # not a payment of ours
