"""When `localnet up` deems gossip converged: every channel of the topology in a node's graph,
between the right nodes, both directions announced, with the fees the topology sets."""

from __future__ import annotations

from typing import Any

from p2pchan_cli.localnet.gossip import lagging_channels
from p2pchan_cli.localnet.topology import ChannelSpec, FeePolicy, NodeSpec, Topology

IDS = {"ann": "a1" * 32, "ben": "b2" * 32, "cat": "c3" * 32}
LINE = Topology(
    "line",
    (NodeSpec("ann"), NodeSpec("ben", fees=FeePolicy(5, 50)), NodeSpec("cat")),
    (
        ChannelSpec("ann", "ben", 100, 100, fees_a=FeePolicy(1, 200)),
        ChannelSpec("ben", "cat", 100, 100),
    ),
)


def policy(base: int, ppm: int) -> dict[str, Any]:
    return {"fee_base": base, "fee_ppm": ppm, "min_amount": 1, "disabled": False}


def graph(*channels: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": [], "channels": list(channels)}


def channel(one: str, two: str, first: Any, second: Any) -> dict[str, Any]:
    return {
        "channel_id": "00" * 32,
        "node1": IDS[one],
        "node2": IDS[two],
        "capacity": 200,
        "node1_policy": first,
        "node2_policy": second,
    }


def test_a_graph_with_every_channel_and_the_topologys_fees_has_converged() -> None:
    known = graph(
        # ann: its channel's own policy; ben: its node default; cat: its node's own default
        channel("ann", "ben", policy(1, 200), policy(5, 50)),
        channel("cat", "ben", policy(1, 100), policy(5, 50)),  # either node may be node1
    )
    assert lagging_channels(known, LINE, IDS) == []


def test_a_missing_channel_or_direction_is_lagging() -> None:
    assert lagging_channels(graph(), LINE, IDS) == ["ann-ben", "ben-cat"]
    half = graph(
        channel("ann", "ben", policy(1, 200), None),
        channel("ben", "cat", policy(5, 50), policy(1, 100)),
    )
    assert lagging_channels(half, LINE, IDS) == ["ann-ben"]


def test_fees_announced_before_the_topologys_were_set_are_lagging() -> None:
    stale = graph(
        channel("ann", "ben", policy(1, 100), policy(5, 50)),  # ann's default, not yet 1/200
        channel("ben", "cat", policy(5, 50), policy(1, 100)),
    )
    assert lagging_channels(stale, LINE, IDS) == ["ann-ben"]


def test_a_channel_between_other_nodes_does_not_count() -> None:
    wrong = graph(
        channel("ann", "cat", policy(1, 200), policy(5, 50)),
        channel("ben", "cat", policy(5, 50), policy(1, 100)),
    )
    assert lagging_channels(wrong, LINE, IDS) == ["ann-ben"]
