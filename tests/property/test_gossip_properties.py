"""Hypothesis: a gossip flood converges whatever order messages arrive in.

On rings with chords of 3 to 9 nodes, messages are delivered in a random order and nodes tick
(flush their outbox) at random moments in between, so updates overtake their announcements and
node announcements their channels. Every node must still end with the same, complete graph,
no honest node may be scored, and no message may cross a link in the same direction twice.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.gossip_network import build


@settings(max_examples=25, deadline=None)
@given(count=st.integers(min_value=3, max_value=9), seed=st.integers(min_value=0, max_value=2**32))
def test_a_flood_converges_in_any_delivery_order(count: int, seed: int) -> None:
    network, nodes, channels = build(count, random.Random(seed))
    network.assert_converged()
    graph = network.states[nodes[0]].graph
    assert graph.channel_count() == len(set(channels))
    for channel in channels:
        assert all(edge.policy is not None for edge in graph.channel_edges(channel))
    assert all(graph.node(node) is not None for node in nodes)
    assert network.faults == []
    network.assert_each_message_crossed_each_link_once()
