"""The payer's machine: start a payment, admit it to its channel, and follow its lock to the
end (`state.PayerStatus`).

A payment becomes a lock on our first channel of its route (`routes.plan`: our channel with the
payee, or the cheapest route over the gossiped graph, its lock carrying an onion). It waits
(unsigned: nothing is promised) for a free lock slot, at most `ADMISSION_TIMEOUT_MS`; then it is
queued for the channel's next update, which many payments share (one signature, one disk
sync); its record is written with the update that first carries its lock. It succeeds when the
payee's secret comes back and fails only once its lock can no longer be claimed. A routed
payment whose lock was removed reads the failure a hop sealed for it, and tries another route
(`retry.py`) until `PAYMENT_TIMEOUT_MS` after it started. A payment refused before anything
was signed fails at once, and is recorded with its reason all the same.
"""

from __future__ import annotations

from dataclasses import replace

from p2pchan.core.channel import send as channel_send
from p2pchan.core.channel.state import Channel
from p2pchan.core.invoice import RouteHint
from p2pchan.core.outputs import (
    NotifyPaymentAdmitted,
    NotifyPaymentFinal,
    Output,
    PersistPayment,
    PersistPaymentOutcome,
)
from p2pchan.core.payment import mediator, retry, routes
from p2pchan.core.payment.records import PaymentRecord, RouteHop, outcome_of
from p2pchan.core.payment.state import Attempt, Payer, PayerStatus
from p2pchan.core.routing.route import Route
from p2pchan.core.state import NodeState
from p2pchan.core.timing import too_late_to_send
from p2pchan.errors import LocalProtocolError, NoRoute
from p2pchan.types import Address, ChannelId, Secret, SecretHash, short_hex
from p2pchan.wire.hop_payload import PAYLOAD_VERSION, HopPayload
from p2pchan.wire.locks import HeldLock, Lock

ADMISSION_TIMEOUT_MS = 60_000  # a payment may wait this long for a free lock slot
PAYMENT_TIMEOUT_MS = 60_000  # no new attempt (another route) starts after this
MAX_ATTEMPTS = 20


def start(
    state: NodeState,
    *,
    request_id: int,
    payee: Address,
    amount: int,
    secrethash: SecretHash,
    payload_secret: Secret | None,
    known_secret: Secret | None,
    min_lock_timeout: int = 0,
    hints: tuple[RouteHint, ...] = (),
) -> list[Output]:
    """A new payment: refused at once (and recorded) if no route takes it now, else waiting
    for admission to its first channel (`admit`)."""
    payments = state.payments
    if secrethash in payments.outgoing or secrethash in payments.forwards:
        reason = "a payment with this payment hash is already in progress"
        return [NotifyPaymentAdmitted(request_id, secrethash, reason)]
    record = PaymentRecord(
        secrethash, "out", payee, ChannelId(b""), amount, 0, "pending", known_secret,
        state.now_ms, None, "",
    )  # fmt: skip
    refusal = _refusal(state, payee, amount)
    if refusal is not None:
        return _refused(request_id, record, refusal, state.now_ms)
    attempt = Attempt(0, Route(state.us, ()), payload_secret, min_lock_timeout, frozenset(), hints)
    payer = Payer(record, None, PayerStatus.WAITING, request_id, attempt)
    try:
        payer = _planned(state, payer, attempt)
    except NoRoute as error:
        return _refused(request_id, record, _no_route_reason(state, payee, error), state.now_ms)
    payments.outgoing[secrethash] = payer
    payments.waiting.setdefault(payer.record.channel_id, []).append(secrethash)
    return []


def _refusal(state: NodeState, payee: Address, amount: int) -> str | None:
    if payee == state.us:
        return "cannot pay ourselves"
    if amount <= 0:
        return "the amount must be positive"
    return None


def _no_route_reason(state: NodeState, payee: Address, error: NoRoute) -> str:
    """Said as a user of two-party channels expects it when the payee is (or was) a partner."""
    channel = state.channel_with(payee)
    if channel is not None and channel.takes_new_transfers and payee not in state.online:
        return f"peer {short_hex(payee)} is offline: nothing was sent"
    if channel is None or not channel.takes_new_transfers:
        if error.reason == "unknown_target":  # nobody told us of a channel of the payee's
            return f"no usable channel with {short_hex(payee)}"
        return f"no usable channel with {short_hex(payee)}, and {error}"
    return str(error)


def _planned(state: NodeState, payer: Payer, attempt: Attempt) -> Payer:
    """The payer with a lock for this attempt over the route `routes.plan` finds now."""
    record = payer.record
    secrethash = record.payment_hash
    plan = routes.plan(
        state,
        Address(record.peer),
        record.amount,
        min_lock_timeout=attempt.min_lock_timeout,
        excluded=attempt.excluded,
        hints=attempt.hints,
    )
    expiration = state.height + plan.lock_timeout
    first = plan.route.hops[0]
    if plan.direct:
        payload = HopPayload(PAYLOAD_VERSION, record.amount, expiration, attempt.payload_secret)
        packet = payload.encode()
        routed = None
    else:
        key = routes.session_key(state, secrethash, attempt.number)
        onion = routes.onion_for(plan.route, expiration, attempt.payload_secret, key, secrethash)
        packet = onion.packet
        routed = attempt._replace(route=plan.route, failure=None)
    held = HeldLock(Lock(first.amount, expiration, secrethash), packet)
    # Built whole, not by `_replace`: this runs once per payment, and `_replace` took about
    # 15 % of a direct payment's start in a `bench channel` profile.
    hops = plan.route.hops if routed else ()
    route = tuple(RouteHop(hop.node_id, hop.channel_id, hop.amount, hop.fee) for hop in hops)
    record = PaymentRecord(
        secrethash, record.direction, record.peer, plan.channel.channel_id, record.amount,
        plan.route.fee, record.status, record.secret, record.created_ms, record.finished_ms,
        record.error, route,
    )  # fmt: skip
    return Payer(record, held, payer.status, payer.request_id, routed)


def admit(state: NodeState, channel: Channel) -> tuple[Channel, list[Output]]:
    """Queue the payments waiting for this channel, in order, as far as it can take them now.
    A payment that waited while blocks passed may be too close to its expiry now; one that finds
    every lock slot taken waits on (`expire_waiting` gives up on it after
    `ADMISSION_TIMEOUT_MS`). Only as many as there are free slots are looked at: this runs on
    every step of the channel, and hundreds may wait (measured: looking at all of them on each
    step put milliseconds on the path of every message in `bench channel`)."""
    payments = state.payments
    hashes = payments.waiting.pop(channel.channel_id, None)
    outputs: list[Output] = []
    while hashes:
        if channel.takes_new_transfers:
            size = channel.config.max_pending_locks - len(channel.ours.all_locks())
            size -= len(channel.ours.queued_locks)
            if size <= 0:
                break
        else:
            size = len(hashes)  # refused, all of them
        chunk, hashes = hashes[:size], hashes[size:]
        channel, more, left = _admit_some(state, channel, chunk)
        outputs += more
        if left:  # no room after all: they keep their place in the line
            hashes = left + hashes
            break
    if hashes:
        payments.waiting[channel.channel_id] = hashes
    return channel, outputs


def _admit_some(
    state: NodeState, channel: Channel, hashes: list[SecretHash]
) -> tuple[Channel, list[Output], list[SecretHash]]:
    payments = state.payments
    waiting = [payments.outgoing[h] for h in hashes if h in payments.outgoing]
    locks = {payer.record.payment_hash: _held(payer) for payer in waiting}
    reveal = channel.config.reveal_timeout
    last_useful = state.height + reveal
    reasons: dict[SecretHash, str] = {
        secrethash: f"waited too long: the lock would expire by block {last_useful}"
        for secrethash, held in locks.items()
        if too_late_to_send(held.lock.expiration_block, state.height, reveal)
    }
    fresh = [held for secrethash, held in locks.items() if secrethash not in reasons]
    channel, refused, still = channel_send.queue_some(channel, fresh)
    reasons.update((held.secrethash, reason) for held, reason in refused)
    still_waiting = {held.secrethash for held in still}
    outputs: list[Output] = []
    left: list[SecretHash] = []
    for payer in waiting:
        secrethash = payer.record.payment_hash
        if secrethash in still_waiting:
            left.append(secrethash)
            continue
        reason = reasons.get(secrethash)
        if reason is not None:
            del payments.outgoing[secrethash]
            outputs += _refused(payer.request_id, payer.record, reason, state.now_ms)
        else:
            payments.outgoing[secrethash] = payer.moved_to(PayerStatus.QUEUED)
            outputs.append(NotifyPaymentAdmitted(payer.request_id, secrethash, None))
    return channel, outputs, left


def expire_waiting(state: NodeState) -> list[Output]:
    """Payments that waited too long for a lock slot give up (on a `Tick`). Each channel's line
    is in arrival order, so only its head is looked at (this runs with every batch)."""
    outputs: list[Output] = []
    oldest_allowed = state.now_ms - ADMISSION_TIMEOUT_MS
    reason = f"no free lock slot for {ADMISSION_TIMEOUT_MS // 1000} s"
    for channel_id, hashes in list(state.payments.waiting.items()):
        expired = 0
        for secrethash in hashes:
            payer = state.payments.outgoing.get(secrethash)
            if payer is not None and payer.record.created_ms >= oldest_allowed:
                break
            expired += 1
            if payer is not None:
                del state.payments.outgoing[secrethash]
                outputs += _refused(payer.request_id, payer.record, reason, state.now_ms)
        if expired == len(hashes):
            del state.payments.waiting[channel_id]
        elif expired:
            state.payments.waiting[channel_id] = hashes[expired:]
    return outputs


def on_signed(state: NodeState, locks: tuple[HeldLock, ...]) -> list[Output]:
    """Our new locks were signed into an update: their payments are promised now, and their
    records are written with that update."""
    payments = state.payments
    outputs: list[Output] = []
    for held in locks:
        payer = payments.outgoing.get(held.secrethash)
        if payer is not None and payer.status == PayerStatus.QUEUED:
            payments.outgoing[held.secrethash] = payer.moved_to(PayerStatus.LOCKED)
            outputs.append(PersistPayment(payer.record))
    return outputs


def succeeded(state: NodeState, secrethash: SecretHash, secret: Secret | None) -> list[Output]:
    """The payee took the payment: we know its secret (proof of payment), or the chain paid
    its lock to the payee."""
    payer = state.payments.outgoing.pop(secrethash, None)
    if payer is None:
        return []  # final already (a later report of the same outcome changes nothing)
    payer.check_move(PayerStatus.SUCCEEDED)
    if payer.attempt is not None:
        state.mission.report_attempt(payer.attempt.route.directions(), None, state.now_ms)
    proof = secret if secret is not None else payer.record.secret
    return _final(payer.record, "succeeded", proof, "", state.now_ms)


def failed(state: NodeState, secrethash: SecretHash, reason: str) -> list[Output]:
    """The payment's lock can no longer be claimed (or it was never signed)."""
    payer = state.payments.outgoing.pop(secrethash, None)
    if payer is None:
        return []
    if not payer.signed:
        return _refused(payer.request_id, payer.record, reason, state.now_ms)
    payer.check_move(PayerStatus.FAILED)
    return _final(payer.record, "failed", None, reason, state.now_ms)


def failure_reported(state: NodeState, secrethash: SecretHash, packet: bytes) -> None:
    """A hop failed our routed attempt and says why (encrypted for us): kept until the lock's
    removal is counter-signed, when we read it and try another route."""
    payer = state.payments.outgoing.get(secrethash)
    if payer is not None and payer.attempt is not None and payer.status == PayerStatus.LOCKED:
        attempt = payer.attempt._replace(failure=packet)
        state.payments.outgoing[secrethash] = payer._replace(attempt=attempt)


def removed(state: NodeState, secrethash: SecretHash, reason: str) -> list[Output]:
    """Our lock is gone unpaid. A routed payment learns from the failure and tries another
    route while its timeout lasts; anything else fails."""
    payer = state.payments.outgoing.get(secrethash)
    if payer is None or payer.attempt is None or payer.status != PayerStatus.LOCKED:
        return failed(state, secrethash, reason)
    attempt = payer.attempt
    learned = retry.learn(state, secrethash, attempt)
    if learned.final:
        return failed(state, secrethash, learned.why)
    if state.now_ms >= payer.record.created_ms + PAYMENT_TIMEOUT_MS:
        return failed(state, secrethash, f"{learned.why}; the payment timed out")
    if attempt.number + 1 >= MAX_ATTEMPTS:
        return failed(state, secrethash, f"{learned.why}; gave up after {MAX_ATTEMPTS} routes")
    following = attempt._replace(number=attempt.number + 1, excluded=learned.excluded)
    try:
        payer = _planned(state, payer.moved_to(PayerStatus.WAITING), following)
    except NoRoute as error:
        return failed(state, secrethash, f"{learned.why}; {error}")
    state.payments.outgoing[secrethash] = payer
    state.payments.waiting.setdefault(payer.record.channel_id, []).append(secrethash)
    return []


def fail_queued(state: NodeState, channel: Channel, reason: str) -> tuple[Channel, list[Output]]:
    """The channel can no longer take new locks: the payments queued for it, never signed,
    fail now (and forwards queued for it fail upstream)."""
    queued = channel.ours.queued_locks
    if not queued:
        return channel, []
    channel = replace(channel, ours=replace(channel.ours, queued_locks=()))
    outputs: list[Output] = []
    for held in queued:
        outputs += failed(state, held.secrethash, reason)
    refusals = tuple((held.secrethash, reason) for held in queued)
    outputs += mediator.refused(state, refusals)
    return channel, outputs


def _held(payer: Payer) -> HeldLock:
    if payer.held is None:
        raise LocalProtocolError("a payment waiting for admission has no lock")
    return payer.held


def _refused(request_id: int, record: PaymentRecord, reason: str, now_ms: int) -> list[Output]:
    """A payment that failed before anything was signed: recorded, with its reason."""
    return [
        NotifyPaymentAdmitted(request_id, record.payment_hash, reason),
        PersistPayment(record),
        *_final(record, "failed", None, reason, now_ms),
    ]


def _final(
    record: PaymentRecord, status: str, secret: Secret | None, error: str, now_ms: int
) -> list[Output]:
    outcome = outcome_of(record, status, secret, now_ms, error)
    return [PersistPaymentOutcome(outcome), NotifyPaymentFinal(record, outcome)]
