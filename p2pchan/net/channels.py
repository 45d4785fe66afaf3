"""The channel shell: every channel of the node driven through the core, persist first.

A step takes one channel's lock, runs a core transition, then what it brings along in the same
step (the payee's decision on new incoming locks, the next update if one can be signed), writes
the new state with every payment record it implies in one transaction, and only then sends
messages, hands layer-1 duties to `ChainActions` and wakes payment waiters. So a balance proof
is stored as sent before it reaches the socket, a received one before it is acked, a secret
before it is revealed; and many payments share one signature and one disk sync.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import replace

import structlog
import trio

from p2pchan.core.channel import chain as channel_chain
from p2pchan.core.channel import close as channel_close
from p2pchan.core.channel import receive as channel_receive
from p2pchan.core.channel import send as channel_send
from p2pchan.core.channel import sync as channel_sync
from p2pchan.core.channel.events import CloseOnChain, Fault, IncomingLocks, Output, Send
from p2pchan.core.channel.send import PaymentRefused
from p2pchan.core.channel.state import Channel, ChannelConfig, ChannelStatus
from p2pchan.core.invoice import decode_invoice
from p2pchan.crypto.keys import Identity
from p2pchan.errors import RemoteProtocolError, UserError
from p2pchan.l1.events import (
    ChannelClosed,
    ChannelCooperativelySettled,
    ChannelDeposited,
    ChannelOpened,
    ChannelSettled,
    ChannelUnlocked,
    ChannelUpdated,
    Event,
    SecretRegistered,
)
from p2pchan.l1.state import ChannelRecord
from p2pchan.net import misbehaviour
from p2pchan.net.chain_actions import ChainActions, ChainDuty
from p2pchan.net.misbehave import HONEST, Attacks, Misbehave, retryable_bait
from p2pchan.net.payment_book import OutgoingPayment, PaymentBook
from p2pchan.net.peer import PeerSession
from p2pchan.storage.channels import (
    ChannelTables,
    StoreBatch,
    fold_payments,
    load_chain_secrets,
    load_open_invoices,
)
from p2pchan.storage.db import NodeDatabase
from p2pchan.types import Address, ChainId, ChannelId, SecretHash
from p2pchan.wire.channel_messages import (
    BalanceUpdate,
    ChannelMessage,
    ChannelSync,
    LockedTransfer,
    LockFailed,
    Processed,
    Refused,
    RevealSecret,
    SettleRequest,
    SettleResponse,
)
from p2pchan.wire.locks import HeldLock

log = structlog.get_logger(__name__)

Transition = Callable[[Channel], tuple[Channel, list[Output]]]
ChainLookup = Callable[[ChannelId], Awaitable[ChannelRecord | None]]
ADMISSION_TIMEOUT = 60.0  # seconds a payment may wait for a free lock slot


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class ChannelManager:
    def __init__(
        self,
        identity: Identity,
        chain_id: ChainId,
        database: NodeDatabase,
        actions: ChainActions,
        sessions: Callable[[Address], PeerSession | None],
        config: ChannelConfig,
        attacks: Attacks = HONEST,
    ) -> None:
        self.identity = identity
        self.attacks = attacks  # dev attack modes (`--misbehave`); empty on honest nodes
        self.us = identity.node_id
        self.chain_id = chain_id
        self.database = database
        self.actions = actions
        self.config = config
        self._session_of = sessions
        self.channels: dict[ChannelId, Channel] = {}
        self._locks: defaultdict[ChannelId, trio.Lock] = defaultdict(trio.Lock)
        self.tables = ChannelTables()
        self.book = PaymentBook()
        self.registered: dict[SecretHash, int] = {}
        self.height = 0
        self._changed = trio.Event()
        self._settle_replies: dict[ChannelId, str | None] = {}
        self._arrivals: defaultdict[ChannelId, list[tuple[HeldLock, OutgoingPayment]]] = (
            defaultdict(list)
        )
        self._admitting: set[ChannelId] = set()
        self._nursery: trio.Nursery | None = None

    # -- start-up ----------------------------------------------------------------------------

    def load(self) -> None:
        """Load every channel, open invoice, pending payment and known secret (start-up)."""
        for channel in self.database.run_now(self.tables.load):
            self.channels[channel.channel_id] = channel
        self.registered = self.database.run_now(load_chain_secrets)
        for record in self.database.run_now(load_open_invoices):
            invoice = decode_invoice(record.encoded, self.chain_id)
            self.book.invoices[record.payment_hash] = (invoice, record)
        for payment in self.database.run_now(fold_payments).values():
            if payment.direction == "in" and payment.status == "pending":
                self.book.incoming[payment.payment_hash] = payment
            elif payment.direction == "out" and payment.status != "failed":
                self.book.paid_or_pending.add(payment.payment_hash)

    # -- the step ------------------------------------------------------------------------------

    async def step(
        self, channel_id: ChannelId, transition: Transition, *, queue_only: bool = False
    ) -> list[Output]:
        """Run a transition on a channel: persist first, then carry out its outputs.

        `queue_only` marks a transition that only queues work in memory (a new payment): if no
        update gets signed, nothing is written; the work waits for the in-flight update's ack.
        """
        began = time.perf_counter()
        async with self._locks[channel_id]:
            before = self.channels.get(channel_id)
            if before is None:
                raise UserError(f"unknown channel {channel_id.hex()}")
            locked = time.perf_counter()
            channel, outputs = transition(before)
            batch = StoreBatch()
            channel, outputs = self._follow_up(channel, outputs, batch)
            self.book.outcomes(outputs, now_ms(), batch)
            signed = channel.ours.signed_nonce != before.ours.signed_nonce
            computed = time.perf_counter()
            if (channel is not before or batch) and not (queue_only and not signed and not batch):
                batch.channels[channel_id] = channel
                await self.database.run(lambda connection: self.tables.write(connection, batch))
            stored = time.perf_counter()
            self.channels[channel_id] = channel
        self._notify_changed()
        self.book.notify()
        await self._carry_out(channel, self.attacks.outgoing(outputs) if self.attacks else outputs)
        if stored > computed:
            log.debug(
                "channel_step",
                channel=channel_id.hex(),
                lock_wait_ms=round((locked - began) * 1000, 3),
                core_ms=round((computed - locked) * 1000, 3),
                store_ms=round((stored - computed) * 1000, 3),
                carry_out_ms=round((time.perf_counter() - stored) * 1000, 3),
                outputs=len(outputs),
            )
        return outputs

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the manager's background tasks (payment admission) until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    async def admit_payment(
        self, channel_id: ChannelId, held: HeldLock, payment: OutgoingPayment
    ) -> None:
        """Queue a payment's lock for the channel's next update, or raise why not.

        Payments arriving together are admitted together, by one admission task per channel,
        with one pass over the channel's pending locks. A payment finding every lock slot
        taken waits (unsigned: nothing is promised yet) until one frees up, at most
        `ADMISSION_TIMEOUT` seconds.
        """
        self._arrivals[channel_id].append((held, payment))
        if channel_id not in self._admitting:
            assert self._nursery is not None, "ChannelManager.run is not running"
            self._admitting.add(channel_id)
            self._nursery.start_soon(self._admission, channel_id)
        await payment.admission.wait()
        if payment.refusal is not None:
            raise PaymentRefused(payment.refusal)

    async def _admission(self, channel_id: ChannelId) -> None:
        try:
            while self._arrivals.get(channel_id):
                await self.step(channel_id, self._admit_arrivals, queue_only=True)
                if self._arrivals.get(channel_id):  # waiting for free lock slots
                    await self._changed.wait()
        except BaseException as error:
            for _held, waiting in self._arrivals.pop(channel_id, []):
                waiting.refusal = f"could not be queued: {error!r}"
                waiting.admission.set()
            raise
        finally:
            # No checkpoint since the last check: nobody can have arrived unadmitted.
            self._admitting.discard(channel_id)

    def _admit_arrivals(self, channel: Channel) -> tuple[Channel, list[Output]]:
        arrivals = self._arrivals.pop(channel.channel_id, [])
        if not arrivals:
            return channel, []
        # A lock that waited for a slot while blocks passed may be too close to its expiry: the
        # payee would fail it, or the partner refuse the whole update it rides on as expired.
        last_useful = self.height + channel.config.reveal_timeout
        stale = {
            held.secrethash: f"waited too long: the lock would expire by block {last_useful}"
            for held, _ in arrivals
            if channel_send.too_late_to_send(channel, held, self.height)
        }
        fresh = [held for held, _ in arrivals if held.secrethash not in stale]
        channel, refused, waiting = channel_send.queue_some(channel, fresh)
        reasons = stale | {held.secrethash: reason for held, reason in refused}
        still_waiting = {held.secrethash for held in waiting}
        oldest_allowed = now_ms() - int(ADMISSION_TIMEOUT * 1000)
        for held, payment in arrivals:
            if held.secrethash in still_waiting:
                if payment.record.created_ms >= oldest_allowed:
                    self._arrivals[channel.channel_id].append((held, payment))
                    continue
                reasons[held.secrethash] = f"no free lock slot for {ADMISSION_TIMEOUT:.0f} s"
            payment.refusal = reasons.get(held.secrethash)
            payment.admission.set()
        return channel, []

    def _follow_up(
        self, channel: Channel, outputs: list[Output], batch: StoreBatch
    ) -> tuple[Channel, list[Output]]:
        """What a step does besides its transition: decide on new incoming locks, sign the next
        update, and fail queued payments the channel can no longer take."""
        extra: list[Output] = []
        for output in outputs:
            if isinstance(output, IncomingLocks) and not self.attacks.withholds_decisions:
                claims, declines = self.book.decide_incoming(
                    channel, output.locks, height=self.height, now_ms=now_ms(), batch=batch
                )
                channel, claimed = channel_receive.claim_incoming(channel, claims)
                reason = "; ".join(sorted(set(declines.values())))
                channel, failed = channel_receive.fail_incoming(channel, list(declines), reason)
                extra += claimed + failed
        queued = channel.ours.queued_locks
        if queued and not channel.takes_new_transfers:
            for held in queued:
                self.book.fail_unsigned(held.secrethash, f"channel is {channel.status}")
            channel = replace(channel, ours=replace(channel.ours, queued_locks=()))
        while True:  # fill the window of updates in flight: one disk sync for all of them
            channel, update = channel_send.next_update(channel, self.identity)
            if update is None:
                break
            extra.append(Send(update))
            if isinstance(update, LockedTransfer):
                self.book.records_for_signed(channel.ours.in_flight[-1].new_locks, batch)
        return channel, outputs + extra

    async def _carry_out(self, channel: Channel, outputs: list[Output]) -> None:
        session = self._session_of(channel.partner)
        for output in outputs:
            if isinstance(output, Send):
                if session is not None:
                    try:
                        await session.send(output.message)
                    except trio.ClosedResourceError:
                        session = None  # the re-sync after reconnecting sends it again
            elif isinstance(output, ChainDuty):
                self.actions.request(output)

    def _notify_changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds after some channel changed (the caller's deadline)."""
        while not condition():
            await self._changed.wait()

    # -- peers --------------------------------------------------------------------------------

    async def on_session_started(self, session: PeerSession) -> None:
        """Re-sync every channel with this peer: each side learns what the other lacks."""
        for channel in list(self.channels.values()):
            if channel.partner == session.node_id and channel.status != ChannelStatus.SETTLED:
                await self.step(channel.channel_id, channel_sync.session_started)

    async def on_messages(self, session: PeerSession, messages: list[ChannelMessage]) -> None:
        """Messages of one channel that arrived together: one step, one disk sync. A message
        that breaks the protocol is skipped (the others still count) and scored."""
        channel_id = messages[0].channel_id
        channel = self.channels.get(channel_id)
        if channel is None or channel.partner != session.node_id:
            if channel is None and all(isinstance(m, ChannelSync) for m in messages):
                # An honest race: the partner opened it in a block we have not processed yet.
                log.info("sync_for_unknown_channel", channel=channel_id.hex())
                return
            session.fault(misbehaviour.UNEXPECTED_MESSAGE, "message for an unknown channel")
            return
        if self.attacks:
            messages, replies = self.attacks.incoming(messages)
            for reply in replies:
                await session.send(reply)
        transitions = [self._transition_for(message) for message in messages]

        def apply_all(channel: Channel) -> tuple[Channel, list[Output]]:
            outputs: list[Output] = []
            for transition in transitions:
                try:
                    channel, more = transition(channel)
                except RemoteProtocolError as error:
                    outputs.append(Fault(misbehaviour.MALFORMED_MESSAGE, str(error)))
                    continue
                outputs += more
            return channel, outputs

        outputs = await self.step(channel_id, apply_all)
        for output in outputs:
            if isinstance(output, Fault):
                session.fault(output.points, output.reason, budgeted=output.budgeted)

    def _transition_for(self, message: ChannelMessage) -> Transition:
        if isinstance(message, BalanceUpdate):
            return lambda c: channel_receive.on_update(
                c, message, self.identity, self.height, self.registered
            )
        if isinstance(message, Processed):
            return lambda c: channel_send.on_processed(c, message)
        if isinstance(message, Refused):
            log.info(
                "update_refused",
                channel=message.channel_id.hex(),
                nonce=message.nonce,
                code=message.code,
                reason=message.reason,
                retryable=message.retryable,
            )
            return lambda c: channel_send.on_refused(c, message, self.height)
        if isinstance(message, LockFailed):
            return lambda c: (channel_send.on_lock_failed(c, message), [])
        if isinstance(message, RevealSecret):
            return lambda c: channel_send.on_reveal_secret(c, message)
        if isinstance(message, ChannelSync):
            return lambda c: channel_sync.on_sync(c, message)
        if isinstance(message, SettleRequest):
            return lambda c: channel_close.on_settle_request(c, message, self.identity, self.height)
        if isinstance(message, SettleResponse):
            return lambda c: self._settle_response(c, message)
        raise RemoteProtocolError(f"unexpected {type(message).__name__}")

    def _settle_response(
        self, channel: Channel, message: SettleResponse
    ) -> tuple[Channel, list[Output]]:
        channel, outputs, refusal = channel_close.on_settle_response(channel, message)
        self._settle_replies[channel.channel_id] = refusal
        return channel, outputs

    # -- layer 1 ------------------------------------------------------------------------------

    async def on_chain_block(
        self,
        height: int,
        events: tuple[Event, ...],
        chain_channel: ChainLookup,
        *,
        checkpoint: bool = True,
    ) -> None:
        """Apply one block's contract events and the new height to every channel, then (with
        `checkpoint`) record the block as processed. Re-applying a block after a crash changes
        nothing more, so quiet blocks need not each be recorded."""
        self.height = height
        batch = StoreBatch(processed_block=height if checkpoint else None)
        for event in events:
            if isinstance(event, SecretRegistered):
                self.registered.setdefault(event.secrethash, event.block)
                batch.secrets[event.secrethash] = event.block
            if isinstance(event, ChannelOpened) and self.us in (
                event.participant_a,
                event.participant_b,
            ):
                await self._ensure_channel(event)
        for event in events:
            await self._apply_event(event, chain_channel)
        for channel_id, channel in list(self.channels.items()):
            if channel.status != ChannelStatus.SETTLED or channel.settled_unlocks:
                await self.step(
                    channel_id, lambda c: channel_chain.on_block(c, height, self.registered)
                )
        if batch:
            await self.database.run(lambda connection: self.tables.write(connection, batch))
        if self.attacks:
            await self._attack(height)

    async def _attack(self, height: int) -> None:
        """Dev attack modes that act on their own, once a block: spam updates the partner must
        refuse retryably; ask for a cooperative settle and never submit it."""
        for channel in list(self.channels.values()):
            session = self._session_of(channel.partner)
            if session is None or channel.status != ChannelStatus.OPEN:
                continue
            if Misbehave.SPAM_RETRYABLE in self.attacks:
                for message in retryable_bait(channel, self.identity, height):
                    await session.send(message)
            if Misbehave.COOP_FREEZE in self.attacks and not channel.ours.in_flight:
                try:
                    _, outputs = channel_close.request_settle(channel, self.identity, height)
                except channel_close.CooperativeCloseRefused:
                    continue
                for output in outputs:
                    if isinstance(output, Send):
                        await session.send(output.message)

    async def _ensure_channel(self, event: ChannelOpened) -> None:
        if event.channel_id in self.channels:
            return
        we_are_a = event.participant_a == self.us
        partner = event.participant_b if we_are_a else event.participant_a
        channel = Channel(
            self.chain_id,
            event.channel_id,
            self.us,
            partner,
            we_are_a,
            event.settle_timeout,
            self.config,
        )
        await self.add_channel(channel)
        if self._session_of(partner) is not None:
            # The connection started before we knew the channel, so the opener's channel_sync
            # found none here: send ours now, or the opener waits for it until it reconnects.
            # Nothing of ours is in flight on a new channel, so we wait for nothing.
            await self.step(channel.channel_id, lambda c: (c, [Send(channel_sync.sync_message(c))]))

    async def add_channel(self, channel: Channel) -> None:
        """Start tracking a channel (ours just opened, or the partner's seen on chain)."""
        async with self._locks[channel.channel_id]:
            if channel.channel_id in self.channels:
                return
            batch = StoreBatch(channels={channel.channel_id: channel})
            await self.database.run(lambda connection: self.tables.write(connection, batch))
            self.channels[channel.channel_id] = channel
        log.info("channel_added", channel=channel.channel_id.hex(), peer=channel.partner.hex())
        self._notify_changed()

    async def _apply_event(self, event: Event, chain_channel: ChainLookup) -> None:
        if isinstance(event, SecretRegistered):
            for known in list(self.channels):
                await self.step(
                    known,
                    lambda c: channel_chain.on_secret_registered(
                        c, event.secrethash, event.secret, event.block
                    ),
                )
            return
        channel_id: ChannelId | None = getattr(event, "channel_id", None)
        if channel_id is None or channel_id not in self.channels:
            return
        transition: Transition
        if isinstance(event, ChannelOpened):
            transition = lambda c: (channel_chain.on_opened(c, self.height), [])  # noqa: E731
        elif isinstance(event, ChannelDeposited):
            transition = lambda c: (  # noqa: E731
                channel_chain.on_deposited(c, event.participant, event.total_deposit),
                [],
            )
        elif isinstance(event, ChannelClosed):
            log.info(
                "channel_closed_on_chain",
                channel=channel_id.hex(),
                closer=event.closer.hex(),
                by_partner=event.closer != self.us,
            )
            transition = lambda c: channel_chain.on_closed(  # noqa: E731
                c, event.closer, event.close_block, *self._chain_nonces(c, event)
            )
        elif isinstance(event, ChannelUpdated):
            transition = lambda c: channel_chain.on_updated(  # noqa: E731
                c, *self._chain_nonces(c, event)
            )
        elif isinstance(event, ChannelSettled):
            record: ChannelRecord | None = await chain_channel(channel_id)
            if record is None:
                return
            transition = lambda c: channel_chain.on_settled(  # noqa: E731
                c,
                *self._record_nonces(c, record),
                payout_ours=event.payout_a if c.we_are_a else event.payout_b,
                payout_theirs=event.payout_b if c.we_are_a else event.payout_a,
            )
        elif isinstance(event, ChannelCooperativelySettled):
            transition = lambda c: (  # noqa: E731
                channel_close.on_cooperatively_settled(
                    c,
                    balance_ours=event.balance_a if c.we_are_a else event.balance_b,
                    balance_theirs=event.balance_b if c.we_are_a else event.balance_a,
                ),
                [],
            )
        elif isinstance(event, ChannelUnlocked):
            transition = lambda c: channel_chain.on_unlocked(  # noqa: E731
                c,
                event.sender,
                self.registered,
                to_receiver=event.to_receiver,
                to_sender=event.to_sender,
            )
        else:
            return
        await self.step(channel_id, transition)

    @staticmethod
    def _chain_nonces(channel: Channel, event: ChannelClosed | ChannelUpdated) -> tuple[int, int]:
        """(our direction's nonce on chain, the partner's)."""
        if channel.we_are_a:
            return event.nonce_a, event.nonce_b
        return event.nonce_b, event.nonce_a

    @staticmethod
    def _record_nonces(channel: Channel, record: ChannelRecord) -> tuple[int, int]:
        if channel.we_are_a:
            return record.proof_a.nonce, record.proof_b.nonce
        return record.proof_b.nonce, record.proof_a.nonce

    # -- closing ------------------------------------------------------------------------------

    async def request_cooperative_settle(self, channel_id: ChannelId) -> str | None:
        """Ask the partner to sign final balances; return its refusal, or None once it signed
        (the transaction is then on its way)."""
        channel = self._channel(channel_id)
        if self._session_of(channel.partner) is None:
            raise UserError("the partner is not connected: close with --force")
        self._settle_replies.pop(channel_id, None)
        await self.step(
            channel_id, lambda c: channel_close.request_settle(c, self.identity, self.height)
        )
        await self.wait_until(lambda: channel_id in self._settle_replies)
        return self._settle_replies.pop(channel_id)

    async def force_close(self, channel_id: ChannelId, *, cheat: bool = False) -> None:
        channel = self._channel(channel_id)
        if channel.status not in (ChannelStatus.OPENING, ChannelStatus.OPEN, ChannelStatus.CLOSING):
            raise UserError(f"channel {channel_id.hex()} is already {channel.status}")

        def close(c: Channel) -> tuple[Channel, list[Output]]:
            proofs = channel_chain.close_proofs(c, cheat=cheat)
            reason = "cheating close (dev attack mode)" if cheat else "force close requested"
            closing = replace(
                c.moved_to(ChannelStatus.CLOSING), close_requested=True, close_cheat=cheat
            )
            return closing, [CloseOnChain(c.channel_id, proofs, reason)]

        await self.step(channel_id, close)

    def _channel(self, channel_id: ChannelId) -> Channel:
        channel = self.channels.get(channel_id)
        if channel is None:
            raise UserError(f"unknown channel {channel_id.hex()}")
        return channel

    def channel_with(self, partner: Address) -> Channel | None:
        """Our usable channel with this peer, if any (one per pair on chain)."""
        for channel in self.channels.values():
            if channel.partner == partner and channel.status in (
                ChannelStatus.OPENING,
                ChannelStatus.OPEN,
            ):
                return channel
        return None
