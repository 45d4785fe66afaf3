"""The shell's step: feed inputs to the node's transition, persist, then carry out.

`step(inputs)` takes the node's lock, runs each input through `core.node.transition`, writes
every `Persist*` output of the step in one transaction (persist before you promise), and only
then sends messages, hands layer-1 duties to `ChainActions`, and wakes whoever waits for a
payment, an invoice or a cooperative-settle answer. It chooses no handler and holds no protocol
policy: those are the core's.

Payments arriving together share a step (`submit_payment`): one task drains them in batches,
each ended by a `Tick` that admits them together, so a burst of `send`s costs one signature and
one disk sync, their locks sharing one update.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog
import trio

from p2pchan.core.inputs import ActionPay, ActionSend, Input, Tick
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
    SendMessage,
)
from p2pchan.core.payment.records import PaymentRecord
from p2pchan.core.state import NodeState
from p2pchan.errors import LocalProtocolError
from p2pchan.net.chain_actions import ChainActions
from p2pchan.net.misbehave import HONEST, Attacks
from p2pchan.net.peer import PeerSession
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.node_store import ChannelTables, StoreBatch
from p2pchan.types import Address, ChannelId, SecretHash

log = structlog.get_logger(__name__)

TICK_SECONDS = 1.0  # how often payments waiting for a lock slot are checked for their timeout
_CONTRACT_SENDS = (
    ContractSendRegisterSecret,
    ContractSendClose,
    ContractSendUpdate,
    ContractSendSettle,
    ContractSendUnlock,
    ContractSendCooperativeSettle,
)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class PaymentWaiter:
    """A caller waiting for one payment: first whether it was admitted, then its end."""

    admitted: trio.Event = field(default_factory=trio.Event)
    refusal: str | None = None
    done: trio.Event = field(default_factory=trio.Event)
    final: PaymentRecord | None = None
    payment_hash: SecretHash | None = None


class Driver:
    def __init__(
        self,
        state: NodeState,
        database: NodeDatabase,
        actions: ChainActions,
        sessions: Callable[[Address], PeerSession | None],
        attacks: Attacks = HONEST,
    ) -> None:
        self.state = state
        self.database = database
        self.tables = ChannelTables()
        self.actions = actions
        self.attacks = attacks
        self._session_of = sessions
        self._lock = trio.Lock()
        self._changed = trio.Event()
        self._request_ids = itertools.count(1)
        self._admissions: dict[int, PaymentWaiter] = {}  # by request id, until admitted
        self._finals: dict[SecretHash, PaymentWaiter] = {}  # by payment hash, once admitted
        self._settle_replies: dict[ChannelId, str | None] = {}
        self._queued: list[Input] = []
        self._draining = False
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the payment batches and the clock until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(TICK_SECONDS)
                await self.step([Tick(now_ms())])

    # -- the step ----------------------------------------------------------------------------

    async def step(self, inputs: Sequence[Input]) -> list[Output]:
        """Transition, persist, carry out. A `UserError` from an input (a refused action) comes
        back to the caller after the step's earlier inputs took effect."""
        async with self._lock:
            outputs: list[Output] = []
            try:
                for event in inputs:
                    _, more = transition(self.state, event)
                    outputs += more
            finally:
                batch = StoreBatch.of(outputs)
                if batch:
                    await self.database.run(lambda connection: self.tables.write(connection, batch))
        self._notify(outputs)
        await self._carry_out(outputs)
        return outputs

    def note(self, event: Input) -> None:
        """Apply an input that only updates the state in memory (a peer gone), at once and
        without awaiting: it is called where the caller may be cancelled."""
        _, outputs = transition(self.state, event)
        if outputs:
            raise LocalProtocolError(f"{type(event).__name__} is not to be noted: it has outputs")

    async def submit_payment(self, action: ActionSend | ActionPay) -> None:
        """Queue a payment action for the next batch (the caller waits on its `PaymentWaiter`)."""
        self._queued.append(action)
        if not self._draining:
            assert self._nursery is not None, "Driver.run is not running"
            self._draining = True
            self._nursery.start_soon(self._drain)

    async def _drain(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                await self.step([*batch, Tick(now_ms())])  # the tick admits them together
        finally:
            # No checkpoint since the last check: nobody can have queued unseen.
            self._draining = False

    def new_payment(self) -> tuple[int, PaymentWaiter]:
        """A request id for a payment action, and the waiter its notifications reach."""
        request_id = next(self._request_ids)
        waiter = self._admissions[request_id] = PaymentWaiter()
        return request_id, waiter

    # -- after the write ---------------------------------------------------------------------

    def _notify(self, outputs: list[Output]) -> None:
        logged = log.is_enabled_for(logging.INFO)  # once a step, not per payment
        for output in outputs:
            if isinstance(output, NotifyPaymentAdmitted):
                waiter = self._admissions.pop(output.request_id, None)
                if waiter is not None:
                    waiter.refusal, waiter.payment_hash = output.refusal, output.payment_hash
                    if output.refusal is None:
                        self._finals[output.payment_hash] = waiter
                    waiter.admitted.set()
            elif isinstance(output, NotifyPaymentFinal):
                record = output.record
                waiter = self._finals.pop(record.payment_hash, None)
                if waiter is not None:
                    waiter.final = record
                    waiter.done.set()
                if logged:
                    _log_final(record)
            elif isinstance(output, NotifySettleResponse):
                self._settle_replies[output.channel_id] = output.refusal
            elif isinstance(output, NotifyRefused):
                log.info(
                    "update_refused",
                    channel=output.channel_id.hex(),
                    nonce=output.nonce,
                    code=output.code,
                    reason=output.reason,
                    retryable=output.retryable,
                )
        self._changed.set()
        self._changed = trio.Event()

    async def _carry_out(self, outputs: list[Output]) -> None:
        sessions: dict[Address, PeerSession | None] = {}
        for output in outputs:
            if isinstance(output, SendMessage):
                peer = output.peer
                session = sessions[peer] if peer in sessions else self._session_of(peer)
                sessions[peer] = session
                if session is None:
                    continue  # the re-sync after reconnecting sends it again
                for message in self.attacks.outgoing(output.message):
                    try:
                        await session.send(message)
                    except trio.ClosedResourceError:
                        sessions[peer] = None
            elif isinstance(output, _CONTRACT_SENDS):
                duty: ContractSend = output
                self.actions.request(duty)

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


def _log_final(record: PaymentRecord) -> None:
    """One info line per payment that became final (its record is on disk already)."""
    fields = {
        "payment_hash": record.payment_hash.hex(),
        "peer": record.peer.hex(),
        "amount": record.amount,
    }
    if record.status == "failed":
        log.info("payment_failed", direction=record.direction, reason=record.error, **fields)
    elif record.direction == "out":
        log.info("payment_sent", **fields)
    else:
        log.info("payment_received", **fields)
