"""Which payment machine owns what a channel reports about a lock: the payer (our own
payments), the payee (locks meant for us), or the mediator (locks we pass on). Incoming locks
are read first (`incoming.read`: a direct payload, or an onion peeled) to know whether they are
meant for us or to be forwarded.

What the machines decide about the channel that reported (claim, fail, unlock) comes back as
channel events for the node to apply in the same step; what they decide about another channel
is a `SendHop` output among the rest.
"""

from __future__ import annotations

from p2pchan.core.channel import machine
from p2pchan.core.channel.events import (
    ChannelOutput,
    FailureReported,
    Fault,
    IncomingRemoved,
    IncomingUnlocked,
    LocksRefused,
    OutgoingRemoved,
    SecretLearned,
    SettleAnswered,
)
from p2pchan.core.channel.state import Channel
from p2pchan.core.outputs import (
    ContractSend,
    NotifyFault,
    NotifySettleResponse,
    Output,
    PersistOnion,
)
from p2pchan.core.payment import incoming, mediator, payee, payer
from p2pchan.core.payment.incoming import Final, Onward, Unreadable
from p2pchan.core.payment.state import PayeeStatus
from p2pchan.core.state import NodeState
from p2pchan.types import Secret, SecretHash
from p2pchan.wire.locks import HeldLock


def secret_learned(
    state: NodeState, event: SecretLearned, unlocks: dict[SecretHash, Secret]
) -> list[Output]:
    """The secret of a lock we sent: a payment of ours succeeded (unlock it now), or a forward
    claims upstream (and unlocks now, or once layer 1 shows the secret)."""
    secrethash = event.secrethash
    if mediator.owns(state, secrethash):
        now, outputs = mediator.secret_learned(state, secrethash, event.secret)
        if now:
            unlocks[secrethash] = event.secret
        return outputs
    unlocks[secrethash] = event.secret  # a lock nobody tracks: the partner proved its claim
    return payer.succeeded(state, secrethash, event.secret)


def incoming_locks(
    state: NodeState, channel: Channel, locks: tuple[HeldLock, ...], outputs: list[Output]
) -> list[object]:
    """Read each new incoming lock and let the payee or the mediator decide on it. Returns the
    decisions about this channel (claims, failures)."""
    if state.withhold_decisions:  # dev attack mode `withhold-reveal`
        return []
    key = state.identity.x25519_private_key()
    seen = state.payments.seen_onions
    finals: list[tuple[HeldLock, Final]] = []
    onwards: list[tuple[HeldLock, Onward]] = []
    failures: dict[SecretHash, tuple[str, bytes | None]] = {}
    for held in locks:
        found = incoming.read(held, key, seen)
        if isinstance(found, Unreadable):
            failures[held.secrethash] = (found.reason, found.failure)
        elif isinstance(found, Final):
            finals.append((held, found))
            if found.replay_tag is not None:
                seen[found.replay_tag] = held.lock.expiration_block
                outputs.append(PersistOnion(found.replay_tag, held.lock.expiration_block))
        else:
            onwards.append((held, found))
    claims, declines, records = payee.on_locks(state, channel, finals)
    outputs += records
    failures.update(declines)
    if onwards:
        refusals, forwarded = mediator.offer(state, channel, onwards)
        outputs += forwarded
        failures.update(refusals)
    decisions: list[object] = []
    if claims:
        decisions.append(machine.ClaimLocks(claims))
    if failures:
        reason = "; ".join(sorted({why for why, _ in failures.values()}))
        packets = {h: packet for h, (_, packet) in failures.items() if packet is not None}
        decisions.append(machine.FailLocks(tuple(failures), reason, packets))
    return decisions


def lock_news(state: NodeState, channel: Channel, event: ChannelOutput) -> list[Output]:
    """Everything else a channel reports: to the shell as it is, or to the payment machine that
    owns the lock."""
    if isinstance(event, Fault):
        return [NotifyFault(channel.partner, event.points, event.reason, event.budgeted)]
    if isinstance(event, SettleAnswered):
        return [NotifySettleResponse(channel.channel_id, event.refusal)]
    outputs: list[Output] = []
    if isinstance(event, IncomingUnlocked):
        for held in event.locks:
            if mediator.owns(state, held.secrethash):
                outputs += mediator.upstream_paid(state, held.secrethash)
            else:
                outputs += payee.finished(state, held.secrethash, PayeeStatus.SUCCEEDED)
    elif isinstance(event, IncomingRemoved):
        for secrethash in event.secrethashes:
            if mediator.owns(state, secrethash):
                outputs += mediator.upstream_removed(state, secrethash)
            else:
                reason = "lock removed unpaid"
                outputs += payee.finished(state, secrethash, PayeeStatus.FAILED, reason)
    elif isinstance(event, OutgoingRemoved):
        for secrethash in event.secrethashes:
            if mediator.owns(state, secrethash):
                outputs += mediator.downstream_removed(state, secrethash, event.reason)
            else:
                outputs += payer.removed(state, secrethash, event.reason)
    elif isinstance(event, FailureReported):
        if mediator.owns(state, event.secrethash):
            mediator.failure_reported(state, event.secrethash, event.packet)
        else:
            payer.failure_reported(state, event.secrethash, event.packet)
    elif isinstance(event, LocksRefused):
        outputs += mediator.refused(state, event.refused)
    elif isinstance(event, ContractSend):
        outputs.append(event)  # a layer-1 duty, as it is
    else:
        raise TypeError(f"nothing routes a channel's {type(event).__name__}")
    return outputs
