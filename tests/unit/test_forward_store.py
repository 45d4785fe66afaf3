"""A mediator's store: the forwards in progress and the replay tags of peeled onions come back
after a restart; a forward that is done leaves them (its record goes to payment history), and
the tags of onions whose locks have expired are forgotten."""

from __future__ import annotations

from pathlib import Path

from p2pchan.core.channel.state import ChannelConfig
from p2pchan.core.outputs import (
    PersistForward,
    PersistForwardDone,
    PersistOnion,
    PersistOnionsExpired,
)
from p2pchan.core.payment.records import PaymentOutcome, PaymentRecord
from p2pchan.core.payment.state import Forward, ForwardStatus
from p2pchan.core.state import NodeState
from p2pchan.crypto.keys import Identity
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.node_store import ChannelTables, StoreBatch, load_state
from p2pchan.storage.payment_history import PaymentQuery, compact_all, page_payments
from p2pchan.types import Address, ChainId, ChannelId, Secret, SecretHash

HASH = SecretHash(b"h" * 32)
PEER = b"p" * 32
CHANNEL = ChannelId(b"c" * 32)


def test_forwards_and_peeled_onions_are_loaded_back_after_a_restart(tmp_path: Path) -> None:
    identity = Identity(b"k" * 32)
    chain = ChainId(b"x" * 32)
    forward = Forward(
        HASH, CHANNEL, ChannelId(b"d" * 32), Address(PEER), 105, 100, 60, b"s" * 32, 5,
        ForwardStatus.CLAIMED, Secret(b"z" * 32),
    )  # fmt: skip
    database = NodeDatabase.open(tmp_path)

    def restarted() -> NodeState:
        return database.run_now(
            lambda c: load_state(c, identity, chain, ChannelConfig(), now_ms=10)
        )

    try:
        outputs = [
            PersistForward(forward),
            PersistOnion(b"t" * 16, 60),
            PersistOnion(b"u" * 16, 30),
        ]
        batch = StoreBatch.of(outputs)
        database.run_now(lambda c: ChannelTables().write(c, batch))
        state = restarted()
        assert state.payments.forwards == {HASH: forward}
        assert state.payments.seen_onions == {b"t" * 16: 60, b"u" * 16: 30}
        assert HASH in state.held_secrethashes()  # never pruned
        # Tags of locks expired before a height are forgotten; a done forward leaves.
        record = PaymentRecord(HASH, "forward", PEER, CHANNEL, 100, 5, "pending", None, 5, None, "")
        done = PaymentOutcome(HASH, "forward", "succeeded", None, 9, "")
        batch = StoreBatch.of([PersistOnionsExpired(40), PersistForwardDone(record, done)])
        database.run_now(lambda c: ChannelTables().write(c, batch))
        state = restarted()
        assert state.payments.forwards == {}
        assert state.payments.seen_onions == {b"t" * 16: 60}
        assert not state.payments.outgoing and not state.payments.incoming
        database.run_now(compact_all)
        [listed] = database.run_now(lambda c: page_payments(c, PaymentQuery()))
        assert (listed.record.direction, listed.record.fee, listed.record.status) == (
            "forward",
            5,
            "succeeded",
        )
    finally:
        database.close()
