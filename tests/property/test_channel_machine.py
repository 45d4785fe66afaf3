"""Hypothesis: both ends of one channel, a lossy network and a toy layer 1 never lose money.

The model. Two honest ends, A (deposit 10,000) and B (deposit 5,000), each run the sans-IO
channel core (`p2pchan.core.channel`) on their own `Channel` state, driven the way the trio
shell drives it: every state a core transition returns is "persisted" (it replaces the end's
state before any output is carried out), then the outputs are carried out — `Send` puts a
message on the network, layer-1 outputs put a transaction in the mempool, lock notifications go
to the modelled payment layer.

- Network: one queue of messages in flight per direction. A message is delivered in order or out
  of order, dropped, or duplicated (delivered now and again later); `next_update` is called
  (flush) when Hypothesis says so, so queued work batches; a "calm spell" delivers everything.
- Payment layer: a payment is one lock of 1..3,000 with a fresh secret that the payee knows (a
  spontaneous payment) and an expiry 15..100 blocks ahead of the payer's height. When the lock
  arrives the payee claims it (`claim_incoming`, revealing the secret), fails it
  (`fail_incoming`), or decides later, as Hypothesis chooses; an honest payee claims only while
  more than reveal_timeout blocks remain, else it fails the lock.
- Layer 1: a real `ChainState` with the contract. The channel is opened and funded in block 1.
  A block is mined from the mempool (a rejected transaction is dropped, like a failed call);
  each end sees blocks on its own, at most `MAX_LAG` blocks behind the tip, feeding the block's
  contract events and then `on_block` to its core (secrets registered, closes, settles, unlocks).
  Closes come from the core's own duties and, now and then, from a user's `close --force`.
- Network: messages to an end arrive in order (TCP); a drop breaks the connection (everything on
  its way is lost) and both ends start a new session (`session_started`: a `channel_sync` each,
  no new update until the other's arrives); a duplicate is a retransmission arriving again later.
- Layer-1 restart: the mempool is lost; the ends' duties (close, update, settle, unlock,
  register a secret) must be asked for again until the chain shows them.
- Crash: an end loses what was only in memory — its queued, not yet signed locks — and the
  connection breaks as above.
- Reminders: `reminders()` and `resend_in_flight()` are sent again on demand.

A is honest; B is honest or runs one of the node's attack modes (`--misbehave`, the same
`Attacks` filters the shell applies): it ignores A's `lock_expired`, refuses it finally, or
withholds every counter-signature. Both are never down for long (MAX_LAG < reveal_timeout),
DESIGN's premises for "no honest node loses funds".

Invariants after every step (DESIGN.md invariants 3-5, off-chain):

- conservation: each end's balances plus both directions' locks add up to the deposits, no
  balance is negative, and the receiver's accepted state of a direction is its sender's
  acknowledged state or its one update in flight, identical in content;
- nonces rise strictly and transferred amounts never fall, per direction, on each end, over every
  transition, and over the sequence of proofs a sender signs;
- no proof nonce is ever signed twice with different content;
- no honest end loses funds: every few steps (and at the end) a copy of layer 1 is closed with
  one end's proofs, updated with the other's, settled and unlocked (claimed secrets registered
  in time); each end's payout must be its deposit, minus the payments it made, plus those it
  received, where a payment is made exactly when its payee claimed it (a channel that really
  closed on layer 1 is checked the same way once it settled);
- every payment ends (teardown): after delivering everything and running blocks past every
  expiry with reminders until quiet, no lock is pending and every signed payment got exactly one
  of OutgoingSettled / OutgoingRemoved — settled exactly when claimed — at the payer, and the
  matching IncomingUnlocked / IncomingRemoved at the payee; and (invariant 4) each payment was
  final for its payer (its secret learned, or its lock settled or removed) by its expiry plus
  the settle window.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from hypothesis import Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from p2pchan.core.channel import chain as channel_chain
from p2pchan.core.channel import receive as channel_receive
from p2pchan.core.channel import send as channel_send
from p2pchan.core.channel import sync as channel_sync
from p2pchan.core.channel.events import (
    ChannelOutput,
    Fault,
    IncomingLocks,
    IncomingRemoved,
    IncomingUnlocked,
    OutgoingRemoved,
    OutgoingSettled,
    SecretLearned,
    Send,
)
from p2pchan.core.channel.state import Channel, ChannelConfig, ChannelStatus, UpdateKind
from p2pchan.core.outputs import (
    ContractSendClose,
    ContractSendRegisterSecret,
    ContractSendSettle,
    ContractSendUnlock,
    ContractSendUpdate,
)
from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.errors import ChainError
from p2pchan.l1 import chain
from p2pchan.l1.contract import channel_id_for
from p2pchan.l1.events import (
    ChannelClosed,
    ChannelSettled,
    ChannelUnlocked,
    ChannelUpdated,
    Event,
    SecretRegistered,
)
from p2pchan.l1.genesis import Allocation, GenesisSpec
from p2pchan.l1.state import ChainState, ChannelState
from p2pchan.l1.transactions import (
    Call,
    ChannelClose,
    ChannelDeposit,
    ChannelOpen,
    ChannelSettle,
    ChannelUnlock,
    ChannelUpdate,
    RegisterSecret,
    decode_transaction,
    sign_transaction,
)
from p2pchan.net.misbehave import Attacks, Misbehave
from p2pchan.storage.channel_codec import decode_channel, encode_channel
from p2pchan.types import Address, Secret, SecretHash
from p2pchan.wire.channel_messages import (
    BalanceUpdate,
    ChannelMessage,
    ChannelSync,
    LockFailed,
    Processed,
    Refused,
    RevealSecret,
)
from p2pchan.wire.locks import EMPTY_LOCKSROOT, HeldLock, Lock, encode_locks

A, B = "A", "B"
DEPOSITS = {A: 10_000, B: 5_000}
L1_FUNDS = 100_000
SETTLE_TIMEOUT = 100
REVEAL_TIMEOUT = 10
MAX_PENDING_LOCKS = 8
MAX_LAG = 3  # an end sees blocks at most this far behind the tip
SETTLE_CHECK_EVERY = 10  # steps between two "settle on layer 1 now" checks
TEARDOWN_ROUNDS = 400  # blocks the teardown may run to let every payment end

ends = st.sampled_from([A, B])
picks = st.integers(min_value=0, max_value=1_000)
amounts = st.integers(min_value=1, max_value=3_000)
lock_timeouts = st.sampled_from([15, 30, 50, 100])
plans = st.sampled_from(["claim", "fail", "later"])
# B's behaviour: honest, or an attack mode of `node start --dev --misbehave`.
partners = st.sampled_from(
    ["honest", "honest", "ignore-lock-expired", "refuse-lock-expired", "withhold-ack"]
)


def other(name: str) -> str:
    return B if name == A else A


@dataclass
class End:
    name: str
    identity: Identity
    channel: Channel
    height: int  # the highest block whose events this end has processed


@dataclass
class Payment:
    payer: str
    secret: Secret
    amount: int
    expiration: int
    plan: str  # what the payee does when the lock arrives: "claim", "fail", or decide "later"
    signed: bool = False  # its lock is in a proof the payer signed
    accepted: bool = False  # the payee accepted its lock (IncomingLocks)
    lost: bool = False  # still queued (in memory only) when the payer crashed
    claimed: bool = False  # the payee revealed the secret
    failed: bool = False  # the payee sent lock_failed
    outgoing: list[str] = field(default_factory=list)  # notifications at the payer
    incoming: list[str] = field(default_factory=list)  # notifications at the payee
    final_at: int | None = None  # the payer's height when the payment became final for it

    @property
    def payee(self) -> str:
        return other(self.payer)


class ChannelMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ends: dict[str, End] = {}
        self.wire: dict[str, list[ChannelMessage]] = {A: [], B: []}  # by receiver
        self.payments: dict[SecretHash, Payment] = {}
        self.mempool: list[tuple[str, Call]] = []
        self.blocks: dict[int, list[Event]] = {}
        self.height = 0  # the chain's tip
        self.secret_counter = 0
        self.steps = 0
        # Invariant bookkeeping: transitions not yet checked, and every proof each end signed.
        self.transitions: list[tuple[str, Channel, Channel]] = []
        self.signed_now: list[tuple[str, int, bytes, int]] = []
        self.signed_by: dict[str, dict[int, bytes]] = {A: {}, B: {}}
        self.signed_order: dict[str, list[tuple[int, int]]] = {A: [], B: []}

    # -- set-up ----------------------------------------------------------------------------

    @initialize(window=st.sampled_from([1, 3]), partner=partners)
    def open_channel(self, window: int, partner: str) -> None:
        """Both ends with the same window of updates in flight: 1, or 3 (pipelining); B honest
        or running one of the node's attack modes."""
        self.attacks_b = Attacks(frozenset() if partner == "honest" else {Misbehave(partner)})
        event(f"B is {partner}")
        identities = {A: Identity(bytes([0xA1]) * 32), B: Identity(bytes([0xB2]) * 32)}
        allocations = tuple(Allocation(who.node_id, L1_FUNDS) for who in identities.values())
        genesis = GenesisSpec(allocations, min_fee=0).create(
            nonce=bytes(32), timestamp_ms=0, dev=True
        )
        self.chain = ChainState.from_genesis(genesis)
        self.chain_id = genesis.chain_id
        self.identities = identities
        self.channel_id = channel_id_for(self.chain_id, identities[A].node_id, 0)
        self.height = 1
        self._apply(self.chain, A, ChannelOpen(identities[B].node_id, SETTLE_TIMEOUT), 1)
        for name in (A, B):
            deposit = ChannelDeposit(self.channel_id, identities[name].node_id, DEPOSITS[name])
            self._apply(self.chain, name, deposit, 1)
        self.blocks[1] = []
        self.base = {name: self.chain.balance(identities[name].node_id) for name in (A, B)}
        config = ChannelConfig(
            reveal_timeout=REVEAL_TIMEOUT,
            max_lock_timeout=SETTLE_TIMEOUT,
            max_pending_locks=MAX_PENDING_LOCKS,
            max_in_flight=window,
        )
        for name in (A, B):
            channel = Channel(
                self.chain_id,
                self.channel_id,
                identities[name].node_id,
                identities[other(name)].node_id,
                name == A,
                SETTLE_TIMEOUT,
                config,
                ChannelStatus.OPEN,
                DEPOSITS[name],
                DEPOSITS[other(name)],
                opened_block=1,
            )
            self.ends[name] = End(name, identities[name], channel, 1)

    # -- the shell: persist, then carry out outputs ----------------------------------------

    def _commit(self, end: End, channel: Channel) -> None:
        """Persist a transition's new state (the end's state is replaced before outputs)."""
        self.transitions.append((end.name, end.channel, channel))
        for flight in channel.ours.in_flight:
            self.signed_now.append(
                (end.name, flight.state.nonce, flight.signed.data, flight.state.transferred)
            )
            if flight.kind == UpdateKind.LOCKED_TRANSFER:
                for held in flight.new_locks:
                    self.payments[held.secrethash].signed = True
        end.channel = channel

    def _carry_out(self, end: End, outputs: Iterable[ChannelOutput]) -> None:
        if end.name == B:
            outputs = self._as_b_sends_them(outputs)
        for output in outputs:
            self._carry_out_one(end, output)

    def _as_b_sends_them(self, outputs: Iterable[ChannelOutput]) -> list[ChannelOutput]:
        """B's attack filters what it sends, as the node's driver does."""
        carried: list[ChannelOutput] = []
        for output in outputs:
            if isinstance(output, Send):
                carried += [Send(message) for message in self.attacks_b.outgoing(output.message)]
            else:
                carried.append(output)
        return carried

    def _carry_out_one(self, end: End, output: ChannelOutput) -> None:
        cid = self.channel_id
        if isinstance(output, Send):
            if isinstance(output.message, Refused):
                event(f"refused: {output.message.code}")
            self._send(end, output.message)
        elif isinstance(output, Fault):
            event(f"fault: {output.reason.split(':')[1].strip()}")
        elif isinstance(output, IncomingLocks):
            for held in output.locks:
                payment = self._payment(held.secrethash, payee=end.name)
                assert not payment.accepted, "the same lock arrived twice"
                payment.accepted = True
                if payment.plan != "later":  # else the payment layer decides later (`decide`)
                    self._decide(end, held, claim=payment.plan == "claim")
        elif isinstance(output, SecretLearned):
            self._finished(self._payment(output.secrethash, payer=end.name), end)
            # The payer's payment machine unlocks it (the channel only reports the secret).
            unlocking = channel_send.queue_unlocks(end.channel, {output.secrethash: output.secret})
            self._commit(end, unlocking)
        elif isinstance(output, IncomingUnlocked):
            for held in output.locks:
                self._payment(held.secrethash, payee=end.name).incoming.append("unlocked")
        elif isinstance(output, IncomingRemoved):
            for secrethash in output.secrethashes:
                self._payment(secrethash, payee=end.name).incoming.append("removed")
        elif isinstance(output, OutgoingSettled):
            for secrethash in output.secrethashes:
                self._payment(secrethash, payer=end.name).outgoing.append("settled")
                self._finished(self._payment(secrethash), end)
        elif isinstance(output, OutgoingRemoved):
            for secrethash in output.secrethashes:
                self._payment(secrethash, payer=end.name).outgoing.append("removed")
                self._finished(self._payment(secrethash), end)
        elif isinstance(output, ContractSendRegisterSecret):
            self._submit(end.name, RegisterSecret(output.secret))
        elif isinstance(output, ContractSendClose):
            self._submit(end.name, ChannelClose(cid, output.proofs))
        elif isinstance(output, ContractSendUpdate):
            self._submit(end.name, ChannelUpdate(cid, output.proofs))
        elif isinstance(output, ContractSendSettle):
            self._submit(end.name, ChannelSettle(cid))
        elif isinstance(output, ContractSendUnlock):
            self._submit(end.name, ChannelUnlock(cid, output.sender, output.locks))
        else:
            raise AssertionError(f"unexpected output {output!r}")

    @staticmethod
    def _finished(payment: Payment, payer: End) -> None:
        """The payment is final for its payer (succeeded: the secret; or failed)."""
        if payment.final_at is None:
            payment.final_at = payer.height

    def _payment(
        self, secrethash: SecretHash, *, payer: str | None = None, payee: str | None = None
    ) -> Payment:
        payment = self.payments[secrethash]
        assert payer is None or payment.payer == payer, "a notification at the wrong end"
        assert payee is None or payment.payee == payee, "a notification at the wrong end"
        return payment

    def _send(self, end: End, message: ChannelMessage) -> None:
        if isinstance(message, BalanceUpdate):
            proof = message.proof.proof()
            self.signed_now.append(
                (end.name, proof.nonce, message.proof.data, proof.transferred_amount)
            )
        self.wire[other(end.name)].append(message)

    def _submit(self, name: str, call: Call) -> None:
        if (name, call) not in self.mempool:
            self.mempool.append((name, call))

    # -- message handlers ------------------------------------------------------------------

    def _registered(self, end: End) -> dict[SecretHash, int]:
        return {h: block for h, block in self.chain.secrets.items() if block <= end.height}

    def _deliver(self, receiver: str, message: ChannelMessage) -> None:
        if receiver == B:
            kept, replies = self.attacks_b.incoming([message])
            self.wire[A] += replies
            if not kept:
                return
        end = self.ends[receiver]
        channel = end.channel
        outputs: list[ChannelOutput] = []
        if isinstance(message, BalanceUpdate):
            channel, outputs = channel_receive.on_update(
                channel, message, end.identity, end.height, self._registered(end)
            )
        elif isinstance(message, Processed):
            channel, outputs = channel_send.on_processed(channel, message)
        elif isinstance(message, Refused):
            channel, outputs = channel_send.on_refused(channel, message, end.height)
        elif isinstance(message, LockFailed):
            channel, outputs = channel_send.on_lock_failed(channel, message)
        elif isinstance(message, RevealSecret):
            channel, outputs = channel_send.on_reveal_secret(channel, message)
        elif isinstance(message, ChannelSync):
            channel, outputs = channel_sync.on_sync(channel, message)
        else:
            raise AssertionError(f"unexpected message {message!r}")
        self._commit(end, channel)
        self._carry_out(end, outputs)

    def _flush(self, end: End) -> bool:
        channel, message = channel_send.next_update(end.channel, end.identity)
        self._commit(end, channel)
        if message is None:
            return False
        self._send(end, message)
        return True

    def _remind(self, end: End) -> None:
        outputs = channel_receive.reminders(end.channel)
        outputs += [Send(m) for m in channel_send.resend_in_flight(end.channel, end.height)]
        self._carry_out(end, outputs)

    # -- layer 1 ---------------------------------------------------------------------------

    def _apply(self, state: ChainState, name: str, call: Call, height: int) -> list[Event]:
        who = self.identities[name]
        account = state.accounts.get(who.node_id)
        nonce = account.nonce if account else 0
        tx = decode_transaction(sign_transaction(who, self.chain_id, nonce, call))
        return chain.apply(state, tx, height)

    def _mine(self) -> None:
        self.height += 1
        events: list[Event] = []
        for name, call in self.mempool:
            # A call no longer allowed (a second settle, a stale update) just fails.
            with contextlib.suppress(ChainError):
                events += self._apply(self.chain, name, call, self.height)
        self.mempool.clear()
        self.blocks[self.height] = events
        for each in events:
            event(f"layer 1: {type(each).__name__}")

    def _see_block(self, end: End) -> None:
        end.height += 1
        for happened in self.blocks[end.height]:
            self._see_event(end, happened)
        channel, outputs = channel_chain.on_block(end.channel, end.height, self._registered(end))
        self._commit(end, channel)
        self._carry_out(end, outputs)

    def _chain_nonces(self, end: End) -> tuple[int, int]:
        record = self.chain.channels[self.channel_id]
        ours, theirs = record.proof_a.nonce, record.proof_b.nonce
        return (ours, theirs) if end.name == A else (theirs, ours)

    def _see_event(self, end: End, happened: Event) -> None:
        channel = end.channel
        outputs: list[ChannelOutput] = []
        if isinstance(happened, SecretRegistered):
            channel, outputs = channel_chain.on_secret_registered(
                channel, happened.secrethash, happened.secret, happened.block
            )
        elif isinstance(happened, ChannelClosed):
            nonce_a, nonce_b = happened.nonce_a, happened.nonce_b
            ours, theirs = (nonce_a, nonce_b) if end.name == A else (nonce_b, nonce_a)
            channel, outputs = channel_chain.on_closed(
                channel, happened.closer, happened.close_block, ours, theirs
            )
        elif isinstance(happened, ChannelUpdated):
            nonce_a, nonce_b = happened.nonce_a, happened.nonce_b
            ours, theirs = (nonce_a, nonce_b) if end.name == A else (nonce_b, nonce_a)
            channel, outputs = channel_chain.on_updated(channel, ours, theirs)
        elif isinstance(happened, ChannelSettled):
            channel, outputs = channel_chain.on_settled(channel, *self._chain_nonces(end))
        elif isinstance(happened, ChannelUnlocked):
            channel, outputs = channel_chain.on_unlocked(
                channel, happened.sender, self._registered(end)
            )
        else:
            return  # nothing else happens to this channel
        self._commit(end, channel)
        self._carry_out(end, outputs)

    def _catch_up_and_mine(self) -> None:
        for end in self.ends.values():
            while end.height < self.height:
                self._see_block(end)
        self._mine()
        for end in self.ends.values():
            self._see_block(end)

    def _slowest(self) -> int:
        return min(end.height for end in self.ends.values())

    # -- rules -----------------------------------------------------------------------------

    @rule(
        payer=ends,
        payments=st.lists(st.tuples(amounts, plans), min_size=1, max_size=4),
        timeout=lock_timeouts,
    )
    def pay(self, payer: str, payments: list[tuple[int, str]], timeout: int) -> None:
        """Start payments: each is one lock with a fresh secret (the payee will know it)."""
        end = self.ends[payer]
        for amount, plan in payments:
            self.secret_counter += 1
            secret = Secret(sha256(b"machine secret", self.secret_counter.to_bytes(8, "big")))
            held = HeldLock(Lock(amount, end.height + timeout, SecretHash(sha256(secret))))
            try:
                channel = channel_send.queue_locks(end.channel, [held])
            except channel_send.PaymentRefused:
                continue
            expiration = held.lock.expiration_block
            self.payments[held.secrethash] = Payment(payer, secret, amount, expiration, plan)
            self._commit(end, channel)

    @rule(name=ends)
    def flush(self, name: str) -> None:
        self._flush(self.ends[name])

    @precondition(lambda self: self.wire[A] or self.wire[B])
    @rule(receiver=ends)
    def deliver(self, receiver: str) -> None:
        """The next message to one end, in order (TCP neither reorders nor drops within a
        connection)."""
        queue = self.wire[receiver] or self.wire[other(receiver)]
        receiver = receiver if self.wire[receiver] else other(receiver)
        self._deliver(receiver, queue.pop(0))

    @rule()
    def converse(self) -> None:
        """A calm spell: every message is delivered in order and every end sends what it has."""
        self._deliver_everything()

    @precondition(lambda self: self.wire[A] or self.wire[B])
    @rule()
    def drop(self) -> None:
        """The connection breaks: what was on its way is lost, and both ends re-sync."""
        self._reconnect()

    @precondition(lambda self: self.wire[A] or self.wire[B])
    @rule(receiver=ends)
    def duplicate(self, receiver: str) -> None:
        """Deliver the next message and send it again later (a retransmission)."""
        queue = self.wire[receiver] or self.wire[other(receiver)]
        receiver = receiver if self.wire[receiver] else other(receiver)
        message = queue.pop(0)
        self._deliver(receiver, message)
        self.wire[receiver].append(message)

    @precondition(lambda self: any(self._undecided(end) for end in self.ends.values()))
    @rule(name=ends, pick=picks, claim=st.booleans())
    def decide(self, name: str, pick: int, claim: bool) -> None:
        """The payment layer claims or fails an incoming lock it has not decided on yet."""
        end = self.ends[name] if self._undecided(self.ends[name]) else self.ends[other(name)]
        undecided = self._undecided(end)
        self._decide(end, undecided[pick % len(undecided)], claim=claim)

    def _decide(self, end: End, held: HeldLock, *, claim: bool) -> None:
        payment = self.payments[held.secrethash]
        if claim and held.lock.expiration_block - end.height > REVEAL_TIMEOUT:
            channel, outputs = channel_receive.claim_incoming(
                end.channel, {held.secrethash: payment.secret}
            )
            payment.claimed = True
        else:
            channel, outputs = channel_receive.fail_incoming(
                end.channel, [held.secrethash], "no such invoice"
            )
            payment.failed = True
        self._commit(end, channel)
        self._carry_out(end, outputs)

    def _undecided(self, end: End) -> list[HeldLock]:
        theirs = end.channel.theirs
        return [
            held
            for held in theirs.accepted.locks
            if held.secrethash not in theirs.known_secrets
            and held.secrethash not in theirs.failed_sent
        ]

    @rule(name=ends)
    def remind(self, name: str) -> None:
        """Reveal secrets and lock failures again; retransmit the update in flight."""
        self._remind(self.ends[name])

    @rule(name=ends)
    def crash(self, name: str) -> None:
        """The end restarts: its in-memory queue and the connection are lost; both re-sync."""
        end = self.ends[name]
        for held in end.channel.ours.queued_locks:
            self.payments[held.secrethash].lost = True
        kept = replace(end.channel, ours=replace(end.channel.ours, queued_locks=()))
        restored = decode_channel(encode_channel(kept))  # what the store gives back
        assert restored == kept
        self._commit(end, restored)
        self._reconnect()

    def _reconnect(self) -> None:
        """A new connection: nothing of the old one arrives; each end starts a session."""
        self.wire = {A: [], B: []}
        for each in self.ends.values():
            channel, outputs = channel_sync.session_started(each.channel)
            self._commit(each, channel)
            self._carry_out(each, outputs)

    @rule(name=ends, dice=st.integers(min_value=0, max_value=19))
    def force_close(self, name: str, dice: int) -> None:
        """Now and then an end closes on its own (`close --force`), as the shell does it."""
        end = self.ends[name]
        if dice or end.channel.status != ChannelStatus.OPEN:
            return
        proofs = channel_chain.close_proofs(end.channel)
        closing = replace(end.channel.moved_to(ChannelStatus.CLOSING), close_requested=True)
        self._commit(end, closing)
        self._carry_out(end, [ContractSendClose(self.channel_id, proofs, "force close requested")])

    @precondition(lambda self: bool(self.mempool))
    @rule()
    def layer1_restarts(self) -> None:
        """Layer 1 restarts and loses its mempool (it keeps only what is in blocks): each
        end's duties must be asked for again until the chain shows them."""
        event(f"lost: {sorted({type(call).__name__ for _, call in self.mempool})}")
        self.mempool.clear()

    @precondition(lambda self: self._slowest() + MAX_LAG > self.height)
    @rule()
    def mine(self) -> None:
        """A block is mined; the ends see it later (`see_block`), at most MAX_LAG behind."""
        self._mine()

    @precondition(lambda self: any(end.height < self.height for end in self.ends.values()))
    @rule(name=ends)
    def see_block(self, name: str) -> None:
        end = self.ends[name] if self.ends[name].height < self.height else self.ends[other(name)]
        self._see_block(end)

    @rule(blocks=st.integers(min_value=1, max_value=20))
    def advance(self, blocks: int) -> None:
        """Several blocks pass; both ends see each of them."""
        for _ in range(blocks):
            self._catch_up_and_mine()

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def conservation_and_agreement(self) -> None:
        if not self.ends:
            return
        capacity = sum(DEPOSITS.values())
        for end in self.ends.values():
            channel = end.channel
            locked = channel.ours.latest.locked + channel.theirs.accepted.locked
            local, remote = channel.local_balance(), channel.remote_balance()
            assert local + remote + locked == capacity, (end.name, local, remote, locked)
            assert local >= 0, (end.name, "local balance", local)
            assert remote >= 0, (end.name, "remote balance", remote)
            assert channel.available_to_send() >= 0, (end.name, channel.available_to_send())
        for sender in (A, B):
            ours = self.ends[sender].channel.ours
            theirs = self.ends[other(sender)].channel.theirs
            candidates = [(ours.acked, ours.acked_proof)]
            candidates += [(flight.state, flight.signed) for flight in ours.in_flight]
            # An update the receiver accepted but the sender saw refused (a partner that
            # withholds its acks refuses the retransmission of an older one as stale).
            candidates += [(state, None) for state in ours.refused]
            match = [
                (state, signed)
                for state, signed in candidates
                if state.nonce == theirs.accepted.nonce
            ]
            assert match, (
                f"{other(sender)} accepted nonce {theirs.accepted.nonce} of {sender}, who has "
                f"acked {ours.acked.nonce} and in flight "
                f"{[flight.state.nonce for flight in ours.in_flight]}"
            )
            state, signed = match[0]
            assert state == theirs.accepted, (sender, "the two ends disagree on", state.nonce)
            if theirs.accepted_proof is not None and signed is not None:
                assert signed.data == theirs.accepted_proof.data

    @invariant()
    def nonces_rise_and_transfers_never_fall(self) -> None:
        for name, before, after in self.transitions:
            for what, old, new in (
                ("acked", before.ours.acked, after.ours.acked),
                ("accepted", before.theirs.accepted, after.theirs.accepted),
            ):
                assert new.nonce >= old.nonce, (name, what, "nonce fell", old.nonce, new.nonce)
                if new.nonce > old.nonce:
                    assert new.transferred >= old.transferred, (name, what, "transfer fell")
                else:
                    assert new == old, (name, what, "changed under the same nonce")
            assert after.ours.signed_nonce >= before.ours.signed_nonce, (name, "signed nonce")
        self.transitions.clear()

    @invariant()
    def no_nonce_signed_twice(self) -> None:
        for sender, nonce, data, transferred in self.signed_now:
            known = self.signed_by[sender].get(nonce)
            if known is not None:
                assert known == data, f"{sender} signed nonce {nonce} twice with other content"
                continue
            self.signed_by[sender][nonce] = data
            order = self.signed_order[sender]
            if order:
                last_nonce, last_transferred = order[-1]
                assert nonce > last_nonce, (sender, "signed", nonce, "after", last_nonce)
                assert transferred >= last_transferred, (sender, "signed a lower transfer")
            order.append((nonce, transferred))
        self.signed_now.clear()

    @invariant()
    def no_honest_end_loses_funds(self) -> None:
        self.steps += 1
        if not self.ends or self.steps % SETTLE_CHECK_EVERY:
            return
        closer = A if self.steps % (2 * SETTLE_CHECK_EVERY) else B
        self._check_settlement(copy.deepcopy(self.chain), self.height, closer)

    # -- settling on layer 1 ---------------------------------------------------------------

    def _expected_payouts(self) -> dict[str, int]:
        """Each end's deposit, minus the payments it made, plus those it received."""
        payouts = dict(DEPOSITS)
        for payment in self.payments.values():
            if payment.claimed:
                payouts[payment.payer] -= payment.amount
                payouts[payment.payee] += payment.amount
        return payouts

    def _check_settlement(self, state: ChainState, height: int, closer: str = A) -> None:
        """Close (the closer's proofs), update (the other's, then the closer's), settle and
        unlock `state`, a copy of layer 1, with claimed secrets registered while still in time;
        compare the payouts with what the ends paid each other."""
        record = state.channels[self.channel_id]
        height += 1
        if record.state == ChannelState.OPEN:
            proofs = channel_chain.close_proofs(self.ends[closer].channel)
            self._apply(state, closer, ChannelClose(self.channel_id, proofs), height)
        if record.state == ChannelState.CLOSED and height <= record.window_end:
            for name in (other(closer), closer):
                proofs = channel_chain.close_proofs(self.ends[name].channel)
                if proofs:
                    try:
                        self._apply(state, name, ChannelUpdate(self.channel_id, proofs), height)
                    except ChainError as error:
                        assert error.code == "no_proof_applies", error
        for payment in self.payments.values():
            if (
                payment.claimed
                and sha256(payment.secret) not in state.secrets
                and height <= payment.expiration
            ):
                self._apply(state, payment.payee, RegisterSecret(payment.secret), height)
        if record.state == ChannelState.CLOSED:
            height = max(height, record.window_end + 1)
            self._apply(state, A, ChannelSettle(self.channel_id), height)
        for sender in (A, B):
            self._unlock(state, sender, height)
        self._check_payouts(state)

    def _check_payouts(self, state: ChainState) -> None:
        payouts = {name: state.balance(self._address(name)) - self.base[name] for name in (A, B)}
        assert payouts == self._expected_payouts(), (payouts, self._expected_payouts())

    def _unlock(self, state: ChainState, sender: str, height: int) -> None:
        record = state.channels[self.channel_id]
        unlocked = record.unlocked_a if sender == A else record.unlocked_b
        stored = record.proof_a if sender == A else record.proof_b
        if unlocked or stored.locksroot == EMPTY_LOCKSROOT:
            return
        ours = self.ends[sender].channel.ours
        candidates = [ours.acked, self.ends[other(sender)].channel.theirs.accepted]
        candidates += [flight.state for flight in ours.in_flight]
        known = [s for s in candidates if s.nonce == stored.nonce]
        assert known, f"nobody knows the locks of {sender}'s settled proof {stored.nonce}"
        locks = encode_locks(held.lock for held in known[0].locks)
        after = max(height, *(held.lock.expiration_block + 1 for held in known[0].locks))
        unlock = ChannelUnlock(self.channel_id, self._address(sender), locks)
        self._apply(state, sender, unlock, after)

    def _address(self, name: str) -> Address:
        return self.identities[name].node_id

    # -- the end ---------------------------------------------------------------------------

    def teardown(self) -> None:
        if not self.ends or sys.exc_info()[0] is not None:
            return  # a step failed: report that, not what follows from it
        self._run_until_quiet()
        claimed = sum(payment.claimed for payment in self.payments.values())
        event(f"payments claimed: {min(claimed, 10)}{'+' if claimed >= 10 else ''}")
        event(f"channel at the end: {self.chain.channels[self.channel_id].state}")
        for name, end in self.ends.items():
            channel = end.channel
            assert not channel.ours.queued_locks, (name, "payments still queued")
            if channel.status == ChannelStatus.SETTLED:
                assert not channel.settled_unlocks, (name, "locks never unlocked on chain")
                continue
            assert not channel.ours.in_flight, (name, "an update still in flight")
            assert not channel.ours.all_locks(), (name, "own locks still pending")
            assert not channel.theirs.accepted.locks, (name, "partner's locks still pending")
        for secrethash, payment in self.payments.items():
            where = f"payment {secrethash.hex()[:8]} {payment}"
            if payment.lost:
                assert not payment.outgoing and not payment.incoming, where
                continue
            expected = ["settled"] if payment.claimed else ["removed"]
            assert payment.outgoing == expected, where
            # Invariant 4: final for its payer by its expiry plus the settle window, whatever
            # the partner does (ignores or refuses lock_expired, withholds acks).
            assert payment.final_at is not None, where
            assert payment.final_at <= payment.expiration + SETTLE_TIMEOUT, where
            if payment.accepted:
                expected = ["unlocked"] if payment.claimed else ["removed"]
                assert payment.incoming == expected, where
            else:
                assert not payment.incoming, where
        if self.chain.channels[self.channel_id].state == ChannelState.SETTLED:
            self._check_payouts(self.chain)
        else:
            self._check_settlement(copy.deepcopy(self.chain), self.height)

    def _run_until_quiet(self) -> None:
        """Deliver everything, flush, remind; let blocks pass until nothing is pending."""
        for _ in range(TEARDOWN_ROUNDS):
            self._deliver_everything()
            if self._quiet():
                return
            for end in self.ends.values():
                self._remind(end)
            self._deliver_everything()
            self._catch_up_and_mine()
        raise AssertionError("the channel never became quiet")

    def _deliver_everything(self) -> None:
        for _ in range(10_000):
            progressed = False
            for name in (A, B):
                if self.wire[name]:
                    self._deliver(name, self.wire[name].pop(0))
                    progressed = True
            for end in self.ends.values():
                progressed |= self._flush(end)
            if not progressed:
                return
        raise AssertionError("messages never stop")

    def _quiet(self) -> bool:
        if self.mempool:
            return False
        for end in self.ends.values():
            channel = end.channel
            if channel.status == ChannelStatus.SETTLED:
                if channel.settled_unlocks:
                    return False
                continue
            if channel.status in (ChannelStatus.CLOSING, ChannelStatus.CLOSED):
                return False  # wait for the settlement
            if channel.ours.in_flight or channel.ours.has_work() or channel.ours.all_locks():
                return False
            if channel.theirs.accepted.locks:
                return False
        return True


ChannelMachine.TestCase.settings = settings(
    max_examples=int(__import__("os").environ.get("MACHINE_EXAMPLES", "300")),
    stateful_step_count=80,
    deadline=None,
    # The explain phase traces every line on Python 3.11 and takes minutes on this machine.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
test_channel_machine = ChannelMachine.TestCase
