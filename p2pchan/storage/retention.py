"""Retention: payment records and invoices older than the user keeps them (`node start
--keep-payments DAYS`) are deleted, oldest first, in bounded batches (each one transaction of
the caller's), so that the database stays bounded under a constant load.

Never deleted: a pending payment, an invoice that can still be paid, and any record or invoice
whose payment hash is `protected`: the shell passes every hash the node still holds a lock or a
live payment of, in any channel not done with layer 1, since a dispute or an on-chain unlock may
yet need it. A record counts as old once it has been final for the whole retention period.

Both tables are scanned in insertion order (rowid), which is the order of creation give or take
the few seconds a payment waits to be signed: a scan stops at the first row created after the
cutoff, and rows it kept (pending, protected) are looked at again on the next pass.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Container
from dataclasses import dataclass

from p2pchan.crypto.hashing import sha256
from p2pchan.storage.payment_history import PENDING, add_counts


@dataclass(frozen=True)
class Pruned:
    deleted: int
    after: int  # the last row looked at: the next batch starts above it
    done: bool  # nothing older than the cutoff is left to look at


def prune_payments(
    connection: sqlite3.Connection,
    *,
    before_ms: int,
    protected: Container[bytes],
    after: int = 0,
    limit: int = 5000,
) -> Pruned:
    """Delete final records that were final before `before_ms`, looking at up to `limit` rows
    above index `after` (inside the caller's transaction)."""
    rows = connection.execute(
        "SELECT id, status, direction, created_ms, duration_ms, payment_hash, secret "
        "FROM payments WHERE id > ? ORDER BY id LIMIT ?",
        (after, limit),
    ).fetchall()
    doomed: list[tuple[int]] = []
    counts: Counter[tuple[int, int]] = Counter()
    last = after
    for index, status, direction, created_ms, duration, stored_hash, secret in rows:
        if created_ms >= before_ms:
            return _delete_payments(connection, doomed, counts, last, done=True)
        last = index
        if status == PENDING or created_ms + (duration or 0) >= before_ms:
            continue
        payment_hash = bytes(stored_hash) if stored_hash is not None else sha256(bytes(secret))
        if payment_hash in protected:
            continue
        doomed.append((index,))
        counts[direction, status] -= 1
    return _delete_payments(connection, doomed, counts, last, done=len(rows) < limit)


def _delete_payments(
    connection: sqlite3.Connection,
    doomed: list[tuple[int]],
    counts: Counter[tuple[int, int]],
    last: int,
    *,
    done: bool,
) -> Pruned:
    connection.executemany("DELETE FROM payments WHERE id = ?", doomed)
    add_counts(connection, counts)
    return Pruned(len(doomed), last, done)


def prune_invoices(
    connection: sqlite3.Connection,
    *,
    before_ms: int,
    now_ms: int,
    protected: Container[bytes],
    after: int = 0,
    limit: int = 5000,
) -> Pruned:
    """Delete invoices created before `before_ms` that were paid or have expired, looking at up
    to `limit` rows above rowid `after` (inside the caller's transaction)."""
    rows = connection.execute(
        "SELECT rowid, payment_hash, status, created_ms, expires_ms FROM invoices "
        "WHERE rowid > ? ORDER BY rowid LIMIT ?",
        (after, limit),
    ).fetchall()
    doomed: list[tuple[int]] = []
    last = after
    done = len(rows) < limit
    for rowid, payment_hash, status, created_ms, expires_ms in rows:
        if created_ms >= before_ms:
            done = True
            break
        last = rowid
        payable = status == "open" and expires_ms > now_ms
        if not payable and bytes(payment_hash) not in protected:
            doomed.append((rowid,))
    connection.executemany("DELETE FROM invoices WHERE rowid = ?", doomed)
    return Pruned(len(doomed), last, done)
