"""The channel graph `bench gossip` builds: a ring through every node (so the graph is
connected whatever the seed) plus chords between random pairs, drawn from a seed.

Pure: the same (nodes, channels, seed) always gives the same list. Each pair is (opener,
partner) as node indexes; no pair repeats in either order and no node pairs with itself.
Chords are drawn from the pairs the ring leaves out, so any count up to the complete graph
is reached without rejection sampling.
"""

from __future__ import annotations

import random

from p2pchan.errors import UserError

MIN_NODES = 3  # a ring of two would be one channel twice


def max_channels(nodes: int) -> int:
    """Channels of the complete graph: one per pair of nodes."""
    return nodes * (nodes - 1) // 2


def ring_with_chords(nodes: int, channels: int, seed: int) -> list[tuple[int, int]]:
    """`channels` pairs over `nodes` nodes: the ring 0-1, 1-2, ..., (n-1)-0 first, then
    `channels - nodes` chords picked at random (an opener each, also at random)."""
    if nodes < MIN_NODES:
        raise UserError(f"a ring needs at least {MIN_NODES} nodes, not {nodes}")
    if not nodes <= channels <= max_channels(nodes):
        raise UserError(
            f"{nodes} nodes take from {nodes} channels (the ring) to {max_channels(nodes)} "
            f"(every pair), not {channels}"
        )
    rng = random.Random(seed)
    ring = [(index, (index + 1) % nodes) for index in range(nodes)]
    in_ring = {frozenset(pair) for pair in ring}
    candidates = [
        (a, b)
        for a in range(nodes)
        for b in range(a + 1, nodes)
        if frozenset((a, b)) not in in_ring
    ]
    chords = rng.sample(candidates, channels - nodes)
    return ring + [(a, b) if rng.random() < 0.5 else (b, a) for a, b in chords]
