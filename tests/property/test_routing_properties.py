"""Hypothesis: find_route against a brute-force search over every simple path.

On small random graphs (parallel channels, both directions with or without a policy, random
fees with large ppm so fees compound, capacities, limits, disabled flags, settle timeouts,
sendable balances, exclusions, mission-control penalties, hop limits, fee caps):

- any route returned meets every constraint (`check_route`, read from the graph) and its fee
  is the sum of its hops' fees;
- it is exactly as cheap as the cheapest path the brute force finds (fees plus penalties), with
  as few hops as the cheapest ones have; and when the brute force finds none, `NoRoute`;
- with and without the compiled bounds.

One relaxation is documented in pathfind.py: a `min_amount` that only a dearer path to the same
node would meet can be missed. The optimality property draws minimums that never bind (at most
the amount, which every hop forwards at least); a second property lets them bind and checks
soundness only: every route returned is valid, and none is missed where a path of the same
kind exists without binding minimums.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchan.core.payment.fees import forwarding_fee
from p2pchan.core.routing.graph import ChannelGraph, ChannelPolicy, GraphChannel
from p2pchan.core.routing.mission import MissionControl
from p2pchan.core.routing.pathfind import find_route, penalty_cost
from p2pchan.core.routing.route import Route
from p2pchan.errors import NoRoute
from p2pchan.types import U64_MAX
from tests.unit.routing_helpers import check_route

NOW_MS = 10_000_000


def _id(kind: bytes, index: int) -> bytes:
    return hashlib.sha256(kind + index.to_bytes(4, "big")).digest()


@dataclass
class Case:
    graph: ChannelGraph
    source: bytes
    target: bytes
    amount: int
    balances: dict[bytes, int]
    lock_timeout: int
    fee_cap: int
    max_hops: int
    excluded: frozenset[bytes]
    mission: MissionControl


@st.composite
def cases(draw: st.DrawFn, binding_minimums: bool = False) -> Case:
    nodes = draw(st.integers(2, 7))
    ids = [_id(b"node", index) for index in range(nodes)]
    source, target = ids[0], ids[1]
    amount = draw(st.integers(1, 2000))
    graph = ChannelGraph()
    channels: list[GraphChannel] = []
    for index in range(draw(st.integers(1, 12))):
        a = draw(st.integers(0, nodes - 1))
        b = draw(st.integers(0, nodes - 2))
        b = b + 1 if b >= a else b
        node1, node2 = sorted((ids[a], ids[b]))
        channel = GraphChannel(
            _id(b"channel", index),
            node1,
            node2,
            capacity=draw(st.integers(0, 6000)),
            settle_timeout=draw(st.sampled_from([10, 50, 100])),
        )
        graph.add_channel(channel)
        channels.append(channel)
        for sender in (node1, node2):
            if draw(st.integers(0, 9)) == 0:
                continue  # no policy yet
            minimum = draw(st.integers(0, 3000 if binding_minimums else amount))
            policy = ChannelPolicy(
                fee_base=draw(st.integers(0, 30)),
                fee_ppm=draw(
                    st.sampled_from([0, 1, 999, 100_000, 333_333, 1_000_000])
                    | st.integers(0, 500_000)
                ),
                min_amount=minimum,
                max_amount=draw(st.sampled_from([U64_MAX]) | st.integers(0, 6000)),
                disabled=draw(st.integers(0, 9)) == 0,
                timestamp_ms=1,
            )
            graph.update_policy(channel.channel_id, sender, policy)
    balances = {}
    for channel in graph.channels_of(source):
        if draw(st.integers(0, 5)) > 0:
            balances[channel.channel_id] = draw(st.integers(0, 6000))
    excluded = frozenset(channel.channel_id for channel in channels if draw(st.integers(0, 7)) == 0)
    mission = MissionControl(half_life_ms=1000)
    for channel in channels:
        for sender in (channel.node1, channel.node2):
            if draw(st.integers(0, 5)) == 0:
                age = draw(st.integers(0, 5000))
                mission.report_failure(channel.channel_id, sender, NOW_MS - age)
    return Case(
        graph,
        source,
        target,
        amount,
        balances,
        lock_timeout=draw(st.sampled_from([10, 50, 100])),
        fee_cap=draw(st.integers(0, 3000)),
        max_hops=draw(st.integers(1, 6)),
        excluded=excluded,
        mission=mission,
    )


def _path_cost(case: Case, path: list[tuple[bytes, bytes, bytes]]) -> int | None:
    """Fees + penalties of a path of (channel_id, sender, receiver), None if it breaks a rule."""
    received, cost = case.amount, 0
    for position in range(len(path) - 1, -1, -1):
        channel_id, sender, _ = path[position]
        channel = case.graph.channel(channel_id)
        assert channel is not None
        if channel_id in case.excluded or channel.settle_timeout < case.lock_timeout:
            return None
        if position == 0:
            if case.balances.get(channel_id, -1) < received:
                return None
            needed = received
        else:
            policy = case.graph.policy(channel_id, sender)
            if policy is None or policy.disabled:
                return None
            if not policy.min_amount <= received <= min(policy.max_amount, channel.capacity):
                return None
            needed = received + forwarding_fee(received, policy.fee_base, policy.fee_ppm)
        penalty = case.mission.penalty(channel_id, sender, NOW_MS)
        cost += needed - received + penalty_cost(penalty, case.fee_cap)
        received = needed
    if received - case.amount > case.fee_cap:
        return None
    return cost


def brute_force(case: Case) -> tuple[int, int] | None:
    """The least (cost, hops) over every simple path, or None."""
    best: tuple[int, int] | None = None

    def walk(at: bytes, path: list[tuple[bytes, bytes, bytes]], seen: set[bytes]) -> None:
        nonlocal best
        if at == case.target:
            cost = _path_cost(case, path)
            if cost is not None and (best is None or (cost, len(path)) < best):
                best = (cost, len(path))
            return
        if len(path) == case.max_hops:
            return
        for channel in case.graph.channels_of(at):
            following = channel.other(at)
            if following not in seen:
                seen.add(following)
                path.append((channel.channel_id, at, following))
                walk(following, path, seen)
                path.pop()
                seen.discard(following)

    walk(case.source, [], {case.source})
    return best


def _route(case: Case, use_bounds: bool) -> Route | None:
    try:
        return find_route(
            case.graph,
            case.source,
            case.target,
            case.amount,
            local_balances=case.balances,
            lock_timeout=case.lock_timeout,
            fee_cap=case.fee_cap,
            max_hops=case.max_hops,
            mission=case.mission,
            now_ms=NOW_MS,
            excluded=case.excluded,
            use_bounds=use_bounds,
        )
    except NoRoute as error:
        assert error.reason in {
            "no_path",
            "insufficient_balance",
            "unknown_target",
            "unknown_source",
        }
        return None


def _cost(case: Case, route: Route) -> int:
    penalties = sum(
        penalty_cost(case.mission.penalty(channel_id, sender, NOW_MS), case.fee_cap)
        for channel_id, sender in route.directions()
    )
    return route.fee + penalties


def _check(case: Case, route: Route) -> None:
    check_route(
        case.graph,
        route,
        source=case.source,
        target=case.target,
        amount=case.amount,
        balances=case.balances,
        lock_timeout=case.lock_timeout,
        fee_cap=case.fee_cap,
        max_hops=case.max_hops,
        excluded=case.excluded,
    )


@settings(max_examples=400, deadline=None)
@given(case=cases(), use_bounds=st.booleans())
def test_routes_are_valid_and_as_cheap_as_brute_force(case: Case, use_bounds: bool) -> None:
    best = brute_force(case)
    route = _route(case, use_bounds)
    if best is None:
        assert route is None
        return
    assert route is not None, f"brute force found {best}"
    _check(case, route)
    assert (_cost(case, route), len(route.hops)) == best


@settings(max_examples=200, deadline=None)
@given(case=cases(binding_minimums=True), use_bounds=st.booleans())
def test_routes_are_valid_when_minimums_bind(case: Case, use_bounds: bool) -> None:
    best = brute_force(case)
    route = _route(case, use_bounds)
    if route is not None:
        _check(case, route)
        assert best is not None and _cost(case, route) >= best[0]
    else:
        assert best is None or _any_minimum_binds(case)


def _any_minimum_binds(case: Case) -> bool:
    return any(
        edge.policy is not None and edge.policy.min_amount > case.amount
        for channel in case.graph.channels()
        for edge in case.graph.channel_edges(channel.channel_id)
    )
