"""The channel machine's one entry: `transition(channel, event, context)` routes each event
(a partner's message, a layer-1 event, a block, a session, a close we ask for) to the function
of the channel core that owns it, through one table.

A message that breaks the protocol (a `RemoteProtocolError` from its handler) changes nothing
and comes back as a `Fault` to score; any other error is ours and propagates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from p2pchan.core.channel import chain, close, receive, send, sync
from p2pchan.core.channel.events import (
    ChannelOutput,
    Fault,
    LocksRefused,
    Send,
    SettleAnswered,
)
from p2pchan.core.channel.state import Channel, ChannelStatus
from p2pchan.core.outputs import ContractSendClose
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
    SecretRegistered,
)
from p2pchan.types import Secret, SecretHash
from p2pchan.wire.channel_messages import (
    ChannelSync,
    LockedTransfer,
    LockExpired,
    LockFailed,
    LockRemoved,
    Processed,
    Refused,
    RevealSecret,
    SettleRequest,
    SettleResponse,
    Unlock,
)
from p2pchan.wire.locks import HeldLock


@dataclass(frozen=True, slots=True)
class Context:
    """What a channel needs to know beyond itself."""

    identity: Identity
    height: int
    registered: Mapping[SecretHash, int]


# -- events that are not messages or layer-1 events ------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockPassed:
    """A new block (its events already applied): duties, expiries, retransmissions."""


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """A connection to the partner started: re-sync."""


@dataclass(frozen=True, slots=True)
class SendSync:
    """We learned of the channel while connected: the partner's sync may have come before."""


@dataclass(frozen=True, slots=True)
class RequestCooperativeSettle:
    pass


@dataclass(frozen=True, slots=True)
class ForceClose:
    cheat: bool = False  # dev attack mode: leave out our own sent proofs


@dataclass(frozen=True, slots=True)
class Settled:
    """Settled on layer 1 with these nonces (from its record) and payouts (from the event)."""

    event: ChannelSettled
    nonce_a: int
    nonce_b: int


# -- what the payment machines decide about locks ------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimLocks:
    """Claim these incoming locks: remember their secrets and reveal them to the partner."""

    secrets: Mapping[SecretHash, Secret]


@dataclass(frozen=True, slots=True)
class FailLocks:
    """We will not claim these incoming locks: `lock_failed`, with each routed payment's
    encrypted failure for its payer (`failures`, where there is one)."""

    secrethashes: tuple[SecretHash, ...]
    reason: str
    failures: Mapping[SecretHash, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UnlockLocks:
    """Pay out these locks of ours (their secrets are known) in the next update."""

    secrets: Mapping[SecretHash, Secret]


@dataclass(frozen=True, slots=True)
class QueueLocks:
    """Send these new locks in the next update; those the channel cannot take come back as
    `LocksRefused`."""

    locks: tuple[HeldLock, ...]


ChannelEvent = Any  # a channel message, a layer-1 event or one of the events above
Handler = Callable[[Channel, Any, Context], tuple[Channel, list[ChannelOutput]]]
MALFORMED_POINTS = receive.MALFORMED_POINTS


def transition(
    channel: Channel, event: ChannelEvent, context: Context
) -> tuple[Channel, list[ChannelOutput]]:
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"the channel machine has no handler for {type(event).__name__}")
    try:
        return handler(channel, event, context)
    except RemoteProtocolError as error:
        return channel, [Fault(MALFORMED_POINTS, str(error))]


# -- the partner's messages ---------------------------------------------------------------------


def _update(channel: Channel, message: Any, context: Context) -> tuple[Channel, list[Any]]:
    return receive.on_update(channel, message, context.identity, context.height, context.registered)


def _processed(channel: Channel, message: Processed, _: Context) -> tuple[Channel, list[Any]]:
    return send.on_processed(channel, message)


def _refused(channel: Channel, message: Refused, context: Context) -> tuple[Channel, list[Any]]:
    return send.on_refused(channel, message, context.height)


def _lock_failed(channel: Channel, message: LockFailed, _: Context) -> tuple[Channel, list[Any]]:
    return send.on_lock_failed(channel, message)


def _reveal(channel: Channel, message: RevealSecret, _: Context) -> tuple[Channel, list[Any]]:
    return send.on_reveal_secret(channel, message)


def _sync(channel: Channel, message: ChannelSync, _: Context) -> tuple[Channel, list[Any]]:
    return sync.on_sync(channel, message)


def _settle_request(
    channel: Channel, message: SettleRequest, context: Context
) -> tuple[Channel, list[Any]]:
    return close.on_settle_request(channel, message, context.identity, context.height)


def _settle_response(
    channel: Channel, message: SettleResponse, _: Context
) -> tuple[Channel, list[Any]]:
    channel, outputs, refusal = close.on_settle_response(channel, message)
    return channel, [*outputs, SettleAnswered(refusal)]


# -- layer 1 ------------------------------------------------------------------------------------


def _nonces(channel: Channel, nonce_a: int, nonce_b: int) -> tuple[int, int]:
    """(our direction's nonce on chain, the partner's)."""
    return (nonce_a, nonce_b) if channel.we_are_a else (nonce_b, nonce_a)


def _opened(channel: Channel, _: ChannelOpened, context: Context) -> tuple[Channel, list[Any]]:
    return chain.on_opened(channel, context.height), []


def _deposited(channel: Channel, event: ChannelDeposited, _: Context) -> tuple[Channel, list[Any]]:
    return chain.on_deposited(channel, event.participant, event.total_deposit), []


def _closed(channel: Channel, event: ChannelClosed, _: Context) -> tuple[Channel, list[Any]]:
    ours, theirs = _nonces(channel, event.nonce_a, event.nonce_b)
    return chain.on_closed(channel, event.closer, event.close_block, ours, theirs)


def _updated(channel: Channel, event: ChannelUpdated, _: Context) -> tuple[Channel, list[Any]]:
    return chain.on_updated(channel, *_nonces(channel, event.nonce_a, event.nonce_b))


def _settled(channel: Channel, settled: Settled, _: Context) -> tuple[Channel, list[Any]]:
    event = settled.event
    payout_ours, payout_theirs = _nonces(channel, event.payout_a, event.payout_b)
    return chain.on_settled(
        channel,
        *_nonces(channel, settled.nonce_a, settled.nonce_b),
        payout_ours=payout_ours,
        payout_theirs=payout_theirs,
    )


def _coop_settled(
    channel: Channel, event: ChannelCooperativelySettled, _: Context
) -> tuple[Channel, list[Any]]:
    ours, theirs = _nonces(channel, event.balance_a, event.balance_b)
    return close.on_cooperatively_settled(channel, balance_ours=ours, balance_theirs=theirs), []


def _unlocked(
    channel: Channel, event: ChannelUnlocked, context: Context
) -> tuple[Channel, list[Any]]:
    return chain.on_unlocked(
        channel,
        event.sender,
        context.registered,
        to_receiver=event.to_receiver,
        to_sender=event.to_sender,
    )


def _secret(channel: Channel, event: SecretRegistered, _: Context) -> tuple[Channel, list[Any]]:
    return chain.on_secret_registered(channel, event.secrethash, event.secret, event.block)


# -- the node's own events ---------------------------------------------------------------------


def _block(channel: Channel, _: BlockPassed, context: Context) -> tuple[Channel, list[Any]]:
    return chain.on_block(channel, context.height, context.registered)


def _session(channel: Channel, _: SessionStarted, __: Context) -> tuple[Channel, list[Any]]:
    return sync.session_started(channel)


def _send_sync(channel: Channel, _: SendSync, __: Context) -> tuple[Channel, list[Any]]:
    # Nothing of ours is in flight on a channel we just learned of: we wait for nothing.
    return channel, [Send(sync.sync_message(channel))]


def _request_settle(
    channel: Channel, _: RequestCooperativeSettle, context: Context
) -> tuple[Channel, list[Any]]:
    return close.request_settle(channel, context.identity, context.height)


def _force_close(channel: Channel, event: ForceClose, _: Context) -> tuple[Channel, list[Any]]:
    if channel.status not in (ChannelStatus.OPENING, ChannelStatus.OPEN, ChannelStatus.CLOSING):
        raise UserError(f"channel {channel.channel_id.hex()} is already {channel.status}")
    proofs = chain.close_proofs(channel, cheat=event.cheat)
    reason = "cheating close (dev attack mode)" if event.cheat else "force close requested"
    closing = replace(
        channel.moved_to(ChannelStatus.CLOSING), close_requested=True, close_cheat=event.cheat
    )
    return closing, [ContractSendClose(channel.channel_id, proofs, reason)]


# -- the payment machines' decisions -----------------------------------------------------------


def _claim(channel: Channel, event: ClaimLocks, _: Context) -> tuple[Channel, list[Any]]:
    return receive.claim_incoming(channel, event.secrets)


def _fail(channel: Channel, event: FailLocks, _: Context) -> tuple[Channel, list[Any]]:
    return receive.fail_incoming(channel, event.secrethashes, event.reason, event.failures)


def _unlock(channel: Channel, event: UnlockLocks, _: Context) -> tuple[Channel, list[Any]]:
    return send.queue_unlocks(channel, dict(event.secrets)), []


def _queue(channel: Channel, event: QueueLocks, _: Context) -> tuple[Channel, list[Any]]:
    channel, refused, waiting = send.queue_some(channel, event.locks)
    refusals = [(held.secrethash, reason) for held, reason in refused]
    refusals += [(held.secrethash, "no free lock slot") for held in waiting]
    if not refusals:
        return channel, []
    return channel, [LocksRefused(channel.channel_id, tuple(refusals))]


_HANDLERS: dict[type, Handler] = {
    LockedTransfer: _update,
    Unlock: _update,
    LockExpired: _update,
    LockRemoved: _update,
    Processed: _processed,
    Refused: _refused,
    LockFailed: _lock_failed,
    RevealSecret: _reveal,
    ChannelSync: _sync,
    SettleRequest: _settle_request,
    SettleResponse: _settle_response,
    ChannelOpened: _opened,
    ChannelDeposited: _deposited,
    ChannelClosed: _closed,
    ChannelUpdated: _updated,
    Settled: _settled,
    ChannelCooperativelySettled: _coop_settled,
    ChannelUnlocked: _unlocked,
    SecretRegistered: _secret,
    BlockPassed: _block,
    SessionStarted: _session,
    SendSync: _send_sync,
    RequestCooperativeSettle: _request_settle,
    ForceClose: _force_close,
    ClaimLocks: _claim,
    FailLocks: _fail,
    UnlockLocks: _unlock,
    QueueLocks: _queue,
}
