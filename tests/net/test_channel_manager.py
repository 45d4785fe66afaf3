"""The channel shell with a real store and a fake peer session: what a peer sends about a
channel it has no part in is scored and changes nothing, and a received balance proof is on
disk before its `processed` goes out (persist before you promise)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pchan.core.channel.send import PaymentRefused
from p2pchan.core.channel.state import Channel, ChannelConfig, ChannelStatus
from p2pchan.core.invoice import Invoice, encode_invoice
from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.errors import UserError
from p2pchan.l1.events import ChannelOpened
from p2pchan.net import misbehaviour
from p2pchan.net.chain_actions import ChainActions
from p2pchan.net.channels import ChannelManager, now_ms
from p2pchan.net.payment_book import OutgoingPayment
from p2pchan.net.payments import PaymentService
from p2pchan.storage.channels import ChannelTables, PaymentRecord
from p2pchan.storage.db import NodeDatabase
from p2pchan.types import ChainId, ChannelId, Secret, SecretHash
from p2pchan.wire.balance_proof import BalanceProof, sign_balance_proof
from p2pchan.wire.channel_messages import ChannelMessage, ChannelSync, LockedTransfer, Processed
from p2pchan.wire.hop_payload import HopPayload
from p2pchan.wire.locks import HeldLock, Lock, locksroot

CHAIN = ChainId(bytes(32))
CHANNEL = ChannelId(sha256(b"a channel"))


@dataclass
class FakeSession:
    """Stands in for a peer session: records faults and what is sent, and runs a check at
    each send (the moment a promise leaves the node)."""

    node_id: bytes
    faults: list[tuple[float, str]] = field(default_factory=list)
    sent: list[ChannelMessage] = field(default_factory=list)
    on_send: Any = None

    def fault(self, points: float, reason: str, *, budgeted: bool = False) -> None:
        if not budgeted:  # budgeted ones count only beyond a budget (tested with PeerSession)
            self.faults.append((points, reason))

    async def send(self, message: ChannelMessage) -> None:
        if self.on_send is not None:
            self.on_send(message)
        self.sent.append(message)


@dataclass
class Setup:
    manager: ChannelManager
    database: NodeDatabase
    us: Identity
    partner: Identity
    session: FakeSession


@pytest.fixture
async def setup(tmp_path: Path) -> Any:
    us, partner = Identity(b"u" * 32), Identity(b"p" * 32)
    database = NodeDatabase.open(tmp_path)
    session = FakeSession(partner.node_id)
    manager = ChannelManager(
        us,
        CHAIN,
        database,
        ChainActions(wallet=None),  # type: ignore[arg-type]  # no chain duty in these tests
        lambda node_id: session if node_id == partner.node_id else None,  # type: ignore[arg-type,return-value]
        ChannelConfig(),
    )
    manager.height = 10
    channel = Channel(
        CHAIN,
        CHANNEL,
        us.node_id,
        partner.node_id,
        False,
        100,
        ChannelConfig(),
        ChannelStatus.OPEN,
        0,
        10_000,
    )
    await manager.add_channel(channel)
    yield Setup(manager, database, us, partner, session)
    database.close()


def a_transfer(partner: Identity, amount: int = 100) -> LockedTransfer:
    secret = Secret(os.urandom(32))
    payload = HopPayload(1, amount, 60, secret).encode()
    held = HeldLock(Lock(amount, 60, SecretHash(sha256(secret))), payload)
    proof = BalanceProof(CHAIN, CHANNEL, partner.node_id, 1, 0, amount, locksroot([held.lock]))
    return LockedTransfer(CHANNEL, sign_balance_proof(partner, proof), (held,))


def stored_channel(database: NodeDatabase) -> Channel:
    (channel,) = database.run_now(ChannelTables().load)
    return channel


async def test_a_message_for_an_unknown_channel_is_scored_and_changes_nothing(setup: Setup) -> None:
    with trio.fail_after(5):
        before = dict(setup.manager.channels)
        stranger = LockedTransfer(ChannelId(bytes(32)), a_transfer(setup.partner).proof, ())
        await setup.manager.on_messages(setup.session, [stranger])  # type: ignore[arg-type]
        assert setup.session.faults == [
            (misbehaviour.UNEXPECTED_MESSAGE, "message for an unknown channel")
        ]
        assert setup.manager.channels == before and setup.session.sent == []


async def test_a_peer_that_is_not_the_partner_is_scored_and_changes_nothing(setup: Setup) -> None:
    with trio.fail_after(5):
        before = stored_channel(setup.database)
        mallory = FakeSession(Identity(b"m" * 32).node_id)
        await setup.manager.on_messages(mallory, [a_transfer(setup.partner)])  # type: ignore[arg-type]
        assert [points for points, _ in mallory.faults] == [misbehaviour.UNEXPECTED_MESSAGE]
        assert stored_channel(setup.database) == before == setup.manager.channels[CHANNEL]


async def test_a_received_proof_is_stored_before_its_processed_goes_out(setup: Setup) -> None:
    with trio.fail_after(5):
        transfer = a_transfer(setup.partner)
        checked: list[bool] = []

        def on_send(message: ChannelMessage) -> None:
            if isinstance(message, Processed):
                stored = stored_channel(setup.database)
                checked.append(stored.theirs.accepted_proof is not None)
                assert stored.theirs.accepted.nonce == message.nonce

        setup.session.on_send = on_send
        await setup.manager.on_messages(setup.session, [transfer])  # type: ignore[arg-type]
        assert checked == [True]
        assert setup.session.faults == []


async def test_a_bad_counter_signature_is_scored_and_changes_nothing(setup: Setup) -> None:
    with trio.fail_after(5):
        before = stored_channel(setup.database)
        bogus = Processed(CHANNEL, 1, bytes(64))  # acks nothing we sent
        await setup.manager.on_messages(setup.session, [bogus])  # type: ignore[arg-type]
        assert [points for points, _ in setup.session.faults] == [misbehaviour.MALFORMED_MESSAGE]
        assert stored_channel(setup.database) == before == setup.manager.channels[CHANNEL]


class SlowLink:
    """Stands in for the layer-1 link: while `pay` asks whether the invoice's secret is on
    chain, another payment of the same invoice gets signed."""

    def __init__(self, meanwhile: Any) -> None:
        self.meanwhile = meanwhile

    async def secret_block(self, secrethash: SecretHash) -> int | None:
        self.meanwhile(secrethash)
        return None


async def test_an_invoice_paid_while_pay_waits_for_layer_1_is_not_paid_twice(
    setup: Setup,
) -> None:
    payee = setup.partner
    secret = Secret(os.urandom(32))
    invoice = Invoice(
        CHAIN, payee.node_id, 50, SecretHash(sha256(secret)), now_ms(), 3600, 0, "", b""
    )
    book = setup.manager.book
    service = PaymentService(setup.manager, SlowLink(book.paid_or_pending.add))  # type: ignore[arg-type]
    before = setup.manager.channels[CHANNEL]
    with pytest.raises(UserError, match="already paid"):
        await service.pay(encode_invoice(payee, invoice))
    assert setup.manager.channels[CHANNEL] == before and not book.outgoing
    assert setup.session.sent == []


async def test_a_channel_learned_from_layer_1_is_synced_with_a_connected_partner(
    setup: Setup,
) -> None:
    """The opener's channel_sync reached us before we knew the channel: it waits for ours."""
    opened = ChannelOpened(
        ChannelId(sha256(b"a new channel")), setup.partner.node_id, setup.us.node_id, 100
    )

    async def no_lookup(channel_id: ChannelId) -> None:
        return None

    await setup.manager.on_chain_block(11, (opened,), no_lookup)
    syncs = [m for m in setup.session.sent if isinstance(m, ChannelSync)]
    assert [m.channel_id for m in syncs] == [opened.channel_id]
    assert not setup.manager.channels[opened.channel_id].awaiting_sync


def outgoing(channel_id: ChannelId, amount: int, expiration: int) -> tuple[HeldLock, Any]:
    secrethash = SecretHash(sha256(os.urandom(32)))
    record = PaymentRecord(
        secrethash, "out", b"p" * 32, channel_id, amount, 0, "pending", None, now_ms(), None, ""
    )
    return HeldLock(Lock(amount, expiration, secrethash)), OutgoingPayment(record)


async def test_a_lock_too_close_to_its_expiry_is_refused_before_it_is_signed(
    setup: Setup, nursery: trio.Nursery
) -> None:
    """A payment that waited for a lock slot while blocks passed: the payee would fail it, and
    the partner would refuse the whole update as expired."""
    manager = setup.manager
    ours = replace(
        manager.channels[CHANNEL], channel_id=ChannelId(sha256(b"ours")), our_deposit=500
    )
    await manager.add_channel(ours)
    await nursery.start(manager.run)
    last_useful = manager.height + ours.config.reveal_timeout
    held, payment = outgoing(ours.channel_id, 10, last_useful)
    with pytest.raises(PaymentRefused, match="waited too long"):
        await manager.admit_payment(ours.channel_id, held, payment)
    assert manager.channels[ours.channel_id] == ours and setup.session.sent == []
    held, payment = outgoing(ours.channel_id, 10, last_useful + 1)
    signed = trio.Event()
    setup.session.on_send = lambda message: signed.set()
    await manager.admit_payment(ours.channel_id, held, payment)
    with trio.fail_after(5):
        await signed.wait()  # the admission task signs it right after queueing it
    [transfer] = setup.session.sent
    assert isinstance(transfer, LockedTransfer) and transfer.locks == (held,)
