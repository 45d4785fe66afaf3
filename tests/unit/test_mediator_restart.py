"""A mediator that crashes between the step deciding about a forward's other channel and the
step carrying that decision out (`SendHop`, fed back as `ReceiveHop` once the first step is
durable) owes nothing after its restart: each decision is derived again from what it stored.

Three nodes in a line (A - B - C) with their own SQLite stores (`tests/property/line_world.py`):
a crash loses B's memory, its pending hops and its connections; a restart loads its state from
disk, feeds `Resume` and reconnects, as `net.node.Node` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from p2pchan.core.channel.machine import FailLocks, UnlockLocks
from p2pchan.core.channel.state import ChannelStatus
from p2pchan.core.inputs import Input, Resume
from p2pchan.core.outputs import (
    ContractSendClose,
    NotifyPaymentFinal,
    Output,
    SendHop,
    SendMessage,
)
from p2pchan.core.payment import mediator
from p2pchan.crypto.hashing import sha256
from p2pchan.types import SecretHash
from p2pchan.wire.channel_messages import ChannelMessage, LockFailed, RevealSecret, Unlock
from tests.property.line_world import REVEAL_TIMEOUT, LineWorld


class Recorder:
    """Every input fed to a node of the world, with its outputs (a restart's `Resume` too)."""

    def __init__(self, world: LineWorld) -> None:
        self.steps: list[tuple[str, Input, list[Output]]] = []
        feed = world.feed

        def recorded(name: str, event: Input) -> list[Output]:
            outputs = feed(name, event)
            self.steps.append((name, event, outputs))
            return outputs

        world.feed = recorded  # type: ignore[method-assign]

    def mark(self) -> int:
        return len(self.steps)

    def outputs(self, name: str, since: int = 0, kind: type = object) -> list[Output]:
        return [
            output
            for step_name, _, outputs in self.steps[since:]
            if step_name == name
            for output in outputs
            if isinstance(output, kind)
        ]

    def messages(self, name: str, since: int, kind: type) -> list[ChannelMessage]:
        sent = self.outputs(name, since, SendMessage)
        return [
            o.message for o in sent if isinstance(o, SendMessage) and isinstance(o.message, kind)
        ]

    def resumed(self, name: str, since: int) -> list[Output]:
        return [
            output
            for step_name, event, outputs in self.steps[since:]
            if step_name == name and isinstance(event, Resume)
            for output in outputs
        ]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[LineWorld]:
    line = LineWorld(tmp_path)
    line.open_line()
    yield line
    line.close()


def the_hash(world: LineWorld) -> SecretHash:
    [secrethash] = world.payments
    return secrethash


Held = list[tuple[str, str, ChannelMessage]]


def run_until(world: LineWorld, done: Callable[[], bool], hold: type | None = None) -> Held:
    """Deliver, feed hops and tick until `done()`; messages of type `hold` are taken off the
    wire and returned (sender, receiver, message) instead of delivered."""
    held: Held = []
    for _ in range(100):
        if done():
            return held
        for sender, receiver in world.in_flight():
            queue = world.wire[(sender, receiver)]
            while queue and not done():
                if hold is not None and isinstance(queue[0], hold):
                    message = queue.pop(0)
                    assert isinstance(message, ChannelMessage)
                    held.append((sender, receiver, message))
                    continue
                world.deliver(sender, receiver)
        if done():
            return held
        for name in ("A", "B", "C"):
            world.feed_hops(name)
            world.tick(name)
    raise AssertionError("never got there")


def pending_hops(world: LineWorld, name: str, kind: type) -> bool:
    return any(isinstance(e, kind) for events in world.nodes[name].hops.values() for e in events)


def restart(world: LineWorld, name: str) -> None:
    world.crash(name)
    world.restart(name)


def failed_downstream_then_crashed(world: LineWorld) -> SecretHash:
    """A pays C's invoice across B; C no longer has it (refuses, encrypted for A); B removes
    its lock to C, decides to fail A's lock, and crashes before that decision is fed back."""
    world.pay_invoice("A", "C", 1000)
    world.nodes["C"].alive().payments.invoices.clear()
    world.tick("A")
    run_until(world, lambda: pending_hops(world, "B", FailLocks))
    world.crash("B")
    return the_hash(world)


# -- FailLocks: the incoming lock of a forward that failed downstream ---------------------------


def test_a_lost_failure_upstream_is_sent_after_the_restart_not_at_the_lock_s_expiry(
    world: LineWorld,
) -> None:
    recorder = Recorder(world)
    secrethash = failed_downstream_then_crashed(world)
    ab, bc = world.channel_id("A", "B"), world.channel_id("B", "C")
    expiration = world.expirations[secrethash]
    mark = recorder.mark()
    world.restart("B")
    [hop] = [o for o in recorder.resumed("B", mark) if isinstance(o, SendHop)]
    assert hop.channel_id == ab and isinstance(hop.event, FailLocks)
    assert hop.event.secrethashes == (secrethash,)
    world.converse()
    assert world.height < expiration  # no block passed: nothing expired
    payment = world.payments[secrethash]
    assert payment.finals == {("B", "forward"): ["failed"], ("A", "out"): ["failed"]}
    [failed] = recorder.messages("B", mark, LockFailed)
    assert isinstance(failed, LockFailed) and failed.failures[0]  # a failure A can read
    a = world.nodes["A"].alive()
    [final] = recorder.outputs("A", mark, NotifyPaymentFinal)
    assert isinstance(final, NotifyPaymentFinal) and final.record.payment_hash == secrethash
    assert "could not forward (temporary_channel_failure)" in final.outcome.error
    assert not a.channels[ab].ours.all_locks()
    assert not world.nodes["B"].alive().channels[ab].theirs.accepted.locks
    assert not world.nodes["B"].alive().channels[bc].ours.all_locks()
    for _, state in world.states():
        assert all(c.status == ChannelStatus.OPEN for c in state.channels.values())


def test_a_failure_rederived_at_restart_is_sent_once_however_often_the_node_restarts(
    world: LineWorld,
) -> None:
    recorder = Recorder(world)
    secrethash = failed_downstream_then_crashed(world)
    ab = world.channel_id("A", "B")
    mark = recorder.mark()
    world.restart("B")
    assert pending_hops(world, "B", FailLocks)
    restart(world, "B")  # crashes again before the derived failure is fed back: lost again
    world.converse()
    restart(world, "B")  # and once more, after it went out
    world.converse()
    after = recorder.resumed("B", mark)
    failures = [o.event for o in after if isinstance(o, SendHop)]
    assert [f.secrethashes for f in failures if isinstance(f, FailLocks)] == [(secrethash,)] * 2
    assert len(recorder.messages("B", mark, LockFailed)) == 1
    assert world.payments[secrethash].finals == {
        ("B", "forward"): ["failed"],
        ("A", "out"): ["failed"],
    }
    assert not world.nodes["A"].alive().channels[ab].ours.all_locks()


# -- UnlockLocks: the outgoing lock of a forward paid upstream --------------------------------


def paid_upstream_then_crashed(world: LineWorld) -> SecretHash:
    """A pays C across B. C's reveal reaches B only reveal_timeout blocks before the expiry
    (so B claims upstream but waits to unlock downstream: DESIGN.md, one expiry for every
    hop); A pays B at once, B decides to unlock C's lock, and crashes before that decision is
    fed back. Layer 1 shows nothing (C's registration is not mined)."""
    world.send("A", "C", 1000)
    world.tick("A")
    secrethash = the_hash(world)
    held = run_until(world, lambda: not world.in_flight(), hold=RevealSecret)
    [(sender, receiver, reveal)] = held
    assert (sender, receiver) == ("C", "B")
    while world.expirations[secrethash] - world.height > REVEAL_TIMEOUT:
        world.mine([])  # blocks with nothing in them
    world.wire[("C", "B")].append(reveal)
    world.deliver("C", "B")
    assert not pending_hops(world, "B", UnlockLocks)
    run_until(world, lambda: pending_hops(world, "B", UnlockLocks))
    world.crash("B")
    return secrethash


def test_a_lost_unlock_downstream_is_made_on_the_re_sync_after_the_restart(
    world: LineWorld,
) -> None:
    """No rule of `Resume` is needed: C sends its reveal again on the re-sync that follows the
    restart, and B unlocks a lock of its own whose secret is revealed and that nothing tracks
    any more at once. C is paid off-chain; no channel closes."""
    recorder = Recorder(world)
    secrethash = paid_upstream_then_crashed(world)
    bc = world.channel_id("B", "C")
    mark = recorder.mark()
    world.restart("B")
    assert not [o for o in recorder.resumed("B", mark) if isinstance(o, SendHop)]
    b_to_c = world.nodes["B"].alive().channels[bc]
    assert [held.secrethash for held in b_to_c.ours.all_locks()] == [secrethash]
    world.converse()
    [unlock] = recorder.messages("B", mark, Unlock)
    assert isinstance(unlock, Unlock) and [sha256(s) for s in unlock.secrets] == [secrethash]
    assert world.payments[secrethash].finals == {
        ("A", "out"): ["succeeded"],
        ("B", "forward"): ["succeeded"],
        ("C", "in"): ["succeeded"],
    }
    c_from_b = world.nodes["C"].alive().channels[bc]
    assert not c_from_b.theirs.accepted.locks and c_from_b.status == ChannelStatus.OPEN
    assert not any(recorder.outputs(name, 0, ContractSendClose) for name in ("A", "B", "C"))
    nonce = world.nodes["B"].alive().channels[bc].ours.signed_nonce
    mark = recorder.mark()
    restart(world, "B")  # nothing is owed any more: nothing is signed again
    world.converse()
    assert not recorder.messages("B", mark, Unlock)
    assert world.nodes["B"].alive().channels[bc].ours.signed_nonce == nonce


# -- the happy path ---------------------------------------------------------------------------


def test_a_restart_after_forwards_ended_owes_nothing(world: LineWorld) -> None:
    recorder = Recorder(world)
    world.send("A", "C", 1000)
    world.pay_invoice("C", "A", 700)
    for name in ("A", "B", "C"):
        world.tick(name)
    world.converse()
    for payment in world.payments.values():
        assert set(payment.finals) == {
            (payment.payer, "out"), ("B", "forward"), (payment.payee, "in"),
        }  # fmt: skip
        assert all(ends == ["succeeded"] for ends in payment.finals.values())
    b = world.nodes["B"]
    nonces = {cid: c.ours.signed_nonce for cid, c in b.alive().channels.items()}
    mark = recorder.mark()
    restart(world, "B")
    world.converse()
    assert not [o for o in recorder.resumed("B", mark) if isinstance(o, SendHop)]
    assert not recorder.messages("B", mark, LockFailed)
    assert {cid: c.ours.signed_nonce for cid, c in b.alive().channels.items()} == nonces


# -- what is never failed ---------------------------------------------------------------------


def forwarded_and_stuck(world: LineWorld) -> SecretHash:
    """A pays C across B; C decides nothing (the `withhold-reveal` attack mode): B's lock to C
    is live, A's lock to B pending."""
    world.nodes["C"].alive().withhold_decisions = True
    world.send("A", "C", 1000)
    world.tick("A")
    world.converse()
    secrethash = the_hash(world)
    bc = world.channel_id("B", "C")
    locks = world.nodes["B"].alive().channels[bc].ours.all_locks()
    assert [held.secrethash for held in locks] == [secrethash]
    return secrethash


def test_an_incoming_lock_is_never_failed_at_restart_while_its_outgoing_lock_is_live(
    world: LineWorld,
) -> None:
    secrethash = forwarded_and_stuck(world)
    b = world.nodes["B"].alive()
    assert mediator.after_restart(b) == []  # a forward in progress: nothing owed
    del b.payments.forwards[secrethash]  # even with its forward gone (which never happens)
    assert mediator.failures_after_restart(b) == []


def test_a_node_that_withholds_its_decisions_fails_nothing_at_restart(world: LineWorld) -> None:
    world.nodes["B"].alive().withhold_decisions = True  # the attack mode: B decides nothing
    world.send("A", "B", 1000)
    world.tick("A")
    world.converse()
    b = world.nodes["B"].alive()
    assert b.channels[world.channel_id("A", "B")].theirs.accepted.locks
    assert mediator.failures_after_restart(b) == []
    b.withhold_decisions = False  # an honest node with an undecided lock fails it
    [hop] = mediator.failures_after_restart(b)
    assert isinstance(hop, SendHop) and isinstance(hop.event, FailLocks)
