"""Floors for the route search, from compiled shortest paths (numpy + scipy).

The exact search (`pathfind.py`) is plain Python and needs floors to stay fast over Lightning's
size (15,000 nodes, 60,000 channels). Per query, vectorised over every directed edge: mask what
cannot carry the payment amount (no policy, disabled, capacity or max_amount below the amount,
settle timeout below the lock timeout, excluded; the payer's own channels by its sendable
balance), weigh the rest by the fee at the payment amount plus HOP_TIE (a floor: a hop forwards
at least the amount, and the fee is isotone), then:

1. scipy's Dijkstra from the payer, limited to the fee cap: per node the least relaxed cost
   from the payer. These floors are admissible and consistent, so the search is A*; and the
   relaxed optimum itself, costed exactly, is an upper bound that prunes every dearer label.
   Usually the search then pops little more than the route itself.
2. Only when that candidate breaks a rule (7 % of the benchmark's queries, always the hop
   limit: over long zero-fee stretches the relaxed optimum exceeds 20 hops): a hop-layered
   Bellman-Ford, one vectorised pass per hop, gives per node and hop budget the least relaxed
   cost within that many hops, a floor that knows the hop limit, and the relaxed optimum within
   the limit as the next candidate. Measured: with hop counts alone as floors those queries
   searched 700-5,000 labels (up to ~100 ms on the busy benchmark machine); with these floors
   about as many as the route has hops, for ~9 ms of passes.

The result stays exact: floors never exceed the true cost and candidates are costed exactly.
The edge arrays live in `index.py`, kept in step with gossip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from p2pchan.core.routing.graph import ChannelGraph, DirectedEdge
from p2pchan.core.routing.index import SHRINK, EdgeIndex
from p2pchan.core.routing.route import HOP_TIE, RouteQuery

_INF = np.inf


@dataclass(frozen=True, slots=True)
class Bounds:
    """Floors on the cost of reaching each node (by `node_index`) from the payer."""

    node_index: Mapping[bytes, int]
    costs: list[float]  # least relaxed cost, any number of hops; inf beyond the fee cap
    reachable: bool  # the payee is within the fee cap in the relaxed graph
    candidate: tuple[DirectedEdge, ...] | None  # the relaxed optimum payer -> payee
    # From `within_hops`: by_hops[k][node] is the least relaxed cost with at most max_hops - k
    # hops, the floor for a label k hops from the payee; candidate then respects the limit.
    by_hops: Sequence[Sequence[float]] | None
    _query: _Relaxed

    def within_hops(self) -> Bounds:
        if self.by_hops is not None:
            return self
        relaxed = self._query
        layers = _layers(relaxed)
        candidate = None
        if relaxed.target is not None and np.isfinite(layers[-1][relaxed.target]):
            candidate = _layered_path(relaxed, layers, relaxed.target)
        # Arrays, not lists: the search reads a few entries (np.float64 is a float).
        by_hops = cast(list[Sequence[float]], [layer * SHRINK for layer in reversed(layers)])
        return dataclasses.replace(self, by_hops=by_hops, candidate=candidate)


@dataclass(frozen=True, slots=True)
class _Relaxed:
    """One query's relaxed graph, for `Bounds.within_hops`."""

    graph: ChannelGraph
    index: EdgeIndex
    weights: NDArray[np.float64]  # by slot; inf where masked
    data: NDArray[np.float64]  # the same in CSR order
    source: int
    target: int | None
    max_hops: int


def compute_bounds(graph: ChannelGraph, query: RouteQuery) -> Bounds:
    index = EdgeIndex.of(graph)
    source = index.node_index[query.source]
    weights = _weights(graph, index, query)
    data = weights[index.order]
    size = len(index.nodes)
    matrix = csr_matrix((data, index.indices, index.indptr), shape=(size, size))
    target = index.node_index.get(query.target)
    # No route within the fee cap has a floor above fee_cap + HOP_TIE * MAX_HOPS < fee_cap + 1.
    limit = (query.fee_cap + 1.0) / SHRINK
    costs, predecessors = dijkstra(
        matrix, directed=True, indices=source, limit=limit, return_predecessors=True
    )
    reachable = target is not None and bool(np.isfinite(costs[target]))
    candidate = None
    if target is not None and reachable:
        candidate = _tree_path(graph, index, predecessors, weights, target, query.max_hops)
    relaxed = _Relaxed(graph, index, weights, data, source, target, query.max_hops)
    return Bounds(index.node_index, (costs * SHRINK).tolist(), reachable, candidate, None, relaxed)


def _weights(graph: ChannelGraph, index: EdgeIndex, query: RouteQuery) -> NDArray[np.float64]:
    """Per slot: the fee at the amount + HOP_TIE (a floor); inf where it cannot be used."""
    amount = float(query.amount)
    weights = index.fee_factor * amount
    np.floor(weights, out=weights)
    weights += index.fee_base
    weights += HOP_TIE
    unusable = index.ceiling < amount
    unusable |= index.settle_timeout < float(query.lock_timeout)
    weights[unusable] = _INF
    for edge in graph.outgoing(query.source):  # the payer's own: free, by sendable balance
        usable = (
            query.local_balances.get(edge.channel_id, -1) >= query.amount
            and edge.settle_timeout >= query.lock_timeout
        )
        weights[edge.slot] = HOP_TIE if usable else _INF
    for channel_id in query.excluded:
        for excluded in graph.channel_edges(channel_id):
            weights[excluded.slot] = _INF
    return weights


def _tree_path(
    graph: ChannelGraph,
    index: EdgeIndex,
    predecessors: NDArray[np.int32],
    weights: NDArray[np.float64],
    target: int,
    max_hops: int,
) -> tuple[DirectedEdge, ...] | None:
    """The Dijkstra tree's path to `target` (the lightest of parallel channels), if not longer
    than max_hops + 1 edges (longer ones are cut: they fail the hop limit anyway)."""
    edges: list[DirectedEdge] = []
    node = target
    while predecessors[node] >= 0 and len(edges) <= max_hops:
        previous = int(predecessors[node])
        receiver = index.nodes[node]
        parallel = [e for e in graph.outgoing(index.nodes[previous]) if e.target == receiver]
        if not parallel:
            return None
        edges.append(min(parallel, key=lambda edge: float(weights[edge.slot])))
        node = previous
    edges.reverse()
    return tuple(edges)


def _layers(relaxed: _Relaxed) -> list[NDArray[np.float64]]:
    """layers[j][node]: the least relaxed cost from the payer within j hops.

    Bellman-Ford, one vectorised pass per hop over the usable edges (about 0.45 ms a pass on
    the benchmark graph). Relaxing only the edges of nodes that improved in the pass before
    was measured slower (17 ms against 9 for 20 passes): over zero-fee stretches most nodes
    keep improving for many passes, and gathering their edges costs more than it saves."""
    index, data = relaxed.index, relaxed.data
    usable = np.flatnonzero(np.isfinite(data))
    senders, receivers, weights = index.senders[usable], index.indices[usable], data[usable]
    current = np.full(len(index.nodes), _INF)
    current[relaxed.source] = 0.0
    layers = [current]
    for _ in range(relaxed.max_hops):
        following = current.copy()
        np.minimum.at(following, receivers, current[senders] + weights)
        if np.array_equal(following, current):  # settled: more hops change nothing
            layers += [current] * (relaxed.max_hops + 1 - len(layers))
            break
        layers.append(following)
        current = following
    return layers


def _layered_path(
    relaxed: _Relaxed, layers: list[NDArray[np.float64]], target: int
) -> tuple[DirectedEdge, ...] | None:
    """The path behind layers[-1][target], walked back from the payee."""
    index, weights = relaxed.index, relaxed.weights
    edges: list[DirectedEdge] = []
    node, hops = target, len(layers) - 1
    while node != relaxed.source:
        while hops > 0 and layers[hops - 1][node] == layers[hops][node]:
            hops -= 1
        if hops == 0:
            return None
        wanted = layers[hops][node]
        for edge in relaxed.graph.incoming(index.nodes[node]):
            sender = index.node_index[edge.source]
            if layers[hops - 1][sender] + weights[edge.slot] == wanted:
                break
        else:
            return None
        edges.append(edge)
        node, hops = sender, hops - 1
    edges.reverse()
    return tuple(edges)
