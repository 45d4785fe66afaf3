"""The shell's step: feed inputs to the node's transition, persist, then carry out.

`step(inputs)` takes the node's lock, runs each input through `core.node.transition`, writes
every `Persist*` output of the step in one transaction (persist before you promise), and only
then sends messages, hands layer-1 duties to `ChainActions`, and wakes whoever waits for a
payment, an invoice or a cooperative-settle answer. It chooses no handler and holds no protocol
policy: those are the core's.

Payments arriving together share a step (`submit_payment`): one task drains them in batches,
each ended by a `Tick` that admits them together, so a burst of `send`s costs one signature and
one disk sync, their locks sharing one update. A mediator's decisions about other channels
(`SendHop`) are fed back the same way: gathered per channel, in steps of their own once the
step that made them is durable, so forwards arriving in many updates leave in few.

A step's messages to a peer go out on the session whose start (`ReceivePeerConnected`) the core
had been told of when the step ran, or nowhere: never on a session registered since. The core
decides what to send relative to the sessions it knows (after a start, nothing new before the
partner's `channel_sync`, then the updates in flight resent in order); an update signed while
no session was started, sent on the next one ahead of that re-sync, overtook the resent update
it was built on, and the partner refused it for good (the hub10 soak's `wrong_locked`
force-closes after a restart). What a dropped message carried is sent again by the re-sync.

`run` ticks every `TICK_SECONDS` of trio's clock; each `Tick` carries the time `clock` reads
(the wall clock in milliseconds in a node; a test may tie it to trio's virtual clock, so the
core's timeouts play out in virtual time).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import structlog
import trio

from p2pchan.core.gossip.outputs import PersistGossip, SendGossip
from p2pchan.core.inputs import (
    ActionPay,
    ActionSend,
    Input,
    ReceiveHop,
    ReceivePeerConnected,
    ReceivePeerDisconnected,
    Tick,
)
from p2pchan.core.node import transition
from p2pchan.core.outputs import (
    ContractSend,
    ContractSendClose,
    ContractSendCooperativeSettle,
    ContractSendRegisterSecret,
    ContractSendSettle,
    ContractSendUnlock,
    ContractSendUpdate,
    NotifyFault,
    NotifyPaymentAdmitted,
    NotifyPaymentFinal,
    NotifyRefused,
    NotifySettleResponse,
    Output,
    PersistChainView,
    PersistChannel,
    PersistForward,
    PersistForwardDone,
    PersistInvoice,
    PersistOnion,
    PersistOnionsExpired,
    PersistPayment,
    PersistPaymentOutcome,
    PersistProcessedBlock,
    PersistSecret,
    SendHop,
    SendMessage,
)
from p2pchan.core.payment.records import PaymentOutcome, PaymentRecord, made_final
from p2pchan.core.state import NodeState
from p2pchan.errors import LocalProtocolError
from p2pchan.net.chain_actions import ChainActions
from p2pchan.net.history import PaymentHistory
from p2pchan.net.misbehave import HONEST, Attacks
from p2pchan.net.peer import PeerSession
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.node_store import ChannelTables, StoreBatch
from p2pchan.types import Address, ChannelId, NodeId, SecretHash

log = structlog.get_logger(__name__)

# How often payments waiting for a lock slot are checked for their timeout, and gossip accepted
# since goes out (each hop of a flood waits up to this long).
TICK_SECONDS = 0.1
# New payments started in one step, at most: a step holds up every other (a few ms per 200).
PAYMENTS_PER_STEP = 1000
_CONTRACT_SENDS = frozenset(
    {
        ContractSendRegisterSecret,
        ContractSendClose,
        ContractSendUpdate,
        ContractSendSettle,
        ContractSendUnlock,
        ContractSendCooperativeSettle,
    }
)
_PERSISTED = frozenset(
    {
        PersistChannel,
        PersistPayment,
        PersistPaymentOutcome,
        PersistInvoice,
        PersistSecret,
        PersistProcessedBlock,
        PersistForward,
        PersistForwardDone,
        PersistOnion,
        PersistOnionsExpired,
        PersistChainView,
        PersistGossip,
    }
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class PaymentWaiter:
    """A caller waiting for one payment: `done` is set once it is refused before anything
    was signed (`refusal`) or once it is final (`outcome`). One event per payment: waking the
    caller at admission too cost a task switch per payment, measured on `bench channel`."""

    payment_hash: SecretHash
    done: trio.Event = field(default_factory=trio.Event)
    refusal: str | None = None
    record: PaymentRecord | None = None  # as it was while pending
    outcome: PaymentOutcome | None = None

    @property
    def final(self) -> PaymentRecord | None:
        if self.record is None or self.outcome is None:
            return None
        return made_final(self.record, self.outcome)


class Driver:
    def __init__(
        self,
        state: NodeState,
        database: NodeDatabase,
        actions: ChainActions,
        sessions: Callable[[Address], PeerSession | None],
        history: PaymentHistory,
        attacks: Attacks = HONEST,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.state = state
        self.database = database
        self.tables = ChannelTables()
        self.history = history
        self.actions = actions
        self.attacks = attacks
        self.clock = clock
        self._session_of = sessions
        # Per peer, the session whose start the core was told of last (see the module's doc).
        self._started: dict[Address, PeerSession] = {}
        self._lock = trio.Lock()
        self._changed = trio.Event()
        self._request_ids = itertools.count(1)
        self._admissions: dict[int, PaymentWaiter] = {}  # by request id, until admitted
        self._finals: dict[SecretHash, PaymentWaiter] = {}  # by payment hash, once admitted
        self._settle_replies: dict[ChannelId, str | None] = {}
        self._queued: list[Input] = []
        self._draining = False
        self._urgent = 0  # steps other than new payments waiting or running
        self._admission_due = False  # waiting payments may find free slots now
        self._urgent_done = trio.Event()
        self._hops: dict[ChannelId, list[Any]] = {}  # decisions waiting to be fed back
        self._hopping = False
        self._nursery: trio.Nursery | None = None
        self._logged = False
        self._handlers: dict[type, Callable[[Any], None]] = {
            NotifyPaymentFinal: self._final,
            NotifyPaymentAdmitted: self._admitted,
            NotifySettleResponse: self._settle_response,
            NotifyRefused: self._refused,
            NotifyFault: self._fault,
            SendHop: self._hop,
            **{duty: self._duty for duty in _CONTRACT_SENDS},
        }

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the payment batches and the clock until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(TICK_SECONDS)
                # Not urgent: the clock holds up no peer's messages (measured: an urgent tick
                # cost `bench channel` about a tenth of its payments per second).
                await self.step([Tick(self.clock())], urgent=False)

    # -- the step ----------------------------------------------------------------------------

    async def step(self, inputs: Sequence[Input], *, urgent: bool = True) -> list[Output]:
        """Transition, persist, carry out. A `UserError` from an input (a refused action) comes
        back to the caller after the step's earlier inputs took effect.

        New payments and the clock's ticks (`urgent=False`) wait while anything else waits for
        a step: a peer's messages and layer-1 blocks move payments already promised, so they go
        first (measured: a batch of 500 new payments ahead of an ack added 10 ms to every
        payment's round trip in `bench channel`)."""
        if urgent:
            self._urgent += 1
        else:
            while self._urgent:
                await self._urgent_done.wait()
        try:
            outputs = await self._step(inputs)
        finally:
            if urgent:
                self._urgent -= 1
                if not self._urgent:
                    self._urgent_done.set()
                    self._urgent_done = trio.Event()
        if urgent and self.state.payments.waiting:
            # Slots may have freed up: admit the waiting payments, in a step of their own.
            self._admission_due = True
            self._start_draining()
        return outputs

    async def _step(self, inputs: Sequence[Input]) -> list[Output]:
        async with self._lock:
            outputs: list[Output] = []
            try:
                for event in inputs:
                    if type(event) is ReceivePeerConnected:
                        self._session_started(event.peer)
                    elif type(event) is ActionPay:
                        # Under the lock: no step can make a payment of it final meanwhile.
                        paid = self.history.paid_before_now(event.invoice.secrethash)
                        event = replace(event, paid_before=paid)
                    _, more = transition(self.state, event)
                    outputs += more
            finally:
                # One pass sorts the outputs, a few per payment, by type (measured on the hot
                # path of `bench channel`: no isinstance chains, no second pass).
                persist: list[Output] = []
                sends: list[tuple[PeerSession | None, SendMessage] | SendGossip] = []
                notes: list[Any] = []
                started = self._started
                for output in outputs:
                    kind = type(output)
                    if kind in _PERSISTED:
                        persist.append(output)
                    elif kind is SendMessage:
                        # The session is chosen now, under the lock (see the module's doc).
                        message = cast(SendMessage, output)
                        sends.append((started.get(message.peer), message))
                    elif kind is SendGossip:
                        sends.append(output)  # type: ignore[arg-type]
                    else:
                        notes.append(output)
                if persist:
                    batch = StoreBatch.of(persist)
                    # The state in memory has moved on: its write happens even if the caller
                    # is cancelled now (a peer's session ending while the disk is busy), or
                    # the node would go on from a state its disk never held (a chaos run found
                    # a payment received and paid out with no record of it).
                    with trio.CancelScope(shield=True):
                        await self.database.run(
                            lambda connection: self.tables.write(connection, batch)
                        )
                    if batch.gossip and log.is_enabled_for(logging.DEBUG):
                        _log_gossip(batch.gossip)
                    self.history.journalled(len(batch.payments) + len(batch.outcomes))
        self._notify(notes)
        await self._send(sends)
        return outputs

    def note(self, event: Input) -> None:
        """Apply an input that only updates the state in memory (a peer gone), at once and
        without awaiting: it is called where the caller may be cancelled."""
        if type(event) is ReceivePeerDisconnected:
            self._started.pop(event.peer, None)
        _, outputs = transition(self.state, event)
        if outputs:
            raise LocalProtocolError(f"{type(event).__name__} is not to be noted: it has outputs")

    def _session_started(self, peer: Address) -> None:
        """The core is told of a session with `peer` in this step: the step's messages to it,
        and later steps', go out on this session (the one registered now)."""
        session = self._session_of(peer)
        if session is None:
            self._started.pop(peer, None)
        else:
            self._started[peer] = session

    async def submit_payment(self, action: ActionSend | ActionPay) -> None:
        """Queue a payment action for the next batch (the caller waits on its `PaymentWaiter`)."""
        assert self._nursery is not None, "Driver.run is not running"
        self._queued.append(action)
        self._start_draining()

    def _start_draining(self) -> None:
        if not self._draining and self._nursery is not None:
            self._draining = True
            self._nursery.start_soon(self._drain)

    async def _drain(self) -> None:
        """New payments, and admissions of waiting ones, in steps that give way to others."""
        try:
            while self._queued or self._admission_due:
                batch = self._queued[:PAYMENTS_PER_STEP]
                del self._queued[:PAYMENTS_PER_STEP]
                self._admission_due = False
                # The tick admits them together: their locks share the channel's next update.
                await self.step([*batch, Tick(self.clock())], urgent=False)
        finally:
            # No checkpoint since the last check: nobody can have queued unseen.
            self._draining = False

    def new_payment(self, payment_hash: SecretHash) -> tuple[int, PaymentWaiter]:
        """A request id for a payment action, and the waiter its notifications reach."""
        request_id = next(self._request_ids)
        waiter = self._admissions[request_id] = PaymentWaiter(payment_hash)
        return request_id, waiter

    # -- after the write ---------------------------------------------------------------------

    def _notify(self, notes: list[Any]) -> None:
        """Wake whoever waits for what the step did (it is durable now); hand layer-1 duties
        to `ChainActions`; log what a user wants to see."""
        self._logged = log.is_enabled_for(logging.INFO)  # once a step, not per payment
        handlers = self._handlers
        for note in notes:
            handler = handlers.get(type(note))
            if handler is not None:
                handler(note)
        self._changed.set()
        self._changed = trio.Event()

    def _final(self, note: NotifyPaymentFinal) -> None:
        waiter = self._finals.pop(note.record.payment_hash, None)
        if waiter is not None:
            waiter.record, waiter.outcome = note.record, note.outcome
            waiter.done.set()
        if self._logged:
            _log_final(note.record, note.outcome)

    def _admitted(self, note: NotifyPaymentAdmitted) -> None:
        waiter = self._admissions.pop(note.request_id, None)
        if waiter is None:
            return  # a restarted payment, or one refused after its admission
        if note.refusal is None:
            self._finals[note.payment_hash] = waiter
        else:
            waiter.refusal = note.refusal
            waiter.done.set()

    def _settle_response(self, note: NotifySettleResponse) -> None:
        self._settle_replies[note.channel_id] = note.refusal

    def _refused(self, note: NotifyRefused) -> None:
        log.info(
            "update_refused",
            channel=note.channel_id.hex(),
            nonce=note.nonce,
            code=note.code,
            reason=note.reason,
            retryable=note.retryable,
        )

    def _duty(self, duty: ContractSend) -> None:
        self.actions.request(duty)

    def _fault(self, note: NotifyFault) -> None:
        session = self._session_of(note.peer)
        if session is not None:
            session.fault(note.points, note.reason, budgeted=note.budgeted)

    def _hop(self, hop: SendHop) -> None:
        """A decision about another channel: fed back once this step is durable (it is now)."""
        self._hops.setdefault(hop.channel_id, []).append(hop.event)
        if not self._hopping and self._nursery is not None:
            self._hopping = True
            self._nursery.start_soon(self._feed_hops)

    async def _feed_hops(self) -> None:
        """Every channel's waiting decisions, one input each, in one step (many forwards
        arriving in separate updates leave in one)."""
        try:
            while self._hops:
                hops, self._hops = self._hops, {}
                now = self.clock()
                await self.step(
                    [ReceiveHop(cid, tuple(events), now) for cid, events in hops.items()]
                )
        finally:
            self._hopping = False

    async def _send(self, sends: list[tuple[PeerSession | None, SendMessage] | SendGossip]) -> None:
        closed: set[Address] = set()
        for item in sends:
            if isinstance(item, SendGossip):
                await self._send_gossip(item)
                continue
            session, output = item
            if session is None or output.peer in closed:
                continue  # the re-sync after reconnecting sends it again
            for message in self.attacks.outgoing(output.message):
                try:
                    await session.send(message)
                except trio.ClosedResourceError:
                    closed.add(output.peer)
                    break

    async def _send_gossip(self, output: SendGossip) -> None:
        """To one peer, or to every peer online but those it came from. Lost if a peer is gone:
        the sync on its next connection makes up for it."""
        if output.peer is not None:
            targets = [output.peer]
        else:
            targets = [NodeId(p) for p in self.state.online if NodeId(p) not in output.exclude]
        for peer in targets:
            session = self._session_of(Address(peer))
            if session is None:
                continue
            for message in output.messages:
                try:
                    await session.send(message)
                except trio.ClosedResourceError:
                    break

    # -- waiting -----------------------------------------------------------------------------

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds after some step (under the caller's deadline)."""
        while not condition():
            await self._changed.wait()

    def forget_settle_reply(self, channel_id: ChannelId) -> None:
        self._settle_replies.pop(channel_id, None)

    async def settle_reply(self, channel_id: ChannelId) -> str | None:
        """The partner's answer to our cooperative-settle request (None: it signed)."""
        await self.wait_until(lambda: channel_id in self._settle_replies)
        return self._settle_replies.pop(channel_id)


def faults_of(outputs: list[Output]) -> list[NotifyFault]:
    return [output for output in outputs if isinstance(output, NotifyFault)]


def _log_final(record: PaymentRecord, outcome: PaymentOutcome) -> None:
    """One info line per payment that became final (its record is on disk already)."""
    fields = {
        "payment_hash": record.payment_hash.hex(),
        "peer": record.peer.hex(),
        "amount": record.amount,
    }
    if outcome.status == "failed":
        log.info("payment_failed", direction=record.direction, reason=outcome.error, **fields)
    elif record.direction == "out":
        log.info("payment_sent", **fields)
    else:
        log.info("payment_received", **fields)


def _log_gossip(stored: list[PersistGossip]) -> None:
    """At debug level, what gossip a step made durable: channels, updates (channel, direction's
    node, timestamp) and node announcements, so a benchmark can tell when each node first knew
    each message (`p2pchan bench gossip` reads these lines)."""
    for rows in stored:
        log.debug(
            "gossip_stored",
            channels=[known.announcement.channel_id.hex() for known in rows.channels],
            updates=[
                [u.body.channel_id.hex(), u.body.from_node.hex(), u.body.timestamp_ms]
                for u in rows.updates
            ],
            nodes=[[n.body.node_id.hex(), n.body.timestamp_ms] for n in rows.nodes],
        )
