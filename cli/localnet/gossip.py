"""When a local network's gossip has converged, judged from one node's `graph`. Pure.

Converged, for a node: its graph holds every channel of the topology between the right two
nodes, each direction with an announced policy, and where the topology sets a fee policy the
announced one is it (a `setfees` made after the channel opened must have arrived, else routes
would be priced on the old fees and the first payments refused for too low a fee).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from p2pchan_cli.localnet.topology import FeePolicy, Topology


def lagging_channels(
    graph: Mapping[str, Any], topology: Topology, node_ids: Mapping[str, str]
) -> list[str]:
    """The topology's channels (`a-b`) this graph does not hold as the topology has them yet."""
    held: dict[frozenset[str], Mapping[str, Any]] = {}
    for channel in graph.get("channels") or []:
        held[frozenset((str(channel.get("node1")), str(channel.get("node2"))))] = channel
    lagging = []
    for spec in topology.channels:
        ids = {alias: node_ids[alias] for alias in (spec.a, spec.b)}
        entry = held.get(frozenset(ids.values()))
        if entry is None or not all(
            _policy_fits(entry, ids[alias], topology.fee_policy(spec, alias))
            for alias in (spec.a, spec.b)
        ):
            lagging.append(f"{spec.a}-{spec.b}")
    return lagging


def _policy_fits(entry: Mapping[str, Any], node_id: str, wanted: FeePolicy | None) -> bool:
    side = "node1_policy" if entry.get("node1") == node_id else "node2_policy"
    announced = entry.get(side)
    if not isinstance(announced, Mapping):
        return False  # no channel_update from that side yet
    if wanted is None:
        return True
    return bool(announced.get("fee_base") == wanted.base and announced.get("fee_ppm") == wanted.ppm)
