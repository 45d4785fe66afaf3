"""The shell's step with a real store and a fake peer session: whatever a step promises reaches
the peer only once the step is on disk (persist before you promise), payments submitted together
share one step, the peer's faults come back to the caller to score, and the driver's ticks give
up on payments that wait too long for a lock slot (in virtual time, under the autojump clock:
the store writes on trio's thread and the session is fake, so nothing here does real IO)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pchan.core.channel.state import Channel, ChannelConfig, ChannelStatus
from p2pchan.core.inputs import (
    ActionPay,
    ActionSend,
    ReceiveChannelMessages,
    ReceivePeerConnected,
)
from p2pchan.core.invoice import Invoice
from p2pchan.core.payment.payer import ADMISSION_TIMEOUT_MS
from p2pchan.core.payment.records import PaymentOutcome, PaymentRecord
from p2pchan.core.state import NodeState
from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.net.chain_actions import ChainActions
from p2pchan.net.driver import TICK_SECONDS, Driver, PaymentWaiter, faults_of, now_ms
from p2pchan.net.history import PaymentHistory
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.node_store import ChannelTables, StoreBatch
from p2pchan.storage.payment_history import PaymentQuery, compact_all, page_payments, records_of
from p2pchan.types import ChainId, ChannelId, Secret, SecretHash
from p2pchan.wire.balance_proof import BalanceProof, sign_balance_proof
from p2pchan.wire.channel_messages import ChannelMessage, ChannelSync, LockedTransfer, Processed
from p2pchan.wire.codec import unpack
from p2pchan.wire.hop_payload import HopPayload
from p2pchan.wire.locks import HeldLock, Lock, locksroot

CHAIN = ChainId(bytes(32))
CHANNEL = ChannelId(sha256(b"a channel"))
DEFAULT_CONFIG = ChannelConfig()


@dataclass
class FakeSession:
    """Stands in for a peer session: records what is sent, and runs a check at each send (the
    moment a promise leaves the node)."""

    node_id: bytes
    sent: list[ChannelMessage] = field(default_factory=list)
    on_send: Any = None
    faults: list[float] = field(default_factory=list)

    async def send(self, message: ChannelMessage) -> None:
        if self.on_send is not None:
            self.on_send(message)
        self.sent.append(message)

    def fault(self, points: float, reason: str, *, budgeted: bool = False) -> None:
        self.faults.append(points)


@dataclass
class Setup:
    driver: Driver
    database: NodeDatabase
    us: Identity
    partner: Identity
    session: FakeSession


def trio_clock_ms() -> Callable[[], int]:
    """The wall clock as it stood at the start, moved on by trio's clock: under the autojump
    clock, the time the driver's ticks carry is virtual too."""
    offset = now_ms() - int(trio.current_time() * 1000)
    return lambda: offset + int(trio.current_time() * 1000)


async def start_driver(
    datadir: Path, nursery: trio.Nursery, config: ChannelConfig = DEFAULT_CONFIG
) -> Setup:
    """A running driver with one open channel to a connected partner, in sync with it."""
    us, partner = Identity(b"u" * 32), Identity(b"p" * 32)
    database = NodeDatabase.open(datadir)
    session = FakeSession(partner.node_id)
    state = NodeState(us, CHAIN, config, height=10)
    state.channels[CHANNEL] = Channel(
        CHAIN, CHANNEL, us.node_id, partner.node_id, False, 100, config,
        ChannelStatus.OPEN, 5_000, 10_000,
    )  # fmt: skip
    driver = Driver(
        state,
        database,
        ChainActions(wallet=None),  # type: ignore[arg-type]  # no chain duty in these tests
        lambda node_id: session if node_id == partner.node_id else None,  # type: ignore[arg-type,return-value]
        PaymentHistory(database, keep_days=None, protected=set, now_ms=now_ms),
        clock=trio_clock_ms(),
    )
    await nursery.start(driver.run)
    await driver.step([ReceivePeerConnected(partner.node_id)])
    sync = ChannelSync(CHANNEL, None, b"", 0)  # the partner's: now updates may go out
    await driver.step([ReceiveChannelMessages(partner.node_id, CHANNEL, (sync,), driver.clock())])
    session.sent.clear()
    return Setup(driver, database, us, partner, session)


@pytest.fixture
async def setup(tmp_path: Path, nursery: trio.Nursery) -> Any:
    started = await start_driver(tmp_path, nursery)
    yield started
    started.database.close()


def a_transfer(partner: Identity, amount: int = 100) -> LockedTransfer:
    secret = Secret(os.urandom(32))
    payload = HopPayload(1, amount, 60, secret).encode()
    held = HeldLock(Lock(amount, 60, SecretHash(sha256(secret))), payload)
    proof = BalanceProof(CHAIN, CHANNEL, partner.node_id, 1, 0, amount, locksroot([held.lock]))
    return LockedTransfer(CHANNEL, sign_balance_proof(partner, proof), (held,))


def journalled_hashes(database: NodeDatabase) -> set[bytes]:
    """The payment hashes of every event in the payment journal (not compacted yet)."""
    rows = database.run_now(lambda c: c.execute("SELECT events FROM payment_journal").fetchall())
    return {bytes(event[0]) for (blob,) in rows for event in unpack(blob, max_len=len(blob))}


def stored_channel(database: NodeDatabase) -> Channel:
    (channel,) = database.run_now(ChannelTables().load)
    return channel


async def test_a_received_proof_is_stored_before_its_processed_goes_out(setup: Setup) -> None:
    with trio.fail_after(5):
        checked: list[bool] = []

        def on_send(message: ChannelMessage) -> None:
            if isinstance(message, Processed):
                stored = stored_channel(setup.database)
                checked.append(stored.theirs.accepted.nonce == message.nonce)

        setup.session.on_send = on_send
        transfer = a_transfer(setup.partner)
        received = ReceiveChannelMessages(
            setup.partner.node_id, CHANNEL, (transfer,), setup.driver.clock()
        )
        outputs = await setup.driver.step([received])
        assert checked == [True] and faults_of(outputs) == []


async def test_a_payment_is_stored_with_its_signed_update_before_it_goes_out(setup: Setup) -> None:
    with trio.fail_after(5):
        checked: list[bool] = []

        def on_send(message: ChannelMessage) -> None:
            if isinstance(message, LockedTransfer):
                stored = stored_channel(setup.database)
                in_flight = [f.state.nonce for f in stored.ours.in_flight]
                hashes = journalled_hashes(setup.database)
                checked.append(
                    in_flight == [message.proof.proof().nonce]
                    and {held.secrethash for held in message.locks} <= hashes
                )

        setup.session.on_send = on_send
        secret = Secret(os.urandom(32))
        request_id, _ = setup.driver.new_payment(SecretHash(sha256(secret)))
        action = ActionSend(request_id, setup.partner.node_id, 10, secret, setup.driver.clock())
        await setup.driver.submit_payment(action)
        while not checked:
            await setup.driver.wait_until(lambda: bool(checked))
        assert checked == [True]


async def test_payments_submitted_together_share_one_step_and_one_write(setup: Setup) -> None:
    writes = 0
    run = setup.database.run

    async def counting(work: Any) -> Any:
        nonlocal writes
        writes += 1
        return await run(work)

    setup.database.run = counting  # type: ignore[method-assign]
    with trio.fail_after(5):
        waiters = []
        for _ in range(20):
            secret = Secret(os.urandom(32))
            request_id, waiter = setup.driver.new_payment(SecretHash(sha256(secret)))
            action = ActionSend(request_id, setup.partner.node_id, 10, secret, setup.driver.clock())
            await setup.driver.submit_payment(action)  # no checkpoint: they queue up
            waiters.append(waiter)
        await setup.driver.wait_until(lambda: bool(setup.session.sent))
        assert [w.refusal for w in waiters] == [None] * 20
        [transfer] = [m for m in setup.session.sent if isinstance(m, LockedTransfer)]
        assert len(transfer.locks) == 20 and writes == 1


async def test_the_faults_of_a_step_are_scored_against_the_peer(setup: Setup) -> None:
    with trio.fail_after(5):
        bogus = Processed(CHANNEL, 1, bytes(64))  # acks nothing we sent
        received = ReceiveChannelMessages(
            setup.partner.node_id, CHANNEL, (bogus,), setup.driver.clock()
        )
        outputs = await setup.driver.step([received])
        assert [fault.points for fault in faults_of(outputs)] == [20]
        assert setup.session.faults == [20]


async def pay(setup: Setup, amount: int = 10) -> PaymentWaiter:
    """Submit a payment to the partner, as the RPC does; its waiter tells how it ends."""
    secret = Secret(os.urandom(32))
    request_id, waiter = setup.driver.new_payment(SecretHash(sha256(secret)))
    now = setup.driver.clock()
    await setup.driver.submit_payment(
        ActionSend(request_id, setup.partner.node_id, amount, secret, now)
    )
    return waiter


async def test_a_payment_waiting_for_a_lock_slot_gives_up_after_the_admission_timeout(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """One lock slot, taken by a payment the partner never settles: the payments behind it each
    wait their own `ADMISSION_TIMEOUT_MS` (counted by the driver's ticks), no longer, and then
    fail, recorded with why, while the first stays pending."""
    timeout = ADMISSION_TIMEOUT_MS / 1000
    setup = await start_driver(tmp_path, nursery, ChannelConfig(max_pending_locks=1))
    try:
        with trio.fail_after(10 * timeout):  # virtual seconds
            started = trio.current_time()
            holder, first = await pay(setup), await pay(setup)  # one step: the holder is first
            await trio.sleep(timeout / 2)  # virtual time, as everywhere in this test
            second = await pay(setup)
            with trio.move_on_after(timeout / 2 - TICK_SECONDS):
                await first.done.wait()
                raise AssertionError("gave up before its time")

            await first.done.wait()
            assert timeout <= trio.current_time() - started <= timeout + 2 * TICK_SECONDS
            assert first.refusal == f"no free lock slot for {ADMISSION_TIMEOUT_MS // 1000} s"
            assert not second.done.is_set() and not holder.done.is_set()
            await second.done.wait()
            waited = trio.current_time() - started - timeout / 2
            assert timeout <= waited <= timeout + 2 * TICK_SECONDS
            assert second.refusal == first.refusal

            assert not holder.done.is_set()  # its lock went out, and is pending still
            [transfer] = [m for m in setup.session.sent if isinstance(m, LockedTransfer)]
            assert [held.secrethash for held in transfer.locks] == [holder.payment_hash]
            setup.database.run_now(compact_all)
            records = setup.database.run_now(partial(page_payments, query=PaymentQuery()))
            statuses = {s.record.payment_hash: (s.record.status, s.record.error) for s in records}
            assert statuses == {
                holder.payment_hash: ("pending", ""),
                first.payment_hash: ("failed", first.refusal),
                second.payment_hash: ("failed", first.refusal),
            }
    finally:
        setup.database.close()


def an_invoice(setup: Setup) -> Invoice:
    secrethash = SecretHash(os.urandom(32))
    return Invoice(CHAIN, setup.partner.node_id, 50, secrethash, now_ms(), 3600, 11, "", b"")


async def pay_invoice(setup: Setup, invoice: Invoice) -> str | None:
    """Pay the invoice through the driver; its refusal (None: admitted)."""
    request_id, waiter = setup.driver.new_payment(invoice.secrethash)
    await setup.driver.submit_payment(ActionPay(request_id, invoice, None, now_ms()))
    outgoing = setup.driver.state.payments.outgoing
    await setup.driver.wait_until(lambda: waiter.done.is_set() or invoice.secrethash in outgoing)
    return waiter.refusal


@pytest.mark.parametrize("compacted", [False, True], ids=["in_the_journal", "in_the_table"])
async def test_an_invoice_paid_before_is_refused_wherever_its_record_is(
    setup: Setup, compacted: bool
) -> None:
    """The core keeps no final payment: the driver looks the invoice's history up in the store
    in the step that feeds the payment, journal or table alike."""
    with trio.fail_after(5):
        paid, failed = an_invoice(setup), an_invoice(setup)
        for invoice, status in ((paid, "succeeded"), (failed, "failed")):
            made = PaymentRecord(
                invoice.secrethash, "out", setup.partner.node_id, CHANNEL, 50, 0, "pending",
                None, now_ms(), None, "",
            )  # fmt: skip
            final = PaymentOutcome(invoice.secrethash, "out", status, None, now_ms(), "")
            batch = StoreBatch(payments={(invoice.secrethash, "out"): made}, outcomes=[final])
            await setup.database.run(lambda c, batch=batch: ChannelTables().write(c, batch))
            setup.driver.history.journalled(2)
        if compacted:
            await setup.driver.history.catch_up()
        assert await pay_invoice(setup, paid) == "this invoice was already paid"
        assert await pay_invoice(setup, failed) is None  # a failed payment may be made again


async def test_a_step_cancelled_while_its_write_waits_still_writes_what_it_did(
    setup: Setup, nursery: trio.Nursery
) -> None:
    """A peer's session may end (its task cancelled) while its step waits for the disk; the
    step has already moved the state in memory, so its write must still happen, or the node
    would go on from a state its disk never held (found in a chaos run: a payment received and
    paid out with no record of it)."""
    disk_free = trio.Event()
    run = setup.database.run

    async def busy(work: Any) -> Any:
        await disk_free.wait()  # another writer (an RPC's read, a gossip batch) holds the disk
        return await run(work)

    setup.database.run = busy  # type: ignore[method-assign]
    transfer = a_transfer(setup.partner)
    received = ReceiveChannelMessages(
        setup.partner.node_id, CHANNEL, (transfer,), setup.driver.clock()
    )
    session = trio.CancelScope()
    ended = trio.Event()

    async def session_task() -> None:
        with session:
            await setup.driver.step([received])
        ended.set()

    with trio.fail_after(5):
        nursery.start_soon(session_task)
        await trio.testing.wait_all_tasks_blocked()
        session.cancel()  # the session ends while the step waits for the disk
        await trio.testing.wait_all_tasks_blocked()
        disk_free.set()
        await ended.wait()
    in_memory = setup.driver.state.channels[CHANNEL]
    assert in_memory.theirs.accepted.nonce == 1
    assert stored_channel(setup.database).theirs.accepted.nonce == 1
    [held] = transfer.locks
    setup.database.run_now(compact_all)
    stored = setup.database.run_now(lambda c: records_of(c, held.secrethash))
    assert [s.record.direction for s in stored] == ["in"]
