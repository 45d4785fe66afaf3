"""The node's one transition: inputs routed to the channel and payment machines, and what comes
out (messages, duties, records, notifications), with two nodes linked directly.

Pure: no sockets, no store, no clock. Covers a payment end to end on both sides, the payer's
and payee's status tables, refusals recorded with their reason, messages about channels a peer
has no part in, a counter-signature that does not verify, an invoice paid twice, a channel
learned from layer 1 while connected, and payments too late or waiting too long for a slot.
"""

from __future__ import annotations

import pytest

from p2pchan.core.channel.state import ChannelConfig, ChannelStatus
from p2pchan.core.inputs import (
    ActionCreateInvoice,
    ActionPay,
    ActionSend,
    ReceiveChannelMessages,
    ReceivePeerConnected,
    Tick,
)
from p2pchan.core.node import UNKNOWN_CHANNEL_POINTS
from p2pchan.core.outputs import (
    NotifyFault,
    NotifyInvoiceCreated,
    NotifyPaymentAdmitted,
    NotifyPaymentFinal,
    PersistChannel,
    PersistInvoice,
    PersistPayment,
    SendMessage,
)
from p2pchan.core.payment.payer import ADMISSION_TIMEOUT_MS
from p2pchan.core.payment.state import (
    PAYEE_TRANSITIONS,
    PAYER_TRANSITIONS,
    Payee,
    PayeeStatus,
    Payer,
    PayerStatus,
)
from p2pchan.crypto.hashing import sha256
from p2pchan.errors import LocalProtocolError
from p2pchan.types import ChannelId, Secret, SecretHash
from p2pchan.wire.channel_messages import ChannelSync, LockedTransfer, Processed, RevealSecret
from tests.unit.node_helpers import Nodes

DEPOSIT = 1_000


def secret(index: int) -> Secret:
    return Secret(sha256(b"node test secret", index.to_bytes(4, "big")))


def pair(*, config: ChannelConfig | None = None) -> tuple[Nodes, ChannelId]:
    nodes = Nodes.create("alice", "bob", config=config)
    nodes.connect("alice", "bob")
    channel_id = nodes.open_channel("alice", "bob", DEPOSIT)
    return nodes, channel_id


def send(nodes: Nodes, amount: int, index: int, *, request_id: int = 1) -> SecretHash:
    payee = nodes["bob"].node_id
    nodes.feed("alice", ActionSend(request_id, payee, amount, secret(index), nodes.now_ms))
    nodes.feed("alice", Tick(nodes.now_ms))  # admitted
    return SecretHash(sha256(secret(index)))


def finals(nodes: Nodes, name: str) -> list[tuple[str, str, int]]:
    return [
        (f.record.direction, f.outcome.status, f.record.amount)
        for f in nodes.of_type(name, NotifyPaymentFinal)
        if isinstance(f, NotifyPaymentFinal)
    ]


def admissions(nodes: Nodes, name: str) -> list[str | None]:
    """The answers to each payment request, by request id."""
    answers = [a for a in nodes.of_type(name, NotifyPaymentAdmitted)]
    by_request = {a.request_id: a.refusal for a in answers}  # type: ignore[attr-defined]
    return [by_request[request_id] for request_id in sorted(by_request)]


# -- a payment end to end -------------------------------------------------------------------------


def test_a_direct_payment_is_admitted_signed_claimed_and_final_on_both_sides() -> None:
    nodes, channel_id = pair()
    secrethash = send(nodes, 300, 1)
    assert admissions(nodes, "alice") == [None]
    assert nodes["alice"].state.payments.outgoing[secrethash].status == PayerStatus.LOCKED
    [signed] = nodes.of_type("alice", PersistPayment)
    assert signed.record.status == "pending"  # type: ignore[attr-defined]
    # The update carrying the lock is stored with the record, before it goes out.
    assert any(isinstance(o, PersistChannel) for o in nodes["alice"].stored)
    assert [type(m) for _, _, m in nodes.wire] == [LockedTransfer]
    nodes.deliver()  # transfer, ack + reveal, unlock, ack
    assert finals(nodes, "alice") == [("out", "succeeded", 300)]
    assert finals(nodes, "bob") == [("in", "succeeded", 300)]
    [final] = nodes.of_type("alice", NotifyPaymentFinal)
    assert final.outcome.secret == secret(1)  # type: ignore[attr-defined]  # proof of payment
    assert not nodes["alice"].state.payments.outgoing
    assert not nodes["bob"].state.payments.incoming
    assert nodes["alice"].channel(channel_id).local_balance() == DEPOSIT - 300
    assert nodes["bob"].channel(channel_id).local_balance() == 300


def test_many_payments_arriving_together_share_one_update() -> None:
    nodes, _ = pair()
    nodes.wire.clear()
    for index in range(1, 6):
        send(nodes, 10, index, request_id=index)
    transfers = [m for _, _, m in nodes.wire if isinstance(m, LockedTransfer)]
    # The first goes out at once; the others wait for its ack and then share one update.
    assert [len(t.locks) for t in transfers] == [1]
    nodes.deliver(1)
    nodes.deliver(1)  # the ack: the next update carries all four waiting
    transfers = [m for _, _, m in nodes.wire if isinstance(m, LockedTransfer)]
    assert [len(t.locks) for t in transfers] == [4]
    nodes.deliver()
    assert [status for _, status, _ in finals(nodes, "alice")] == ["succeeded"] * 5


# -- refusals, recorded with their reason ---------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("offline", "offline"),
        ("no_channel", "no usable channel"),
        ("ourselves", "cannot pay ourselves"),
        ("too_much", "insufficient capacity"),
    ],
)
def test_a_payment_refused_before_anything_is_signed_is_recorded_failed(
    case: str, reason: str
) -> None:
    nodes, channel_id = pair()
    amount, payee = 10, nodes["bob"].node_id
    if case == "offline":
        nodes["alice"].state.online.clear()
    elif case == "no_channel":
        del nodes["alice"].state.channels[channel_id]
    elif case == "ourselves":
        payee = nodes["alice"].node_id
    else:
        amount = DEPOSIT + 1
    before = nodes["alice"].state.channels.get(channel_id)
    nodes.wire.clear()
    nodes.feed("alice", ActionSend(7, payee, amount, secret(1), nodes.now_ms))
    nodes.feed("alice", Tick(nodes.now_ms))
    [refusal] = admissions(nodes, "alice")
    assert refusal is not None and reason in refusal
    [record] = nodes.of_type("alice", PersistPayment)
    assert finals(nodes, "alice") == [("out", "failed", amount)]
    assert record.record.payment_hash == sha256(secret(1))  # type: ignore[attr-defined]
    assert nodes.wire == [] and not nodes["alice"].state.payments.outgoing
    assert nodes["alice"].state.channels.get(channel_id) == before


def test_a_final_payment_is_held_while_its_lock_is_in_the_channel() -> None:
    """What retention may never prune: a payment final for the payer (it learned the secret)
    is still held until its lock leaves the channel, since a dispute may need it."""
    nodes, _ = pair()
    secrethash = send(nodes, 300, 1)
    assert secrethash in nodes["alice"].state.held_secrethashes()
    while not finals(nodes, "alice"):
        nodes.deliver(1)
    assert not nodes["alice"].state.payments.outgoing  # final: not a live payment any more
    assert secrethash in nodes["alice"].state.held_secrethashes()  # its lock is
    nodes.deliver()
    assert finals(nodes, "bob") == [("in", "succeeded", 300)]
    assert nodes["alice"].state.held_secrethashes() == set()
    assert nodes["bob"].state.held_secrethashes() == set()


def test_an_invoice_is_not_paid_twice() -> None:
    """The core keeps no final payment: whether an invoice was paid comes from the store, in
    the action (`paid_before`), and an action nobody looked that up for is refused."""
    nodes, _ = pair()
    nodes.feed("bob", ActionCreateInvoice(50, "coffee", 3600, secret(9), nodes.now_ms))
    [created] = nodes.of_type("bob", NotifyInvoiceCreated)
    from p2pchan.core.invoice import decode_invoice

    invoice = decode_invoice(created.record.encoded, nodes["alice"].state.chain_id)  # type: ignore[attr-defined]
    nodes.feed("alice", ActionPay(1, invoice, None, nodes.now_ms, paid_before=False))
    nodes.feed("alice", ActionPay(2, invoice, None, nodes.now_ms, paid_before=False))
    nodes.feed("alice", Tick(nodes.now_ms))
    assert admissions(nodes, "alice")[0] is None
    assert "already in progress" in (admissions(nodes, "alice")[1] or "")
    nodes.deliver()
    assert finals(nodes, "alice") == [("out", "succeeded", 50)]
    assert not nodes["alice"].state.payments.outgoing  # final: in the store only
    paid = [o.record.status for o in nodes.of_type("bob", PersistInvoice)]  # type: ignore[attr-defined]
    assert paid == ["open", "paid"]
    nodes.feed("alice", ActionPay(3, invoice, None, nodes.now_ms, paid_before=True))
    assert "already paid" in (admissions(nodes, "alice")[2] or "")
    # One whose secret is public on layer 1 would give the money away.
    nodes.feed("alice", ActionPay(4, invoice, 12, nodes.now_ms, paid_before=False))
    assert "public on chain" in (admissions(nodes, "alice")[3] or "")
    # Nobody looked its history up: refused before anything changes.
    with pytest.raises(LocalProtocolError, match="history"):
        nodes.feed("alice", ActionPay(5, invoice, None, nodes.now_ms))
    assert len(admissions(nodes, "alice")) == 4 and not nodes["alice"].state.payments.outgoing


def test_expired_invoices_leave_memory_and_are_declined() -> None:
    nodes, _ = pair()
    nodes.feed("bob", ActionCreateInvoice(50, "short", 1, secret(8), nodes.now_ms))
    nodes.feed("bob", ActionCreateInvoice(50, "long", 3600, secret(7), nodes.now_ms))
    assert len(nodes["bob"].state.payments.invoices) == 2
    nodes.feed("bob", Tick(nodes.now_ms + 61_000))
    [(kept, _)] = nodes["bob"].state.payments.invoices.items()
    assert kept == sha256(secret(7))


# -- messages a peer has no business sending ------------------------------------------------------


def test_a_message_for_an_unknown_channel_is_scored_and_changes_nothing() -> None:
    nodes, _ = pair()
    before = dict(nodes["bob"].state.channels)
    stranger = ChannelId(bytes(32))
    message = Processed(stranger, 1, bytes(64))
    outputs = nodes.feed(
        "bob", ReceiveChannelMessages(nodes["alice"].node_id, stranger, (message,), nodes.now_ms)
    )
    assert outputs == [
        NotifyFault(
            nodes["alice"].node_id, UNKNOWN_CHANNEL_POINTS, "message for an unknown channel"
        )
    ]
    assert nodes["bob"].state.channels == before


def test_a_sync_for_a_channel_not_known_yet_is_an_honest_race_and_not_scored() -> None:
    nodes, _ = pair()
    sync = ChannelSync(ChannelId(bytes(32)), None, b"", 0)
    received = ReceiveChannelMessages(nodes["alice"].node_id, sync.channel_id, (sync,), 0)
    assert nodes.feed("bob", received) == []


def test_a_peer_that_is_not_the_partner_is_scored_and_changes_nothing() -> None:
    nodes = Nodes.create("alice", "bob", "mallory")
    nodes.connect("alice", "bob")
    channel_id = nodes.open_channel("alice", "bob", DEPOSIT)
    before = nodes["bob"].channel(channel_id)
    message = Processed(channel_id, 1, bytes(64))
    mallory = nodes["mallory"].node_id
    outputs = nodes.feed("bob", ReceiveChannelMessages(mallory, channel_id, (message,), 0))
    assert [(o.peer, o.points) for o in outputs if isinstance(o, NotifyFault)] == [
        (mallory, UNKNOWN_CHANNEL_POINTS)
    ]
    assert nodes["bob"].channel(channel_id) == before


def test_a_bad_counter_signature_is_scored_and_changes_nothing() -> None:
    nodes, channel_id = pair()
    send(nodes, 10, 1)
    nodes.wire.clear()  # the transfer never arrives; a bogus ack does
    before = nodes["alice"].channel(channel_id)
    bogus = Processed(channel_id, 1, bytes(64))
    outputs = nodes.feed(
        "alice", ReceiveChannelMessages(nodes["bob"].node_id, channel_id, (bogus,), 0)
    )
    [fault] = [o for o in outputs if isinstance(o, NotifyFault)]
    assert fault.points == 20 and "counter-signature" in fault.reason
    assert nodes["alice"].channel(channel_id) == before
    assert not any(isinstance(o, PersistChannel) for o in outputs)


# -- layer 1 and time -----------------------------------------------------------------------------


def test_a_channel_learned_from_layer_1_is_synced_with_a_connected_partner() -> None:
    """The opener's channel_sync reached us before we knew the channel: it waits for ours."""
    nodes = Nodes.create("alice", "bob")
    nodes.connect("alice", "bob")
    channel_id = nodes.open_channel("alice", "bob", DEPOSIT)
    syncs = [m for frm, to, m in nodes.wire if isinstance(m, ChannelSync)]
    assert syncs == []  # delivered already
    assert not nodes["bob"].channel(channel_id).awaiting_sync
    assert nodes["bob"].channel(channel_id).status == ChannelStatus.OPEN
    assert nodes["alice"].channel(channel_id).status == ChannelStatus.OPEN


def test_a_lock_too_close_to_its_expiry_is_refused_before_it_is_signed() -> None:
    """A payment that waited for a lock slot while blocks passed: the payee would fail it, and
    the partner would refuse the whole update as expired."""
    config = ChannelConfig(max_in_flight=1, max_pending_locks=1)
    nodes, _ = pair(config=config)
    send(nodes, 10, 1, request_id=1)  # takes the only slot
    send(nodes, 10, 2, request_id=2)  # waits for it
    assert admissions(nodes, "alice") == [None]
    waiting = nodes["alice"].state.payments.outgoing[SecretHash(sha256(secret(2)))]
    assert waiting.status == PayerStatus.WAITING and waiting.held is not None
    nodes.height = waiting.held.lock.expiration_block - config.reveal_timeout - 1
    nodes.block()  # a new block, and the slot frees up: too late for the waiting one
    nodes.deliver()
    nodes.feed("alice", Tick(nodes.now_ms))  # the shell's admission step after those
    reasons = admissions(nodes, "alice")
    assert len(reasons) == 2 and "waited too long" in (reasons[1] or "")


def test_a_payment_waiting_for_a_slot_gives_up_after_the_admission_timeout() -> None:
    config = ChannelConfig(max_in_flight=1, max_pending_locks=1)
    nodes, _ = pair(config=config)
    send(nodes, 10, 1, request_id=1)
    send(nodes, 10, 2, request_id=2)
    nodes.feed("alice", Tick(nodes.now_ms + ADMISSION_TIMEOUT_MS - 1))
    assert admissions(nodes, "alice") == [None]
    nodes.feed("alice", Tick(nodes.now_ms + ADMISSION_TIMEOUT_MS + 1))
    assert "no free lock slot" in (admissions(nodes, "alice")[1] or "")
    assert finals(nodes, "alice") == [("out", "failed", 10)]


def test_a_payee_withholding_its_decisions_reveals_and_fails_nothing() -> None:
    nodes, channel_id = pair()
    nodes["bob"].state.withhold_decisions = True
    send(nodes, 10, 1)
    nodes.deliver()
    assert not [m for _, _, m in nodes.wire if isinstance(m, RevealSecret)]
    assert nodes["bob"].channel(channel_id).theirs.accepted.locks  # held, undecided
    assert not nodes["bob"].state.payments.incoming


# -- the status tables ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "target"),
    [(s, t) for s in PayerStatus for t in PayerStatus if s != t],
)
def test_payer_status_moves_follow_its_table(start: PayerStatus, target: PayerStatus) -> None:
    nodes, _ = pair()
    send(nodes, 10, 1)
    payer = (
        nodes["alice"].state.payments.outgoing[SecretHash(sha256(secret(1)))]._replace(status=start)
    )
    if target in PAYER_TRANSITIONS[start]:
        assert payer.moved_to(target).status == target
    else:
        with pytest.raises(LocalProtocolError):
            payer.moved_to(target)
    assert isinstance(payer, Payer)


@pytest.mark.parametrize(
    ("start", "target"),
    [(s, t) for s in PayeeStatus for t in PayeeStatus if s != t],
)
def test_payee_status_moves_follow_its_table(start: PayeeStatus, target: PayeeStatus) -> None:
    nodes, _ = pair()
    send(nodes, 10, 1)
    nodes.deliver(1)
    payee = (
        nodes["bob"].state.payments.incoming[SecretHash(sha256(secret(1)))]._replace(status=start)
    )
    if target in PAYEE_TRANSITIONS[start]:
        assert payee.moved_to(target).status == target
    else:
        with pytest.raises(LocalProtocolError):
            payee.moved_to(target)
    assert isinstance(payee, Payee)


def test_a_peer_connecting_resyncs_each_of_its_channels() -> None:
    nodes, channel_id = pair()
    outputs = nodes.feed("alice", ReceivePeerConnected(nodes["bob"].node_id))
    sent = [o.message for o in outputs if isinstance(o, SendMessage)]
    assert [type(m) for m in sent] == [ChannelSync] and sent[0].channel_id == channel_id
    assert nodes["alice"].channel(channel_id).awaiting_sync
