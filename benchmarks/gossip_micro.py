"""Micro-benchmark of the gossip machine: per-message costs, and a flood of the target's size.

Part one times what one node spends per message: accepting a channel announcement (two
signature checks) or an update (one), dropping a duplicate (no check), refusing a forgery.
Part two floods 50 gossip machines wired by hand (no sockets) over 100 channels, as the
benchmark target describes (every node learns every channel and update): it reports the CPU the
whole flood costs, the busiest node's share, the frames and messages each node sends, and the
ticks the flood needs to settle (its depth: with a tick every T ms, about depth x (T + link
latency) to reach every node). Part three times writing a flood step's records and loading the
graph from SQLite. Prints one JSON document.

Run from the repository root (it reuses the tests' hand-wired network):
`.venv/bin/python -m benchmarks.gossip_micro [--repeat N] [--nodes N] [--channels C]`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from p2pchan.core.gossip import machine
from p2pchan.core.gossip.chain_view import ChainChannels
from p2pchan.core.gossip.outputs import PersistGossip
from p2pchan.core.gossip.state import FeePolicy, GossipState
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.gossip import load_gossip, write_gossip
from p2pchan.types import NodeId
from tests.unit.gossip_helpers import (
    NOW_MS,
    announcement,
    channel_id,
    forged,
    identity,
    open_on_chain,
    state_of,
    update,
)
from tests.unit.gossip_network import Network


def microseconds(operation: Callable[[], object], repeat: int) -> dict[str, float]:
    timer = timeit.Timer(operation)
    calls, _ = timer.autorange()
    runs = [seconds / calls * 1e6 for seconds in timer.repeat(repeat=repeat, number=calls)]
    return {"best_us": round(min(runs), 1), "median_us": round(statistics.median(runs), 1)}


def per_message(repeat: int) -> dict[str, Any]:
    alice, bob, carol, dave = (identity(name) for name in ("alice", "bob", "carol", "dave"))
    chain = ChainChannels()
    channels = [channel_id(f"bench {index}") for index in range(4096)]
    for channel in channels:
        open_on_chain(chain, channel, alice, bob)
    announcements = [announcement(channel, alice, bob) for channel in channels]
    known = announcements[0]
    updates = [update(known.channel_id, alice, NOW_MS + index) for index in range(4096)]
    fresh = iter(range(10**9))

    def accept_announcement() -> None:
        state = state_of(carol)
        machine.on_gossip(state, dave.node_id, announcements[next(fresh) % 4096], NOW_MS, chain)

    base = state_of(carol)
    machine.on_gossip(base, dave.node_id, known, NOW_MS, chain)

    def accept_update() -> None:
        index = next(fresh) % 4096
        base.updates.clear()
        base.update_rates.clear()
        machine.on_gossip(base, dave.node_id, updates[index], NOW_MS, chain)

    machine.on_gossip(base, dave.node_id, updates[0], NOW_MS, chain)
    stored = base.updates[(known.channel_id, alice.node_id)]
    bad = forged(update(known.channel_id, alice, NOW_MS + 10**6), dave)

    def duplicate() -> None:
        machine.on_gossip(base, bob.node_id, stored, NOW_MS, chain)

    def forgery() -> None:
        machine.on_gossip(base, dave.node_id, bad, NOW_MS + 10**6, chain)

    return {
        "accept_announcement": microseconds(accept_announcement, repeat),
        "accept_update": microseconds(accept_update, repeat),
        "drop_duplicate": microseconds(duplicate, repeat),
        "refuse_forgery": microseconds(forgery, repeat),
    }


def flood(nodes: int, channels: int, seed: int) -> tuple[dict[str, Any], Network]:
    """Nodes on a ring plus random chords up to `channels`; peers are channel partners."""
    order = random.Random(seed)
    network = Network(ChainChannels())
    ids = [network.add(f"bench node {index}") for index in range(nodes)]
    pairs = {frozenset((ids[i], ids[(i + 1) % nodes])) for i in range(nodes)}
    while len(pairs) < channels:
        a, b = order.sample(ids, 2)
        pairs.add(frozenset((a, b)))
    ordered_pairs = [tuple(sorted(pair)) for pair in sorted(pairs, key=sorted)]
    for a, b in ordered_pairs:
        network.connect(a, b)
    busy: dict[NodeId, float] = dict.fromkeys(ids, 0.0)
    started = time.process_time()
    for index, (a, b) in enumerate(ordered_pairs):
        network.open_channel(a, b, f"bench {index}", FeePolicy(fee_base=index))
    for index, node in enumerate(ids):
        outputs = machine.announce_node(
            network.states[node],
            f"node {index}",
            [f"127.0.0.1:{10000 + index}"],
            network.now_ms,
            network.chain,
            network.identities[node],
        )
        network.carry(node, outputs)
    rounds = settle_timed(network, busy)
    seconds = time.process_time() - started
    network.assert_converged()
    graph = network.states[ids[0]].graph
    relayed: dict[NodeId, int] = dict.fromkeys(ids, 0)
    for (sender, _, _), count in network.carried.items():
        relayed[sender] += count
    return {
        "nodes": nodes,
        "channels": graph.channel_count(),
        "known_channels_everywhere": all(
            state.graph.channel_count() == len(ordered_pairs) for state in network.states.values()
        ),
        "flood_cpu_s": round(seconds, 3),
        "busiest_node_cpu_ms": round(max(busy.values()) * 1000, 1),
        "median_node_cpu_ms": round(statistics.median(busy.values()) * 1000, 1),
        "ticks_to_settle": rounds,
        "frames_sent_per_node_max": max(network.frames_by_sender.values()),
        "messages_relayed_per_node_max": max(relayed.values()),
    }, network


def settle_timed(network: Network, busy: dict[NodeId, float]) -> int:
    """`Network.settle` with each node's CPU time counted; returns the ticks it took."""
    for rounds in range(1, 1000):
        while network.in_flight:
            sender, receiver, message = network.in_flight.pop(0)
            started = time.process_time()
            outputs = machine.on_gossip(
                network.states[receiver], sender, message, network.now_ms, network.chain
            )
            busy[receiver] += time.process_time() - started
            network.carry(receiver, outputs)
        network.now_ms += 100
        for node_id in network.states:
            started = time.process_time()
            state, me = network.states[node_id], network.identities[node_id]
            outputs = machine.on_tick(state, network.now_ms, network.chain, me)
            busy[node_id] += time.process_time() - started
            network.carry(node_id, outputs)
        if not network.in_flight:
            return rounds
    raise RuntimeError("the flood did not settle")


def storage(state: GossipState, repeat: int) -> dict[str, Any]:
    records = [
        PersistGossip(
            channels=tuple(state.channels.values()),
            updates=tuple(state.updates.values()),
            nodes=tuple(state.nodes.values()),
        )
    ]
    with tempfile.TemporaryDirectory() as directory:
        database = NodeDatabase.open(Path(directory))
        try:
            write_ms = [
                _timed(lambda: database.run_now(write_gossip(*records))) for _ in range(repeat)
            ]
            load_ms = [
                _timed(lambda: database.run_now(lambda c: load_gossip(c, state.config)))
                for _ in range(repeat)
            ]
        finally:
            database.close()
    return {
        "rows": len(state.channels) + len(state.updates) + len(state.nodes),
        "write_all_ms": round(statistics.median(write_ms), 2),
        "load_all_ms": round(statistics.median(load_ms), 2),
    }


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    costs = per_message(arguments.repeat)
    result, network = flood(arguments.nodes, arguments.channels, arguments.seed)
    some_state = next(iter(network.states.values()))
    print(
        json.dumps(
            {
                "per_message": costs,
                "flood": result,
                "storage": storage(some_state, arguments.repeat),
            }
        )
    )


if __name__ == "__main__":
    main()
