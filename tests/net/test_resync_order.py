"""A restarted node's updates reach its partner in order: nothing a step signed before a session
with the partner started goes out on that session ahead of the re-sync (the soak's
`wrong_locked` force-closes: the partner saw a later nonce before the resent earlier one it was
built on, refused it finally, then accepted both when they were resent, while the sender had
dropped the refused one).

The restarted node runs in a real driver with a real store; its partner is the pure channel
core (`channel_helpers.Pair`'s end "b"); the peer session is fake and records what is sent, in
order, which is what the partner reads. Under the autojump clock: nothing here does real IO."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from p2pchan.core.channel.state import ChannelConfig
from p2pchan.core.channel.sync import sync_message
from p2pchan.core.inputs import (
    ContractReceiveBlock,
    ReceiveChannelMessages,
    ReceivePeerConnected,
    ReceivePeerDisconnected,
)
from p2pchan.core.state import NodeState
from p2pchan.crypto.keys import Identity
from p2pchan.net.chain_actions import ChainActions
from p2pchan.net.driver import Driver, now_ms
from p2pchan.net.history import PaymentHistory
from p2pchan.storage.channel_codec import decode_channel, encode_channel
from p2pchan.storage.db import NodeDatabase
from p2pchan.types import Address
from p2pchan.wire.channel_messages import ChannelMessage, LockRemoved, Refused
from tests.unit.channel_helpers import CHAIN_ID, CHANNEL_ID, Pair, sent

HUB, SPOKE = Identity(b"h" * 32), Identity(b"s" * 32)
CONFIG = ChannelConfig()  # a window of 4 updates in flight, as in a node
EXPIRING, FAILED = 1, 2  # the indices of the two locks' secrets
EXPIRATION = 20  # the expiring lock's; lock_expired goes out from E + 2
FAILED_AMOUNT = 2429


@dataclass
class RecordingSession:
    """Stands in for a peer session: what is sent, in order; `closed` after it ends."""

    node_id: bytes
    sent: list[ChannelMessage] = field(default_factory=list)
    closed: bool = False

    async def send(self, message: ChannelMessage) -> None:
        if self.closed:
            raise trio.ClosedResourceError("session ended")
        self.sent.append(message)

    def fault(self, points: float, reason: str, *, budgeted: bool = False) -> None:
        raise AssertionError(f"an honest partner was scored: {reason}")


def hub_killed_after_signing_a_removal() -> Pair:
    """The hub forwarded two locks to the spoke (both acked); the spoke failed the larger one;
    the hub signed and stored its removal (nonce 2) and was killed before the bytes left."""
    pair = Pair.open(identity_a=HUB, identity_b=SPOKE, deposit_a=10_000, config=CONFIG)
    pair.queue(
        "a", pair.lock(100, EXPIRING, expiration=EXPIRATION), pair.lock(FAILED_AMOUNT, FAILED)
    )
    pair.flush("a")
    pair.fail("b", FAILED)
    lost = pair.next_update("a")
    assert isinstance(lost, LockRemoved) and lost.proof.proof().nonce == 2
    return pair


class Hub:
    """The restarted hub: a driver on the hub's channel as its store held it."""

    def __init__(self, pair: Pair, database: NodeDatabase, height: int) -> None:
        state = NodeState(HUB, CHAIN_ID, CONFIG, height=height)
        state.channels[CHANNEL_ID] = decode_channel(encode_channel(pair.a))  # from disk
        self.sessions: dict[bytes, RecordingSession] = {}
        self.driver = Driver(
            state,
            database,
            ChainActions(wallet=None),  # type: ignore[arg-type]  # no chain duty here
            self.sessions.get,  # type: ignore[arg-type]
            PaymentHistory(database, keep_days=None, protected=set, now_ms=now_ms),
        )

    async def receive(self, *messages: ChannelMessage) -> None:
        received = ReceiveChannelMessages(Address(SPOKE.node_id), CHANNEL_ID, messages, now_ms())
        await self.driver.step([received])

    async def block(self, height: int) -> None:
        await self.driver.step([ContractReceiveBlock(height, (), {}, now_ms())])


def spoke_reads(pair: Pair, messages: list[ChannelMessage]) -> list[ChannelMessage]:
    """The spoke handles the hub's channel messages in the order they arrived (gossip aside);
    its answers."""
    answers: list[ChannelMessage] = []
    for message in messages:
        if isinstance(message, ChannelMessage):
            answers += sent(pair.deliver("b", message))
    return answers


def assert_in_step(pair: Pair, hub: Hub) -> None:
    """Both ends hold the same newest state of the hub's direction, nothing left in flight."""
    ours = hub.driver.state.channels[CHANNEL_ID].ours
    assert not ours.in_flight
    assert ours.acked == pair.b.theirs.accepted
    assert ours.acked.locks == ()


async def spoke_accepts_all(pair: Pair, hub: Hub, sent: list[ChannelMessage]) -> None:
    """The spoke reads what the hub sent and refuses none of it; its answers reach the hub, and
    both ends end in step."""
    answers = spoke_reads(pair, sent)
    refusals = [a for a in answers if isinstance(a, Refused)]
    assert refusals == [], [(r.nonce, r.code, r.reason) for r in refusals]
    with trio.fail_after(5):
        await hub.receive(*answers)
    assert_in_step(pair, hub)


async def test_an_update_signed_while_a_session_starts_waits_for_the_resync(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """The restarted hub signs its next update (the expired lock's removal, on a block) while
    the spoke's session is being set up: that update must not reach the spoke ahead of the
    re-sync, which resends the lost removal first (before the fix, the spoke refused it:
    "locked amount 0, expected 2429")."""
    pair = hub_killed_after_signing_a_removal()
    pair.height = EXPIRATION + 2
    database = NodeDatabase.open(tmp_path)
    try:
        hub = Hub(pair, database, height=EXPIRATION + 1)
        await nursery.start(hub.driver.run)
        disk_free = trio.Event()
        run = database.run

        async def busy(work: Any) -> Any:
            await disk_free.wait()  # the block's write takes a while
            return await run(work)

        database.run = busy  # type: ignore[method-assign]
        session = RecordingSession(SPOKE.node_id)
        with trio.fail_after(5):
            async with trio.open_nursery() as steps:
                steps.start_soon(hub.block, EXPIRATION + 2)  # signs lock_expired on the removal
                await trio.testing.wait_all_tasks_blocked()
                hub.sessions[SPOKE.node_id] = session  # the spoke connects meanwhile
                steps.start_soon(hub.driver.step, [ReceivePeerConnected(Address(SPOKE.node_id))])
                await trio.testing.wait_all_tasks_blocked()
                disk_free.set()
            # The spoke's own channel_sync, sent as its session started.
            await hub.receive(sync_message(pair.b))
        await spoke_accepts_all(pair, hub, session.sent)
    finally:
        database.close()


@pytest.mark.parametrize("noted", [True, False], ids=["ended", "replaced"])
async def test_an_update_signed_after_a_session_ended_waits_for_the_next_resync(
    tmp_path: Path, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, noted: bool
) -> None:
    """No restart: the session the re-sync ran in ended (or a newer connection replaced it,
    which the node is not told of as a disconnection) before its resent removal got out; a
    block's update signed while the next session is registered but not yet started must not
    reach the spoke ahead of that session's re-sync."""
    pair = hub_killed_after_signing_a_removal()
    pair.height = EXPIRATION + 2
    database = NodeDatabase.open(tmp_path)
    spoke = Address(SPOKE.node_id)
    try:
        hub = Hub(pair, database, height=EXPIRATION + 1)
        await nursery.start(hub.driver.run)
        first = RecordingSession(SPOKE.node_id)
        hub.sessions[SPOKE.node_id] = first
        with trio.fail_after(5):
            await hub.driver.step([ReceivePeerConnected(spoke)])
            await hub.receive(sync_message(pair.b))  # the hub resends its removal: lost
        first.closed = True
        if noted:
            del hub.sessions[SPOKE.node_id]
            hub.driver.note(ReceivePeerDisconnected(spoke))
        second = RecordingSession(SPOKE.node_id)
        hub.sessions[SPOKE.node_id] = second
        with trio.fail_after(5):
            await hub.block(EXPIRATION + 2)  # before the new session's start is stepped
            await hub.driver.step([ReceivePeerConnected(spoke)])
            await hub.receive(sync_message(pair.b))
        await spoke_accepts_all(pair, hub, second.sent)
    finally:
        database.close()
