"""The shell's step with a real store and a fake peer session: whatever a step promises reaches
the peer only once the step is on disk (persist before you promise), payments submitted together
share one step, and the peer's faults come back to the caller to score."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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
from p2pchan.core.payment.records import PaymentOutcome, PaymentRecord
from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.net.chain_actions import ChainActions
from p2pchan.net.driver import Driver, faults_of, now_ms
from p2pchan.net.history import PaymentHistory
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.node_store import ChannelTables, StoreBatch
from p2pchan.types import ChainId, ChannelId, Secret, SecretHash
from p2pchan.wire.balance_proof import BalanceProof, sign_balance_proof
from p2pchan.wire.channel_messages import ChannelMessage, ChannelSync, LockedTransfer, Processed
from p2pchan.wire.codec import unpack
from p2pchan.wire.hop_payload import HopPayload
from p2pchan.wire.locks import HeldLock, Lock, locksroot

CHAIN = ChainId(bytes(32))
CHANNEL = ChannelId(sha256(b"a channel"))


@dataclass
class FakeSession:
    """Stands in for a peer session: records what is sent, and runs a check at each send (the
    moment a promise leaves the node)."""

    node_id: bytes
    sent: list[ChannelMessage] = field(default_factory=list)
    on_send: Any = None

    async def send(self, message: ChannelMessage) -> None:
        if self.on_send is not None:
            self.on_send(message)
        self.sent.append(message)


@dataclass
class Setup:
    driver: Driver
    database: NodeDatabase
    us: Identity
    partner: Identity
    session: FakeSession


@pytest.fixture
async def setup(tmp_path: Path, nursery: trio.Nursery) -> Any:
    us, partner = Identity(b"u" * 32), Identity(b"p" * 32)
    database = NodeDatabase.open(tmp_path)
    session = FakeSession(partner.node_id)
    from p2pchan.core.state import NodeState

    state = NodeState(us, CHAIN, ChannelConfig(), height=10)
    state.channels[CHANNEL] = Channel(
        CHAIN, CHANNEL, us.node_id, partner.node_id, False, 100, ChannelConfig(),
        ChannelStatus.OPEN, 5_000, 10_000,
    )  # fmt: skip
    driver = Driver(
        state,
        database,
        ChainActions(wallet=None),  # type: ignore[arg-type]  # no chain duty in these tests
        lambda node_id: session if node_id == partner.node_id else None,  # type: ignore[arg-type,return-value]
        PaymentHistory(database, keep_days=None, protected=set, now_ms=now_ms),
    )
    await nursery.start(driver.run)
    await driver.step([ReceivePeerConnected(partner.node_id)])
    sync = ChannelSync(CHANNEL, None, b"", 0)  # the partner's: now updates may go out
    await driver.step([ReceiveChannelMessages(partner.node_id, CHANNEL, (sync,), now_ms())])
    session.sent.clear()
    yield Setup(driver, database, us, partner, session)
    database.close()


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
        received = ReceiveChannelMessages(setup.partner.node_id, CHANNEL, (transfer,), now_ms())
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
        action = ActionSend(request_id, setup.partner.node_id, 10, secret, now_ms())
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
            action = ActionSend(request_id, setup.partner.node_id, 10, secret, now_ms())
            await setup.driver.submit_payment(action)  # no checkpoint: they queue up
            waiters.append(waiter)
        await setup.driver.wait_until(lambda: bool(setup.session.sent))
        assert [w.refusal for w in waiters] == [None] * 20
        [transfer] = [m for m in setup.session.sent if isinstance(m, LockedTransfer)]
        assert len(transfer.locks) == 20 and writes == 1


async def test_the_faults_of_a_step_come_back_to_be_scored(setup: Setup) -> None:
    with trio.fail_after(5):
        bogus = Processed(CHANNEL, 1, bytes(64))  # acks nothing we sent
        received = ReceiveChannelMessages(setup.partner.node_id, CHANNEL, (bogus,), now_ms())
        outputs = await setup.driver.step([received])
        assert [fault.points for fault in faults_of(outputs)] == [20]


def an_invoice(setup: Setup) -> Invoice:
    secrethash = SecretHash(os.urandom(32))
    return Invoice(CHAIN, setup.partner.node_id, 50, secrethash, now_ms(), 3600, 11, "", b"")


async def pay(setup: Setup, invoice: Invoice) -> str | None:
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
        assert await pay(setup, paid) == "this invoice was already paid"
        assert await pay(setup, failed) is None  # a failed payment may be made again
