"""The watcher's mirror of the exit queue: the contract's order, due heads, what is owed ahead."""

from __future__ import annotations

from p2pchan.l1.events import PlasmaExitStarted
from p2pchan.l1.plasma_state import ExitStatus, exitable_at
from p2pchan.plasma.exits import ExitQueue
from p2pchan.types import PlasmaId
from p2pchan.wire.plasma import utxo_pos
from tests.unit.chain_helpers import identity

ALICE = identity(1)
PLASMA = PlasmaId(b"\x42" * 32)


def started(position: int, amount: int, at: int) -> PlasmaExitStarted:
    return PlasmaExitStarted(PLASMA, position, ALICE.node_id, amount, at)


def test_the_queue_is_in_priority_order_and_tracks_challenges_and_payments() -> None:
    queue = ExitQueue()
    young, old, twin = utxo_pos(3000, 0, 0), utxo_pos(1000, 0, 0), utxo_pos(2000, 0, 0)
    queue.started(started(young, 30, exitable_at(50, 51, 20)))  # 90
    queue.started(started(old, 10, exitable_at(10, 51, 20)))  # 71
    queue.started(started(twin, 20, exitable_at(10, 51, 20)))  # 71, a later position
    assert [view.utxo_pos for view in queue.queued()] == [old, twin, young]
    assert queue.owed_ahead_of(young) == 30 and queue.owed_ahead_of(old) == 0
    assert queue.owed_ahead_of(utxo_pos(9000, 0, 0)) == 60  # not queued: everything is ahead
    assert not queue.due(70) and queue.due(71)
    queue.challenged(twin)
    queue.paid(old, 10)
    assert [view.utxo_pos for view in queue.queued()] == [young]
    assert queue.exits[twin].status == ExitStatus.CHALLENGED
    assert (queue.exits[old].status, queue.exits[old].paid) == (ExitStatus.PAID, 10)
    queue.paid(twin, 5)  # a challenged exit is never paid
    assert queue.exits[twin].status == ExitStatus.CHALLENGED
    head = queue.head()
    assert head is not None and head.utxo_pos == young
    queue.paid(young, 30)
    assert queue.head() is None and not queue.due(10**9)
