"""Three nodes in a line (A - B - C) run through their one transition as the trio shell runs
them, each persisting to its own SQLite store, over lossy links and a pure layer 1: the world
`test_multihop_machine.py` drives at random.

What stands in for the shell (`net.driver.Driver` and `net.node.Node`), step for step:
- `feed(name, input)`: `core.node.transition`, then every `Persist*` output written in one
  transaction through `StoreBatch.of` / `ChannelTables.write` (persist before you promise), then
  the rest carried out: `SendMessage` / `SendGossip` onto a link (dropped if that link is down,
  as the driver drops a message for a peer with no session), `SendHop` kept in memory until
  `feed_hops` feeds it back as one `ReceiveHop` per channel (a crash in between loses it, as a
  crash between two driver steps does), `ContractSend*` into layer 1's mempool.
- Links: per direction, a FIFO of what is in flight (TCP neither reorders nor drops within a
  connection; the order *across* links and directions is the caller's choice). A drop breaks
  the connection: everything in flight on it is lost and both ends see the peer go; a new
  connection is a `ReceivePeerConnected` at each end (each re-syncs).
- A crash loses the node's memory, its pending hops and its connections; a restart loads its
  `NodeState` from its database (`load_state`), replays the blocks it missed, feeds `Resume`
  and reconnects to its neighbours (the order `Node.run` keeps).
- Layer 1: a real `ChainState` (the contract's rules) mined from a mempool of the nodes'
  duties; every node that is up sees every block at once (its events, and the settled nonces
  the chain watcher reads from the channel's record). Losing the mempool (a layer-1 restart)
  is the caller's choice.

Everything the invariants need is recorded as it happens: each proof each node sent, each
channel state each node held (in memory and as reloaded), each payment's notifications, each
lock's expiry, each fault scored.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2pchan.core.channel.state import Channel, ChannelConfig, ChannelStatus
from p2pchan.core.gossip.outputs import SendGossip
from p2pchan.core.gossip.state import FeePolicy
from p2pchan.core.inputs import (
    ActionCreateInvoice,
    ActionPay,
    ActionSend,
    ContractReceiveBlock,
    Input,
    ReceiveChannelMessages,
    ReceiveGossip,
    ReceiveHop,
    ReceivePeerConnected,
    ReceivePeerDisconnected,
    Resume,
    SettledNonces,
    Tick,
)
from p2pchan.core.invoice import decode_invoice
from p2pchan.core.node import transition
from p2pchan.core.outputs import (
    ContractSend,
    NotifyFault,
    NotifyInvoiceCreated,
    NotifyPaymentFinal,
    Output,
    SendHop,
    SendMessage,
)
from p2pchan.core.state import NodeState
from p2pchan.core.timing import HEIGHT_SLACK
from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.errors import ChainError
from p2pchan.l1.contract import channel_id_for
from p2pchan.l1.events import ChannelSettled, Event
from p2pchan.l1.transactions import ChannelDeposit, ChannelOpen
from p2pchan.net.chain_actions import duty_call
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.node_store import ChannelTables, StoreBatch, load_state
from p2pchan.types import Address, ChannelId, Secret, SecretHash
from p2pchan.wire.channel_messages import (
    BalanceUpdate,
    ChannelMessage,
    LockedTransfer,
    LockFailed,
)
from p2pchan.wire.gossip_messages import GossipMessage
from tests.unit.chain_helpers import ChainHarness, identity

NAMES = ("A", "B", "C")
LINKS = (("A", "B"), ("B", "C"))
DEPOSIT = 5_000  # by each end of each channel
L1_FUNDS = 100_000
SETTLE_TIMEOUT = 30
REVEAL_TIMEOUT = 10
BLOCK_MS = 1_000
START_MS = 1_700_000_000_000
POLICY = FeePolicy(fee_base=5, fee_ppm=10_000)  # 5 + 1 % per hop
CONFIG = ChannelConfig(
    reveal_timeout=REVEAL_TIMEOUT,
    # A routed lock's timeout plus HEIGHT_SLACK must fit the channels' settle_timeout (the
    # payer's route rule): with max_lock_timeout = SETTLE_TIMEOUT no payment found a route
    # across B, and the machine never exercised a mediator.
    max_lock_timeout=SETTLE_TIMEOUT - HEIGHT_SLACK,
    max_pending_locks=12,
    max_in_flight=2,
)
_PERSISTED_PREFIX = "Persist"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One channel as one node held it: what must never go backwards."""

    acked_nonce: int
    acked_transferred: int
    accepted_nonce: int
    accepted_transferred: int
    signed_nonce: int

    @classmethod
    def of(cls, channel: Channel) -> Snapshot:
        ours, theirs = channel.ours, channel.theirs
        return cls(
            ours.acked.nonce,
            ours.acked.transferred,
            theirs.accepted.nonce,
            theirs.accepted.transferred,
            ours.signed_nonce,
        )


@dataclass
class Payment:
    """A payment the test started, and what each node said of it."""

    payer: str
    payee: str
    amount: int
    kind: str  # "send" (spontaneous) or "invoice"
    # Each NotifyPaymentFinal (or refusal before signing), per node and direction, in order.
    finals: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    @property
    def routed(self) -> bool:
        return {self.payer, self.payee} == {"A", "C"}


@dataclass
class LineNode:
    name: str
    identity: Identity
    datadir: Path
    database: NodeDatabase | None = None
    state: NodeState | None = None
    hops: dict[ChannelId, list[object]] = field(default_factory=dict)
    down_since: int | None = None  # the block height it crashed at

    @property
    def up(self) -> bool:
        return self.state is not None

    @property
    def address(self) -> Address:
        return self.identity.node_id

    def alive(self) -> NodeState:
        assert self.state is not None, f"{self.name} is down"
        return self.state


class LineWorld:
    def __init__(self, root: Path) -> None:
        self.chain = ChainHarness.create(
            [(identity(index + 1), L1_FUNDS) for index in range(len(NAMES))]
        )
        self.nodes = {
            name: LineNode(name, identity(index + 1), root / name)
            for index, name in enumerate(NAMES)
        }
        self.by_address = {node.address: node.name for node in self.nodes.values()}
        self.height = 0
        self.now_ms = START_MS
        self.blocks: dict[int, tuple[tuple[Event, ...], dict[ChannelId, SettledNonces]]] = {}
        self.mempool: dict[tuple[str, str], Any] = {}  # (node, duty key) -> call
        self.wire: dict[tuple[str, str], list[ChannelMessage | GossipMessage]] = {
            (a, b): [] for link in LINKS for a, b in (link, link[::-1])
        }
        self.connected: set[frozenset[str]] = set()
        self.link_down_since: dict[frozenset[str], int] = {}
        self.channels: dict[frozenset[str], ChannelId] = {}
        self.funded_l1: dict[str, int] = {}  # layer-1 balance once both channels were funded
        self.payments: dict[SecretHash, Payment] = {}
        self.expirations: dict[SecretHash, int] = {}  # each payment's one expiry E
        self._secrets = itertools.count(1)
        self._requests = itertools.count(1)
        # Observations for the invariants.
        self.signed: dict[tuple[str, ChannelId, int], bytes] = {}  # proofs sent, by nonce
        self.held: dict[tuple[str, ChannelId], Snapshot] = {}  # newest state each node held
        self.violations: list[str] = []  # what went backwards, found while feeding
        self.faults: list[tuple[str, str, float, str, bool]] = []  # scorer, peer, points, why
        for node in self.nodes.values():
            node.datadir.mkdir(parents=True)
            node.database = NodeDatabase.open(node.datadir)
            node.state = NodeState(node.identity, self.chain.chain_id, CONFIG, fee_policy=POLICY)

    # -- set-up ------------------------------------------------------------------------------

    def open_line(self) -> None:
        """Both channels opened and funded by both ends in one block, a block to make them
        usable, the links connected, and gossip settled: everyone knows the line."""
        calls: list[tuple[str, Any]] = []
        for left, right in LINKS:
            channel_id = self._next_channel_id(left, sum(1 for c in calls if c[0] == left))
            self.channels[frozenset((left, right))] = channel_id
            calls.append((left, ChannelOpen(self.nodes[right].address, SETTLE_TIMEOUT)))
            for name in (left, right):
                calls.append((name, ChannelDeposit(channel_id, self.nodes[name].address, DEPOSIT)))
        self.mine(calls)
        self.funded_l1 = {name: self.l1_balance(name) for name in NAMES}
        for left, right in LINKS:
            self.connect(left, right)
        self.mine()
        self.converse()

    def _next_channel_id(self, opener: str, earlier: int) -> ChannelId:
        who = self.nodes[opener].identity
        nonce = self.chain.next_nonce(who) + earlier
        return channel_id_for(self.chain.chain_id, who.node_id, nonce)

    def channel_id(self, left: str, right: str) -> ChannelId:
        return self.channels[frozenset((left, right))]

    # -- the shell's step ----------------------------------------------------------------------

    def feed(self, name: str, event: Input) -> list[Output]:
        node = self.nodes[name]
        state = node.alive()
        _, outputs = transition(state, event)
        persist = [o for o in outputs if type(o).__name__.startswith(_PERSISTED_PREFIX)]
        if persist:
            batch = StoreBatch.of(persist)
            assert node.database is not None
            node.database.run_now(lambda connection: ChannelTables().write(connection, batch))
        for channel_id, channel in state.channels.items():
            self._held(name, channel_id, Snapshot.of(channel), "in memory")
        for output in outputs:
            self._carry_out(node, output)
        return outputs

    def _carry_out(self, node: LineNode, output: Output) -> None:
        name = node.name
        if isinstance(output, SendMessage):
            self._sent(name, output.message)
            self._put(name, self.by_address[output.peer], output.message)
        elif isinstance(output, SendGossip):
            state = node.alive()
            targets = (
                [output.peer]
                if output.peer is not None
                else sorted(p for p in state.online if p not in output.exclude)
            )
            for peer in targets:
                for message in output.messages:
                    self._put(name, self.by_address[Address(peer)], message)
        elif isinstance(output, SendHop):
            node.hops.setdefault(output.channel_id, []).append(output.event)
        elif isinstance(output, NotifyPaymentFinal):
            self._final(name, output.record.payment_hash, output.record.direction,
                        output.outcome.status)  # fmt: skip
        elif isinstance(output, NotifyFault):
            culprit = self.by_address.get(output.peer, "?")
            self.faults.append((name, culprit, output.points, output.reason, output.budgeted))
        elif isinstance(output, ContractSend):
            key, call = duty_call(output)
            self.mempool.setdefault((name, key), call)

    def _final(self, name: str, payment_hash: SecretHash, direction: str, status: str) -> None:
        payment = self.payments.get(payment_hash)
        if payment is not None:
            payment.finals.setdefault((name, direction), []).append(status)

    def _sent(self, name: str, message: ChannelMessage) -> None:
        if isinstance(message, LockedTransfer):
            for held in message.locks:
                self.expirations.setdefault(held.secrethash, held.lock.expiration_block)
        if isinstance(message, LockFailed):
            self._failed_upstream(name, message)
        if not isinstance(message, BalanceUpdate):
            return
        nonce = message.proof.proof().nonce
        key = (name, message.channel_id, nonce)
        known = self.signed.setdefault(key, message.proof.data)
        if known != message.proof.data:
            self.violations.append(f"{name} signed nonce {nonce} twice with other content")

    def _failed_upstream(self, name: str, message: LockFailed) -> None:
        """A hop answers `lock_failed` only once its own outgoing lock for that payment, if
        any, is gone (removed, or expired unclaimed and given up): else the next hop may still
        claim it while the payer takes its money back."""
        for channel in self.nodes[name].alive().channels.values():
            if channel.channel_id == message.channel_id:
                continue
            live = {held.secrethash for held in channel.ours.all_locks()}
            live -= channel.ours.abandoned
            for secrethash in live.intersection(message.secrethashes):
                self.violations.append(
                    f"{name} failed {secrethash.hex()[:8]} upstream with its lock still live"
                )

    def _held(self, name: str, channel_id: ChannelId, now: Snapshot, where: str) -> None:
        before = self.held.get((name, channel_id))
        self.held[(name, channel_id)] = now
        if before is None:
            return
        for what, old_nonce, old_amount, new_nonce, new_amount in (
            ("acked", before.acked_nonce, before.acked_transferred, now.acked_nonce,
             now.acked_transferred),
            ("accepted", before.accepted_nonce, before.accepted_transferred, now.accepted_nonce,
             now.accepted_transferred),
        ):  # fmt: skip
            if new_nonce < old_nonce or (new_nonce == old_nonce and new_amount != old_amount):
                went = f"{old_nonce}->{new_nonce}"
                self.violations.append(f"{name} {where}: {what} nonce went {went}")
            elif new_amount < old_amount:
                self.violations.append(f"{name} {where}: {what} transfer fell")
        if now.signed_nonce < before.signed_nonce:
            self.violations.append(
                f"{name} {where}: signed nonce fell {before.signed_nonce}->{now.signed_nonce}"
            )

    # -- links -------------------------------------------------------------------------------

    def _put(self, sender: str, receiver: str, message: ChannelMessage | GossipMessage) -> None:
        if frozenset((sender, receiver)) in self.connected:
            self.wire[(sender, receiver)].append(message)

    def in_flight(self) -> list[tuple[str, str]]:
        return [direction for direction, queue in self.wire.items() if queue]

    def deliver(self, sender: str, receiver: str) -> None:
        """The next message from `sender` to `receiver`."""
        message = self.wire[(sender, receiver)].pop(0)
        peer = self.nodes[sender].address
        if isinstance(message, ChannelMessage):
            received = ReceiveChannelMessages(peer, message.channel_id, (message,), self.now_ms)
            self.feed(receiver, received)
        else:
            self.feed(receiver, ReceiveGossip(peer, message, self.now_ms))

    def connect(self, left: str, right: str) -> None:
        link = frozenset((left, right))
        if link in self.connected or not (self.nodes[left].up and self.nodes[right].up):
            return
        self.connected.add(link)
        self.link_down_since.pop(link, None)
        self.feed(left, ReceivePeerConnected(self.nodes[right].address))
        self.feed(right, ReceivePeerConnected(self.nodes[left].address))

    def disconnect(self, left: str, right: str) -> None:
        """The connection breaks: what was on its way is lost; each end sees the other go."""
        link = frozenset((left, right))
        self.wire[(left, right)].clear()
        self.wire[(right, left)].clear()
        if link not in self.connected:
            return
        self.connected.discard(link)
        self.link_down_since[link] = self.height
        for name, other in ((left, right), (right, left)):
            if self.nodes[name].up:
                self.feed(name, ReceivePeerDisconnected(self.nodes[other].address))

    def neighbours(self, name: str) -> list[str]:
        return [other for link in LINKS if name in link for other in link if other != name]

    # -- hops, ticks, payments -------------------------------------------------------------

    def feed_hops(self, name: str) -> bool:
        node = self.nodes[name]
        if not node.up or not node.hops:
            return False
        hops, node.hops = node.hops, {}
        for channel_id, events in hops.items():
            self.feed(name, ReceiveHop(channel_id, tuple(events), self.now_ms))
        return True

    def tick(self, name: str) -> None:
        if self.nodes[name].up:
            self.feed(name, Tick(self.now_ms))

    def fresh_secret(self) -> Secret:
        return Secret(sha256(b"multihop machine secret", next(self._secrets).to_bytes(8, "big")))

    def send(self, payer: str, payee: str, amount: int) -> None:
        secret = self.fresh_secret()
        secrethash = SecretHash(sha256(secret))
        self.payments[secrethash] = Payment(payer, payee, amount, "send")
        action = ActionSend(
            next(self._requests), self.nodes[payee].address, amount, secret, self.now_ms
        )
        self.feed(payer, action)

    def pay_invoice(self, payer: str, payee: str, amount: int) -> None:
        secret = self.fresh_secret()
        secrethash = SecretHash(sha256(secret))
        self.payments[secrethash] = Payment(payer, payee, amount, "invoice")
        created = self.feed(payee, ActionCreateInvoice(amount, "", 3600, secret, self.now_ms))
        [note] = [o for o in created if isinstance(o, NotifyInvoiceCreated)]
        invoice = decode_invoice(note.record.encoded, self.chain.chain_id)
        registered = self.chain.state.secrets.get(secrethash)
        # A fresh invoice: no payment of ours with its hash exists (what the shell looks up).
        pay = ActionPay(next(self._requests), invoice, registered, self.now_ms, paid_before=False)
        self.feed(payer, pay)

    # -- layer 1 -----------------------------------------------------------------------------

    def l1_balance(self, name: str) -> int:
        return self.chain.balance(self.nodes[name].identity)

    def lose_mempool(self) -> None:
        self.mempool.clear()

    def mine(self, calls: list[tuple[str, Any]] | None = None) -> None:
        """A block of the mempool's duties (or of `calls`); every node up sees it."""
        self.height += 1
        self.now_ms += BLOCK_MS
        pending = calls if calls is not None else [(n, c) for (n, _), c in self.mempool.items()]
        if calls is None:
            self.mempool.clear()
        events: list[Event] = []
        for name, call in pending:
            with contextlib.suppress(ChainError):  # too early, too late, done already: no-op
                events += self.chain.call(self.nodes[name].identity, call, self.height)
        settled: dict[ChannelId, SettledNonces] = {}
        for happened in events:
            if isinstance(happened, ChannelSettled):
                record = self.chain.channel(happened.channel_id)
                settled[happened.channel_id] = SettledNonces(
                    record.proof_a.nonce, record.proof_b.nonce
                )
        self.blocks[self.height] = (tuple(events), settled)
        for node in self.nodes.values():
            if node.up:
                self._see_block(node.name, self.height)

    def _see_block(self, name: str, height: int) -> None:
        events, settled = self.blocks[height]
        self.feed(name, ContractReceiveBlock(height, events, settled, self.now_ms))

    # -- crashes -----------------------------------------------------------------------------

    def crash(self, name: str) -> None:
        """Memory, pending hops and connections are gone; the database stays."""
        node = self.nodes[name]
        for other in self.neighbours(name):
            self.disconnect(name, other)
        assert node.database is not None
        node.database.close()
        node.database, node.state, node.hops = None, None, {}
        node.down_since = self.height

    def restart(self, name: str) -> None:
        """Load the state from disk, catch up with layer 1, resume, reconnect."""
        node = self.nodes[name]
        node.database = NodeDatabase.open(node.datadir)
        node.state = node.database.run_now(
            lambda connection: load_state(
                connection,
                node.identity,
                self.chain.chain_id,
                CONFIG,
                now_ms=self.now_ms,
                fee_policy=POLICY,
            )
        )
        node.down_since = None
        for channel_id, channel in node.state.channels.items():
            self._held(name, channel_id, Snapshot.of(channel), "after a restart")
        for (sender, channel_id, nonce), _ in self.signed.items():
            loaded = node.state.channels.get(channel_id)
            if sender == name and (loaded is None or loaded.ours.signed_nonce < nonce):
                self.violations.append(f"{name} restarted below nonce {nonce} it had sent")
        for height in range(node.state.height + 1, self.height + 1):
            self._see_block(name, height)
        self.feed(name, Resume(self.now_ms))
        for other in self.neighbours(name):
            self.connect(name, other)

    def down(self) -> list[str]:
        return [name for name, node in self.nodes.items() if not node.up]

    # -- calm --------------------------------------------------------------------------------

    def converse(self, rounds: int = 200) -> None:
        """Deliver everything, feed every hop, tick everyone, until nothing is left to say."""
        for _ in range(rounds):
            moved = False
            for sender, receiver in self.in_flight():
                while self.wire[(sender, receiver)]:
                    self.deliver(sender, receiver)
                    moved = True
            for name in NAMES:
                moved |= self.feed_hops(name)
            for name in NAMES:
                self.tick(name)
            if not moved and not self.in_flight() and not any(n.hops for n in self.nodes.values()):
                return
        raise AssertionError("the nodes never stop talking")

    def heal(self) -> None:
        """Everyone up and connected, everything delivered."""
        for name in self.down():
            self.restart(name)
        for left, right in LINKS:
            self.connect(left, right)
        self.converse()

    def settled_down(self) -> bool:
        """No lock pending anywhere, no payment in progress, nothing left for layer 1."""
        if self.mempool:
            return False
        for node in self.nodes.values():
            state = node.alive()
            payments = state.payments
            if payments.outgoing or payments.incoming or payments.forwards or payments.waiting:
                return False
            for channel in state.channels.values():
                if channel.status == ChannelStatus.SETTLED:
                    if channel.settled_unlocks:
                        return False
                    continue
                if channel.status != ChannelStatus.OPEN:
                    return False
                ours = channel.ours
                if ours.in_flight or ours.has_work() or ours.all_locks():
                    return False
                if channel.theirs.accepted.locks:
                    return False
        return True

    def states(self) -> Iterator[tuple[str, NodeState]]:
        for name, node in self.nodes.items():
            if node.state is not None:
                yield name, node.state

    def close(self) -> None:
        for node in self.nodes.values():
            if node.database is not None:
                node.database.close()
                node.database = None
