"""The cheapest route that fits: exact amounts, limits, fee cap, hop limit, penalties.

The search runs backwards from the payee, as amounts are only known there: a label at node u
says "u must receive `amount` to deliver the payment over this suffix". Crossing edge u->v adds
u's fee on what v must receive (`forwarding_fee`, the one formula), so every amount and every
limit is checked with the exact figure the lock will carry; the payer's own first hop is free
and bounded by its sendable balance (`local_balances`), the payee charges nothing.

Cost = fees + `penalty_cost` of penalised directions (mission control). Fees are isotone in the
amount, so a label dominated in (cost, amount, hops) can be dropped: the search is exact
(Pareto labels per node; the hop count is part of them so the hop limit cannot hide a dearer
but shorter route), except for one documented relaxation shared with LND and CLN: a label is
dropped when another reaches its node with a smaller amount, even if only the larger amount
would have met some upstream direction's `min_amount`.

Speed: this is A*. `bounds.py` (numpy + scipy, when installed) gives per node a floor on the
cost between the payer and that node, from one compiled Dijkstra over relaxed weights (each fee
at the payment amount: a floor, since amounts only grow upstream), and that relaxed optimum as a
candidate whose exact cost prunes everything dearer; when the candidate breaks the hop limit,
floors per hop budget and the best candidate within the limit. Without numpy the same search
runs with zero floors (a plain Dijkstra over labels): the same cost, 10-100 times slower
(docs/BENCHMARKS.md). The first query of a process also pays scipy's import (~0.3 s).

Ties: cost counts HOP_TIE per hop, so of equally cheap routes the shortest wins; incoming edges
are visited in channel-id order, so the route depends on the graph's content only, never on the
order gossip arrived in.

Pure: time (`now_ms`) and balances are inputs. Raises `NoRoute` with a reason code.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from p2pchan.core.payment.fees import forwarding_fee
from p2pchan.core.routing.graph import ChannelGraph, DirectedEdge
from p2pchan.core.routing.route import HOP_TIE, MAX_HOPS, Hop, Route, RouteQuery
from p2pchan.errors import LocalProtocolError, NoRoute
from p2pchan.types import HASH_SIZE, KEY_SIZE, U64_MAX, short_hex

if TYPE_CHECKING:
    from p2pchan.core.routing.bounds import Bounds
    from p2pchan.core.routing.mission import MissionControl


def penalty_cost(penalty: float, fee_cap: int) -> int:
    """A mission-control penalty (0..1) as a fee-like cost: 1.0 costs more than the whole fee
    cap, so a route avoiding a fresh failure wins whenever one fits the cap."""
    return math.ceil(min(max(penalty, 0.0), 1.0) * (fee_cap + 1))


def find_route(
    graph: ChannelGraph,
    source: bytes,
    target: bytes,
    amount: int,
    *,
    local_balances: Mapping[bytes, int],
    lock_timeout: int,
    fee_cap: int,
    max_hops: int = MAX_HOPS,
    mission: MissionControl | None = None,
    now_ms: int,
    excluded: frozenset[bytes] = frozenset(),
    use_bounds: bool = True,
) -> Route:
    """The cheapest route from `source` to `target` delivering exactly `amount`.

    `local_balances`: channel id -> what `source` can send on it now (its channels not listed
    are unusable; their gossip policy is not consulted). `lock_timeout`: blocks from now to the
    lock's expiry; only channels with `settle_timeout >= lock_timeout` are used. `excluded`:
    channel ids not to use (both directions). `use_bounds=False` forces the pure-Python search.
    Raises `NoRoute` (reasons: invalid_amount, source_is_target, unknown_source, unknown_target,
    insufficient_balance, no_path).
    """
    query = RouteQuery(
        source, target, amount, local_balances, lock_timeout, fee_cap, max_hops, excluded
    )
    _check(graph, query)
    penalties = _penalty_costs(graph, mission, now_ms, fee_cap)
    bounds = _bounds(graph, query) if use_bounds else None
    upper = math.inf
    if bounds is not None:
        if not bounds.reachable:
            raise _no_path(query)
        if bounds.candidate is not None:
            upper = _path_cost(bounds.candidate, query, penalties)
        if math.isinf(upper):
            # The relaxed optimum breaks a rule (the hop limit, over long zero-fee stretches):
            # floors that know the hop limit, and the relaxed optimum within it.
            bounds = bounds.within_hops()
            if bounds.candidate is not None:
                upper = _path_cost(bounds.candidate, query, penalties)
    label = _search(graph, query, penalties, bounds, upper)
    if label is None:
        raise _no_path(query)
    return _route(query.source, label)


def _check(graph: ChannelGraph, query: RouteQuery) -> None:
    if len(query.source) != KEY_SIZE or len(query.target) != KEY_SIZE:
        raise LocalProtocolError("node ids are 32 bytes")
    if query.lock_timeout < 0 or query.fee_cap < 0:
        raise LocalProtocolError("lock timeout and fee cap are non-negative")
    if not 1 <= query.max_hops <= MAX_HOPS:
        raise LocalProtocolError(f"max_hops must be 1..{MAX_HOPS}, got {query.max_hops}")
    if any(len(channel_id) != HASH_SIZE for channel_id in query.excluded):
        raise LocalProtocolError("excluded channel ids are 32 bytes")
    if not 0 < query.amount <= U64_MAX:
        raise NoRoute("invalid_amount", f"amount must be 1..{U64_MAX}, got {query.amount}")
    if query.source == query.target:
        raise NoRoute("source_is_target", "cannot route a payment to ourselves")
    if not graph.has_node(query.target):
        raise NoRoute("unknown_target", f"node {short_hex(query.target)} is not in the graph")
    ours = graph.outgoing(query.source)
    if not ours:
        source = short_hex(query.source)
        raise NoRoute("unknown_source", f"node {source} has no channel in the graph")
    sendable = max((query.local_balances.get(edge.channel_id, 0) for edge in ours), default=0)
    if sendable < query.amount:
        raise NoRoute(
            "insufficient_balance",
            f"no channel of ours can send {query.amount} (at most {sendable})",
        )


def _no_path(query: RouteQuery) -> NoRoute:
    return NoRoute(
        "no_path",
        f"no path to {short_hex(query.target)} carries {query.amount} within a fee cap of "
        f"{query.fee_cap}, {query.max_hops} hops and a lock timeout of {query.lock_timeout}",
    )


def _penalty_costs(
    graph: ChannelGraph, mission: MissionControl | None, now_ms: int, fee_cap: int
) -> dict[int, int]:
    """Slot -> penalty cost, for the few penalised directions."""
    if mission is None:
        return {}
    costs = {}
    for (channel_id, from_node), penalty in mission.penalties(now_ms).items():
        edge = graph.edge(channel_id, from_node)
        cost = penalty_cost(penalty, fee_cap)
        if edge is not None and cost > 0:
            costs[edge.slot] = cost
    return costs


def _bounds(graph: ChannelGraph, query: RouteQuery) -> Bounds | None:
    try:
        from p2pchan.core.routing.bounds import compute_bounds
    except ImportError:  # numpy or scipy not installed: the plain search is exact too
        return None
    return compute_bounds(graph, query)


class _Label:
    """Node `node` must receive `amount` to deliver the payment over `edge` then `next`."""

    __slots__ = ("amount", "cost", "dead", "edge", "hops", "next", "node")

    def __init__(
        self,
        node: bytes,
        amount: int,
        cost: int,
        hops: int,
        edge: DirectedEdge | None,
        next_label: _Label | None,
    ) -> None:
        self.node = node
        self.amount = amount
        self.cost = cost
        self.hops = hops
        self.edge = edge
        self.next = next_label
        self.dead = False


def _search(
    graph: ChannelGraph,
    query: RouteQuery,
    penalties: dict[int, int],
    bounds: Bounds | None,
    upper: float,
) -> _Label | None:
    """A* from the payee; the first label popped at the payer is the cheapest route."""
    source, amount, fee_cap = query.source, query.amount, query.fee_cap
    lock_timeout, excluded, balances = query.lock_timeout, query.excluded, query.local_balances
    max_hops = query.max_hops
    most = amount + fee_cap
    # A cost floor includes HOP_TIE per hop of its relaxed path, at most max_hops of them on
    # any route we may return: that much slack keeps the fee-cap test exact.
    cap_slack = fee_cap + HOP_TIE * max_hops
    node_index: Mapping[bytes, int] = {}
    cost_floor: Sequence[float] = ()
    by_hops: Sequence[Sequence[float]] | None = None
    if bounds is not None:
        node_index, cost_floor, by_hops = bounds.node_index, bounds.costs, bounds.by_hops
    start = _Label(query.target, amount, 0, 0, None, None)
    labels: dict[bytes, list[_Label]] = {query.target: [start]}
    heap: list[tuple[float, int, int, _Label]] = [(0.0, 0, 0, start)]
    pushed = 0
    while heap:
        _, hops, _, label = heapq.heappop(heap)
        if label.dead:
            continue
        if label.node == source:
            return label
        received, cost, next_hops = label.amount, label.cost, hops + 1
        if next_hops > max_hops:
            continue
        for edge in graph.incoming(label.node):
            if edge.settle_timeout < lock_timeout or edge.channel_id in excluded:
                continue
            sender = edge.source
            if sender == source:
                if balances.get(edge.channel_id, -1) < received:
                    continue
                needed, floor = received, 0.0
            else:
                policy = edge.policy
                if (
                    policy is None
                    or policy.disabled
                    or received < policy.min_amount
                    or received > policy.max_amount
                    or received > edge.capacity
                ):
                    continue
                needed = received + forwarding_fee(received, policy.fee_base, policy.fee_ppm)
                if needed > most:
                    continue
                floor = 0.0
                if bounds is not None:
                    index = node_index.get(sender)
                    if index is None:
                        continue
                    floor = (cost_floor if by_hops is None else by_hops[next_hops])[index]
                    if needed - amount + floor > cap_slack:
                        continue
                if next_hops >= max_hops:  # the payer is at least one more hop away
                    continue
            new_cost = cost + needed - received
            if penalties:
                new_cost += penalties.get(edge.slot, 0)
            estimate = new_cost + next_hops * HOP_TIE + floor
            if estimate > upper:
                continue
            new = _Label(sender, needed, new_cost, next_hops, edge, label)
            if not _admit(labels, new):
                continue
            pushed += 1
            heapq.heappush(heap, (estimate, next_hops, pushed, new))
    return None


def _admit(labels: dict[bytes, list[_Label]], new: _Label) -> bool:
    """Keep `new` unless a label at its node is at least as good in cost, amount and hops;
    retire the ones `new` beats."""
    existing = labels.get(new.node)
    if existing is None:
        labels[new.node] = [new]
        return True
    for old in existing:
        if old.cost <= new.cost and old.amount <= new.amount and old.hops <= new.hops:
            return False
    kept = []
    for old in existing:
        if new.cost <= old.cost and new.amount <= old.amount and new.hops <= old.hops:
            old.dead = True
        else:
            kept.append(old)
    kept.append(new)
    labels[new.node] = kept
    return True


def _path_cost(
    edges: tuple[DirectedEdge, ...], query: RouteQuery, penalties: dict[int, int]
) -> float:
    """The exact cost of a path source->target as the search counts it (fees, penalties,
    HOP_TIE per hop), or inf if it breaks any constraint."""
    if not edges or len(edges) > query.max_hops or edges[0].source != query.source:
        return math.inf
    received, cost = query.amount, 0
    for edge in reversed(edges):
        if edge.settle_timeout < query.lock_timeout or edge.channel_id in query.excluded:
            return math.inf
        if edge.source == query.source:
            if query.local_balances.get(edge.channel_id, -1) < received:
                return math.inf
            needed = received
        else:
            policy = edge.policy
            if (
                policy is None
                or policy.disabled
                or not policy.min_amount <= received <= policy.max_amount
                or received > edge.capacity
            ):
                return math.inf
            needed = received + forwarding_fee(received, policy.fee_base, policy.fee_ppm)
        cost += needed - received + penalties.get(edge.slot, 0)
        received = needed
    if received - query.amount > query.fee_cap:
        return math.inf
    return cost + HOP_TIE * len(edges)


def _route(source: bytes, label: _Label) -> Route:
    hops = []
    while label.next is not None and label.edge is not None:
        following = label.next
        fee = following.amount - following.next.amount if following.next is not None else 0
        hops.append(Hop(following.node, label.edge.channel_id, following.amount, fee))
        label = following
    return Route(source, tuple(hops))
