"""Hypothesis: payments across a line of three nodes (A - B - C) never create or lose money and
always end with one answer, whatever the network, crashes and layer 1 do.

The world (`line_world.py`): three honest nodes, each with its own SQLite store, driven only
through `core.node.transition` the way the trio shell drives it; channels A-B and B-C funded by
both ends (5,000 each), so payments go both ways, directly and across B. Hypothesis starts
payments (spontaneous `send`s and invoices paid with `pay`, between any two nodes: to a
neighbour or through B for its fee), delivers messages in any order across links and
directions (in order within one, as TCP does), breaks connections (everything in flight on
them is lost; both ends re-sync on the next), feeds mediators' hops back late or never (a crash
in between), ticks, mines blocks (locks expire), loses layer 1's mempool (every duty must be
asked for again), and crashes any node (it comes back from its database: `load_state`, the
blocks it missed, `Resume`, reconnect). A node or link is never down for more than
`MAX_DOWN` blocks, and the mempool is not lost twice within `LOSS_SPACING` blocks: DESIGN.md's
premises for "no honest node loses funds" (each node lands its layer-1 duties within
reveal_timeout blocks).

Invariants after every step (DESIGN.md "Invariants", as they apply):
- conservation: layer 1's balances plus what the contract holds equal its supply (1); every
  balance each node sees is non-negative, and what a receiver accepted from a sender is one of
  the states that sender signed (so the two ends' channels add up to the same deposits);
- nonces rise strictly and transferred amounts never fall, per direction, in memory and as
  reloaded from disk; no nonce is ever signed twice with other content; a node restarts at or
  above every nonce it sent (persist before you promise) (5);
- a payment ends once per node, and its ends never contradict each other: the payee paid and
  the payer failed, or the mediator failed and the payee paid, never happen (2, 4);
- no payment stays pending past its expiry plus the settle window (4); a node with no decision
  waiting to be fed back has decided on every incoming lock (claimed, failed, or held by a
  payment or forward of its own), also right after a restart that lost a decision;
- no node is scored for a fault (all three are honest; faults of timing within their budget
  aside).

At the end everyone is brought back and connected, everything is delivered, and blocks pass
until every lock has settled or expired and layer 1 has nothing left to do; then every payment
is final in every store with the same answer and amount at both ends (and the mediator's), and
each node's funds (its open channels' balances plus what layer 1 paid it back) equal its
deposits minus what it sent and paid in fees plus what it received and earned in fees, by its
own payment records; the three together hold exactly the deposits (2, 3).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from p2pchan.core.channel.state import ChannelStatus
from p2pchan.core.payment.records import PaymentRecord
from p2pchan.core.payment.state import PayerStatus
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.payment_history import NO_INDEX, PaymentQuery, compact_all, page_payments
from p2pchan.types import SecretHash
from tests.property.line_world import (
    DEPOSIT,
    LINKS,
    NAMES,
    SETTLE_TIMEOUT,
    LineWorld,
    Payment,
)
from tests.unit.chain_helpers import circulating

pytestmark = pytest.mark.slow

MAX_DOWN = 3  # blocks a node or a link may stay down (< reveal_timeout)
LOSS_SPACING = 5  # blocks between two losses of layer 1's mempool
HEAL_BLOCKS = 200  # blocks the end may run to let every payment end

names = st.sampled_from(NAMES)
links = st.sampled_from(LINKS)
pairs = st.sampled_from([(payer, payee) for payer in NAMES for payee in NAMES if payer != payee])
amounts = st.integers(min_value=1, max_value=1_500)
picks = st.integers(min_value=0, max_value=1_000)
afterwards = st.sampled_from(["hops", "hops", "later", "crash"])
batches = st.lists(st.tuples(pairs, amounts, st.booleans()), min_size=1, max_size=4)


class MultihopMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="p2pchan-multihop-"))
        self.world = LineWorld(self.root)
        self.world.open_line()
        self.last_loss = -LOSS_SPACING
        for _, state in self.world.states():
            assert state.graph.channel_count() == 2, "gossip did not teach the line"

    # -- payments ----------------------------------------------------------------------------

    @initialize(batch=batches)
    def first_payments(self, batch: list[tuple[tuple[str, str], int, bool]]) -> None:
        self.pay(batch)

    @rule(batch=batches)
    def pay(self, batch: list[tuple[tuple[str, str], int, bool]]) -> None:
        """Spontaneous payments, or invoices of the payee's paid by the payer: to a neighbour,
        or across B."""
        world = self.world
        for (payer, payee), amount, invoice in batch:
            if not world.nodes[payer].up or (invoice and not world.nodes[payee].up):
                continue
            if invoice:
                world.pay_invoice(payer, payee, amount)
            else:
                world.send(payer, payee, amount)
        for name in NAMES:  # the driver's payment batch ends with a tick: they are admitted
            world.tick(name)

    @rule(name=names)
    def tick(self, name: str) -> None:
        """Admission of waiting payments (they share one update), gossip."""
        self.world.tick(name)

    @rule(name=names)
    def feed_hops(self, name: str) -> None:
        """A mediator's decisions about its other channel, fed back (`ReceiveHop`)."""
        self.world.feed_hops(name)

    # -- the network -------------------------------------------------------------------------

    @precondition(lambda self: bool(self.world.in_flight()))
    @rule(pick=picks, count=st.integers(min_value=1, max_value=6), then=afterwards)
    def deliver(self, pick: int, count: int, then: str) -> None:
        """The next messages of one direction of one link (any link, any direction). The
        receiver's decisions about its other channel are then fed back at once ("hops"), or
        left for later ("later"); or ("crash") the first receiver left with such decisions
        crashes before they are fed back (and restarts): they are lost."""
        for _ in range(count):
            flights = self.world.in_flight()
            if not flights:
                return
            sender, receiver = flights[pick % len(flights)]
            self.world.deliver(sender, receiver)
            if then == "hops":
                self.world.feed_hops(receiver)
            elif then == "crash" and self.world.nodes[receiver].hops:
                self._crash_losing_hops(receiver, restart=True)
                return

    @rule(link=links, reconnect=st.booleans())
    def drop(self, link: tuple[str, str], reconnect: bool) -> None:
        """The connection breaks: what was on its way is lost; maybe a new one at once."""
        self.world.disconnect(*link)
        if reconnect:
            self.world.connect(*link)

    @rule(link=links)
    def reconnect(self, link: tuple[str, str]) -> None:
        self.world.connect(*link)

    @rule()
    def converse(self) -> None:
        """A calm spell: everything delivered, every hop fed back, everyone ticked."""
        self.world.converse()

    # -- nodes and layer 1 -------------------------------------------------------------------

    @rule(name=names, restart=st.booleans())
    def crash(self, name: str, restart: bool) -> None:
        if not self.world.nodes[name].up:
            return
        self.world.crash(name)
        if restart:
            self.world.restart(name)

    @precondition(lambda self: any(node.hops for node in self.world.nodes.values()))
    @rule(pick=picks, restart=st.booleans())
    def crash_before_hops(self, pick: int, restart: bool) -> None:
        """A crash after a step that decided about another channel, before the step that feeds
        the decision back (`Driver._feed_hops`): the decision is lost."""
        deciding = [name for name, node in self.world.nodes.items() if node.hops]
        self._crash_losing_hops(deciding[pick % len(deciding)], restart)

    def _crash_losing_hops(self, name: str, restart: bool) -> None:
        hops = self.world.nodes[name].hops
        lost = sorted({type(decided).__name__ for events in hops.values() for decided in events})
        if lost:
            event(f"hops lost in a crash: {lost}")
        self.crash(name, restart)

    @precondition(lambda self: bool(self.world.down()))
    @rule(pick=picks)
    def restart(self, pick: int) -> None:
        down = self.world.down()
        self.world.restart(down[pick % len(down)])

    @rule(blocks=st.integers(min_value=1, max_value=4))
    def mine(self, blocks: int) -> None:
        """Blocks pass (what was down too long comes back first)."""
        for _ in range(blocks):
            self._bring_back(self.world.height + 1 - MAX_DOWN)
            self.world.mine()

    def _bring_back(self, since: int) -> None:
        world = self.world
        for name, node in world.nodes.items():
            if node.down_since is not None and node.down_since <= since:
                world.restart(name)
        for link, down_since in list(world.link_down_since.items()):
            if down_since <= since:
                world.connect(*sorted(link))

    @precondition(lambda self: bool(self.world.mempool))
    @rule()
    def lose_mempool(self) -> None:
        """Layer 1 restarts: its mempool is lost, every duty must be asked for again."""
        if self.world.height - self.last_loss < LOSS_SPACING:
            return
        event("mempool lost")
        self.last_loss = self.world.height
        self.world.lose_mempool()

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def nothing_went_backwards(self) -> None:
        assert not self.world.violations, self.world.violations

    @invariant()
    def no_honest_node_is_scored(self) -> None:
        """Every node is honest: none is ever scored for a fault (a fault of timing an honest
        peer commits now and then, `budgeted`, is allowed)."""
        unbudgeted = [fault for fault in self.world.faults if not fault[4]]
        assert not unbudgeted, unbudgeted

    @invariant()
    def layer1_conserves(self) -> None:
        chain = self.world.chain.state
        assert circulating(chain) == chain.supply - chain.burned

    @invariant()
    def channels_add_up_at_both_ends(self) -> None:
        world = self.world
        for left, right in LINKS:
            channel_id = world.channel_id(left, right)
            for sender, receiver in ((left, right), (right, left)):
                if not (world.nodes[sender].up and world.nodes[receiver].up):
                    continue
                sending = world.nodes[sender].alive().channels[channel_id]
                receiving = world.nodes[receiver].alive().channels[channel_id]
                for name, channel in ((sender, sending), (receiver, receiving)):
                    assert channel.local_balance() >= 0, (name, "local", channel.local_balance())
                    assert channel.remote_balance() >= 0, (name, "remote")
                    assert channel.available_to_send() >= 0, (name, "available")
                accepted = receiving.theirs.accepted
                if accepted.nonce == 0:
                    continue
                ours = sending.ours
                states = [ours.acked, *(flight.state for flight in ours.in_flight), *ours.refused]
                same = [state for state in states if state.nonce == accepted.nonce]
                assert same, (
                    f"{receiver} accepted nonce {accepted.nonce} of {sender}, whose states are "
                    f"{[state.nonce for state in states]}"
                )
                assert same[0] == accepted, (sender, receiver, "disagree on", accepted.nonce)

    @invariant()
    def answers_never_contradict(self) -> None:
        for secrethash, payment in self.world.payments.items():
            where = f"payment {secrethash.hex()[:8]} {payment}"
            paid = payment.finals.get((payment.payer, "out"), [])
            got = payment.finals.get((payment.payee, "in"), [])
            forwarded = payment.finals.get(("B", "forward"), [])
            assert len(paid) <= 1 and len(got) <= 1, where  # a payment ends once
            assert not ("failed" in paid and "succeeded" in got), where
            assert not ("failed" in paid and "succeeded" in forwarded), where
            assert not ("succeeded" in got and forwarded[-1:] == ["failed"]), where

    @invariant()
    def every_incoming_lock_is_decided(self) -> None:
        """A node none of whose decisions waits to be fed back has decided on every incoming
        lock: claimed (its secret kept), failed (`lock_failed` sent), or held by a payment of
        its own (received, or forwarded). A crash that lost a decision leaves none undecided
        once the node is back (else its payer would wait for the lock's expiry)."""
        for name, state in self.world.states():
            if self.world.nodes[name].hops:
                continue
            payments = state.payments
            owned = payments.incoming.keys() | payments.forwards.keys()
            for channel in state.channels.values():
                if channel.status == ChannelStatus.SETTLED:
                    continue
                theirs = channel.theirs
                for held in theirs.accepted.locks:
                    secrethash = held.secrethash
                    assert (
                        secrethash in owned
                        or secrethash in theirs.known_secrets
                        or secrethash in theirs.failed_sent
                    ), f"{name} never decided on the incoming lock {secrethash.hex()[:8]}"

    @invariant()
    def nothing_pending_past_expiry(self) -> None:
        world = self.world
        for name, state in world.states():
            payments = state.payments
            pending = [
                h for h, payer in payments.outgoing.items() if payer.status == PayerStatus.LOCKED
            ]
            pending += [*payments.incoming, *payments.forwards]
            for secrethash in pending:
                expiration = world.expirations.get(secrethash)
                if expiration is not None:
                    assert world.height <= expiration + SETTLE_TIMEOUT, (
                        f"{name}: payment {secrethash.hex()[:8]} pending at {world.height}, "
                        f"expired at {expiration}"
                    )

    # -- the end -----------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if sys.exc_info()[0] is None:
                self._heal_and_check()
        finally:
            self.world.close()
            shutil.rmtree(self.root, ignore_errors=True)

    def _heal_and_check(self) -> None:
        world = self.world
        world.heal()
        for _ in range(HEAL_BLOCKS):
            if world.settled_down():
                break
            world.mine()
            world.converse()
        else:
            raise AssertionError("the line never settled down")
        self.nothing_went_backwards()
        self.no_honest_node_is_scored()
        self.answers_never_contradict()
        self.layer1_conserves()
        records = {
            name: _payments(node.database)
            for name, node in world.nodes.items()
            if node.database is not None
        }
        for name in NAMES:
            for record in records[name].values():
                assert record.status != "pending", (name, record)
        for secrethash, payment in world.payments.items():
            self._check_payment(secrethash, payment, records)
        total = 0
        for name in NAMES:
            funds = self._funds(name)
            assert funds == self._booked(name, records[name]), (name, funds, records[name])
            total += funds
        assert total == 2 * len(LINKS) * DEPOSIT
        closed = [
            channel.status
            for _, state in world.states()
            for channel in state.channels.values()
            if channel.status != ChannelStatus.OPEN
        ]
        event(f"channels not open at the end: {len(closed)}")

    def _check_payment(
        self,
        secrethash: SecretHash,
        payment: Payment,
        records: dict[str, dict[tuple[SecretHash, str], PaymentRecord]],
    ) -> None:
        where = f"payment {secrethash.hex()[:8]} {payment}"
        paid = records[payment.payer].get((secrethash, "out"))
        got = records[payment.payee].get((secrethash, "in"))
        forwarded = records["B"].get((secrethash, "forward")) if payment.routed else None
        status = paid.status if paid is not None else "lost"  # never signed, then a crash
        event(f"{'routed' if payment.routed else 'direct'} {payment.kind}: {status}")
        if status != "succeeded":
            assert got is None or got.status == "failed", where
            assert forwarded is None or forwarded.status == "failed", where
            return
        assert paid is not None and got is not None and got.status == "succeeded", where
        assert paid.amount == got.amount == payment.amount, where
        if payment.routed:
            assert forwarded is not None and forwarded.status == "succeeded", where
            assert forwarded.fee == paid.fee and forwarded.amount == payment.amount, where
        else:
            assert paid.fee == 0, where

    def _funds(self, name: str) -> int:
        """What the node has: its open channels' balances, plus what layer 1 paid it back."""
        world = self.world
        state = world.nodes[name].alive()
        funds = world.l1_balance(name) - world.funded_l1[name]
        for channel in state.channels.values():
            if channel.status != ChannelStatus.SETTLED:
                funds += channel.local_balance()
        return funds

    @staticmethod
    def _booked(name: str, records: dict[tuple[SecretHash, str], PaymentRecord]) -> int:
        """What its payment records say it should have."""
        deposits = DEPOSIT * sum(1 for link in LINKS if name in link)
        booked = deposits
        for record in records.values():
            if record.status != "succeeded":
                continue
            if record.direction == "out":
                booked -= record.amount + record.fee
            elif record.direction == "in":
                booked += record.amount
            else:
                booked += record.fee
        return booked


MultihopMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("MULTIHOP_EXAMPLES", "25")),
    stateful_step_count=50,
    deadline=None,
    # The explain phase traces every line on Python 3.11 and takes minutes on this machine.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
test_multihop_machine = MultihopMachine.TestCase


def _payments(database: NodeDatabase) -> dict[tuple[SecretHash, str], PaymentRecord]:
    """Every payment a node recorded, by hash and direction (the newest record of each), read
    as `payments` reads them: the journal compacted into the history table first."""
    database.run_now(compact_all)
    page = database.run_now(lambda c: page_payments(c, PaymentQuery(limit=NO_INDEX)))
    return {
        (stored.record.payment_hash, stored.record.direction): stored.record
        for stored in reversed(page)
    }
