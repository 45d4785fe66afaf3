"""The payments journal: a payment refused before it was signed is kept as `failed` with its
reason; a later attempt of the same payment hash (an invoice paid again) is a new record, not
swallowed by the failed one; outcomes of payments never recorded show nothing."""

from __future__ import annotations

from pathlib import Path

from p2pchan.core.channel.state import ChannelConfig
from p2pchan.core.outputs import (
    PersistForward,
    PersistForwardDone,
    PersistOnion,
    PersistOnionsExpired,
)
from p2pchan.core.payment.records import PaymentOutcome, PaymentRecord, RouteHop
from p2pchan.core.payment.state import Forward, ForwardStatus
from p2pchan.crypto.keys import Identity
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.node_store import (
    ChannelTables,
    StoreBatch,
    fold_payments,
    list_payments,
    load_state,
)
from p2pchan.types import Address, ChainId, ChannelId, Secret, SecretHash

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
        # A creation once a payment succeeded is not a new attempt.
        write(StoreBatch(payments={(HASH, "out"): created(50)}))
        assert database.run_now(fold_payments)[HASH, "out"].created_ms == 20
    finally:
        database.close()


def test_a_retry_over_another_route_replaces_the_pending_record(tmp_path: Path) -> None:
    database = NodeDatabase.open(tmp_path)
    tables = ChannelTables()
    try:
        first = created(10)._replace(fee=3, route=(RouteHop(b"m" * 32, CHANNEL, 73, 3),))
        database.run_now(lambda c: tables.write(c, StoreBatch(payments={(HASH, "out"): first})))
        second = created(10)._replace(
            fee=7, route=(RouteHop(b"n" * 32, CHANNEL, 77, 2), RouteHop(PEER, CHANNEL, 70, 0))
        )
        database.run_now(lambda c: tables.write(c, StoreBatch(payments={(HASH, "out"): second})))
        (record,) = database.run_now(list_payments)
        assert (record.fee, record.route, record.status) == (7, second.route, "pending")
    finally:
        database.close()


def test_forwards_and_peeled_onions_are_loaded_back_after_a_restart(tmp_path: Path) -> None:
    identity = Identity(b"k" * 32)
    chain = ChainId(b"x" * 32)
    forward = Forward(
        HASH, CHANNEL, ChannelId(b"d" * 32), Address(PEER), 105, 100, 60, b"s" * 32, 5,
        ForwardStatus.CLAIMED, Secret(b"z" * 32),
    )  # fmt: skip
    database = NodeDatabase.open(tmp_path)
    try:
        outputs = [
            PersistForward(forward),
            PersistOnion(b"t" * 16, 60),
            PersistOnion(b"u" * 16, 30),
        ]
        batch = StoreBatch.of(outputs)
        database.run_now(lambda c: ChannelTables().write(c, batch))
        state = database.run_now(lambda c: load_state(c, identity, chain, ChannelConfig()))
        assert state.payments.forwards == {HASH: forward}
        assert state.payments.seen_onions == {b"t" * 16: 60, b"u" * 16: 30}
        # Tags of locks expired before a height are forgotten; a done forward leaves.
        record = PaymentRecord(HASH, "forward", PEER, CHANNEL, 100, 5, "pending", None, 5, None, "")
        done = PaymentOutcome(HASH, "forward", "succeeded", None, 9, "")
        batch = StoreBatch.of([PersistOnionsExpired(40), PersistForwardDone(record, done)])
        database.run_now(lambda c: ChannelTables().write(c, batch))
        state = database.run_now(lambda c: load_state(c, identity, chain, ChannelConfig()))
        assert state.payments.forwards == {}
        assert state.payments.seen_onions == {b"t" * 16: 60}
        (listed,) = database.run_now(list_payments)
        assert (listed.direction, listed.fee, listed.status) == ("forward", 5, "succeeded")
    finally:
        database.close()
