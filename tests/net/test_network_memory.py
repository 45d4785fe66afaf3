"""Eight real nodes in one trio run over in-memory streams (`memory_network.py`: the production
driver, peer manager, sessions, transport, core and SQLite stores; TCP and layer 1 replaced):
gossip teaches everyone the whole network, a payment across four hops pays exactly the fee
`route` predicted, and payments go around a channel on the cheapest route once it fails.

The network, two ways from n0 to n4: the top one cheap, the bottom one dear.

        n1 --- n2 --- n3
       /                \\
    n0                    n4
       \\                /
        n5 --- n6 --- n7

Every channel is funded with 5,000 by each end. Time is trio's autojump clock: the drivers'
ticks and the peers' redials cost no real time, and every wait is on a driver's steps under a
deadline.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from p2pchan.core.gossip.state import FeePolicy
from p2pchan.core.inputs import ActionCreateInvoice, ActionPay
from p2pchan.core.invoice import decode_invoice
from p2pchan.core.outputs import NotifyInvoiceCreated
from p2pchan.core.payment import routes
from p2pchan.core.payment.fees import forwarding_fee
from p2pchan.core.payment.records import PaymentRecord
from p2pchan.crypto.hashing import sha256
from p2pchan.net.api.payments import start_send
from p2pchan.net.driver import PaymentWaiter, now_ms
from p2pchan.storage.payment_history import NO_INDEX, PaymentQuery, page_payments
from p2pchan.types import ChannelId, NodeId, Secret
from tests.net.memory_network import (
    MemoryNode,
    channel_id_of,
    feed_block,
    opening_events,
    wait_for,
)
from tests.net.peer_helpers import MemoryNetwork

DEADLINE = 60  # seconds of trio's (virtual) clock
DEPOSIT = 5_000
CHEAP = FeePolicy(fee_base=1, fee_ppm=1_000)
DEAR = FeePolicy(fee_base=5, fee_ppm=5_000)
POLICIES = {"n5": DEAR, "n6": DEAR, "n7": DEAR}  # everyone else: CHEAP
TOP = ("n0", "n1", "n2", "n3", "n4")
BOTTOM = ("n0", "n5", "n6", "n7", "n4")
LINKS = [*itertools.pairwise(TOP), *itertools.pairwise(BOTTOM)]


@dataclass
class Ring:
    """The eight nodes (n0 to n4 two ways round) and the memory network they talk over."""

    memory: MemoryNetwork
    nodes: dict[str, MemoryNode]
    channels: dict[tuple[str, str], ChannelId]

    def __getitem__(self, name: str) -> MemoryNode:
        return self.nodes[name]

    def every(self) -> list[MemoryNode]:
        return list(self.nodes.values())

    def path(self, *names: str) -> list[ChannelId]:
        return [channel_id_of(left, right) for left, right in itertools.pairwise(names)]


@pytest.fixture
async def ring(tmp_path: Path, autojump_clock: trio.abc.Clock) -> AsyncIterator[Ring]:
    memory = MemoryNetwork()
    async with trio.open_nursery() as nursery:
        with trio.fail_after(DEADLINE):
            nodes = {}
            for index in range(8):
                name = f"n{index}"
                policy = POLICIES.get(name, CHEAP)
                nodes[name] = await MemoryNode.start(nursery, memory, tmp_path, name, policy)
            for left, right in LINKS:
                await nodes[left].connect(nodes[right])
            every = list(nodes.values())
            pairs = [(nodes[left], nodes[right]) for left, right in LINKS]
            await feed_block(every, 1, opening_events(pairs, DEPOSIT))
            await feed_block(every, 2, [])  # the channels are usable: each end announces them
        channels = {(left, right): channel_id_of(left, right) for left, right in LINKS}
        yield Ring(memory, nodes, channels)
        nursery.cancel_scope.cancel()


def knows_everything(node: MemoryNode) -> bool:
    """Every channel of the network, with both directions' policies, and every node's alias."""
    graph = node.state.graph
    for left, right in LINKS:
        channel_id = channel_id_of(left, right)
        info = graph.channel(channel_id)
        if info is None:
            return False
        if graph.policy(channel_id, info.node1) is None:
            return False
        if graph.policy(channel_id, info.node2) is None:
            return False
    known = list(graph.node_ids())
    return len(known) == 8 and all(graph.node(node_id) is not None for node_id in known)


async def converged(ring: Ring) -> None:
    await wait_for(ring.every(), knows_everything)


async def paid(waiter: PaymentWaiter) -> PaymentRecord:
    """The payment's final record (failing the test, with the reason, if it was refused)."""
    await waiter.done.wait()
    assert waiter.refusal is None, waiter.refusal
    final = waiter.final
    assert final is not None
    return final


async def records(node: MemoryNode) -> list[PaymentRecord]:
    """Its payment records, once none of its payments is in progress any more (a payer
    succeeds when the secret comes back, before the locks behind it are unlocked)."""

    def idle(node: MemoryNode) -> bool:
        payments = node.state.payments
        return not (payments.forwards or payments.incoming or payments.outgoing)

    await wait_for([node], idle)
    await node.driver.history.catch_up()
    query = PaymentQuery(limit=NO_INDEX)
    page = await node.driver.database.run(functools.partial(page_payments, query=query))
    return [stored.record for stored in page]


def fee_of(policy: FeePolicy, amount: int) -> int:
    return forwarding_fee(amount, policy.fee_base, policy.fee_ppm)


# -- gossip ----------------------------------------------------------------------------------


async def test_gossip_teaches_every_node_the_whole_network(ring: Ring) -> None:
    with trio.fail_after(DEADLINE):
        await converged(ring)
        for node in ring.every():
            graph = node.state.graph
            assert graph.channel_count() == len(LINKS)
            for (left, right), channel_id in ring.channels.items():
                info = graph.channel(channel_id)
                assert info is not None
                assert {info.node1, info.node2} == {ring[left].node_id, ring[right].node_id}
                assert info.capacity == 2 * DEPOSIT  # read from layer 1, not from gossip
                for end in (left, right):
                    policy = graph.policy(channel_id, ring[end].node_id)
                    expected = POLICIES.get(end, CHEAP)
                    assert policy is not None and not policy.disabled
                    assert (policy.fee_base, policy.fee_ppm) == (
                        expected.fee_base,
                        expected.fee_ppm,
                    )
            aliases = {graph.node(n).alias for n in graph.node_ids()}  # type: ignore[union-attr]
            assert aliases == set(ring.nodes)


async def test_a_node_that_joins_late_learns_the_network_when_it_connects(
    ring: Ring, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        await converged(ring)
        # A ninth node connects to n4 only (no channel of its own): the sync on connect
        # gives it everything the others flooded before it existed.
        async with trio.open_nursery() as nursery:
            late = await MemoryNode.start(nursery, ring.memory, tmp_path, "n8", CHEAP)
            await feed_block([late], 1, opening_events(
                [(ring[left], ring[right]) for left, right in LINKS], DEPOSIT
            ))  # fmt: skip
            await feed_block([late], 2, [])
            await late.connect(ring["n4"])
            await wait_for([late], lambda node: node.state.graph.channel_count() == len(LINKS))
            nursery.cancel_scope.cancel()


# -- payments across hops --------------------------------------------------------------------


async def test_a_payment_across_four_hops_pays_the_fee_route_predicted(ring: Ring) -> None:
    with trio.fail_after(DEADLINE):
        await converged(ring)
        payer, payee = ring["n0"], ring["n4"]
        plan = routes.plan(payer.state, payee.node_id, 1_000)  # what `route` answers
        assert [hop.channel_id for hop in plan.route.hops] == ring.path(*TOP)
        fee_n3 = fee_of(CHEAP, 1_000)
        fee_n2 = fee_of(CHEAP, 1_000 + fee_n3)
        fee_n1 = fee_of(CHEAP, 1_000 + fee_n3 + fee_n2)
        assert plan.route.fee == fee_n1 + fee_n2 + fee_n3

        record = await paid(await start_send(payer.driver, payee.node_id, 1_000))

        assert record.status == "succeeded" and record.secret is not None
        assert record.fee == plan.route.fee
        assert [hop.channel_id for hop in record.route] == ring.path(*TOP)
        [received] = await records(payee)
        assert (received.direction, received.status, received.amount) == ("in", "succeeded", 1_000)
        assert received.payment_hash == record.payment_hash
        for name, fee in (("n1", fee_n1), ("n2", fee_n2), ("n3", fee_n3)):
            [forward] = await records(ring[name])
            assert (forward.direction, forward.status, forward.fee) == ("forward", "succeeded", fee)
        for name in BOTTOM[1:-1]:
            assert await records(ring[name]) == []  # the dear way was left alone


async def test_an_invoice_is_paid_across_four_hops_and_both_ends_agree(ring: Ring) -> None:
    with trio.fail_after(DEADLINE):
        await converged(ring)
        payer, payee = ring["n0"], ring["n4"]
        secret = Secret(sha256(b"memory network invoice"))
        outputs = await payee.driver.step([ActionCreateInvoice(700, "tea", 3600, secret, now_ms())])
        [created] = [o.record for o in outputs if isinstance(o, NotifyInvoiceCreated)]
        invoice = decode_invoice(created.encoded, payee.state.chain_id)
        plan = routes.plan(payer.state, payee.node_id, 700)
        request_id, waiter = payer.driver.new_payment(invoice.secrethash)
        await payer.driver.submit_payment(ActionPay(request_id, invoice, None, now_ms()))

        record = await paid(waiter)

        assert record.status == "succeeded" and record.secret == secret  # proof of payment
        assert record.fee == plan.route.fee
        [received] = await records(payee)
        assert (received.payment_hash, received.amount) == (invoice.secrethash, 700)
        assert received.status == "succeeded"


async def test_a_payment_no_route_can_carry_is_refused_before_anything_is_signed(
    ring: Ring,
) -> None:
    with trio.fail_after(DEADLINE):
        await converged(ring)
        payer = ring["n0"]
        waiter = await start_send(payer.driver, ring["n4"].node_id, 3 * DEPOSIT)
        await waiter.done.wait()
        assert waiter.refusal is not None and "no route" in waiter.refusal
        [record] = await records(payer)
        assert (record.status, record.error) == ("failed", waiter.refusal)
        for channel in payer.state.channels.values():
            assert channel.ours.signed_nonce == 0  # nothing was promised to anyone


# -- around a failed channel -----------------------------------------------------------------


async def test_payments_go_around_a_channel_whose_partner_disconnected(ring: Ring) -> None:
    with trio.fail_after(DEADLINE):
        await converged(ring)
        payer, payee = ring["n0"], ring["n4"]
        await ring["n2"].disconnect(ring["n3"])
        # The payer still routes over n2 - n3 (gossip says nothing of sessions); n2 fails the
        # lock back, and the payer tries the dear way.
        planned = routes.plan(payer.state, payee.node_id, 1_000)
        assert [hop.channel_id for hop in planned.route.hops] == ring.path(*TOP)
        record = await paid(await start_send(payer.driver, payee.node_id, 1_000))
        assert record.status == "succeeded"
        assert [hop.channel_id for hop in record.route] == ring.path(*BOTTOM)
        expected_fee = routes.plan(payer.state, payee.node_id, 1_000).route.fee
        assert record.fee == expected_fee  # the dear way's fee, as `route` now says
        assert await records(ring["n2"]) == []  # refused at once: nothing was forwarded
        n2_to_n3 = channel_id_of("n2", "n3")
        assert payer.state.mission.penalty(n2_to_n3, ring["n2"].node_id, now_ms()) > 0
        # The next payment goes the dear way at once: the failure was learned.
        again = await paid(await start_send(payer.driver, payee.node_id, 1_000))
        assert [hop.channel_id for hop in again.route] == ring.path(*BOTTOM)
        assert await records(ring["n2"]) == []


async def test_payments_go_around_a_channel_whose_balance_is_spent(ring: Ring) -> None:
    with trio.fail_after(DEADLINE):
        await converged(ring)
        payer, payee = ring["n0"], ring["n4"]
        # n2 spends almost all of its side of n2 - n3, which nobody else can know.
        spent = await paid(await start_send(ring["n2"].driver, ring["n3"].node_id, 4_500))
        assert spent.status == "succeeded" and spent.fee == 0
        record = await paid(await start_send(payer.driver, payee.node_id, 1_000))
        assert record.status == "succeeded"
        assert [hop.channel_id for hop in record.route] == ring.path(*BOTTOM)
        forwards = [r for r in await records(ring["n2"]) if r.direction == "forward"]
        assert [r.status for r in forwards] == ["failed"]
        # What the payer paid is exactly what it lost, no more: the failed try cost nothing.
        first = payer.state.channels[channel_id_of("n0", "n1")]
        second = payer.state.channels[channel_id_of("n0", "n5")]
        assert first.local_balance() == DEPOSIT
        assert second.local_balance() == DEPOSIT - 1_000 - record.fee
        assert NodeId(payee.node_id) in payer.state.graph.node_ids()
