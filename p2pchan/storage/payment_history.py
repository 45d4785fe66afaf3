"""The payments table: every payment record once it has left the journal, indexed, so that
`payments` pages through history, `pay` checks that an invoice was never paid, and start-up
loads only what is still pending, whatever the size of the history.

The hot path writes the journal (`node_store`: one row per step; a row per payment cost ~10 us
more per payment there) and `compact` moves it here off the hot path, in bounded batches and in
journal order. Each creation becomes a row, an attempt (an invoice paid again after a failure
has two), unless an attempt of that hash and direction is pending: then it replaces that
attempt's record (the payer retrying along another route: its first channel, fee and hops);
each outcome makes the newest attempt final if it is pending (a later outcome changes nothing;
one of a payment never recorded is dropped). Directions are `out`, `in` and `forward` (a
payment we mediated, with the fee we kept); a routed payment's hops are a msgpack blob in
`route` (none for a direct payment, the common case, so it costs nothing there).

A row's id is its index: the order in which records were made, newest highest, never reused
(the next one is kept in `meta`), and the cursor of `payments`. Rows are small (66 bytes with a
32-byte secret, 83 with the index, measured at 1,000,000 rows): peer and channel are a
reference to `payment_peers`, the payment hash is left out where it is the sha256 of the stored
secret, the end is a duration from the start. `payment_counts` keeps the count per direction
and status, for `info`.

Lookups by payment hash go through `hash_key`: the row's epoch (id >> 16) above the hash's
first 5 bytes. An index on the bare hash takes its inserts at random places of a file larger
than SQLite's cache: measured at 1,000,000 rows, 15.8 us of CPU and 2.6 kB of WAL per row
inserted, against 6.9 us and 1.1 kB with the epoch in front, whose part of the index (65,536
entries, about 1.5 MB) stays in the cache while it fills. A lookup probes each epoch (16 for a
million records, 0.05 ms).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import msgpack

from p2pchan.core.payment.records import PaymentRecord, RouteHop
from p2pchan.crypto.hashing import sha256
from p2pchan.types import ChannelId, Secret, SecretHash
from p2pchan.wire.codec import pack, unpack

EPOCH_BITS = 16
HASH_KEY_BITS = 40  # the payment hash's first 5 bytes
HASH_KEY_DIGITS = HASH_KEY_BITS // 4
NO_INDEX = 2**63 - 1  # above every row's index

STATUS_CODES = {"pending": 0, "succeeded": 1, "failed": 2}
STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}
PENDING = STATUS_CODES["pending"]
DIRECTION_CODES = {"out": 0, "in": 1, "forward": 2}
DIRECTION_NAMES = {code: name for name, code in DIRECTION_CODES.items()}

_SELECT = (
    "SELECT p.id, p.status, p.direction, p.amount, p.fee, p.created_ms, p.duration_ms, "
    "p.secret, p.payment_hash, p.error, p.route, c.channel_id, c.peer "
    "FROM payments p JOIN payment_peers c ON c.id = p.counterparty"
)


@dataclass(frozen=True, slots=True, order=True)
class StoredPayment:
    """A payment record with its index (the cursor of the next page: records below it)."""

    index: int
    record: PaymentRecord = field(compare=False)


@dataclass(frozen=True)
class PaymentQuery:
    """One page of `payments`, newest first: at most `limit` records below index `before`
    (none: from the newest), the first `offset` of them skipped, of one status and whose
    payment hash starts with `hash_prefix` (lowercase hex) if given."""

    limit: int = 100
    before: int | None = None
    offset: int = 0
    status: str | None = None
    hash_prefix: str | None = None


def hash_key(index: int, payment_hash: bytes) -> int:
    return (index >> EPOCH_BITS) << HASH_KEY_BITS | int.from_bytes(payment_hash[:5], "big")


# -- compaction ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Compacted:
    """What one `compact` call moved: journal rows, their events, the records made."""

    journal_rows: int
    events: int
    records: int
    done: bool  # the journal is empty now


def compact(connection: sqlite3.Connection, max_events: int) -> Compacted:
    """Move the oldest journal rows, about `max_events` events (at least one row), into the
    payments table (inside the caller's transaction)."""
    batch: list[list[Any]] = []
    last_row: int | None = None
    rows = 0
    cursor = connection.execute("SELECT id, events FROM payment_journal ORDER BY id")
    try:
        for journal_id, blob in cursor:
            batch += unpack(bytes(blob), max_len=len(blob))
            last_row, rows = journal_id, rows + 1
            if len(batch) >= max_events:
                break
    finally:
        cursor.close()
    if last_row is None:
        return Compacted(0, 0, 0, True)
    made = _fold_into_table(connection, batch)
    connection.execute("DELETE FROM payment_journal WHERE id <= ?", (last_row,))
    more = connection.execute("SELECT 1 FROM payment_journal LIMIT 1").fetchone()
    return Compacted(rows, len(batch), made, more is None)


def compact_all(connection: sqlite3.Connection, max_events: int = 4096) -> int:
    """Move the whole journal, `max_events` at a time, inside the caller's one transaction
    (the shell uses a transaction per batch: `net/history.py`); the records made."""
    made = 0
    while True:
        step = compact(connection, max_events)
        made += step.records
        if step.done:
            return made


def _fold_into_table(connection: sqlite3.Connection, events: list[list[Any]]) -> int:
    """Journal events, in order, as new rows and as updates of rows still pending. (Written
    for speed: it runs for every payment, a few microseconds each.)"""
    pending = _pending_rows(connection)
    peer_ref = _PeerRefs(connection).ref
    rows: list[list[Any]] = []  # [hash, status, direction, counterparty, amount, fee,
    #                              created_ms, duration_ms, secret, error, route]
    newest: dict[tuple[bytes, str], list[Any]] = {}  # the newest new row per hash, direction
    rewritten: dict[int, list[Any]] = {}  # pending rows of the table created again, by index
    updates: list[tuple[Any, ...]] = []
    moved: list[tuple[int, int]] = []  # (direction, status) of the pending rows made final
    status_codes, direction_codes = STATUS_CODES, DIRECTION_CODES
    for event in events:
        payment_hash, direction_name, peer, channel_id, amount, fee, status_name = event[:7]
        secret, at, error = event[7:10]
        status = status_codes[status_name]
        key = (payment_hash, direction_name)
        if peer is not None:  # a creation: a new attempt, or another route of a pending one
            route = _packed_route(event[10]) if len(event) > 10 else None
            row = [
                payment_hash, status, direction_codes[direction_name], peer_ref(channel_id, peer),
                amount, fee, at, None if status == PENDING else 0, secret, error or None, route,
            ]  # fmt: skip
            known = newest.get(key)
            if known is not None and known[1] == PENDING:
                known[:] = row
            elif key in pending:
                index, _, _ = pending[key]
                pending[key] = (index, at, secret)
                rewritten[index] = row
            else:
                rows.append(row)
                newest[key] = row
        elif status == PENDING:
            continue
        elif key in newest:
            row = newest[key]
            if row[1] == PENDING:
                row[1], row[7], row[9] = status, max(at - row[6], 0), error or None
                if secret is not None:
                    row[8] = secret
        elif key in pending:
            index, created_ms, known_secret = pending.pop(key)
            secret = secret if secret is not None else known_secret
            moved.append((direction_codes[direction_name], status))
            image = rewritten.get(index)
            if image is not None:
                image[1], image[7] = status, max(at - image[6], 0)
                image[8], image[9] = secret, error or None
                continue
            stored_hash = _stored_hash(payment_hash, secret)
            duration = max(at - created_ms, 0)
            updates.append((status, duration, secret, stored_hash, error or None, index))
    first_index = next_index(connection)
    epoch_bits, key_bits, digest = EPOCH_BITS, HASH_KEY_BITS, hashlib.sha256
    connection.executemany(
        "INSERT INTO payments (id, hash_key, status, direction, counterparty, amount, fee, "
        "created_ms, duration_ms, secret, payment_hash, error, route) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                index,
                (index >> epoch_bits) << key_bits | int.from_bytes(row[0][:5], "big"),
                *row[1:9],
                None if row[8] is not None and digest(row[8]).digest() == row[0] else row[0],
                *row[9:],
            )
            for index, row in enumerate(rows, start=first_index)
        ],
    )
    connection.executemany(
        "UPDATE payments SET status = ?, counterparty = ?, amount = ?, fee = ?, created_ms = ?, "
        "duration_ms = ?, secret = ?, payment_hash = ?, error = ?, route = ? WHERE id = ?",
        [
            (*row[1:2], *row[3:9], _stored_hash(row[0], row[8]), *row[9:], index)
            for index, row in rewritten.items()
        ],
    )
    connection.executemany(
        "UPDATE payments SET status = ?, duration_ms = ?, secret = ?, payment_hash = ?, "
        "error = ? WHERE id = ?",
        updates,
    )
    if rows:
        _set_next_index(connection, first_index + len(rows))
    counts = Counter((row[2], row[1]) for row in rows)
    for direction, status in moved:
        counts[direction, PENDING] -= 1
        counts[direction, status] += 1
    add_counts(connection, counts)
    return len(rows)


def _packed_route(hops: list[Any] | None) -> bytes | None:
    """A routed payment's hops as stored (none for a direct payment)."""
    return pack(hops) if hops else None


def _hops(hops: list[Any] | None) -> tuple[RouteHop, ...]:
    """A journalled route (each hop `[node_id, channel_id, amount, fee]`) as a record's."""
    return tuple(RouteHop(bytes(n), bytes(c), amount, fee) for n, c, amount, fee in hops or ())


def _route(blob: bytes | None) -> tuple[RouteHop, ...]:
    return () if blob is None else _hops(unpack(bytes(blob), max_len=len(blob)))


def _stored_hash(payment_hash: bytes, secret: bytes | None) -> bytes | None:
    """The payment hash as stored: none where the secret gives it."""
    if secret is not None and sha256(secret) == payment_hash:
        return None
    return payment_hash


def _pending_rows(connection: sqlite3.Connection) -> dict[tuple[bytes, str], tuple[int, int, Any]]:
    """The pending rows (few: payments in flight), by hash and direction."""
    rows = connection.execute(
        "SELECT id, direction, created_ms, secret, payment_hash FROM payments WHERE status = 0"
    )
    found: dict[tuple[bytes, str], tuple[int, int, Any]] = {}
    for index, direction, created_ms, secret, stored_hash in rows:
        payment_hash = _hash_of(stored_hash, secret)
        found[payment_hash, DIRECTION_NAMES[direction]] = (index, created_ms, secret)
    return found


class _PeerRefs:
    """The references to `payment_peers` (a few rows: one per channel and peer)."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        rows = connection.execute("SELECT id, channel_id, peer FROM payment_peers")
        self._refs = {(bytes(channel), bytes(peer)): ref for ref, channel, peer in rows}

    def ref(self, channel_id: bytes, peer: bytes) -> int:
        ref = self._refs.get((channel_id, peer))
        if ref is None:
            cursor = self._connection.execute(
                "INSERT INTO payment_peers (channel_id, peer) VALUES (?, ?)", (channel_id, peer)
            )
            ref = self._refs[channel_id, peer] = int(cursor.lastrowid or 0)
        return ref


def next_index(connection: sqlite3.Connection) -> int:
    row = connection.execute("SELECT value FROM meta WHERE key = 'payments_next_index'").fetchone()
    return 1 if row is None else int.from_bytes(bytes(row[0]), "big")


def _set_next_index(connection: sqlite3.Connection, index: int) -> None:
    connection.execute(
        "INSERT INTO meta (key, value) VALUES ('payments_next_index', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (index.to_bytes(8, "big"),),
    )


def add_counts(connection: sqlite3.Connection, counts: Counter[tuple[int, int]]) -> None:
    connection.executemany(
        "INSERT INTO payment_counts (direction, status, count) VALUES (?, ?, ?) "
        "ON CONFLICT (direction, status) DO UPDATE SET count = count + excluded.count",
        [(direction, status, count) for (direction, status), count in counts.items() if count],
    )


# -- reading -------------------------------------------------------------------------------------


def _hash_of(stored_hash: bytes | None, secret: bytes | None) -> SecretHash:
    if stored_hash is not None:
        return SecretHash(bytes(stored_hash))
    assert secret is not None, "a row holds its payment hash or the secret giving it"
    return SecretHash(sha256(bytes(secret)))


def _stored(row: tuple[Any, ...]) -> StoredPayment:
    index, status, direction, amount, fee, created_ms, duration, secret, stored_hash = row[:9]
    error, route, channel_id, peer = row[9:]
    record = PaymentRecord(
        _hash_of(stored_hash, secret),
        DIRECTION_NAMES[direction],
        bytes(peer),
        ChannelId(bytes(channel_id)),
        amount,
        fee,
        STATUS_NAMES[status],
        None if secret is None else Secret(bytes(secret)),
        created_ms,
        None if duration is None else created_ms + duration,
        error or "",
        _route(route),
    )
    return StoredPayment(index, record)


def page_payments(connection: sqlite3.Connection, query: PaymentQuery) -> list[StoredPayment]:
    """One page of records, newest first (see `PaymentQuery`)."""
    if query.hash_prefix:
        return _page_by_hash(connection, query)
    where = "p.id < ?"
    if query.status is not None:  # a literal, so that SQLite may use a partial index
        where += f" AND p.status = {STATUS_CODES[query.status]}"
    rows = connection.execute(
        f"{_SELECT} WHERE {where} ORDER BY p.id DESC LIMIT ? OFFSET ?",
        (_before(query), query.limit, query.offset),
    )
    return [_stored(row) for row in rows]


def _before(query: PaymentQuery) -> int:
    return NO_INDEX if query.before is None else query.before


def _page_by_hash(connection: sqlite3.Connection, query: PaymentQuery) -> list[StoredPayment]:
    """Records whose hash starts with the prefix, epoch by epoch from the newest: within an
    epoch the index finds them by the hash's first digits, then the whole prefix is compared."""
    prefix = query.hash_prefix or ""
    digits = prefix[:HASH_KEY_DIGITS]
    low = int(digits.ljust(HASH_KEY_DIGITS, "0"), 16)
    high = int(digits.ljust(HASH_KEY_DIGITS, "f"), 16)
    where = "p.hash_key BETWEEN ? AND ? AND p.id < ?"
    if query.status is not None:
        where += f" AND p.status = {STATUS_CODES[query.status]}"
    newest, oldest = connection.execute("SELECT max(id), min(id) FROM payments").fetchone()
    if newest is None:
        return []
    found: list[StoredPayment] = []
    skip = query.offset
    for epoch in range(newest >> EPOCH_BITS, (oldest >> EPOCH_BITS) - 1, -1):
        base = epoch << HASH_KEY_BITS
        rows = connection.execute(
            f"{_SELECT} WHERE {where}", (base | low, base | high, _before(query))
        )
        matches = [
            stored
            for stored in map(_stored, rows)
            if stored.record.payment_hash.hex().startswith(prefix)
        ]
        for stored in sorted(matches, reverse=True):
            if skip:
                skip -= 1
                continue
            found.append(stored)
            if len(found) >= query.limit:
                return found
    return found


def records_of(connection: sqlite3.Connection, payment_hash: bytes) -> list[StoredPayment]:
    """Every record of this payment hash (attempts, both directions), newest first."""
    query = PaymentQuery(limit=NO_INDEX, hash_prefix=payment_hash.hex())
    return _page_by_hash(connection, query)


def paid_before(connection: sqlite3.Connection, payment_hash: bytes) -> bool:
    """Whether a payment of ours with this hash succeeded, as far as the table knows (the
    journal compacted first: see `compact_all`)."""
    return any(
        stored.record.direction == "out" and stored.record.status == "succeeded"
        for stored in records_of(connection, payment_hash)
    )


def load_pending(connection: sqlite3.Connection) -> list[PaymentRecord]:
    """The payments still pending, oldest first: the table's pending rows, with the journal
    not compacted yet read over them, event by event as `compact` would apply them, writing
    nothing. (At start-up: reading the journal's events costs a third of compacting them, and
    the compactor moves them once the node is up.)"""
    rows = connection.execute(f"{_SELECT} WHERE p.status = 0 ORDER BY p.id")
    pending = {(s.record.payment_hash, s.record.direction): s.record for s in map(_stored, rows)}
    for (blob,) in connection.execute("SELECT events FROM payment_journal ORDER BY id"):
        for event in unpack(bytes(blob), max_len=len(blob)):
            payment_hash, direction, peer, channel_id, amount, fee, status = event[:7]
            key = (payment_hash, direction)
            if peer is None:
                if status != "pending":
                    pending.pop(key, None)
            elif status == "pending":  # a new payment, or another route of a pending one
                secret, at, error = event[7:10]
                route = _hops(event[10]) if len(event) > 10 else ()
                pending[key] = PaymentRecord(
                    SecretHash(payment_hash), direction, peer, ChannelId(channel_id), amount,
                    fee, status, secret, at, None, error, route,
                )  # fmt: skip
    return list(pending.values())


def journal_events(connection: sqlite3.Connection) -> int:
    """How many events the journal holds (each row's count read from its header alone)."""
    total = 0
    for (blob,) in connection.execute("SELECT events FROM payment_journal"):
        reader = msgpack.Unpacker(max_buffer_size=len(blob))
        reader.feed(blob)
        total += reader.read_array_header()
    return total


def payment_counts(connection: sqlite3.Connection) -> dict[str, dict[str, int]]:
    """How many records per direction and status in the table (compact the journal first)."""
    counts = {direction: dict.fromkeys(STATUS_CODES, 0) for direction in DIRECTION_CODES}
    for direction, status, count in connection.execute(
        "SELECT direction, status, count FROM payment_counts"
    ):
        counts[DIRECTION_NAMES[direction]][STATUS_NAMES[status]] = count
    return counts
