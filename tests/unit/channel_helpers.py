"""A `Pair` harness: both ends of one channel, linked directly with no sockets (the way h11's
tests link a client and a server object).

End "a" is the opener (participant A), end "b" its partner. `height` is the block height both
ends see unless a call passes its own, `registered` the secret registry as both ends see it.
`deliver(to, message)` hands a message to one end's core function and keeps the new state;
`round_trip(side)` signs that end's next update, delivers it and delivers the answer back;
`pay` runs a whole direct payment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

from p2pchan.core.channel import chain as chain_duties
from p2pchan.core.channel import close as coop
from p2pchan.core.channel import receive as receive
from p2pchan.core.channel import send as send
from p2pchan.core.channel import sync as sync
from p2pchan.core.channel.events import ChannelOutput, Fault, SecretLearned, Send
from p2pchan.core.channel.state import Channel, ChannelConfig, ChannelStatus
from p2pchan.crypto.hashing import sha256
from p2pchan.crypto.keys import Identity
from p2pchan.types import ChainId, ChannelId, Locksroot, Secret, SecretHash
from p2pchan.wire.balance_proof import BalanceProof, SignedBalanceProof, sign_balance_proof
from p2pchan.wire.channel_messages import (
    BalanceUpdate,
    ChannelMessage,
    ChannelSync,
    LockFailed,
    Processed,
    Refused,
    RevealSecret,
    SettleRequest,
    SettleResponse,
)
from p2pchan.wire.locks import HeldLock, Lock, locksroot

Side = Literal["a", "b"]
T = TypeVar("T")

CHAIN_ID = ChainId(sha256(b"p2pchan test chain"))
CHANNEL_ID = ChannelId(sha256(b"p2pchan test channel"))
START_HEIGHT = 10
LOCK_TIMEOUT = 50  # the payer's default lock timeout
# One update in flight per direction: the tests below pin down the order of messages exactly;
# windows of several updates (pipelining) have tests of their own.
DEFAULT_CONFIG = ChannelConfig(max_in_flight=1)


def secret(index: int) -> Secret:
    return Secret(sha256(b"channel test secret", index.to_bytes(8, "big")))


def secrethash(index: int) -> SecretHash:
    return SecretHash(sha256(secret(index)))


def held_lock(amount: int, expiration: int, index: int, payload: bytes = b"") -> HeldLock:
    """A lock whose secret is `secret(index)`."""
    return HeldLock(Lock(amount, expiration, secrethash(index)), payload)


def other(side: Side) -> Side:
    return "b" if side == "a" else "a"


def sent(outputs: Iterable[ChannelOutput]) -> list[ChannelMessage]:
    """The messages among `outputs`, in order."""
    return [output.message for output in outputs if isinstance(output, Send)]


def of_type(outputs: Iterable[object], kind: type[T]) -> list[T]:
    return [output for output in outputs if isinstance(output, kind)]


def faults(outputs: Iterable[ChannelOutput]) -> list[Fault]:
    return of_type(outputs, Fault)


def forge_proof(
    signer: Identity,
    *,
    chain_id: ChainId = CHAIN_ID,
    channel_id: ChannelId = CHANNEL_ID,
    nonce: int,
    transferred: int = 0,
    locks: Iterable[Lock] = (),
    locked: int | None = None,
    root: Locksroot | None = None,
) -> SignedBalanceProof:
    """A proof of `signer`'s direction with whatever totals a test wants (a malicious sender)."""
    lock_list = list(locks)
    proof = BalanceProof(
        chain_id,
        channel_id,
        signer.node_id,
        nonce,
        transferred,
        sum(lock.amount for lock in lock_list) if locked is None else locked,
        locksroot(lock_list) if root is None else root,
    )
    return sign_balance_proof(signer, proof)


@dataclass
class Pair:
    a: Channel
    b: Channel
    identity_a: Identity
    identity_b: Identity
    height: int = START_HEIGHT
    registered: dict[SecretHash, int] = field(default_factory=dict)

    @classmethod
    def open(
        cls,
        *,
        deposit_a: int = 1000,
        deposit_b: int = 1000,
        settle_timeout: int = 100,
        config: ChannelConfig = DEFAULT_CONFIG,
        config_b: ChannelConfig | None = None,
        chain_id: ChainId = CHAIN_ID,
        channel_id: ChannelId = CHANNEL_ID,
        identity_a: Identity | None = None,
        identity_b: Identity | None = None,
    ) -> Pair:
        identity_a = identity_a or Identity(b"a" * 32)
        identity_b = identity_b or Identity(b"b" * 32)
        a = Channel(
            chain_id,
            channel_id,
            identity_a.node_id,
            identity_b.node_id,
            True,
            settle_timeout,
            config,
            ChannelStatus.OPEN,
            deposit_a,
            deposit_b,
        )
        b = Channel(
            chain_id,
            channel_id,
            identity_b.node_id,
            identity_a.node_id,
            False,
            settle_timeout,
            config_b or config,
            ChannelStatus.OPEN,
            deposit_b,
            deposit_a,
        )
        return cls(a, b, identity_a, identity_b)

    # -- the two ends ----------------------------------------------------------------------

    def channel(self, side: Side) -> Channel:
        return self.a if side == "a" else self.b

    def set(self, side: Side, channel: Channel) -> None:
        if side == "a":
            self.a = channel
        else:
            self.b = channel

    def identity(self, side: Side) -> Identity:
        return self.identity_a if side == "a" else self.identity_b

    def lock(self, amount: int, index: int, *, expiration: int | None = None) -> HeldLock:
        """A lock expiring the payer's lock timeout from now unless told otherwise."""
        return held_lock(
            amount, self.height + LOCK_TIMEOUT if expiration is None else expiration, index
        )

    # -- driving them ----------------------------------------------------------------------

    def queue(self, side: Side, *locks: HeldLock) -> None:
        self.set(side, send.queue_locks(self.channel(side), locks))

    def next_update(self, side: Side) -> BalanceUpdate | None:
        channel, message = send.next_update(self.channel(side), self.identity(side))
        self.set(side, channel)
        return message

    def deliver(
        self, to: Side, message: ChannelMessage, *, height: int | None = None
    ) -> list[ChannelOutput]:
        """Hand `message` to end `to` (as its shell would) and keep the new state."""
        channel = self.channel(to)
        at = self.height if height is None else height
        outputs: list[ChannelOutput] = []
        if isinstance(message, BalanceUpdate):
            identity = self.identity(to)
            channel, outputs = receive.on_update(channel, message, identity, at, self.registered)
        elif isinstance(message, Processed):
            channel, outputs = send.on_processed(channel, message)
        elif isinstance(message, Refused):
            channel, outputs = send.on_refused(channel, message, at)
        elif isinstance(message, LockFailed):
            channel, outputs = send.on_lock_failed(channel, message)
        elif isinstance(message, RevealSecret):
            channel, outputs = send.on_reveal_secret(channel, message)
        elif isinstance(message, ChannelSync):
            channel, outputs = sync.on_sync(channel, message)
        elif isinstance(message, SettleRequest):
            channel, outputs = coop.on_settle_request(channel, message, self.identity(to), at)
        elif isinstance(message, SettleResponse):
            channel, outputs, _refusal = coop.on_settle_response(channel, message)
        else:
            raise TypeError(f"the harness cannot deliver {type(message).__name__}")
        self.set(to, channel)
        return outputs

    def round_trip(
        self, side: Side
    ) -> tuple[BalanceUpdate, list[ChannelOutput], list[ChannelOutput]]:
        """Sign `side`'s next update, deliver it, deliver the one answer back.

        Returns the update, the receiver's outputs and the sender's outputs on the answer.
        """
        update = self.next_update(side)
        assert update is not None, f"end {side} has no update to send"
        received, back = self.exchange(side, update)
        return update, received, back

    def exchange(
        self, side: Side, update: BalanceUpdate
    ) -> tuple[list[ChannelOutput], list[ChannelOutput]]:
        """Deliver `side`'s update to the other end and its one answer back to `side`."""
        received = self.deliver(other(side), update)
        answers = sent(received)
        assert len(answers) == 1, received
        return received, self.deliver(side, answers[0])

    def flush(self, side: Side) -> list[ChannelOutput]:
        """Send `side`'s queued updates one by one until none is left; each must be acked.

        Returns the sender's outputs on the acks (what happened to its payments)."""
        outputs: list[ChannelOutput] = []
        while (update := self.next_update(side)) is not None:
            received, back = self.exchange(side, update)
            assert isinstance(sent(received)[0], Processed), received
            outputs += back
        return outputs

    def reveal(self, receiver: Side, *indices: int) -> list[ChannelOutput]:
        """`receiver` claims its incoming locks with these secrets; the sender learns them."""
        channel, outputs = receive.claim_incoming(
            self.channel(receiver), {secrethash(i): secret(i) for i in indices}
        )
        self.set(receiver, channel)
        reveals = sent(outputs)
        assert len(reveals) == 1, outputs
        learned = self.deliver(other(receiver), reveals[0])
        # The payer's payment machine unlocks what it learned (the node does this).
        secrets = {o.secrethash: o.secret for o in learned if isinstance(o, SecretLearned)}
        self.set(other(receiver), send.queue_unlocks(self.channel(other(receiver)), secrets))
        return learned

    def fail(self, receiver: Side, *indices: int) -> list[ChannelOutput]:
        """`receiver` fails its incoming locks; the sender queues their removal."""
        channel, outputs = receive.fail_incoming(
            self.channel(receiver), [secrethash(i) for i in indices], "no route"
        )
        self.set(receiver, channel)
        failures = sent(outputs)
        assert len(failures) == 1, outputs
        return self.deliver(other(receiver), failures[0])

    def block(self, side: Side, height: int | None = None) -> list[ChannelOutput]:
        """A new block for end `side` (at `height`, default the pair's)."""
        channel, outputs = chain_duties.on_block(
            self.channel(side), self.height if height is None else height, self.registered
        )
        self.set(side, channel)
        return outputs

    def pay(self, payer: Side, amount: int, index: int) -> None:
        """A whole direct payment: lock, ack, reveal, unlock, ack."""
        self.queue(payer, self.lock(amount, index))
        self.flush(payer)
        self.reveal(other(payer), index)
        self.flush(payer)

    def assert_balances_agree(self) -> None:
        """Each end's view of each balance is the other end's view of it."""
        assert self.a.local_balance() == self.b.remote_balance()
        assert self.b.local_balance() == self.a.remote_balance()
        total = self.a.capacity
        assert self.b.capacity == total
        for end in (self.a, self.b):
            locked = end.ours.latest.locked + end.theirs.accepted.locked
            assert end.local_balance() + end.remote_balance() + locked == total


def with_status(channel: Channel, status: ChannelStatus) -> Channel:
    return replace(channel, status=status)
