"""Attack modes of `--dev` nodes (`node start --dev --misbehave MODE[,MODE]`): a dishonest
partner for tests and chaos runs, which honest nodes must defeat.

Each mode bends what the shell feeds into the core or carries out of it; the core itself stays
honest, so a misbehaving node keeps consistent books of its own. docs/PROTOCOL.md lists what
each mode does and how an honest partner defeats it.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace

from p2pchan.core.channel import close
from p2pchan.core.channel.events import Send
from p2pchan.core.channel.state import Channel
from p2pchan.crypto.keys import Identity
from p2pchan.errors import UserError
from p2pchan.types import SecretHash
from p2pchan.wire.balance_proof import sign_balance_proof
from p2pchan.wire.channel_messages import (
    ChannelMessage,
    ChannelSync,
    LockedTransfer,
    LockExpired,
    Processed,
    Refused,
    Unlock,
)
from p2pchan.wire.locks import HeldLock, Lock

SPAM_BURST = 50  # retryable-refusal bait sent per channel on each spam round


class Misbehave(enum.StrEnum):
    IGNORE_LOCK_EXPIRED = "ignore-lock-expired"  # never answer the partner's lock_expired
    REFUSE_LOCK_EXPIRED = "refuse-lock-expired"  # answer it with a final refusal
    WITHHOLD_REVEAL = "withhold-reveal"  # claim nothing, reveal nothing, fail nothing
    WITHHOLD_ACK = "withhold-ack"  # accept the partner's updates, never counter-sign them
    SPAM_RETRYABLE = "spam-retryable"  # flood validly signed updates refused retryably
    COOP_FREEZE = "coop-freeze"  # ask for a cooperative settle every block, never submit it
    WITHHOLD_UNLOCK = "withhold-unlock"  # take the secret, never pay the lock off-chain


def parse_modes(text: str) -> frozenset[Misbehave]:
    """`MODE[,MODE]` from the command line (`UserError` naming an unknown mode)."""
    modes = set()
    for name in filter(None, (part.strip() for part in text.split(","))):
        try:
            modes.add(Misbehave(name))
        except ValueError:
            known = ", ".join(mode.value for mode in Misbehave)
            raise UserError(f"unknown --misbehave mode {name!r} (known: {known})") from None
    return frozenset(modes)


@dataclass(frozen=True, slots=True)
class Attacks:
    modes: frozenset[Misbehave] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.modes)

    def __contains__(self, mode: object) -> bool:
        return mode in self.modes

    def incoming(
        self, messages: Iterable[ChannelMessage]
    ) -> tuple[list[ChannelMessage], list[ChannelMessage]]:
        """The partner's messages the core gets to see, and the replies sent instead."""
        kept: list[ChannelMessage] = []
        replies: list[ChannelMessage] = []
        for message in messages:
            if isinstance(message, LockExpired):
                if Misbehave.IGNORE_LOCK_EXPIRED in self.modes:
                    continue
                if Misbehave.REFUSE_LOCK_EXPIRED in self.modes:
                    nonce = message.proof.proof().nonce
                    reason = "lock_expired refused (misbehaving node)"
                    replies.append(Refused(message.channel_id, nonce, "refused", reason, False))
                    continue
            kept.append(message)
        return kept, replies

    def outgoing(self, message: ChannelMessage) -> list[ChannelMessage]:
        """What goes out instead of this message of ours (nothing, when this node withholds
        it)."""
        if Misbehave.WITHHOLD_UNLOCK in self.modes and isinstance(message, Unlock):
            return []
        if Misbehave.WITHHOLD_ACK not in self.modes:
            return [message]
        if isinstance(message, Processed):
            return []
        if isinstance(message, ChannelSync):
            # The sync would hand over our counter-signature too.
            return [replace(message, yours=None, yours_locks=b"")]
        return [message]

    @property
    def withholds_decisions(self) -> bool:
        """Decide nothing about incoming locks (a switch of the core: `NodeState`)."""
        return Misbehave.WITHHOLD_REVEAL in self.modes


HONEST = Attacks()


def retryable_bait(channel: Channel, identity: Identity, height: int) -> list[LockedTransfer]:
    """Validly signed transfers whose lock expires far beyond any window: the partner must
    check each signature and refuse it retryably ("my height may be behind"). Never stored:
    the nonce is reused on purpose (the partner refuses them, so nothing binds us)."""
    base = channel.ours.latest
    nonce = channel.ours.signed_nonce + 1
    far = height + 100 * max(channel.settle_timeout, channel.config.max_lock_timeout)
    messages = []
    for _ in range(SPAM_BURST):
        held = HeldLock(Lock(1, far, SecretHash(os.urandom(32))))
        state = base.adding(nonce, [held])
        proof = state.proof(channel.chain_id, channel.channel_id, channel.us)
        messages.append(
            LockedTransfer(channel.channel_id, sign_balance_proof(identity, proof), (held,))
        )
    return messages


def attack_messages(
    attacks: Attacks, channels: Iterable[Channel], identity: Identity, height: int
) -> list[ChannelMessage]:
    """What the attack modes that act on their own send, once a block, on these open channels
    with a connected partner: updates the partner must refuse retryably; a cooperative-settle
    request we will never submit."""
    messages: list[ChannelMessage] = []
    for channel in channels:
        if Misbehave.SPAM_RETRYABLE in attacks:
            messages += retryable_bait(channel, identity, height)
        if Misbehave.COOP_FREEZE in attacks and not channel.ours.in_flight:
            try:
                _, outputs = close.request_settle(channel, identity, height)
            except close.CooperativeCloseRefused:
                continue
            messages += [output.message for output in outputs if isinstance(output, Send)]
    return messages
