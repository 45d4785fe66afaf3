"""Payments across hops through the nodes' one transition: gossip teaches the payer the
network, the payer routes with onions, mediators forward for a fee (or fail back with an
encrypted reason), the payer retries around failures; every rule of DESIGN.md "Payments across
hops" that a mediator checks, each with a test.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from p2pchan.core.gossip.state import FeePolicy
from p2pchan.core.inputs import (
    ActionCreateInvoice,
    ActionPay,
    ActionSend,
    ActionSetFees,
    ReceiveChannelMessages,
    Resume,
)
from p2pchan.core.invoice import RouteHint, decode_invoice
from p2pchan.core.node import transition
from p2pchan.core.outputs import (
    ContractSendRegisterSecret,
    NotifyInvoiceCreated,
    NotifyPaymentAdmitted,
    NotifyPaymentFinal,
    PersistForward,
    SendHop,
    SendMessage,
)
from p2pchan.core.payment import incoming, routes
from p2pchan.core.payment.fees import forwarding_fee
from p2pchan.core.payment.records import PaymentRecord
from p2pchan.core.payment.state import FORWARD_TRANSITIONS, Forward, ForwardStatus, Payer
from p2pchan.core.routing.route import Hop, Route
from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.crypto.sphinx import shared_secrets
from p2pchan.crypto.sphinx_failure import read_failure
from p2pchan.errors import LocalProtocolError, NoRoute
from p2pchan.l1.events import SecretRegistered
from p2pchan.types import ChannelId, Secret
from p2pchan.wire.channel_messages import LockedTransfer, LockFailed, RevealSecret, Unlock
from p2pchan.wire.locks import HeldLock, Lock
from p2pchan.wire.onion_payload import FailureMessage
from tests.unit.node_helpers import Nodes

DEPOSIT = 10_000
POLICY = FeePolicy(fee_base=5, fee_ppm=10_000)  # 5 + 1 %


def secret(index: int) -> Secret:
    return Secret(sha256(b"multihop test secret", bytes([index])))


def line(*names: str, policy: FeePolicy = POLICY) -> tuple[Nodes, list[ChannelId]]:
    """Nodes in a line, each channel funded by its left end, everyone's gossip settled."""
    nodes = Nodes.create(*names)
    for node in nodes.nodes.values():
        node.state.fee_policy = policy
    channels = []
    for left, right in itertools.pairwise(names):
        nodes.connect(left, right)
        channels.append(nodes.open_channel(left, right, DEPOSIT))
        nodes.block()  # a block after the open: the channels are usable, and announced
    nodes.settle_gossip()
    return nodes, channels


def finals(nodes: Nodes, name: str) -> list[tuple[str, str, int, int]]:
    return [
        (n.record.direction, n.outcome.status, n.record.amount, n.record.fee)
        for n in nodes[name].notified
        if isinstance(n, NotifyPaymentFinal)
    ]


def errors(nodes: Nodes, name: str) -> list[str]:
    return [n.outcome.error for n in nodes[name].notified if isinstance(n, NotifyPaymentFinal)]


def send(nodes: Nodes, payer: str, payee: str, amount: int, index: int = 1) -> None:
    action = ActionSend(index, nodes[payee].node_id, amount, secret(index), nodes.now_ms)
    nodes.feed(payer, action)
    run(nodes)


def run(nodes: Nodes, rounds: int = 40) -> None:
    """Ticks (admission, gossip) and deliveries until the wire is quiet."""
    for _ in range(rounds):
        nodes.tick()
        if not nodes.wire and not nodes.gossip:
            return
        nodes.deliver()


def local_balance(nodes: Nodes, name: str, channel_id: ChannelId) -> int:
    return nodes[name].channel(channel_id).local_balance()


# -- gossip and routes -----------------------------------------------------------------------


def test_gossip_teaches_every_node_every_channel_of_the_line() -> None:
    nodes, channels = line("alice", "bob", "carol", "dave")
    for node in nodes.nodes.values():
        assert node.state.graph.channel_count() == 3
        for channel_id in channels:
            assert len(node.state.network.channels) == 3
            assert node.state.graph.channel(channel_id) is not None


def test_the_route_a_payment_takes_charges_each_mediator_its_announced_fee() -> None:
    nodes, channels = line("alice", "bob", "carol", "dave")
    plan = routes.plan(nodes["alice"].state, nodes["dave"].node_id, 1000)
    fee_carol = forwarding_fee(1000, POLICY.fee_base, POLICY.fee_ppm)
    fee_bob = forwarding_fee(1000 + fee_carol, POLICY.fee_base, POLICY.fee_ppm)
    assert [hop.channel_id for hop in plan.route.hops] == channels
    assert [hop.amount for hop in plan.route.hops] == [
        1000 + fee_carol + fee_bob,
        1000 + fee_carol,
        1000,
    ]
    assert plan.route.fee == fee_bob + fee_carol and not plan.direct


# -- a payment across hops -------------------------------------------------------------------


def test_a_spontaneous_payment_reaches_a_non_neighbour_and_each_mediator_keeps_its_fee() -> None:
    nodes, (ab, bc) = line("alice", "bob", "carol")
    fee = forwarding_fee(1000, POLICY.fee_base, POLICY.fee_ppm)
    send(nodes, "alice", "carol", 1000)
    assert finals(nodes, "alice") == [("out", "succeeded", 1000, fee)]
    assert finals(nodes, "bob") == [("forward", "succeeded", 1000, fee)]
    assert finals(nodes, "carol") == [("in", "succeeded", 1000, 0)]
    assert local_balance(nodes, "alice", ab) == DEPOSIT - 1000 - fee
    assert local_balance(nodes, "bob", ab) == 1000 + fee
    assert local_balance(nodes, "bob", bc) == DEPOSIT - 1000
    assert local_balance(nodes, "carol", bc) == 1000
    for node in nodes.nodes.values():
        assert not node.state.payments.forwards and not node.state.payments.outgoing
        for channel in node.state.channels.values():
            assert not channel.ours.all_locks() and not channel.theirs.accepted.locks


def test_an_invoice_is_paid_across_hops_and_both_ends_record_the_same_payment() -> None:
    nodes, _ = line("alice", "bob", "carol")
    created = nodes.feed("carol", ActionCreateInvoice(700, "tea", 3600, secret(9), nodes.now_ms))
    [note] = [o for o in created if isinstance(o, NotifyInvoiceCreated)]
    invoice = decode_invoice(note.record.encoded, nodes["carol"].state.chain_id)
    nodes.feed("alice", ActionPay(3, invoice, None, nodes.now_ms))
    run(nodes)
    [paid] = [n for n in nodes["alice"].notified if isinstance(n, NotifyPaymentFinal)]
    [got] = [n for n in nodes["carol"].notified if isinstance(n, NotifyPaymentFinal)]
    assert paid.outcome.status == got.outcome.status == "succeeded"
    assert paid.record.payment_hash == got.record.payment_hash == invoice.secrethash
    assert paid.record.amount == got.record.amount == 700
    assert paid.outcome.secret == secret(9)  # the proof of payment
    assert [hop.node_id for hop in paid.record.route] == [
        nodes["bob"].node_id,
        nodes["carol"].node_id,
    ]
    assert [hop.amount for hop in paid.record.route] == [700 + paid.record.fee, 700]


def test_many_forwards_share_one_outgoing_update() -> None:
    nodes, (_, bc) = line("alice", "bob", "carol")
    for index in range(1, 21):
        action = ActionSend(index, nodes["carol"].node_id, 100, secret(index), nodes.now_ms)
        nodes.feed("alice", action)
    nodes.tick("alice")  # one admission: one update carries all twenty locks to bob
    nodes.deliver(1)
    transfers = [
        m for sender, _, m in nodes.wire if sender == "bob" and isinstance(m, LockedTransfer)
    ]
    assert len(transfers) == 1 and len(transfers[0].locks) == 20
    run(nodes)
    assert [status for _, status, _, _ in finals(nodes, "alice")] == ["succeeded"] * 20
    assert local_balance(nodes, "carol", bc) == 2000


# -- failures travel back, and the payer learns ----------------------------------------------


def test_a_payee_refusal_comes_back_encrypted_and_is_final() -> None:
    nodes, (ab, _) = line("alice", "bob", "carol")
    created = nodes.feed("carol", ActionCreateInvoice(700, "", 3600, secret(9), nodes.now_ms))
    [note] = [o for o in created if isinstance(o, NotifyInvoiceCreated)]
    invoice = decode_invoice(note.record.encoded, nodes["carol"].state.chain_id)
    del nodes["carol"].state.payments.invoices[invoice.secrethash]  # carol forgot it
    nodes.feed("alice", ActionPay(3, invoice, None, nodes.now_ms))
    run(nodes)
    assert finals(nodes, "alice") == [("out", "failed", 700, forwarding_fee(700, 5, 10_000))]
    assert "the payee refused the payment (unknown_payment)" in errors(nodes, "alice")[0]
    assert finals(nodes, "bob")[0][:2] == ("forward", "failed")
    assert local_balance(nodes, "alice", ab) == DEPOSIT  # nothing lost


def test_a_failed_channel_is_routed_around() -> None:
    # alice -> bob -> dave and alice -> carol -> dave; bob's way is cheaper but bob's channel
    # to dave has no room: alice learns it from bob's failure and pays through carol.
    nodes = Nodes.create("alice", "bob", "carol", "dave")
    for name in ("alice", "bob", "dave"):
        nodes[name].state.fee_policy = FeePolicy(fee_base=1, fee_ppm=0)
    nodes["carol"].state.fee_policy = FeePolicy(fee_base=20, fee_ppm=0)
    for left, right, deposit in (
        ("alice", "bob", DEPOSIT),
        ("bob", "dave", 600),
        ("alice", "carol", DEPOSIT),
        ("carol", "dave", DEPOSIT),
    ):
        nodes.connect(left, right)
        nodes.open_channel(left, right, deposit)
        nodes.block()
    nodes.settle_gossip()
    # bob spends his side towards dave, which the graph cannot know.
    send(nodes, "bob", "dave", 500, index=50)
    send(nodes, "alice", "dave", 500)
    assert finals(nodes, "alice") == [("out", "succeeded", 500, 20)]
    assert finals(nodes, "carol") == [("forward", "succeeded", 500, 20)]
    assert [
        status for direction, status, _, _ in finals(nodes, "bob") if direction == "forward"
    ] == ["failed"]
    bob_to_dave = nodes["bob"].state.channel_with(nodes["dave"].node_id)
    assert bob_to_dave is not None
    assert (
        nodes["alice"].state.mission.penalty(
            bob_to_dave.channel_id, nodes["bob"].node_id, nodes.now_ms
        )
        > 0
    )


# -- what a mediator checks ------------------------------------------------------------------


def _onion_to(nodes: Nodes, payer: str, payee: str, amount: int, index: int) -> LockedTransfer:
    """The update carrying one routed lock, intercepted before the first hop sees it."""
    nodes.feed(payer, ActionSend(index, nodes[payee].node_id, amount, secret(index), nodes.now_ms))
    nodes.tick(payer)
    [(_, _, transfer)] = [entry for entry in nodes.wire if isinstance(entry[2], LockedTransfer)]
    assert isinstance(transfer, LockedTransfer)
    return transfer


def test_fees_below_the_policy_are_refused_but_the_previous_policy_counts_for_ten_minutes() -> None:
    nodes, _ = line("alice", "bob", "carol")
    # alice routes with bob's old fees; bob raised them just now.
    raised = FeePolicy(fee_base=40, fee_ppm=0)
    nodes.feed("bob", ActionSetFees(raised, None, nodes.now_ms))
    nodes["bob"].state.network.outbox.clear()  # alice does not hear of the change
    send(nodes, "alice", "carol", 1000, index=1)
    assert finals(nodes, "alice")[0][:2] == ("out", "succeeded")
    nodes.now_ms += 11 * 60_000  # later, the old fee no longer counts
    send(nodes, "alice", "carol", 1000, index=2)
    [_, second] = finals(nodes, "alice")
    # Bob's failure carried his new signed update: alice's retry paid the new fee.
    assert second == ("out", "succeeded", 1000, 40)
    forwards = [f for f in finals(nodes, "bob") if f[0] == "forward"]
    assert forwards == [("forward", "succeeded", 1000, 15), ("forward", "succeeded", 1000, 40)]


def test_a_replayed_onion_is_refused_and_not_forwarded() -> None:
    nodes, (ab, bc) = line("alice", "bob", "carol")
    transfer = _onion_to(nodes, "alice", "carol", 1000, 1)
    [held] = transfer.locks
    run(nodes)
    assert finals(nodes, "alice")[0][:2] == ("out", "succeeded")
    assert len(nodes["bob"].state.payments.seen_onions) == 1
    # The same onion in a new lock (a replay, by a payer that lost its records, or anyone who
    # saw the first lock): bob fails it without forwarding it.
    alice = nodes["alice"].state.payments
    payer = Payer(created_record(nodes, held), held, attempt=None)
    alice.outgoing[held.secrethash] = payer
    alice.waiting[ab] = [held.secrethash]
    run(nodes)
    assert finals(nodes, "bob")[1:] == []  # the first forward only
    assert local_balance(nodes, "carol", bc) == 1000
    assert local_balance(nodes, "alice", ab) == DEPOSIT - held.lock.amount


def created_record(nodes: Nodes, held: HeldLock) -> PaymentRecord:
    return PaymentRecord(
        held.secrethash, "out", nodes["carol"].node_id, ChannelId(b""), 1000, 0, "pending",
        None, nodes.now_ms, None, "",
    )  # fmt: skip


def test_a_lock_whose_expiry_differs_from_its_onion_is_refused() -> None:
    nodes, (ab, _) = line("alice", "bob", "carol")
    nodes.feed("alice", ActionSend(1, nodes["carol"].node_id, 1000, secret(1), nodes.now_ms))
    payer = nodes["alice"].state.payments.outgoing[sha256(secret(1))]
    assert payer.held is not None
    lock = payer.held.lock
    forged = replace(payer.held, lock=replace(lock, expiration_block=lock.expiration_block + 1))
    nodes["alice"].state.payments.outgoing[lock.secrethash] = payer._replace(held=forged)
    run(nodes)
    assert finals(nodes, "bob") == []  # nothing forwarded
    assert not nodes["bob"].state.payments.forwards
    [error] = errors(nodes, "alice")
    assert "could not forward (bad_payload)" in error
    assert local_balance(nodes, "alice", ab) == DEPOSIT


def test_a_mediator_restarted_before_it_forwarded_fails_the_lock_upstream() -> None:
    nodes, (ab, bc) = line("alice", "bob", "carol")
    nodes.feed("alice", ActionSend(1, nodes["carol"].node_id, 1000, secret(1), nodes.now_ms))
    nodes.tick("alice")
    # bob takes the lock; his outgoing lock is decided (and stored) but never signed.
    [(_, _, transfer)] = nodes.wire
    nodes.wire.clear()
    bob = nodes["bob"]
    received = ReceiveChannelMessages(nodes["alice"].node_id, ab, (transfer,), nodes.now_ms)
    _, outputs = transition(bob.state, received)
    assert any(isinstance(o, PersistForward) for o in outputs)
    assert any(isinstance(o, SendHop) for o in outputs)
    for output in outputs:  # the acks go out; the hop is lost in the crash
        if isinstance(output, SendMessage):
            nodes.wire.append(("bob", "alice", output.message))
    forward = bob.state.payments.forwards[sha256(secret(1))]
    assert forward.status == ForwardStatus.OFFERED
    nodes.feed("bob", Resume(nodes.now_ms))
    run(nodes)
    assert finals(nodes, "alice")[0][:2] == ("out", "failed")
    assert local_balance(nodes, "alice", ab) == DEPOSIT
    assert local_balance(nodes, "carol", bc) == 0


def test_a_mediator_restarted_after_paying_on_but_before_its_claim_was_stored_claims_again() -> (
    None
):
    nodes, (ab, bc) = line("alice", "bob", "carol")
    nodes.feed("alice", ActionSend(1, nodes["carol"].node_id, 1000, secret(1), nodes.now_ms))
    nodes.tick("alice")
    while not any(isinstance(m, RevealSecret) and s == "carol" for s, _, m in nodes.wire):
        assert nodes.deliver(1)
    [reveal] = [e for e in nodes.wire if e[0] == "carol" and isinstance(e[2], RevealSecret)]
    nodes.wire.remove(reveal)
    # bob learns the secret: the forward (with it) is stored and carol is paid on; the claim
    # upstream, a hop of its own, is lost in a crash before its step was stored.
    bob = nodes["bob"]
    received = ReceiveChannelMessages(nodes["carol"].node_id, bc, (reveal[2],), nodes.now_ms)
    _, outputs = transition(bob.state, received)
    assert any(isinstance(o, SendHop) for o in outputs)
    for output in outputs:
        if isinstance(output, SendMessage):
            nodes.wire.append(("bob", "carol", output.message))
    assert sha256(secret(1)) not in bob.channel(ab).theirs.known_secrets
    nodes.feed("bob", Resume(nodes.now_ms))
    run(nodes)
    assert ("forward", "succeeded", 1000, 15) in finals(nodes, "bob")  # 5 + 1 % of 1000
    assert finals(nodes, "alice")[0][:2] == ("out", "succeeded")
    assert local_balance(nodes, "bob", ab) == 1015
    assert local_balance(nodes, "carol", bc) == 1000


@pytest.mark.parametrize("start", list(ForwardStatus))
@pytest.mark.parametrize("target", list(ForwardStatus))
def test_forward_status_moves_follow_its_table(start: ForwardStatus, target: ForwardStatus) -> None:
    forward = Forward(
        sha256(b"h"), ChannelId(bytes(32)), ChannelId(bytes(32)), bytes(32), 2, 1, 9, bytes(32), 0,
        start,
    )  # fmt: skip
    if target in FORWARD_TRANSITIONS[start]:
        assert forward.moved_to(target).status == target
    else:
        with pytest.raises(LocalProtocolError):
            forward.moved_to(target)


def test_admission_refusals_of_a_routed_payment_name_the_reason() -> None:
    nodes, _ = line("alice", "bob", "carol")
    nodes.feed(
        "alice", ActionSend(1, nodes["carol"].node_id, 10 * DEPOSIT, secret(1), nodes.now_ms)
    )
    [note] = [n for n in nodes["alice"].notified if isinstance(n, NotifyPaymentAdmitted)]
    assert note.refusal is not None and "no route" in note.refusal


def test_a_mediator_learning_the_secret_close_to_expiry_registers_it_before_paying_on() -> None:
    nodes, (ab, bc) = line("alice", "bob", "carol")
    nodes.feed("alice", ActionSend(1, nodes["carol"].node_id, 1000, secret(1), nodes.now_ms))
    nodes.tick("alice")
    # Deliver until carol reveals the secret to bob; hold that reveal back until the lock is
    # close to its expiry.
    while not any(isinstance(m, RevealSecret) and s == "carol" for s, _, m in nodes.wire):
        assert nodes.deliver(1)
    [held] = [e for e in nodes.wire if e[0] == "carol" and isinstance(e[2], RevealSecret)]
    nodes.wire.remove(held)
    nodes.deliver()
    expiration = nodes["bob"].channel(bc).ours.all_locks()[0].lock.expiration_block
    reveal_timeout = nodes["bob"].state.config.reveal_timeout
    while expiration - nodes.height > reveal_timeout:
        nodes.block(to=["bob"])  # only bob's clock matters here
    nodes.feed("bob", ReceiveChannelMessages(nodes["carol"].node_id, bc, (held[2],), nodes.now_ms))
    to_carol = [m for s, r, m in nodes.wire if (s, r) == ("bob", "carol")]
    to_alice = [m for s, r, m in nodes.wire if (s, r) == ("bob", "alice")]
    assert not any(isinstance(m, Unlock) for m in to_carol)  # not paid on yet
    assert any(isinstance(m, RevealSecret) for m in to_alice)  # claimed upstream at once
    nodes.wire = [entry for entry in nodes.wire if entry[1] != "alice"]  # alice does not answer
    nodes.deliver()
    nodes.block(to=["bob"])
    registers = [d for d in nodes["bob"].duties if isinstance(d, ContractSendRegisterSecret)]
    assert [d.channel_id for d in registers] == [ab]
    registered = SecretRegistered(sha256(secret(1)), secret(1), nodes.height + 1)
    nodes.block([registered], to=["bob"])
    to_carol = [m for s, r, m in nodes.wire if (s, r) == ("bob", "carol")]
    assert any(isinstance(m, Unlock) for m in to_carol)  # layer 1 shows it: paid on


def _forged_onion(nodes: Nodes, hops: list[Hop], expiration: int, index: int) -> HeldLock:
    """A lock of alice's carrying an onion she built by hand (to say what an honest payer
    would not)."""
    secrethash = sha256(secret(index))
    key = routes.session_key(nodes["alice"].state, secrethash, 0)
    route = Route(nodes["alice"].node_id, tuple(hops))
    onion = routes.onion_for(route, expiration, secret(index), key, secrethash)
    return HeldLock(Lock(hops[0].amount, expiration, secrethash), onion.packet)


def _offer(nodes: Nodes, held: HeldLock, channel_id: ChannelId) -> None:
    alice = nodes["alice"].state.payments
    alice.outgoing[held.secrethash] = Payer(created_record(nodes, held), held)
    alice.waiting[channel_id] = [held.secrethash]
    run(nodes)


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("unknown_next_hop", "unknown_next_hop"),
        ("underpaid", "fee_insufficient"),
        ("payload_over_lock", "bad_payload"),
    ],
)
def test_a_mediator_refuses_what_it_cannot_or_should_not_forward(case: str, code: str) -> None:
    nodes, (ab, bc) = line("alice", "bob", "carol")
    bob, carol = nodes["bob"].node_id, nodes["carol"].node_id
    expiration = nodes.height + 50
    target = carol if case != "unknown_next_hop" else Identity(sha256(b"a stranger")).node_id
    lock_amount = {"underpaid": 1000, "payload_over_lock": 999}.get(case, 1015)
    hops = [Hop(bob, ab, lock_amount, 15), Hop(target, bc, 1000, 0)]
    held = _forged_onion(nodes, hops, expiration, 7)
    _offer(nodes, held, ab)
    assert not nodes["bob"].state.payments.forwards
    assert local_balance(nodes, "carol", bc) == 0 and local_balance(nodes, "alice", ab) == DEPOSIT
    # Bob's failure names the reason, sealed for the payer alone; alice reads it.
    key = routes.session_key(nodes["alice"].state, held.secrethash, 0)
    index, message = read_failure(shared_secrets([bob, target], key), _last_failure(nodes))
    assert index == 0 and FailureMessage.decode(message).code == code


def _last_failure(nodes: Nodes) -> bytes:
    for sender, receiver, message in reversed(nodes.delivered):
        if (sender, receiver) == ("bob", "alice") and isinstance(message, LockFailed):
            return message.failures[0]
    raise AssertionError("bob sent no lock_failed with a failure")


def test_a_tampered_or_malformed_onion_is_failed_unread() -> None:
    nodes, (ab, _) = line("alice", "bob", "carol")
    bob, carol = nodes["bob"].node_id, nodes["carol"].node_id
    held = _forged_onion(
        nodes, [Hop(bob, ab, 1015, 15), Hop(carol, ab, 1000, 0)], nodes.height + 50, 8
    )
    key = nodes["bob"].identity.x25519_private_key()
    tampered = replace(
        held, payload=held.payload[:100] + bytes([held.payload[100] ^ 1]) + held.payload[101:]
    )
    found = incoming.read(tampered, key, {})
    assert isinstance(found, incoming.Unreadable) and found.failure is None
    assert "authentication" in found.reason
    other_hash = replace(held, lock=replace(held.lock, secrethash=sha256(b"another payment")))
    assert isinstance(incoming.read(other_hash, key, {}), incoming.Unreadable)  # bound to its hash
    for payload in (b"", b"\x01" * 40, held.payload[:-1]):
        found = incoming.read(replace(held, payload=payload), key, {})
        assert isinstance(found, incoming.Unreadable)


def test_an_invoice_s_route_hints_reach_a_payee_gossip_has_not_told_us_of() -> None:
    nodes, (_, bc) = line("alice", "bob", "carol")
    alice = nodes["alice"].state
    alice.graph.remove_channel(bc)  # gossip of carol's channel has not reached alice
    assert alice.graph.channel(bc) is None
    created = nodes.feed("carol", ActionCreateInvoice(700, "", 3600, secret(9), nodes.now_ms))
    [note] = [o for o in created if isinstance(o, NotifyInvoiceCreated)]
    invoice = decode_invoice(note.record.encoded, nodes["carol"].state.chain_id)
    [hint] = invoice.hints()
    assert (hint.node_id, hint.channel_id) == (nodes["bob"].node_id, bc)
    assert (hint.fee_base, hint.fee_ppm) == (POLICY.fee_base, POLICY.fee_ppm)
    nodes.feed("alice", ActionPay(3, invoice, None, nodes.now_ms))
    run(nodes)
    assert finals(nodes, "alice") == [("out", "succeeded", 700, forwarding_fee(700, 5, 10_000))]
    assert alice.graph.channel(bc) is None  # the hint served one search, nothing more


def test_a_hint_layer_1_does_not_show_is_ignored() -> None:
    nodes, (_, bc) = line("alice", "bob", "carol")
    alice = nodes["alice"].state
    alice.graph.remove_channel(bc)
    made_up = RouteHint(nodes["bob"].node_id, ChannelId(sha256(b"no such channel")), 0, 0)
    with pytest.raises(NoRoute):
        routes.plan(alice, nodes["carol"].node_id, 700, hints=(made_up,))
