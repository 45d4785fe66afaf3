"""The mediator's machine: pass a lock on to the next hop for a fee, and follow both locks to
the end (`state.ForwardStatus`).

An incoming lock whose onion says "forward" is checked against DESIGN.md "Payments across
hops": its expiry equals the payload's; more than reveal_timeout blocks remain, and no more
than the outgoing channel's settle_timeout; the next node is our online partner on another
usable channel; the amount is within our announced limits for that direction, and the lock
covers it plus our fee (`fees.forwarding_fee`, under our current policy or, for ten minutes
after a change, the previous one). The forward is stored, then the outgoing lock goes to the
next channel (`SendHop`: the shell feeds it back as that channel's input once this step is
durable, so many forwards share one outgoing update).

Then, whatever comes first:
- the next hop reveals the secret (or layer 1 shows it): the secret is stored, revealed
  upstream (`SendHop`), and the outgoing lock unlocked off-chain at once while more than
  reveal_timeout blocks remain; later, the incoming channel's claim duty registers the secret
  first, and the outgoing lock is unlocked once layer 1 shows it;
- the outgoing lock is removed (failed downstream, or expired): only now the incoming lock is
  failed, with the next hop's encrypted failure wrapped for the payer (or our own, sealed).
The forward ends succeeded when the upstream partner paid us, recorded with its fee.

A decision about the other channel (`SendHop`) is carried out in a step of its own, so a crash
may lose it once the step that made it is durable: `after_restart` derives each such decision
again from the stored state alone, on `Resume`.
"""

from __future__ import annotations

from typing import NamedTuple

from p2pchan.core.channel.machine import ClaimLocks, FailLocks, QueueLocks, UnlockLocks
from p2pchan.core.channel.state import Channel, ChannelStatus
from p2pchan.core.outputs import (
    NotifyPaymentFinal,
    Output,
    PersistForward,
    PersistForwardDone,
    PersistOnion,
    SendHop,
)
from p2pchan.core.payment import incoming
from p2pchan.core.payment.fees import forwarding_fee
from p2pchan.core.payment.incoming import Onward
from p2pchan.core.payment.records import PaymentRecord, outcome_of
from p2pchan.core.payment.state import Forward, ForwardStatus
from p2pchan.core.state import NodeState
from p2pchan.core.timing import may_unlock_downstream, too_close_to_claim, too_far_to_forward
from p2pchan.crypto.sphinx_failure import wrap_failure
from p2pchan.types import ChannelId, Secret, SecretHash
from p2pchan.wire.codec import pack
from p2pchan.wire.gossip_messages import ChannelUpdateBody
from p2pchan.wire.locks import HeldLock, Lock
from p2pchan.wire.onion_payload import FailureCode

PREVIOUS_POLICY_MS = 10 * 60_000  # after a fee change, the old policy is accepted this long


class Refusal(NamedTuple):
    reason: str
    failure: bytes  # sealed for the payer


def offer(
    state: NodeState, in_channel: Channel, locks: list[tuple[HeldLock, Onward]]
) -> tuple[dict[SecretHash, Refusal], list[Output]]:
    """Forward what we can of these incoming locks; the rest are refused (with the reason and
    the failure for the payer). Returns the refusals and the outputs (records first)."""
    refusals: dict[SecretHash, Refusal] = {}
    outputs: list[Output] = []
    hops: dict[ChannelId, list[HeldLock]] = {}
    for held, onward in locks:
        outputs.append(PersistOnion(onward.replay_tag, held.lock.expiration_block))
        state.payments.seen_onions[onward.replay_tag] = held.lock.expiration_block
        checked = _check(state, in_channel, held, onward)
        if isinstance(checked, Refusal):
            refusals[held.secrethash] = checked
            continue
        out_channel = checked
        payload = onward.payload
        forward = Forward(
            held.secrethash,
            in_channel.channel_id,
            out_channel.channel_id,
            payload.next_node,
            held.lock.amount,
            payload.amount,
            held.lock.expiration_block,
            onward.shared_secret,
            state.now_ms,
        )
        state.payments.forwards[held.secrethash] = forward
        outputs.append(PersistForward(forward))
        lock = Lock(payload.amount, held.lock.expiration_block, held.secrethash)
        hops.setdefault(out_channel.channel_id, []).append(HeldLock(lock, onward.packet))
    outputs += [SendHop(cid, QueueLocks(tuple(queued))) for cid, queued in hops.items()]
    return refusals, outputs


def _check(
    state: NodeState, in_channel: Channel, held: HeldLock, onward: Onward
) -> Channel | Refusal:
    """The outgoing channel, or why we refuse to forward."""
    secret = onward.shared_secret
    payload = onward.payload
    lock = held.lock
    height = state.height

    def refuse(
        reason: str, code: FailureCode, channel: ChannelId | None = None, update: bool = False
    ) -> Refusal:
        """`update`: a fee or limit failure carries our current signed channel_update."""
        signed = _signed_update(state, channel) if update and channel is not None else b""
        return Refusal(reason, incoming.sealed(secret, code, channel, signed))

    if payload.expiration_block != lock.expiration_block:
        return refuse("the payload's expiry is not the lock's", FailureCode.BAD_PAYLOAD)
    if payload.amount <= 0 or payload.amount > lock.amount:
        return refuse("the payload's amount does not fit the lock", FailureCode.BAD_PAYLOAD)
    if too_close_to_claim(lock.expiration_block, height, in_channel.config.reveal_timeout):
        return refuse(f"expires at {lock.expiration_block}: too soon", FailureCode.EXPIRY_TOO_SOON)
    payments = state.payments
    if held.secrethash in payments.forwards or held.secrethash in payments.outgoing:
        return refuse(
            "this payment hash is in progress here", FailureCode.TEMPORARY_CHANNEL_FAILURE
        )
    out = state.channel_with(payload.next_node)
    if out is None or out.channel_id == in_channel.channel_id:
        return refuse("no channel with the next node", FailureCode.UNKNOWN_NEXT_HOP)
    out_id = out.channel_id
    if not out.takes_new_transfers or payload.next_node not in state.online:
        reason = f"channel {out_id.hex()} to the next node is not usable now"
        return refuse(reason, FailureCode.TEMPORARY_CHANNEL_FAILURE, out_id)
    if too_far_to_forward(lock.expiration_block, height, out.settle_timeout):
        return refuse(
            "expires too far ahead for the next channel", FailureCode.EXPIRY_TOO_FAR, out_id
        )
    policies = policies_for(state, out_id)
    current = policies[0]
    if current.disabled:
        reason = "forwarding over this channel is disabled"
        return refuse(reason, FailureCode.TEMPORARY_CHANNEL_FAILURE, out_id, update=True)
    if payload.amount < current.min_amount:
        return refuse("below our minimum", FailureCode.AMOUNT_BELOW_MINIMUM, out_id, update=True)
    if payload.amount > current.max_amount:
        return refuse("above our maximum", FailureCode.AMOUNT_ABOVE_MAXIMUM, out_id, update=True)
    fee = lock.amount - payload.amount
    if not any(fee >= forwarding_fee(payload.amount, p.fee_base, p.fee_ppm) for p in policies):
        reason = f"a fee of {fee} is below our policy"
        return refuse(reason, FailureCode.FEE_INSUFFICIENT, out_id, update=True)
    return out


class Policy(NamedTuple):
    fee_base: int
    fee_ppm: int
    min_amount: int
    max_amount: int
    disabled: bool


def policies_for(state: NodeState, channel_id: ChannelId) -> list[Policy]:
    """Our forwarding policy over this channel now, then the previous one while it still
    counts (ten minutes after a change)."""
    local = state.network.local.get(channel_id)
    if local is not None:
        current = _policy(local.update.body)
    else:
        default = state.fee_policy
        current = Policy(
            default.fee_base, default.fee_ppm, default.min_amount, default.max_amount,
            default.disabled,
        )  # fmt: skip
    policies = [current]
    previous = state.previous_policies.get(channel_id)
    if previous is not None and state.now_ms - previous[1] < PREVIOUS_POLICY_MS:
        policies.append(_policy(previous[0]))
    return policies


def _policy(body: ChannelUpdateBody) -> Policy:
    return Policy(body.fee_base, body.fee_ppm, body.min_amount, body.max_amount, body.disabled)


def _signed_update(state: NodeState, channel_id: ChannelId) -> bytes:
    local = state.network.local.get(channel_id)
    return b"" if local is None else pack(local.update.to_wire())


# -- what happens downstream ------------------------------------------------------------------


def owns(state: NodeState, secrethash: SecretHash) -> bool:
    return secrethash in state.payments.forwards


def on_signed(state: NodeState, locks: tuple[HeldLock, ...]) -> None:
    """Outgoing locks signed into an update: those forwards are promised downstream now."""
    forwards = state.payments.forwards
    for held in locks:
        forward = forwards.get(held.secrethash)
        if forward is not None and forward.status == ForwardStatus.OFFERED:
            forwards[held.secrethash] = forward.moved_to(ForwardStatus.LOCKED)


def secret_learned(
    state: NodeState, secrethash: SecretHash, secret: Secret
) -> tuple[bool, list[Output]]:
    """The next hop revealed the secret (or layer 1 showed it): store it, claim upstream.
    Returns whether to unlock the outgoing lock off-chain now."""
    forward = state.payments.forwards.get(secrethash)
    if forward is None:
        return True, []
    if forward.status == ForwardStatus.CLAIMED:
        return False, []  # claimed already (a second report of the same secret)
    forward = forward.moved_to(ForwardStatus.CLAIMED)._replace(secret=secret)
    state.payments.forwards[secrethash] = forward
    reveal = state.channels[forward.in_channel].config.reveal_timeout
    now = may_unlock_downstream(forward.expiration, state.height, reveal)
    claim = SendHop(forward.in_channel, ClaimLocks({secrethash: secret}))
    return now, [PersistForward(forward), claim]


def refused(state: NodeState, refusals: tuple[tuple[SecretHash, str], ...]) -> list[Output]:
    """The next channel could not take these outgoing locks: fail them upstream."""
    outputs: list[Output] = []
    for secrethash, reason in refusals:
        forward = state.payments.forwards.get(secrethash)
        if forward is None or forward.status != ForwardStatus.OFFERED:
            continue
        failure = incoming.sealed(
            forward.shared_secret, FailureCode.TEMPORARY_CHANNEL_FAILURE, forward.out_channel
        )
        outputs += _fail_upstream(state, forward, reason, failure)
    return outputs


def failure_reported(state: NodeState, secrethash: SecretHash, packet: bytes) -> None:
    """The next hop failed our outgoing lock, with the payer's encrypted failure: kept until
    the lock's removal is counter-signed (only then do we fail upstream)."""
    forward = state.payments.forwards.get(secrethash)
    if forward is not None and forward.status == ForwardStatus.LOCKED:
        state.payments.forwards[secrethash] = forward._replace(failure=packet)


def downstream_removed(state: NodeState, secrethash: SecretHash, reason: str) -> list[Output]:
    """The outgoing lock is gone for good: now fail the incoming one."""
    forward = state.payments.forwards.get(secrethash)
    if forward is None or forward.status not in (ForwardStatus.OFFERED, ForwardStatus.LOCKED):
        return []
    if forward.failure is not None:
        failure = wrap_failure(forward.shared_secret, forward.failure)
    else:
        code = (
            FailureCode.EXPIRED_DOWNSTREAM
            if "expired" in reason
            else FailureCode.TEMPORARY_CHANNEL_FAILURE
        )
        failure = incoming.sealed(forward.shared_secret, code, forward.out_channel)
    return _fail_upstream(state, forward, f"failed downstream: {reason}", failure)


def _fail_upstream(state: NodeState, forward: Forward, reason: str, failure: bytes) -> list[Output]:
    del state.payments.forwards[forward.secrethash]
    forward = forward.moved_to(ForwardStatus.FAILED)
    fail = FailLocks((forward.secrethash,), reason, {forward.secrethash: failure})
    return [*_final(state, forward, "failed", reason), SendHop(forward.in_channel, fail)]


# -- after a restart ---------------------------------------------------------------------------

RESTART_FAILURE = "failed downstream before the node restarted"


def after_restart(state: NodeState) -> list[Output]:
    """What a restart owes the incoming channels, derived again from the stored state alone.
    A forward's decision about its other channel travels as a `SendHop`, fed back in a step of
    its own: a crash once the deciding step is durable loses it. So, on `Resume`:
    - a forward whose outgoing lock was never signed fails upstream (nothing was promised
      downstream; its `QueueLocks` was lost);
    - an incoming lock whose forward failed and ended is failed again (`FailLocks` lost);
    - a forward whose secret we know claims upstream again (`ClaimLocks` lost).
    The unlock a forward paid upstream owes downstream (`UnlockLocks`, from `upstream_paid`)
    needs no rule here: the next hop sends its reveal again on the re-sync that follows every
    restart, and a lock of ours whose secret is revealed and that nothing tracks any more is
    unlocked at once (`router.secret_learned`); layer 1 showing the secret does the same."""
    failures = failures_after_restart(state)  # first: the refusals below end their forwards
    never_sent = tuple(
        (secrethash, "the node restarted before forwarding")
        for secrethash, forward in state.payments.forwards.items()
        if forward.status == ForwardStatus.OFFERED
    )
    return failures + refused(state, never_sent) + claims_after_restart(state)


def failures_after_restart(state: NodeState) -> list[Output]:
    """Incoming locks whose forward failed (its record final, its row gone) but whose failure
    upstream was lost with a crash: left alone, each stays pending upstream until it expires
    and its payer waits that long. Every incoming lock is decided in the step that reports it
    (claimed: its secret is kept; refused: `failed_sent`; forwarded: a forward, kept until it
    ends), so a lock with none of these and no payment of ours of its hash is such a lock. It
    is failed again, never while a lock of ours with its hash is live on any channel (the
    next hop could still claim it), with our own failure sealed for the payer from its onion
    (the one chosen when it failed, kept in memory only, went with the crash)."""
    if state.withhold_decisions:
        return []  # dev attack mode `withhold-reveal`: it decides nothing, fails nothing
    payments = state.payments
    owned = payments.forwards.keys() | payments.incoming.keys() | payments.outgoing.keys()
    live: set[SecretHash] = set()
    for channel in state.channels.values():
        ours = channel.ours
        live.update(h.secrethash for h in ours.all_locks() if h.secrethash not in ours.abandoned)
    key = state.identity.x25519_private_key()
    outputs: list[Output] = []
    for channel in state.channels.values():
        theirs = channel.theirs
        if channel.status == ChannelStatus.SETTLED:
            continue  # nothing off-chain counts any more
        failing: list[SecretHash] = []
        packets: dict[SecretHash, bytes] = {}
        for held in theirs.accepted.locks:
            secrethash = held.secrethash
            if (
                secrethash in owned
                or secrethash in live
                or secrethash in theirs.known_secrets
                or secrethash in theirs.failed_sent
            ):
                continue
            failing.append(secrethash)
            shared = incoming.shared_secret_of(held, key)
            if shared is not None:
                code = FailureCode.TEMPORARY_CHANNEL_FAILURE
                packets[secrethash] = incoming.sealed(shared, code)
        if failing:
            fail = FailLocks(tuple(failing), RESTART_FAILURE, packets)
            outputs.append(SendHop(channel.channel_id, fail))
    return outputs


def claims_after_restart(state: NodeState) -> list[Output]:
    """After a restart: forwards whose secret we learned (and stored, with the outgoing lock's
    unlock) but whose upstream claim never reached the incoming channel (it travels as a
    `SendHop`, fed back in a step of its own, and a crash in between loses it). Claim again,
    or the upstream lock expires unpaid while we paid downstream."""
    claims: dict[ChannelId, dict[SecretHash, Secret]] = {}
    for secrethash, forward in state.payments.forwards.items():
        if forward.status != ForwardStatus.CLAIMED or forward.secret is None:
            continue
        channel = state.channels.get(forward.in_channel)
        if channel is None:
            continue
        theirs = channel.theirs
        if theirs.accepted.has_lock(secrethash) and secrethash not in theirs.known_secrets:
            claims.setdefault(forward.in_channel, {})[secrethash] = forward.secret
    return [SendHop(channel_id, ClaimLocks(secrets)) for channel_id, secrets in claims.items()]


# -- what happens upstream --------------------------------------------------------------------


def upstream_paid(state: NodeState, secrethash: SecretHash) -> list[Output]:
    """The upstream partner paid our incoming lock out: the forward succeeded, its fee ours."""
    forward = state.payments.forwards.pop(secrethash, None)
    if forward is None:
        return []
    forward = forward.moved_to(ForwardStatus.SUCCEEDED)
    outputs = _final(state, forward, "succeeded", "")
    if forward.secret is not None:
        # Paid: the outgoing lock may be unlocked off-chain now, however close its expiry (a
        # no-op if it was unlocked already).
        unlock = UnlockLocks({secrethash: forward.secret})
        outputs.append(SendHop(forward.out_channel, unlock))
    return outputs


def upstream_removed(state: NodeState, secrethash: SecretHash) -> list[Output]:
    """The incoming lock was removed unpaid (it expired): nothing more to gain. The outgoing
    one expired with it (the same expiry); its removal follows on its own channel."""
    forward = state.payments.forwards.pop(secrethash, None)
    if forward is None:
        return []
    forward = forward.moved_to(ForwardStatus.FAILED)
    return _final(state, forward, "failed", "the incoming lock was removed unpaid")


def _final(state: NodeState, forward: Forward, status: str, error: str) -> list[Output]:
    record = record_of(forward)
    outcome = outcome_of(record, status, forward.secret, state.now_ms, error)
    return [
        PersistForwardDone(record, outcome),
        NotifyPaymentFinal(record, outcome),
    ]


def record_of(forward: Forward) -> PaymentRecord:
    """A forward as `payments` lists it: the amount passed on, the fee kept."""
    return PaymentRecord(
        forward.secrethash, "forward", forward.next_node, forward.out_channel,
        forward.out_amount, forward.fee, "pending", forward.secret, forward.created_ms,
        None, "",
    )  # fmt: skip
