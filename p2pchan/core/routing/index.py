"""The graph's directed edges as numpy arrays, kept in step with the graph (for `bounds.py`).

Per slot (see graph.py): alive, sending and receiving node index, ceiling (the most the
direction carries: min(capacity, max_amount); -1 without a policy or when disabled), settle
timeout, fee base and ppm / 1e6. Plus the live edges sorted by sending node (CSR, for scipy's
Dijkstra and the hop-layered Bellman-Ford).

Gossip changes a few slots at a time: `sync` rewrites only the slots the graph reports changed
since the last sync (`ChannelGraph.changes_since`), and recomputes the sort orders with numpy
(an argsort, a few ms) only when an edge appeared or vanished. Building it from nothing for
60,000 channels takes about 0.5 s, once; the index lives on the graph (`index_cache`).
Node indices are handed out when first seen and kept (a node left without channels is isolated).

Float64 is safe for these bounds: rounding is monotone, so `ceiling >= amount` survives it, and
`fee_factor` is shrunk by a relative 1e-12 so a floored fee never exceeds the exact one.
"""

from __future__ import annotations

import numpy as np

from p2pchan.core.routing.graph import ChannelGraph, DirectedEdge

SHRINK = 1.0 - 1e-12

_Row = tuple[bool, int, int, float, float, float, float]
_ARRAYS = ("alive", "source", "target", "ceiling", "settle_timeout", "fee_base", "fee_factor")


class EdgeIndex:
    def __init__(self, graph: ChannelGraph) -> None:
        self.version = -1
        self.nodes: list[bytes] = []
        self.node_index: dict[bytes, int] = {}
        self.alive = np.zeros(0, dtype=bool)
        self.source = np.zeros(0, dtype=np.int64)
        self.target = np.zeros(0, dtype=np.int64)
        self.ceiling = np.zeros(0)
        self.settle_timeout = np.zeros(0)
        self.fee_base = np.zeros(0)
        self.fee_factor = np.zeros(0)
        # By sending node (CSR): slots in that order, row pointers, receiving and sending nodes.
        self.order = np.zeros(0, dtype=np.int64)
        self.indptr = np.zeros(1, dtype=np.int32)
        self.indices = np.zeros(0, dtype=np.int32)
        self.senders = np.zeros(0, dtype=np.int64)
        self._rewrite(graph, list(range(graph.slot_count)))

    @classmethod
    def of(cls, graph: ChannelGraph) -> EdgeIndex:
        """The graph's index, brought up to date (created on first use)."""
        index = graph.index_cache
        if isinstance(index, EdgeIndex):
            if graph.version != index.version:
                index._rewrite(graph, graph.changes_since(index.version))
            return index
        index = cls(graph)
        graph.index_cache = index
        return index

    def _rewrite(self, graph: ChannelGraph, slots: list[int]) -> None:
        self._grow(graph.slot_count)
        rows = [self._row(graph.edge_at(slot)) for slot in slots]
        if rows:
            at = np.asarray(slots, dtype=np.int64)
            before = (self.alive[at], self.source[at], self.target[at])
            alive, source, target, ceiling, settle_timeout, fee_base, fee_ppm = zip(
                *rows, strict=True
            )
            self.alive[at] = alive
            self.source[at] = source
            self.target[at] = target
            self.ceiling[at] = ceiling
            self.settle_timeout[at] = settle_timeout
            self.fee_base[at] = fee_base
            self.fee_factor[at] = np.array(fee_ppm) * (SHRINK / 1_000_000)
            after = (self.alive[at], self.source[at], self.target[at])
            if any(not np.array_equal(old, new) for old, new in zip(before, after, strict=True)):
                self._sort()
        self.version = graph.version

    def _row(self, edge: DirectedEdge | None) -> _Row:
        if edge is None:
            return (False, 0, 0, -1.0, 0.0, 0.0, 0.0)
        policy = edge.policy
        if policy is None or policy.disabled:
            ceiling, base, ppm = -1.0, 0.0, 0.0
        else:
            ceiling = float(min(edge.capacity, policy.max_amount))
            base, ppm = float(policy.fee_base), float(policy.fee_ppm)
        source, target = self._node(edge.source), self._node(edge.target)
        return (True, source, target, ceiling, float(edge.settle_timeout), base, ppm)

    def _node(self, node_id: bytes) -> int:
        index = self.node_index.get(node_id)
        if index is None:
            index = self.node_index[node_id] = len(self.nodes)
            self.nodes.append(node_id)
        return index

    def _grow(self, slots: int) -> None:
        size = len(self.alive)
        if slots <= size:
            return
        extra = max(slots - size, size // 2)
        for name in _ARRAYS:
            array = getattr(self, name)
            setattr(self, name, np.concatenate((array, np.zeros(extra, dtype=array.dtype))))

    def _sort(self) -> None:
        live = np.flatnonzero(self.alive)
        self.order = live[np.argsort(self.source[live], kind="stable")]
        counts = np.bincount(self.source[self.order], minlength=len(self.nodes))
        self.indptr = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
        self.indices = self.target[self.order].astype(np.int32)
        self.senders = self.source[self.order]
