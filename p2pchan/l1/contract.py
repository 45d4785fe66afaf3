"""The channel contract: open, deposit, close, update, settle, unlock, cooperative settle.

Exactly the rules of DESIGN.md "Toy layer 1", each of which closes a known attack. Every handler
checks everything first and raises `ChainError` (with a stable code) before changing any state,
so a rejected call leaves the chain as it was. `height` is the block the call is included in.
"""

from __future__ import annotations

from dataclasses import dataclass

from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.signing import SigningTag, is_valid
from p2pchan.errors import ChainError, RemoteProtocolError
from p2pchan.l1.events import (
    ChannelClosed,
    ChannelCooperativelySettled,
    ChannelDeposited,
    ChannelOpened,
    ChannelSettled,
    ChannelUnlocked,
    ChannelUpdated,
    Event,
)
from p2pchan.l1.state import (
    MAX_SETTLE_TIMEOUT,
    MIN_SETTLE_TIMEOUT,
    NO_PROOF,
    ChainState,
    ChannelRecord,
    ChannelState,
    StoredProof,
)
from p2pchan.l1.transactions import (
    FAUCET_ADDRESS,
    ChannelClose,
    ChannelDeposit,
    ChannelOpen,
    ChannelSettle,
    ChannelUnlock,
    ChannelUpdate,
    CooperativeSettleCall,
)
from p2pchan.types import U64_MAX, Address, ChainId, ChannelId
from p2pchan.wire.balance_proof import SignedBalanceProof
from p2pchan.wire.coop_settle import CooperativeSettle
from p2pchan.wire.locks import decode_locks

_CHANNEL_ID_TAG = b"p2pchan/channel_id/1"


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who calls, in which block, and what they can spend once the fee is paid."""

    state: ChainState
    sender: Address
    nonce: int
    height: int
    spendable: int


def channel_id_for(chain_id: ChainId, opener: Address, opener_nonce: int) -> ChannelId:
    """Channel ids are derived from the opening transaction, so they are unique forever."""
    return ChannelId(sha256(_CHANNEL_ID_TAG, chain_id, opener, opener_nonce.to_bytes(8, "big")))


def _channel(state: ChainState, channel_id: ChannelId) -> ChannelRecord:
    channel = state.channels.get(channel_id)
    if channel is None:
        raise ChainError("unknown_channel", f"no channel {channel_id.hex()}")
    return channel


def _require_state(channel: ChannelRecord, *allowed: ChannelState) -> None:
    if channel.state in allowed:
        return
    if channel.state == ChannelState.SETTLED:
        raise ChainError("already_settled", f"channel {channel.channel_id.hex()} is settled")
    names = " or ".join(state.name.lower() for state in allowed)
    current = ChannelState(channel.state).name.lower()
    raise ChainError("wrong_state", f"channel is {current}, must be {names}")


def open_channel(ctx: CallContext, call: ChannelOpen) -> list[Event]:
    state, opener, partner = ctx.state, ctx.sender, call.partner
    if partner == opener:
        raise ChainError("same_participant", "cannot open a channel with yourself")
    if partner == FAUCET_ADDRESS:
        raise ChainError("invalid_participant", "the faucet address cannot hold a channel")
    if call.settle_timeout < MIN_SETTLE_TIMEOUT:
        raise ChainError(
            "settle_timeout_too_small",
            f"settle_timeout {call.settle_timeout} is below the minimum {MIN_SETTLE_TIMEOUT}",
        )
    if call.settle_timeout > MAX_SETTLE_TIMEOUT:
        raise ChainError(
            "settle_timeout_too_large",
            f"settle_timeout {call.settle_timeout} is above the maximum {MAX_SETTLE_TIMEOUT}",
        )
    pair = frozenset((opener, partner))
    if pair in state.live_pairs:
        raise ChainError("channel_exists", "these two already share an unsettled channel")
    channel_id = channel_id_for(state.chain_id, opener, ctx.nonce)
    state.channels[channel_id] = ChannelRecord(
        channel_id=channel_id,
        participant_a=opener,
        participant_b=partner,
        settle_timeout=call.settle_timeout,
        opened_block=ctx.height,
        state=ChannelState.OPEN,
        deposit_a=0,
        deposit_b=0,
        closer=None,
        close_block=0,
        proof_a=NO_PROOF,
        proof_b=NO_PROOF,
        settled_block=0,
        withheld_a=0,
        withheld_b=0,
        unlocked_a=False,
        unlocked_b=False,
    )
    state.live_pairs.add(pair)
    return [ChannelOpened(channel_id, opener, partner, call.settle_timeout)]


def deposit(ctx: CallContext, call: ChannelDeposit) -> list[Event]:
    channel = _channel(ctx.state, call.channel_id)
    _require_state(channel, ChannelState.OPEN)
    if not channel.is_participant(call.participant):
        raise ChainError("not_participant", "deposits go to a participant of the channel")
    is_a = call.participant == channel.participant_a
    current = channel.deposit_a if is_a else channel.deposit_b
    if call.total_deposit < current:
        raise ChainError(
            "deposit_decreased", f"total deposit {call.total_deposit} is below {current}"
        )
    added = call.total_deposit - current
    if added > ctx.spendable:
        raise ChainError("insufficient_funds", f"deposit needs {added}, have {ctx.spendable}")
    if channel.total_deposit + added > U64_MAX:
        raise ChainError("overflow", "the channel's total deposit would exceed u64")
    if added == 0:
        return []  # an idempotent retry
    ctx.state.account(ctx.sender).balance -= added
    if is_a:
        channel.deposit_a = call.total_deposit
    else:
        channel.deposit_b = call.total_deposit
    return [ChannelDeposited(channel.channel_id, call.participant, call.total_deposit)]


def _check_proof(
    state: ChainState, channel: ChannelRecord, signed: SignedBalanceProof, submitter: Address
) -> tuple[Address, StoredProof]:
    """Validate one proof for this channel; return its sender and what the contract stores.

    Valid when signed by its sender and either submitted by its receiver or counter-signed by
    its receiver.
    """
    try:
        proof = signed.proof()
    except RemoteProtocolError as error:
        raise ChainError("invalid_proof", f"malformed balance proof: {error}") from None
    if proof.chain_id != state.chain_id:
        raise ChainError("wrong_chain", "balance proof is for another chain")
    if proof.channel_id != channel.channel_id:
        raise ChainError("invalid_proof", "balance proof is for another channel")
    if not channel.is_participant(proof.sender):
        raise ChainError("invalid_proof", "balance proof sender is not a participant")
    if proof.nonce == 0:
        raise ChainError("invalid_proof", "balance proof nonce must be at least 1")
    if proof.transferred_amount + proof.locked_amount > U64_MAX:
        raise ChainError("overflow", "transferred + locked amount exceeds u64")
    if not signed.sender_signature_valid(proof):
        raise ChainError("bad_signature", "balance proof is not signed by its sender")
    receiver = channel.partner_of(proof.sender)
    if submitter != receiver and not signed.counter_signature_valid(receiver):
        raise ChainError(
            "missing_counter_signature",
            "only the receiver may submit a proof without the receiver's counter-signature",
        )
    stored = StoredProof(
        proof.nonce, proof.transferred_amount, proof.locked_amount, proof.locksroot
    )
    return proof.sender, stored


def _store_proof(channel: ChannelRecord, sender: Address, stored: StoredProof) -> None:
    if sender == channel.participant_a:
        channel.proof_a = stored
    else:
        channel.proof_b = stored


def _stored_proof(channel: ChannelRecord, sender: Address) -> StoredProof:
    return channel.proof_a if sender == channel.participant_a else channel.proof_b


def close(ctx: CallContext, call: ChannelClose) -> list[Event]:
    channel = _channel(ctx.state, call.channel_id)
    _require_state(channel, ChannelState.OPEN)
    if not channel.is_participant(ctx.sender):
        raise ChainError("not_participant", "only a participant may close a channel")
    checked = [_check_proof(ctx.state, channel, signed, ctx.sender) for signed in call.proofs]
    if len({sender for sender, _ in checked}) != len(checked):
        raise ChainError("invalid_proof", "a close carries at most one proof per direction")
    for sender, stored in checked:
        _store_proof(channel, sender, stored)
    channel.state = ChannelState.CLOSED
    channel.closer = ctx.sender
    channel.close_block = ctx.height
    return [
        ChannelClosed(
            channel.channel_id, ctx.sender, ctx.height, channel.proof_a.nonce, channel.proof_b.nonce
        )
    ]


def update(ctx: CallContext, call: ChannelUpdate) -> list[Event]:
    channel = _channel(ctx.state, call.channel_id)
    _require_state(channel, ChannelState.CLOSED)
    if ctx.height > channel.window_end:
        raise ChainError(
            "window_closed", f"the settlement window ended at block {channel.window_end}"
        )
    if not call.proofs:
        raise ChainError("no_proof_applies", "an update needs at least one proof")
    # Each proof stands alone: check them all against the stored state before applying any.
    applicable: list[tuple[Address, StoredProof]] = []
    reasons: list[str] = []
    for index, signed in enumerate(call.proofs):
        try:
            sender, stored = _check_proof(ctx.state, channel, signed, ctx.sender)
        except ChainError as error:
            reasons.append(f"proof {index}: {error}")
            continue
        best = max(
            [_stored_proof(channel, sender).nonce]
            + [proof.nonce for other, proof in applicable if other == sender]
        )
        if stored.nonce <= best:
            reasons.append(f"proof {index}: stale_proof: nonce {stored.nonce} is not above {best}")
            continue
        applicable.append((sender, stored))
    if not applicable:
        raise ChainError("no_proof_applies", "; ".join(reasons))
    for sender, stored in applicable:
        _store_proof(channel, sender, stored)
    return [
        ChannelUpdated(channel.channel_id, ctx.sender, channel.proof_a.nonce, channel.proof_b.nonce)
    ]


def settle(ctx: CallContext, call: ChannelSettle) -> list[Event]:
    channel = _channel(ctx.state, call.channel_id)
    _require_state(channel, ChannelState.CLOSED)
    if ctx.height <= channel.window_end:
        raise ChainError(
            "window_open",
            f"settle is allowed from block {channel.window_end + 1}, not {ctx.height}",
        )
    total = channel.total_deposit
    proof_a, proof_b = channel.proof_a, channel.proof_b
    share_a = min(
        max(channel.deposit_a - proof_a.transferred_amount + proof_b.transferred_amount, 0), total
    )
    share_b = total - share_a
    withheld_a = min(proof_a.locked_amount, share_a)
    withheld_b = min(proof_b.locked_amount, share_b)
    payout_a, payout_b = share_a - withheld_a, share_b - withheld_b
    state = ctx.state
    state.account(channel.participant_a).balance += payout_a
    state.account(channel.participant_b).balance += payout_b
    channel.withheld_a, channel.withheld_b = withheld_a, withheld_b
    channel.state = ChannelState.SETTLED
    channel.settled_block = ctx.height
    state.live_pairs.discard(frozenset((channel.participant_a, channel.participant_b)))
    return [ChannelSettled(channel.channel_id, payout_a, payout_b, withheld_a, withheld_b)]


def unlock(ctx: CallContext, call: ChannelUnlock) -> list[Event]:
    state = ctx.state
    channel = _channel(state, call.channel_id)
    if channel.state != ChannelState.SETTLED:
        raise ChainError("wrong_state", "unlock is allowed only after settle")
    if not channel.is_participant(call.sender):
        raise ChainError("not_participant", "unlock names a direction by its sender")
    is_a = call.sender == channel.participant_a
    if channel.unlocked_a if is_a else channel.unlocked_b:
        raise ChainError("already_unlocked", "this direction was already unlocked")
    stored = _stored_proof(channel, call.sender)
    if sha256(call.locks) != stored.locksroot:
        raise ChainError("locksroot_mismatch", "the locks do not hash to the settled locksroot")
    try:
        locks = decode_locks(call.locks)
    except RemoteProtocolError as error:
        raise ChainError("malformed", str(error)) from None
    for lock in locks:
        if ctx.height <= lock.expiration_block:
            raise ChainError(
                "locks_not_expired",
                f"a lock expires at block {lock.expiration_block}; unlock from block "
                f"{max(lock.expiration_block for lock in locks) + 1}",
            )
    claimed = 0
    for lock in locks:
        registered = state.secrets.get(lock.secrethash)
        if registered is not None and registered <= lock.expiration_block:
            claimed += lock.amount
    withheld = channel.withheld_a if is_a else channel.withheld_b
    to_receiver = min(claimed, withheld)
    to_sender = withheld - to_receiver
    state.account(channel.partner_of(call.sender)).balance += to_receiver
    state.account(call.sender).balance += to_sender
    if is_a:
        channel.unlocked_a = True
    else:
        channel.unlocked_b = True
    return [ChannelUnlocked(channel.channel_id, call.sender, to_receiver, to_sender)]


def cooperative_settle(ctx: CallContext, call: CooperativeSettleCall) -> list[Event]:
    state = ctx.state
    channel = _channel(state, call.channel_id)
    _require_state(channel, ChannelState.OPEN, ChannelState.CLOSED)
    if channel.state == ChannelState.CLOSED and ctx.height > channel.window_end:
        raise ChainError(
            "window_closed", f"the settlement window ended at block {channel.window_end}"
        )
    try:
        terms = CooperativeSettle.decode(call.data)
    except RemoteProtocolError as error:
        raise ChainError("malformed", f"cooperative settle: {error}") from None
    if terms.chain_id != state.chain_id:
        raise ChainError("wrong_chain", "cooperative settle is for another chain")
    if terms.channel_id != channel.channel_id:
        raise ChainError("coop_mismatch", "cooperative settle is for another channel")
    if (terms.deposit_a, terms.deposit_b) != (channel.deposit_a, channel.deposit_b):
        raise ChainError("coop_mismatch", "the deposits changed since it was signed")
    if terms.balance_a + terms.balance_b != channel.total_deposit:
        raise ChainError(
            "coop_mismatch",
            f"balances {terms.balance_a} + {terms.balance_b} != deposits {channel.total_deposit}",
        )
    if ctx.height > terms.expiration_block:
        raise ChainError(
            "coop_expired", f"cooperative settle expired at block {terms.expiration_block}"
        )
    for participant, signature in (
        (channel.participant_a, call.signature_a),
        (channel.participant_b, call.signature_b),
    ):
        if not is_valid(participant, SigningTag.COOP_SETTLE, call.data, signature):
            raise ChainError("bad_signature", "cooperative settle lacks a participant's signature")
    state.account(channel.participant_a).balance += terms.balance_a
    state.account(channel.participant_b).balance += terms.balance_b
    channel.state = ChannelState.SETTLED
    channel.settled_block = ctx.height
    channel.unlocked_a = channel.unlocked_b = True
    state.live_pairs.discard(frozenset((channel.participant_a, channel.participant_b)))
    return [ChannelCooperativelySettled(channel.channel_id, terms.balance_a, terms.balance_b)]
