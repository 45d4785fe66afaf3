"""`p2pchan bench pathfind`: latency of route queries on a synthetic graph of Lightning's size.

The graph is generated from a seed: preferential attachment (Barabasi-Albert, each new node
opens `channels // nodes` channels to nodes picked in proportion to their degree, the rest added
the same way) gives the skew of the real network, a few hubs with hundreds of channels and a
long tail with a handful. Capacities are log-uniform, fees mix zero, round and random bases with
log-uniform ppm, and some directions are disabled, lack a policy, cap their amounts or have a
settle timeout below the lock timeout. A tail of `TAIL` nodes hangs off one node: routing to its
end breaks the hop limit: the worst case with no path, since the payee is reachable and cheap
and only the hop limit (which plain Dijkstra ignores) says no.

Queries are seeded pairs of nodes with log-uniform amounts; the payer's sendable balance on each
of its channels is a random share of the capacity. Nothing here reads the network or the disk.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import math
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from p2pchan.core.payment.fees import default_fee_cap
from p2pchan.core.routing.graph import ChannelGraph, ChannelPolicy, GraphChannel
from p2pchan.core.routing.pathfind import find_route
from p2pchan.core.routing.route import MAX_HOPS, Route
from p2pchan.errors import NoRoute
from p2pchan_cli.bench_l1 import machine_description

TAIL = MAX_HOPS + 5
LOCK_TIMEOUT = 50
NOW_MS = 1_700_000_000_000


@dataclass(frozen=True)
class PathfindBenchConfig:
    nodes: int = 15_000
    channels: int = 60_000
    queries: int = 200
    seed: int = 1
    engine: str = "bounds"  # or "plain": the pure-Python search, no numpy bounds


@dataclass(frozen=True)
class Query:
    source: bytes
    target: bytes
    amount: int
    local_balances: dict[bytes, int]


def _pairs(rng: random.Random, nodes: int, channels: int) -> list[tuple[int, int]]:
    """Preferential attachment: endpoints of `channels` edges over `nodes` nodes, no repeats."""
    per_node = max(1, channels // nodes)
    seeds = per_node + 1
    pairs = [(a, b) for a in range(seeds) for b in range(a + 1, seeds)]
    ends = [node for pair in pairs for node in pair]  # a node appears once per channel
    seen = set(pairs)
    for new in range(seeds, nodes):
        picked: set[int] = set()
        while len(picked) < per_node:
            picked.add(rng.choice(ends))
        for other in sorted(picked):
            pairs.append((other, new))
            seen.add((other, new))
            ends += [other, new]
    while len(pairs) < channels:
        a, b = rng.choice(ends), rng.choice(ends)
        pair = (min(a, b), max(a, b))
        if a != b and pair not in seen:
            seen.add(pair)
            pairs.append(pair)
            ends += [a, b]
    return pairs


def _policy(rng: random.Random, capacity: int) -> ChannelPolicy | None:
    if rng.random() < 0.02:
        return None
    draw = rng.random()
    base = 0 if draw < 0.4 else 1000 if draw < 0.7 else rng.randrange(5001)
    ppm = rng.randrange(1, 101) if rng.random() < 0.3 else int(math.exp(rng.uniform(0, 8.5)))
    max_amount = capacity if rng.random() < 0.8 else int(capacity * rng.uniform(0.1, 1.0))
    return ChannelPolicy(
        fee_base=base,
        fee_ppm=ppm,
        min_amount=1 if rng.random() < 0.7 else 1000,
        max_amount=max_amount,
        disabled=rng.random() < 0.03,
        timestamp_ms=NOW_MS - rng.randrange(86_400_000),
    )


def synthetic_graph(
    seed: int, nodes: int, channels: int
) -> tuple[ChannelGraph, list[bytes], list[bytes]]:
    """The graph, its node ids (BA nodes first) and the tail, end last."""
    rng = random.Random(seed)
    core_nodes = nodes - TAIL
    node_ids = [rng.randbytes(32) for _ in range(nodes)]
    pairs = _pairs(rng, core_nodes, channels - TAIL)
    tail = list(range(core_nodes, nodes))
    pairs += list(zip([0, *tail[:-1]], tail, strict=True))
    graph = ChannelGraph()
    for a, b in pairs:
        node1, node2 = sorted((node_ids[a], node_ids[b]))
        capacity = int(math.exp(rng.uniform(math.log(1e5), math.log(1e9))))
        settle = rng.choice((20, 40, 100, 100, 100, 100, 100, 200, 200, 500))
        channel = GraphChannel(rng.randbytes(32), node1, node2, capacity, settle)
        graph.add_channel(channel)
        for from_node in (node1, node2):
            policy = _policy(rng, capacity)
            if policy is not None:
                graph.update_policy(channel.channel_id, from_node, policy)
    return graph, node_ids[:core_nodes], [node_ids[index] for index in tail]


def _query(rng: random.Random, graph: ChannelGraph, source: bytes, target: bytes) -> Query:
    amount = int(math.exp(rng.uniform(math.log(1e3), math.log(1e7))))
    balances = {
        channel.channel_id: int(channel.capacity * rng.random())
        for channel in graph.channels_of(source)
    }
    return Query(source, target, amount, balances)


def _run(graph: ChannelGraph, query: Query, use_bounds: bool) -> tuple[float, Route | NoRoute]:
    started = time.perf_counter()
    try:
        result: Route | NoRoute = find_route(
            graph,
            query.source,
            query.target,
            query.amount,
            local_balances=query.local_balances,
            lock_timeout=LOCK_TIMEOUT,
            fee_cap=default_fee_cap(query.amount),
            now_ms=NOW_MS,
            use_bounds=use_bounds,
        )
    except NoRoute as error:
        result = error
    return (time.perf_counter() - started) * 1000, result


def _pause_recorder(pauses: list[float]) -> Callable[[str, dict[str, int]], None]:
    """A gc callback appending each collection's duration (ms) to `pauses`."""
    started = [0.0]

    def record(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((time.perf_counter() - started[0]) * 1000)

    return record


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def _gossip(
    rng: random.Random, graph: ChannelGraph, count: int, use_bounds: bool
) -> tuple[float, float | None]:
    """Apply `count` newer policies to random directions: ms per update, then ms for the index
    to catch up with all of them (what the next query pays)."""
    channels = list(graph.channels())
    started = time.perf_counter()
    for step in range(count):
        channel = rng.choice(channels)
        sender = rng.choice((channel.node1, channel.node2))
        policy = _policy(rng, channel.capacity)
        if policy is not None:
            fresh = dataclasses.replace(policy, timestamp_ms=NOW_MS + 1 + step)
            graph.update_policy(channel.channel_id, sender, fresh)
    update_ms = (time.perf_counter() - started) * 1000 / count
    if not use_bounds:
        return update_ms, None
    started = time.perf_counter()
    _sync_index(graph)
    return update_ms, (time.perf_counter() - started) * 1000


def _sync_index(graph: ChannelGraph) -> None:
    from p2pchan.core.routing.index import EdgeIndex

    EdgeIndex.of(graph)


@dataclass
class _Timings:
    times: list[float]
    found: int
    hops: list[int]
    reasons: dict[str, int]
    gc_pauses: list[float]


def _time_queries(graph: ChannelGraph, queries: list[Query], use_bounds: bool) -> _Timings:
    timings = _Timings([], 0, [], {}, [])
    # A graph this size is a million Python objects and a full collection scans them all
    # (~250 ms, seen while building it): report any that fall during the queries.
    recorder = _pause_recorder(timings.gc_pauses)
    gc.callbacks.append(recorder)
    try:
        for query in queries:
            elapsed, result = _run(graph, query, use_bounds)
            timings.times.append(elapsed)
            if isinstance(result, Route):
                timings.found += 1
                timings.hops.append(len(result.hops))
            else:
                timings.reasons[result.reason] = timings.reasons.get(result.reason, 0) + 1
    finally:
        gc.callbacks.remove(recorder)
    return timings


def run_pathfind_bench(config: PathfindBenchConfig) -> dict[str, Any]:
    load = os.getloadavg()[0]  # the machine is shared: say how busy it was
    use_bounds = config.engine == "bounds"
    started = time.perf_counter()
    graph, core, tail = synthetic_graph(config.seed, config.nodes, config.channels)
    build_ms = (time.perf_counter() - started) * 1000
    import_ms = index_ms = 0.0
    if use_bounds:
        started = time.perf_counter()
        importlib.import_module("p2pchan.core.routing.bounds")  # loads scipy, once per process
        import_ms = (time.perf_counter() - started) * 1000
        started = time.perf_counter()
        _sync_index(graph)
        index_ms = (time.perf_counter() - started) * 1000
    rng = random.Random(config.seed + 1)
    queries: list[Query] = []
    while len(queries) < config.queries:
        source, target = rng.choice(core), rng.choice(core)
        if source != target:
            queries.append(_query(rng, graph, source, target))
    worst = _query(rng, graph, core[0], tail[-1])
    worst = Query(worst.source, worst.target, 1000, {k: 10**9 for k in worst.local_balances})
    timings = _time_queries(graph, queries, use_bounds)
    worst_ms, worst_result = _run(graph, worst, use_bounds)
    update_ms, catch_up_ms = _gossip(rng, graph, 1000, use_bounds)
    degrees = sorted((len(graph.outgoing(node)) for node in graph.node_ids()), reverse=True)
    times = timings.times
    return {
        "seed": config.seed,
        "engine": config.engine,
        "nodes": len(degrees),
        "channels": graph.channel_count(),
        "max_degree": degrees[0],
        "median_degree": statistics.median(degrees),
        "graph_build_ms": round(build_ms, 1),
        "scipy_import_ms": round(import_ms, 1),
        "index_build_ms": round(index_ms, 1),
        "queries": len(times),
        "routes_found": timings.found,
        "no_route": timings.reasons,
        "median_hops": statistics.median(timings.hops) if timings.hops else None,
        "max_hops": max(timings.hops, default=None),
        "p50_ms": round(_percentile(times, 0.50), 2),
        "p95_ms": round(_percentile(times, 0.95), 2),
        "p99_ms": round(_percentile(times, 0.99), 2),
        "max_ms": round(max(times), 2),
        "no_path_worst_case_ms": round(worst_ms, 2),
        "no_path_worst_case": getattr(worst_result, "reason", "found"),
        "gc_pauses_over_10_ms": sum(1 for pause in timings.gc_pauses if pause > 10),
        "policy_update_us": round(update_ms * 1000, 1),
        "index_catch_up_after_1000_updates_ms": (
            None if catch_up_ms is None else round(catch_up_ms, 2)
        ),
        "machine": machine_description(),
        "load_average_1m_at_start": round(load, 2),
    }
