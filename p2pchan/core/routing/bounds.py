"""Lower bounds for the route search, from a compiled Dijkstra (numpy + scipy).

The exact search (`pathfind.py`) is plain Python; over Lightning's size (15,000 nodes, 60,000
channels) it needs bounds to stay fast. Here, per query and vectorised over every directed
edge: mask what cannot carry the payment amount (no policy, disabled, capacity or max_amount
below the amount, settle timeout below the lock timeout, excluded; the payer's own channels by
its sendable balance), weigh the rest by the fee at the payment amount plus HOP_TIE (a lower
bound: a hop forwards at least the amount, and the fee is isotone), then run scipy's Dijkstra
from the payer. The search uses the distances as admissible, consistent A* bounds, and the
relaxed optimum path as a candidate whose exact cost prunes every dearer label: the result
stays exact, and the search pops little more than the route itself.

The Dijkstra's limit is the fee cap (nothing dearer can be on a route). A second, unit-weight
Dijkstra gives hop floors and a path of fewest hops (another candidate), only when the first
candidate breaks a limit: on zero-fee stretches the relaxed optimum can exceed 20 hops, and
then the hop floors stop the search from walking them to the end.

The compiled index (edge arrays in CSR order by sending node) lives on the graph
(`ChannelGraph.index_cache`) and follows policy changes slot by slot (`changes_since`); only a
new channel rebuilds it. Float64 is safe: rounding is monotone, so `ceiling >= amount` survives
it, and fees are shrunk by a relative 1e-12 before flooring so they never exceed the exact one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from p2pchan.core.routing.graph import ChannelGraph, DirectedEdge
from p2pchan.core.routing.pathfind import HOP_TIE

if TYPE_CHECKING:
    from p2pchan.core.routing.pathfind import RouteQuery

_SHRINK = 1.0 - 1e-12
_INF = np.inf


@dataclass(frozen=True, slots=True)
class Bounds:
    """Per node (by `node_index`), floors on what a route from the payer to it costs."""

    node_index: Mapping[bytes, int]
    costs: list[float]  # least fees + HOP_TIE per hop (a floor, see the module comment)
    reachable: bool  # the payee is within the fee cap in the relaxed graph
    candidate: tuple[DirectedEdge, ...] | None  # the relaxed optimum payer -> payee
    hops: list[float] | None  # least hops (inf: unreachable); from `with_hops`
    shortest: tuple[DirectedEdge, ...] | None  # a relaxed path of fewest hops; from `with_hops`
    _relaxed: _Relaxed

    def with_hops(self) -> Bounds:
        """Add hop floors (a unit-weight Dijkstra over the same mask) and a shortest path."""
        if self.hops is not None:
            return self
        relaxed = self._relaxed
        size = len(relaxed.index.nodes)
        steps = csr_matrix(
            (
                np.where(np.isfinite(relaxed.data), 1.0, _INF),
                relaxed.index.indices,
                relaxed.index.indptr,
            ),
            shape=(size, size),
        )
        hops, predecessors = dijkstra(
            steps,
            directed=True,
            indices=relaxed.source,
            limit=float(relaxed.max_hops),
            return_predecessors=True,
        )
        shortest = None
        if relaxed.target is not None and np.isfinite(hops[relaxed.target]):
            shortest = _candidate(
                relaxed.graph,
                relaxed.index,
                predecessors,
                relaxed.data,
                relaxed.target,
                relaxed.max_hops,
            )
        return dataclasses.replace(self, hops=hops.tolist(), shortest=shortest)


@dataclass(frozen=True, slots=True)
class _Relaxed:
    """What `Bounds.with_hops` needs to run its second Dijkstra."""

    graph: ChannelGraph
    index: _Index
    data: NDArray[np.float64]  # relaxed weights in CSR order, inf where masked
    source: int
    target: int | None
    max_hops: int


class _Index:
    """The graph's directed edges as arrays in CSR order (by sending node)."""

    def __init__(self, graph: ChannelGraph) -> None:
        self.version = graph.version
        self.nodes = list(graph.node_ids())
        self.node_index = {node: index for index, node in enumerate(self.nodes)}
        edges = [edge for slot in range(graph.slot_count) if (edge := graph.edge_at(slot))]
        edges.sort(key=lambda edge: self.node_index[edge.source])
        self.position = np.full(graph.slot_count, -1, dtype=np.int64)  # slot -> CSR position
        self.position[[edge.slot for edge in edges]] = np.arange(len(edges))
        counts = np.bincount(
            [self.node_index[edge.source] for edge in edges], minlength=len(self.nodes)
        )
        self.indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
        self.indices = np.array([self.node_index[e.target] for e in edges], dtype=np.int32)
        self.ceiling = np.array([_ceiling(edge) for edge in edges], dtype=np.float64)
        self.settle_timeout = np.array([e.settle_timeout for e in edges], dtype=np.float64)
        self.fee_base = np.array([_fees(edge)[0] for edge in edges], dtype=np.float64)
        self.fee_ppm = np.array([_fees(edge)[1] for edge in edges], dtype=np.float64)

    def refresh(self, graph: ChannelGraph, slots: list[int]) -> None:
        for slot in slots:
            position = self.position[slot]
            edge = graph.edge_at(slot)
            if edge is None:  # removed: masked until the next rebuild
                self.ceiling[position] = -1.0
                continue
            self.ceiling[position] = _ceiling(edge)
            self.settle_timeout[position] = edge.settle_timeout
            self.fee_base[position], self.fee_ppm[position] = _fees(edge)
        self.version = graph.version


def _ceiling(edge: DirectedEdge) -> float:
    """The most this direction may carry; -1 if it carries nothing."""
    policy = edge.policy
    if policy is None or policy.disabled:
        return -1.0
    return float(min(edge.capacity, policy.max_amount))


def _fees(edge: DirectedEdge) -> tuple[float, float]:
    policy = edge.policy
    return (0.0, 0.0) if policy is None else (float(policy.fee_base), float(policy.fee_ppm))


def _index(graph: ChannelGraph) -> _Index:
    index = graph.index_cache
    if isinstance(index, _Index):
        changes = graph.changes_since(index.version)
        if changes is not None:
            if changes:
                index.refresh(graph, changes)
            return index
    index = _Index(graph)
    graph.index_cache = index
    return index


def compute_bounds(graph: ChannelGraph, query: RouteQuery) -> Bounds:
    index = _index(graph)
    source = index.node_index[query.source]
    data = _weights(index, query, float(query.amount))
    for edge in graph.outgoing(query.source):
        usable = (
            query.local_balances.get(edge.channel_id, -1) >= query.amount
            and edge.settle_timeout >= query.lock_timeout
        )
        data[index.position[edge.slot]] = HOP_TIE if usable else _INF
    for channel_id in query.excluded:
        for excluded in graph.channel_edges(channel_id):
            data[index.position[excluded.slot]] = _INF
    size = len(index.nodes)
    matrix = csr_matrix((data, index.indices, index.indptr), shape=(size, size))
    target = index.node_index.get(query.target)
    # No route within the fee cap has a floor above fee_cap + HOP_TIE * MAX_HOPS < fee_cap + 1.
    costs, predecessors = dijkstra(
        matrix,
        directed=True,
        indices=source,
        limit=(query.fee_cap + 1.0) / _SHRINK,
        return_predecessors=True,
    )
    reachable = target is not None and bool(np.isfinite(costs[target]))
    costs *= _SHRINK
    candidate = None
    if target is not None and reachable:
        candidate = _candidate(graph, index, predecessors, data, target, query.max_hops)
    return Bounds(
        index.node_index,
        costs.tolist(),
        reachable,
        candidate,
        None,
        None,
        _Relaxed(graph, index, data, source, target, query.max_hops),
    )


def _weights(index: _Index, query: RouteQuery, amount: float) -> NDArray[np.float64]:
    usable = (index.ceiling >= amount) & (index.settle_timeout >= float(query.lock_timeout))
    fees = index.fee_base + np.floor(index.fee_ppm * (amount * _SHRINK / 1_000_000))
    fees += HOP_TIE
    fees[~usable] = _INF
    return fees


def _candidate(
    graph: ChannelGraph,
    index: _Index,
    predecessors: NDArray[np.int32],
    data: NDArray[np.float64],
    target: int,
    max_hops: int,
) -> tuple[DirectedEdge, ...] | None:
    """The relaxed optimum as edges payer -> payee (the lightest of parallel channels)."""
    edges: list[DirectedEdge] = []
    node = target
    while predecessors[node] >= 0 and len(edges) <= max_hops:
        previous = int(predecessors[node])
        to_node = index.nodes[node]
        parallel = [e for e in graph.outgoing(index.nodes[previous]) if e.target == to_node]
        if not parallel:
            return None
        edges.append(min(parallel, key=lambda edge: float(data[index.position[edge.slot]])))
        node = previous
    edges.reverse()
    return tuple(edges)
