"""The graph `bench gossip` opens: connected, no channel twice, exactly the count asked for, the
same for the same seed, and a one-line refusal for counts no ring can give."""

from __future__ import annotations

import pytest

from p2pchan.errors import UserError
from p2pchan_cli.bench_topology import max_channels, ring_with_chords


def _connected(nodes: int, pairs: list[tuple[int, int]]) -> bool:
    neighbours: dict[int, set[int]] = {node: set() for node in range(nodes)}
    for a, b in pairs:
        neighbours[a].add(b)
        neighbours[b].add(a)
    reached, frontier = {0}, [0]
    while frontier:
        for other in neighbours[frontier.pop()] - reached:
            reached.add(other)
            frontier.append(other)
    return len(reached) == nodes


@pytest.mark.parametrize(("nodes", "channels"), [(3, 3), (6, 12), (50, 100), (10, 45), (7, 7)])
def test_the_graph_is_connected_with_exactly_the_channels_asked_for(
    nodes: int, channels: int
) -> None:
    pairs = ring_with_chords(nodes, channels, seed=1)
    assert len(pairs) == channels
    assert all(a != b and 0 <= a < nodes and 0 <= b < nodes for a, b in pairs)
    assert len({frozenset(pair) for pair in pairs}) == channels, "a pair opened twice"
    assert _connected(nodes, pairs)


def test_the_ring_comes_first_so_any_seed_connects_every_node() -> None:
    pairs = ring_with_chords(8, 12, seed=99)
    assert pairs[:8] == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 0)]


def test_the_same_seed_gives_the_same_graph_and_another_seed_another() -> None:
    assert ring_with_chords(50, 100, seed=1) == ring_with_chords(50, 100, seed=1)
    assert ring_with_chords(50, 100, seed=1) != ring_with_chords(50, 100, seed=2)


def test_both_ends_open_chords() -> None:
    chords = ring_with_chords(50, 100, seed=1)[50:]
    assert any(a < b for a, b in chords) and any(a > b for a, b in chords)


def test_every_pair_is_reachable_when_asked_for() -> None:
    pairs = ring_with_chords(9, max_channels(9), seed=3)
    assert {frozenset(pair) for pair in pairs} == {
        frozenset((a, b)) for a in range(9) for b in range(a + 1, 9)
    }


@pytest.mark.parametrize(
    ("nodes", "channels", "words"),
    [
        (2, 2, "at least 3 nodes"),
        (0, 0, "at least 3 nodes"),
        (10, 9, "from 10 channels"),
        (10, 46, "to 45"),
        (10, -1, "not -1"),
    ],
)
def test_counts_no_ring_can_give_are_refused_in_one_line(
    nodes: int, channels: int, words: str
) -> None:
    with pytest.raises(UserError, match=words) as refused:
        ring_with_chords(nodes, channels, seed=1)
    assert "\n" not in str(refused.value)
