"""Gossip heals itself: a message waiting for what it depends on is not lost while peers still
relay it.

A flood sends each message over each link once. Before this rule a message that expired in a
holding area was gone for good: the copies other peers relayed meanwhile had been dropped as
duplicates of it. Now a copy of a held message restarts its wait.
"""

from __future__ import annotations

from typing import Any

import pytest

from p2pchan.core.gossip import machine
from p2pchan.core.gossip.chain_view import ChainChannels
from p2pchan.core.gossip.outputs import GossipOutput, NotifyFault, SendGossip
from p2pchan.core.gossip.state import (
    HOLD_MS,
    GossipState,
)
from p2pchan.types import NodeId
from p2pchan.wire.gossip_messages import GossipFilter
from tests.unit.gossip_helpers import (
    NOW_MS,
    announcement,
    channel_id,
    identity,
    node_announcement,
    open_on_chain,
    state_of,
    update,
)

ALICE, BOB, CAROL, DAVE, ERIN, FRANK = (
    identity(n) for n in ("alice", "bob", "carol", "dave", "erin", "frank")
)
AB = channel_id("alice-bob")


@pytest.fixture
def chain() -> ChainChannels:
    view = ChainChannels()
    open_on_chain(view, AB, ALICE, BOB)
    return view


@pytest.fixture
def carol() -> GossipState:
    return state_of(CAROL)


def receive(
    state: GossipState, message: Any, chain: ChainChannels, *, peer: Any, now_ms: int
) -> list[GossipOutput]:
    return machine.on_gossip(state, peer.node_id, message, now_ms, chain)


def faults(outputs: list[GossipOutput]) -> list[NotifyFault]:
    return [output for output in outputs if isinstance(output, NotifyFault)]


def filters(outputs: list[GossipOutput]) -> list[tuple[NodeId | None, GossipFilter]]:
    return [
        (output.peer, message)
        for output in outputs
        if isinstance(output, SendGossip)
        for message in output.messages
        if isinstance(message, GossipFilter)
    ]


# -- a copy of a held message keeps it waiting ---------------------------------------------


def test_a_held_update_lives_on_while_peers_still_relay_it(
    carol: GossipState, chain: ChainChannels
) -> None:
    signed = update(AB, ALICE)
    receive(carol, signed, chain, peer=DAVE, now_ms=NOW_MS)  # held: no announcement yet
    receive(carol, signed, chain, peer=ERIN, now_ms=NOW_MS + 20_000)  # the same, relayed
    # Past the first copy's wait, within the second's: still held, not lost.
    machine.on_tick(carol, NOW_MS + HOLD_MS + 1, chain, CAROL)
    assert len(carol.held_updates) == 1
    receive(carol, announcement(AB, ALICE, BOB), chain, peer=BOB, now_ms=NOW_MS + 40_000)
    assert carol.graph.policy(AB, ALICE.node_id) is not None
    # And it still expires once nobody has sent it for the whole wait.
    other = channel_id("never announced")
    receive(carol, update(other, ALICE), chain, peer=DAVE, now_ms=NOW_MS + 40_000)
    machine.on_tick(carol, NOW_MS + 40_000 + HOLD_MS + 1, chain, CAROL)
    assert len(carol.held_updates) == 0


def test_only_an_identical_copy_restarts_the_wait(carol: GossipState, chain: ChainChannels) -> None:
    receive(carol, update(AB, ALICE, fee_base=1), chain, peer=DAVE, now_ms=NOW_MS)
    # Same direction and timestamp, other content (a signer that equivocates): dropped, and
    # it does not keep the first one waiting.
    conflicting = update(AB, ALICE, fee_base=2)
    outputs = receive(carol, conflicting, chain, peer=ERIN, now_ms=NOW_MS + 20_000)
    assert faults(outputs) == []
    machine.on_tick(carol, NOW_MS + HOLD_MS + 1, chain, CAROL)
    assert len(carol.held_updates) == 0


def test_a_held_node_announcement_lives_on_while_peers_still_relay_it(
    carol: GossipState, chain: ChainChannels
) -> None:
    signed = node_announcement(ALICE, alias="alice")
    receive(carol, signed, chain, peer=DAVE, now_ms=NOW_MS)
    receive(carol, signed, chain, peer=ERIN, now_ms=NOW_MS + 25_000)
    machine.on_tick(carol, NOW_MS + HOLD_MS + 1, chain, CAROL)
    receive(carol, announcement(AB, ALICE, BOB), chain, peer=BOB, now_ms=NOW_MS + 50_000)
    assert carol.graph.node(ALICE.node_id) is not None


def test_copies_of_a_held_announcement_do_not_put_off_its_refusal(
    carol: GossipState, chain: ChainChannels
) -> None:
    """Otherwise a peer could keep an invented channel held, unscored, forever."""
    invented = announcement(channel_id("invented"), ALICE, BOB)
    outputs: list[GossipOutput] = []
    for _ in range(3):
        receive(carol, invented, chain, peer=DAVE, now_ms=NOW_MS)
        chain.apply_block(chain.height + 1, [])
        outputs = machine.on_chain_block(carol, [], NOW_MS, chain)
    [fault] = faults(outputs)
    assert (fault.peer, fault.points) == (DAVE.node_id, 10)
    assert fault.reason.startswith("not_on_chain")
