"""The persisted form of a channel: one msgpack blob.

Each lock is stored once, in a table keyed by (side, secrethash) (side 0 for ours, 1 for the
partner's); every state that holds locks (acked, in flight, dropped, accepted, settled) lists
its secrethashes in order. One blob per update costs far less than a row per lock: a lock would
be inserted and deleted again within a few updates (measured: 200 row operations per 100
payments made the store the bottleneck). Work queued in memory for the next update
(`ours.queued_locks`) is not persisted: nothing about it was promised yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from p2pchan.core.channel.direction import DirectionState
from p2pchan.core.channel.state import (
    Channel,
    ChannelConfig,
    ChannelStatus,
    InFlight,
    Ours,
    SettledLocks,
    Theirs,
    UpdateKind,
)
from p2pchan.errors import RemoteProtocolError, StoreError
from p2pchan.types import Address, ChainId, ChannelId, Secret, SecretHash
from p2pchan.wire.balance_proof import SignedBalanceProof
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.locks import HeldLock, Lock

FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)  # format 2 lacks the trailing "since format 3" list: defaults
OURS, THEIRS = 0, 1
LockKey = tuple[int, SecretHash]
Locks = Mapping[LockKey, HeldLock]
MAX_CHANNEL_BLOB = 16 * 1024 * 1024


def _proof(signed: SignedBalanceProof | None) -> Any:
    return None if signed is None else [signed.data, signed.signature, signed.counter_signature]


def _unproof(value: Any) -> SignedBalanceProof | None:
    return None if value is None else SignedBalanceProof(value[0], value[1], value[2])


def _state(state: DirectionState) -> list[Any]:
    return [state.nonce, state.transferred, [held.secrethash for held in state.locks]]


def _unstate(value: Any, side: int, locks: Locks) -> DirectionState:
    nonce, transferred, hashes = value
    return DirectionState(nonce, transferred, tuple(locks[(side, h)] for h in hashes))


def encode_channel(channel: Channel) -> bytes:
    ours, theirs = channel.ours, channel.theirs
    rows: dict[LockKey, HeldLock] = {}
    for held in ours.all_locks():
        rows[(OURS, held.secrethash)] = held
    for held in theirs.accepted.locks:
        rows[(THEIRS, held.secrethash)] = held
    for settled in channel.settled_unlocks:
        side = OURS if settled.sender == channel.us else THEIRS
        for held in settled.locks:
            rows[(side, held.secrethash)] = held
    return pack(
        [
            FORMAT_VERSION,
            channel.chain_id,
            channel.channel_id,
            channel.us,
            channel.partner,
            channel.we_are_a,
            channel.settle_timeout,
            [
                channel.config.reveal_timeout,
                channel.config.max_lock_timeout,
                channel.config.max_pending_locks,
                channel.config.max_in_flight,
            ],
            str(channel.status),
            channel.our_deposit,
            channel.partner_deposit,
            channel.opened_block,
            channel.close_block,
            channel.closer,
            channel.coop_expiration,
            channel.coop_terms,
            channel.coop_signature,
            [[s.sender, [h.secrethash for h in s.locks]] for s in channel.settled_unlocks],
            [
                _state(ours.acked),
                _proof(ours.acked_proof),
                [
                    [
                        str(flight.kind),
                        _state(flight.state),
                        _proof(flight.signed),
                        [h.secrethash for h in flight.new_locks],
                        list(flight.secrets),
                        list(flight.secrethashes),
                        flight.retry_after_block,
                    ]
                    for flight in ours.in_flight
                ],
                ours.signed_nonce,
                [h.secrethash for h in ours.dropped],
                [[h, s] for h, s in ours.queued_unlocks.items()],
                sorted(ours.queued_expired),
                sorted(ours.queued_failed),
                ours.final_refusals,
            ],
            [
                _state(theirs.accepted),
                _proof(theirs.accepted_proof),
                sorted(theirs.failed_sent),
                [[h, s] for h, s in theirs.known_secrets.items()],
                [[h, b] for h, b in theirs.registered.items()],
            ],
            [
                channel.chain_nonce_ours,
                channel.chain_nonce_theirs,
                channel.close_requested,
                channel.close_cheat,
            ],
            [  # since format 3
                channel.coop_partner_signature,
                channel.coop_we_asked,
                channel.coop_refused_until,
                channel.note,
                sorted(ours.abandoned),
                channel.settled_ours,
                channel.settled_theirs,
                [_state(state) for state in ours.refused],
                [[h, packet] for h, packet in theirs.failure_packets.items()],
            ],
            [
                [side, held.lock.amount, held.lock.expiration_block, secrethash, held.payload]
                for (side, secrethash), held in rows.items()
            ],
        ]
    )


def decode_channel(blob: bytes) -> Channel:
    try:
        return _decode(blob)
    except (ValueError, TypeError, KeyError, IndexError, RemoteProtocolError) as error:
        raise StoreError(f"a stored channel is unreadable: {error!r}") from None


def _decode(blob: bytes) -> Channel:
    value = unpack(blob, max_len=MAX_CHANNEL_BLOB)
    version = value[0] if isinstance(value, list) and value else None
    if version not in READABLE_VERSIONS:
        raise ValueError(f"unknown channel format {version!r} (this node reads {FORMAT_VERSION})")
    *value, lock_table = value
    since_3: list[Any] = [None, False, 0, "", [], None, None, [], []]
    if version >= 3:
        *value, stored = value
        since_3[: len(stored)] = stored  # later fields were appended: older blobs lack them
    locks: dict[LockKey, HeldLock] = {
        (side, SecretHash(secrethash)): HeldLock(
            Lock(amount, expiration, SecretHash(secrethash)), payload
        )
        for side, amount, expiration, secrethash, payload in lock_table
    }
    (
        version,
        chain_id,
        channel_id,
        us,
        partner,
        we_are_a,
        settle_timeout,
        config,
        status,
        our_deposit,
        partner_deposit,
        opened_block,
        close_block,
        closer,
        coop_expiration,
        coop_terms,
        coop_signature,
        settled,
        ours_value,
        theirs_value,
        closing_value,
    ) = value
    (acked, acked_proof, flights, signed_nonce, dropped, unlocks, expired, failed, refusals) = (
        ours_value
    )
    (
        coop_partner_signature,
        coop_we_asked,
        coop_refused_until,
        note,
        abandoned,
        settled_ours,
        settled_theirs,
        refused,
        failure_packets,
    ) = since_3
    in_flight = []
    for kind, state, signed, new_hashes, secrets, secrethashes, retry in flights:
        signed_proof = _unproof(signed)
        if signed_proof is None:
            raise ValueError("an in-flight update without its proof")
        in_flight.append(
            InFlight(
                UpdateKind(kind),
                _unstate(state, OURS, locks),
                signed_proof,
                tuple(locks[(OURS, h)] for h in new_hashes),
                tuple(Secret(s) for s in secrets),
                tuple(SecretHash(h) for h in secrethashes),
                retry,
            )
        )
    ours = Ours(
        acked=_unstate(acked, OURS, locks),
        acked_proof=_unproof(acked_proof),
        in_flight=tuple(in_flight),
        signed_nonce=signed_nonce,
        dropped=tuple(locks[(OURS, h)] for h in dropped),
        queued_unlocks={SecretHash(h): Secret(s) for h, s in unlocks},
        queued_expired=frozenset(expired),
        queued_failed=frozenset(failed),
        final_refusals=refusals,
        abandoned=frozenset(SecretHash(h) for h in abandoned),
        refused=tuple(_unstate(state, OURS, locks) for state in refused),
    )
    accepted, accepted_proof, failed_sent, known, registered = theirs_value
    theirs = Theirs(
        accepted=_unstate(accepted, THEIRS, locks),
        accepted_proof=_unproof(accepted_proof),
        failed_sent=frozenset(failed_sent),
        failure_packets={SecretHash(h): bytes(p) for h, p in failure_packets},
        known_secrets={SecretHash(h): Secret(s) for h, s in known},
        registered={SecretHash(h): b for h, b in registered},
    )
    settled_unlocks = tuple(
        SettledLocks(
            Address(sender),
            tuple(locks[(OURS if sender == us else THEIRS, h)] for h in hashes),
        )
        for sender, hashes in settled
    )
    chain_nonce_ours, chain_nonce_theirs, close_requested, close_cheat = closing_value
    return Channel(
        chain_id=ChainId(chain_id),
        channel_id=ChannelId(channel_id),
        us=Address(us),
        partner=Address(partner),
        we_are_a=we_are_a,
        settle_timeout=settle_timeout,
        config=ChannelConfig(*config),
        status=ChannelStatus(status),
        our_deposit=our_deposit,
        partner_deposit=partner_deposit,
        opened_block=opened_block,
        close_block=close_block,
        closer=None if closer is None else Address(closer),
        coop_expiration=coop_expiration,
        coop_terms=coop_terms,
        coop_signature=coop_signature,
        settled_unlocks=settled_unlocks,
        ours=ours,
        theirs=theirs,
        chain_nonce_ours=chain_nonce_ours,
        chain_nonce_theirs=chain_nonce_theirs,
        close_requested=bool(close_requested),
        close_cheat=bool(close_cheat),
        coop_partner_signature=coop_partner_signature,
        coop_we_asked=bool(coop_we_asked),
        coop_refused_until=coop_refused_until,
        note=str(note),
        settled_ours=settled_ours,
        settled_theirs=settled_theirs,
    )
