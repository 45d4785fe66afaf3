"""The node's one transition: `transition(state, input) -> (state, outputs)`.

Every input (`core.inputs`) goes through one table to the handler that routes it to the machines
that own it: the channel machine (`core.channel.machine`) for everything about one channel, the
payer, payee and mediator machines (`core.payment`, through `payment.router`) for everything
about one payment, the gossip machine (through `core.network`) for the graph. A channel reports
what happened to locks; the payment machines decide what follows (claim, fail, forward,
succeed). Their decisions about that channel go back into it within the same transition; a
mediator's decisions about another channel leave as `SendHop`, which the shell feeds back as
`ReceiveHop` once the step is durable (persist before forward). Outputs (`core.outputs`) are
what the shell must do, in order, once the `Persist*` ones are written: a step is durable
before anything it promises goes out.

Pure: no IO, no clock, no randomness (time and fresh secrets come inside the inputs). The
state's tables are updated in place (see `core.state`); a handler that refuses an input raises
before it changes anything, or reports the refusal as an output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from p2pchan.core import network
from p2pchan.core.channel import machine
from p2pchan.core.channel import send as channel_send
from p2pchan.core.channel.events import (
    ChannelOutput,
    IncomingLocks,
    OutgoingSettled,
    SecretLearned,
    Send,
)
from p2pchan.core.channel.state import Channel, ChannelStatus
from p2pchan.core.inputs import (
    ActionAnnounceNode,
    ActionCloseCooperatively,
    ActionCreateInvoice,
    ActionForceClose,
    ActionPay,
    ActionSend,
    ActionSetFees,
    ActionTrackChannel,
    ContractReceiveBlock,
    Input,
    ReceiveChannelMessages,
    ReceiveGossip,
    ReceiveHop,
    ReceivePeerConnected,
    ReceivePeerDisconnected,
    Resume,
    Tick,
)
from p2pchan.core.invoice import Invoice, encode_invoice, encode_route_hints
from p2pchan.core.outputs import (
    NotifyFault,
    NotifyInvoiceCreated,
    NotifyPaymentAdmitted,
    NotifyRefused,
    Output,
    PersistChannel,
    PersistInvoice,
    PersistOnionsExpired,
    PersistProcessedBlock,
    PersistSecret,
    SendMessage,
)
from p2pchan.core.payment import mediator, payer, router, routes
from p2pchan.core.payment.records import InvoiceRecord
from p2pchan.core.payment.state import OpenInvoice
from p2pchan.core.state import NodeState
from p2pchan.crypto.hashing import sha256
from p2pchan.errors import LocalProtocolError, UserError
from p2pchan.l1.events import ChannelOpened, ChannelSettled, SecretRegistered
from p2pchan.types import Address, ChannelId, Secret, SecretHash
from p2pchan.wire.channel_messages import ChannelSync, LockedTransfer, Refused
from p2pchan.wire.locks import HeldLock

UNKNOWN_CHANNEL_POINTS = 10  # a message about a channel the peer has no part in
INVOICE_SWEEP_MS = 60_000  # how often expired invoices are looked for (all open ones each time)
ONION_PRUNE_BLOCKS = 16  # how often the replay tags of expired onions are forgotten


def transition(state: NodeState, event: Input) -> tuple[NodeState, list[Output]]:
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"the node has no handler for {type(event).__name__}")
    now_ms: int | None = getattr(event, "now_ms", None)
    if now_ms is not None and now_ms > state.now_ms:
        state.now_ms = now_ms
    return state, handler(state, event)


# -- peers ---------------------------------------------------------------------------------------


def _peer_connected(state: NodeState, event: ReceivePeerConnected) -> list[Output]:
    """Re-sync every channel with this peer: each side learns what the other lacks."""
    state.online.add(event.peer)
    outputs: list[Output] = []
    for channel in list(state.channels.values()):
        if channel.partner == event.peer and channel.status != ChannelStatus.SETTLED:
            outputs += _on_channel(state, channel.channel_id, [machine.SessionStarted()])
    return outputs + network.peer_connected(state, event.peer)


def _peer_disconnected(state: NodeState, event: ReceivePeerDisconnected) -> list[Output]:
    state.online.discard(event.peer)
    return network.peer_disconnected(state, event.peer)


def _messages(state: NodeState, event: ReceiveChannelMessages) -> list[Output]:
    """Messages of one channel that arrived together: one step. One that breaks the protocol is
    skipped (the others still count) and scored."""
    channel = state.channels.get(event.channel_id)
    if channel is None or channel.partner != event.peer:
        if channel is None and all(isinstance(m, ChannelSync) for m in event.messages):
            return []  # an honest race: it opened the channel in a block we have not seen yet
        reason = "message for an unknown channel"
        return [NotifyFault(event.peer, UNKNOWN_CHANNEL_POINTS, reason)]
    notes: list[Output] = [
        NotifyRefused(event.peer, m.channel_id, m.nonce, m.code, m.reason, m.retryable)
        for m in event.messages
        if isinstance(m, Refused)
    ]
    return notes + _on_channel(state, event.channel_id, event.messages)


def _hop(state: NodeState, event: ReceiveHop) -> list[Output]:
    """Mediators' decisions about this channel, taken while handling others: the new locks to
    send go in one event (one pass over the channel's locks, one update)."""
    locks: list[HeldLock] = []
    events: list[object] = []
    for decided in event.events:
        if isinstance(decided, machine.QueueLocks):
            locks += decided.locks
        else:
            events.append(decided)
    if locks:
        events.append(machine.QueueLocks(tuple(locks)))
    if event.channel_id not in state.channels:
        refusals = tuple((held.secrethash, "the channel is gone") for held in locks)
        return mediator.refused(state, refusals)
    return _on_channel(state, event.channel_id, events)


# -- the user ------------------------------------------------------------------------------------


def _send(state: NodeState, event: ActionSend) -> list[Output]:
    """Start a spontaneous payment; it waits for admission to its channel (the next `Tick`:
    payments arriving together are admitted together, their locks sharing one update)."""
    return payer.start(
        state,
        request_id=event.request_id,
        payee=event.payee,
        amount=event.amount,
        secrethash=SecretHash(sha256(event.secret)),
        payload_secret=event.secret,
        known_secret=event.secret,
    )


def _pay(state: NodeState, event: ActionPay) -> list[Output]:
    invoice = event.invoice
    secrethash = invoice.secrethash
    refusal = None
    if invoice.is_expired(state.now_ms):
        refusal = "the invoice has expired"
    elif invoice.amount == 0:
        refusal = "the invoice asks for no amount"
    elif secrethash in state.payments.outgoing:
        refusal = "a payment of this invoice is already in progress"
    elif event.paid_before is None:
        raise LocalProtocolError("an invoice's payment history must be looked up before paying")
    elif event.paid_before:
        refusal = "this invoice was already paid"
    elif event.registered_block is not None or secrethash in state.registered:
        refusal = "the invoice's secret is already public on chain: do not pay it"
    if refusal is not None:
        return [NotifyPaymentAdmitted(event.request_id, secrethash, refusal)]
    return payer.start(
        state,
        request_id=event.request_id,
        payee=invoice.payee,
        amount=invoice.amount,
        secrethash=secrethash,
        payload_secret=None,
        known_secret=None,
        min_lock_timeout=invoice.min_final_lock_timeout,
        hints=invoice.hints(),
    )


def _create_invoice(state: NodeState, event: ActionCreateInvoice) -> list[Output]:
    if event.amount <= 0:
        raise UserError("an invoice amount must be positive")
    secrethash = SecretHash(sha256(event.secret))
    invoice = Invoice(
        state.chain_id,
        state.us,
        event.amount,
        secrethash,
        event.now_ms,
        event.expiry_seconds,
        state.config.reveal_timeout + 1,
        event.description,
        encode_route_hints(routes.invoice_hints(state)),
    )
    encoded = encode_invoice(state.identity, invoice)
    record = InvoiceRecord(
        secrethash, event.secret, event.amount, event.description, encoded, event.now_ms,
        invoice.expires_at_ms(), "open",
    )  # fmt: skip
    state.payments.invoices[secrethash] = OpenInvoice(invoice, record)
    return [PersistInvoice(record), NotifyInvoiceCreated(record)]


def _track_channel(state: NodeState, event: ActionTrackChannel) -> list[Output]:
    if event.channel_id in state.channels:
        return []
    channel = _new_channel(state, event.channel_id, event.partner, True, event.settle_timeout)
    return [PersistChannel(channel)]


def _new_channel(
    state: NodeState, channel_id: ChannelId, partner: Address, we_are_a: bool, settle_timeout: int
) -> Channel:
    """A channel of ours starts being tracked (we opened it, or the chain shows it)."""
    channel = Channel(
        state.chain_id, channel_id, state.us, partner, we_are_a, settle_timeout, state.config
    )
    state.channels[channel_id] = channel
    return channel


def _close_cooperatively(state: NodeState, event: ActionCloseCooperatively) -> list[Output]:
    channel = _known_channel(state, event.channel_id)
    if channel.partner not in state.online:
        raise UserError("the partner is not connected: close with --force")
    return _on_channel(state, event.channel_id, [machine.RequestCooperativeSettle()])


def _force_close(state: NodeState, event: ActionForceClose) -> list[Output]:
    _known_channel(state, event.channel_id)
    return _on_channel(state, event.channel_id, [machine.ForceClose(event.cheat)])


def _known_channel(state: NodeState, channel_id: ChannelId) -> Channel:
    channel = state.channels.get(channel_id)
    if channel is None:
        raise UserError(f"unknown channel {channel_id.hex()}")
    return channel


# -- layer 1 -------------------------------------------------------------------------------------


def _block(state: NodeState, event: ContractReceiveBlock) -> list[Output]:
    """One block: first what gossip knows of layer 1 (every channel on it), then the block's
    contract events for every channel of ours they touch, then the new height for every channel
    with something left to do; our channels that became usable are announced."""
    outputs = network.block(state, event)
    if event.view_only:
        return outputs  # a block processed before, replayed for the chain view alone
    state.height = event.height
    for happened in event.events:
        if isinstance(happened, SecretRegistered):
            state.registered.setdefault(happened.secrethash, happened.block)
            outputs.append(PersistSecret(happened.secrethash, happened.block))
        elif isinstance(happened, ChannelOpened):
            outputs += _channel_opened(state, happened)
    for happened in event.events:
        outputs += _chain_event(state, event, happened)
    for channel_id, channel in list(state.channels.items()):
        if channel.status != ChannelStatus.SETTLED or channel.settled_unlocks:
            outputs += _on_channel(state, channel_id, [machine.BlockPassed()])
    outputs += network.announce_usable(state)
    outputs += _forget_expired_onions(state)
    if event.checkpoint:
        outputs.append(PersistProcessedBlock(event.height))
    return outputs


def _forget_expired_onions(state: NodeState) -> list[Output]:
    seen = state.payments.seen_onions
    if state.height % ONION_PRUNE_BLOCKS or not seen:
        return []
    expired = [tag for tag, expiration in seen.items() if expiration < state.height]
    for tag in expired:
        del seen[tag]
    return [PersistOnionsExpired(state.height)] if expired else []


def _channel_opened(state: NodeState, event: ChannelOpened) -> list[Output]:
    """A channel of ours on chain: track it (the partner's, or ours after a crash)."""
    if state.us not in (event.participant_a, event.participant_b):
        return []
    if event.channel_id in state.channels:
        return []
    we_are_a = event.participant_a == state.us
    partner = event.participant_b if we_are_a else event.participant_a
    channel = _new_channel(state, event.channel_id, partner, we_are_a, event.settle_timeout)
    outputs: list[Output] = [PersistChannel(channel)]
    if partner in state.online:
        # The connection started before we knew the channel, so the opener's channel_sync found
        # none here: send ours now, or the opener waits for it until it reconnects.
        outputs += _on_channel(state, channel.channel_id, [machine.SendSync()])
    return outputs


def _chain_event(state: NodeState, block: ContractReceiveBlock, happened: Any) -> list[Output]:
    if isinstance(happened, SecretRegistered):
        outputs: list[Output] = []
        for known in list(state.channels):
            outputs += _on_channel(state, known, [happened])
        return outputs
    channel_id: ChannelId | None = getattr(happened, "channel_id", None)
    if channel_id is None or channel_id not in state.channels:
        return []
    if isinstance(happened, ChannelSettled):
        nonces = block.settled.get(channel_id)
        if nonces is None:
            return []  # layer 1 did not tell the nonces: the shell will feed it again
        settled = machine.Settled(happened, nonces.nonce_a, nonces.nonce_b)
        return _on_channel(state, channel_id, [settled])
    return _on_channel(state, channel_id, [happened])


# -- the clock -----------------------------------------------------------------------------------


def _tick(state: NodeState, event: Tick) -> list[Output]:
    """Admit the payments waiting for each channel (those started since the last tick, and
    those waiting for a lock slot), give up on those that waited too long, and send the gossip
    accepted since the last tick. Now and then, forget the invoices that have expired (their
    records stay in the store)."""
    payments = state.payments
    if state.now_ms >= payments.next_invoice_sweep_ms:
        expired = [h for h, o in payments.invoices.items() if o.invoice.is_expired(state.now_ms)]
        for secrethash in expired:
            del payments.invoices[secrethash]
        payments.next_invoice_sweep_ms = state.now_ms + INVOICE_SWEEP_MS
    outputs = payer.expire_waiting(state)
    for channel_id in list(state.payments.waiting):
        if channel_id in state.channels:
            outputs += _on_channel(state, channel_id, [], admission=True)
    return outputs + network.tick(state, event.now_ms)


def _resume(state: NodeState, event: Resume) -> list[Output]:
    """After a restart: what a crash may have cost between a mediator's deciding step and the
    step that carries the decision out on its other channel is derived again
    (`mediator.after_restart`); our usable channels are offered to gossip again."""
    return mediator.after_restart(state) + network.announce_usable(state)


# -- one channel's step --------------------------------------------------------------------------


def _on_channel(
    state: NodeState, channel_id: ChannelId, events: Iterable[Any], *, admission: bool = False
) -> list[Output]:
    """Run events through a channel, let the payment machines decide on what happened to its
    locks, and sign the next updates. `admission` (a `Tick`): admit the payments waiting for
    the channel instead; the step only queues work in memory unless an update gets signed
    (then nothing needs writing).

    Admission is a step of its own, never part of a peer's messages: the answers to those
    (acks, reveals, unlocks) go out first, and the partner works on them while we admit and
    sign (measured: admitting within the message step left each node idle a third of the time
    at 966 payments in flight in `bench channel`)."""
    before = state.channels[channel_id]
    context = machine.Context(state.identity, state.height, state.registered)
    channel = before
    reported: list[ChannelOutput] = []
    for event in events:
        channel, more = machine.transition(channel, event, context)
        reported += more
    outputs: list[Output] = []
    channel = _absorb(state, channel, reported, outputs)
    channel = _fill_window(state, channel, outputs, admission=admission)
    state.channels[channel_id] = channel
    signed = channel.ours.signed_nonce != before.ours.signed_nonce
    if signed or (channel is not before and not admission):
        outputs.insert(0, PersistChannel(channel))
    return outputs


def _absorb(
    state: NodeState, channel: Channel, reported: list[ChannelOutput], outputs: list[Output]
) -> Channel:
    """Turn what a channel reported into the node's outputs, and into the payment machines'
    decisions: those about this channel (claim, fail, unlock) are applied at once and what they
    report is absorbed in turn; those about other channels go out as `SendHop`."""
    partner = channel.partner
    context = machine.Context(state.identity, state.height, state.registered)
    queue = list(reported)
    unlocks: dict[SecretHash, Secret] = {}
    while True:
        here: list[object] = []
        while queue:
            event = queue.pop(0)
            if isinstance(event, Send):
                outputs.append(SendMessage(partner, event.message))
            elif isinstance(event, SecretLearned):
                outputs += router.secret_learned(state, event, unlocks)
            elif isinstance(event, IncomingLocks):
                here += router.incoming_locks(state, channel, event.locks, outputs)
            elif isinstance(event, OutgoingSettled):
                for secrethash in event.secrethashes:
                    outputs += payer.succeeded(state, secrethash, None)
            else:
                outputs += router.lock_news(state, channel, event)
        if unlocks:
            here.append(machine.UnlockLocks(unlocks))
            unlocks = {}
        if not here:
            return channel
        for decided in here:
            channel, more = machine.transition(channel, decided, context)
            queue += more


def _fill_window(
    state: NodeState, channel: Channel, outputs: list[Output], *, admission: bool
) -> Channel:
    """Fail queued payments a channel can no longer take, admit those waiting for it (on
    `admission`), and sign updates while the window of updates in flight has room: one disk
    sync for all of them."""
    if channel.ours.queued_locks and not channel.takes_new_transfers:
        channel, failed = payer.fail_queued(state, channel, f"channel is {channel.status}")
        outputs += failed
    if admission and state.payments.waiting.get(channel.channel_id):
        channel, admitted = payer.admit(state, channel)
        outputs += admitted
    while True:
        channel, update = channel_send.next_update(channel, state.identity)
        if update is None:
            return channel
        outputs.append(SendMessage(channel.partner, update))
        if isinstance(update, LockedTransfer):
            outputs += payer.on_signed(state, update.locks)
            if state.payments.forwards:
                mediator.on_signed(state, update.locks)


_HANDLERS: dict[type, Callable[[NodeState, Any], list[Output]]] = {
    ReceivePeerConnected: _peer_connected,
    ReceivePeerDisconnected: _peer_disconnected,
    ReceiveChannelMessages: _messages,
    ReceiveGossip: network.received,
    ReceiveHop: _hop,
    ActionSetFees: network.set_fees,
    ActionAnnounceNode: network.announce_node,
    ActionSend: _send,
    ActionPay: _pay,
    ActionCreateInvoice: _create_invoice,
    ActionTrackChannel: _track_channel,
    ActionCloseCooperatively: _close_cooperatively,
    ActionForceClose: _force_close,
    ContractReceiveBlock: _block,
    Tick: _tick,
    Resume: _resume,
}
