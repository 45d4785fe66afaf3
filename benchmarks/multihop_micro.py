"""Micro-benchmark of a routed payment's pure per-payment work at each node of a line, and of the
shortcuts `bench multihop`'s profile suggests.

The payer plans a route (`find_route` over the gossiped graph, with the numpy/scipy bounds as
the node runs it, and without them) and builds the onion (`routes.onion_for`), which converts
each hop's node id to an X25519 key first; the mediator and the payee each peel one layer.
Measured beside them: the conversion alone, and the onion built with the conversions cached
(what a cache of node id -> X25519 key in `crypto/keys.py` would leave). Prints one JSON
document of best and median microseconds. Run from the repository root:
`.venv/bin/python -m benchmarks.multihop_micro [--hops 2] [--repeat 5]`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import itertools
import json
import statistics
import timeit
from collections.abc import Callable
from typing import Any

from p2pchan.core.payment import routes
from p2pchan.core.payment.fees import default_fee_cap
from p2pchan.core.routing.graph import ChannelGraph, ChannelPolicy, GraphChannel
from p2pchan.core.routing.pathfind import find_route
from p2pchan.crypto import sphinx
from p2pchan.crypto.keys import Identity, x25519_public_key
from p2pchan.crypto.sphinx import peel_onion
from p2pchan.types import Secret, SecretHash

AMOUNT = 1_000
LOCK_TIMEOUT = 50
NOW_MS = 1_700_000_000_000
SECRET = Secret(hashlib.sha256(b"bench secret").digest())
SECRETHASH = SecretHash(hashlib.sha256(SECRET).digest())
SESSION_KEY = hashlib.sha256(b"bench session").digest()


def microseconds(operation: Callable[[], object], repeat: int) -> dict[str, float]:
    """Best and median of `repeat` timings, each of enough calls to last ~0.2 s."""
    timer = timeit.Timer(operation)
    calls, _ = timer.autorange()
    runs = [seconds / calls * 1e6 for seconds in timer.repeat(repeat=repeat, number=calls)]
    return {"best_us": round(min(runs), 1), "median_us": round(statistics.median(runs), 1)}


def line_graph(nodes: list[Identity]) -> tuple[ChannelGraph, dict[bytes, int]]:
    """The line n0 - n1 - ... as the payer's gossip holds it, and n0's sendable balance."""
    graph = ChannelGraph()
    policy = ChannelPolicy(1, 100, 1, 10**9, False, NOW_MS)
    first = b""
    for index, (left, right) in enumerate(itertools.pairwise(nodes)):
        channel_id = hashlib.sha256(b"channel %d" % index).digest()
        first = first or channel_id
        node1, node2 = sorted((left.node_id, right.node_id))
        graph.add_channel(GraphChannel(channel_id, node1, node2, 10**9, 100))
        for end in (node1, node2):
            graph.update_policy(channel_id, end, policy)
    return graph, {first: 10**8}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hops", type=int, default=2, help="channels from payer to payee")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per operation")
    arguments = parser.parse_args()
    nodes = [Identity(hashlib.sha256(b"node %d" % i).digest()) for i in range(arguments.hops + 1)]
    payer, mediator, payee = nodes[0], nodes[1], nodes[-1]
    graph, balances = line_graph(nodes)

    def route(use_bounds: bool) -> Any:
        return find_route(
            graph,
            payer.node_id,
            payee.node_id,
            AMOUNT,
            local_balances=balances,
            lock_timeout=LOCK_TIMEOUT,
            fee_cap=default_fee_cap(AMOUNT),
            now_ms=NOW_MS,
            use_bounds=use_bounds,
        )

    planned = route(True)
    assert len(planned.hops) == arguments.hops

    def onion() -> Any:
        return routes.onion_for(planned, 1_000, SECRET, SESSION_KEY, SECRETHASH)

    packet = onion().packet
    mediator_key, payee_key = mediator.x25519_private_key(), payee.x25519_private_key()
    forwarded = peel_onion(packet, mediator_key, SECRETHASH).next_packet
    for hop in nodes[2:-1]:
        assert forwarded is not None
        forwarded = peel_onion(forwarded, hop.x25519_private_key(), SECRETHASH).next_packet
    assert forwarded is not None
    last = forwarded

    operations: dict[str, Callable[[], object]] = {
        "payer_route_with_bounds": lambda: route(True),
        "payer_route_plain_search": lambda: route(False),
        "payer_build_onion": onion,
        "payer_node_id_to_x25519_one_hop": lambda: x25519_public_key(payee.node_id),
        "mediator_peel": lambda: peel_onion(packet, mediator_key, SECRETHASH),
        "payee_peel": lambda: peel_onion(last, payee_key, SECRETHASH),
    }
    timings = {name: microseconds(run, arguments.repeat) for name, run in operations.items()}
    cached = functools.lru_cache(maxsize=4096)(x25519_public_key)
    sphinx.x25519_public_key = cached  # type: ignore[assignment]
    try:
        timings["payer_build_onion_conversions_cached"] = microseconds(onion, arguments.repeat)
    finally:
        sphinx.x25519_public_key = x25519_public_key
    print(json.dumps({"hops": arguments.hops, **timings}, indent=2))


if __name__ == "__main__":
    main()
