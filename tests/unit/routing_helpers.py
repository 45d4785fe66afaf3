"""Small graphs by name for routing tests, and an independent check of a returned route."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping

from p2pchan.core.payment.fees import forwarding_fee
from p2pchan.core.routing.graph import ChannelGraph, ChannelPolicy, GraphChannel
from p2pchan.core.routing.mission import MissionControl
from p2pchan.core.routing.pathfind import find_route
from p2pchan.core.routing.route import Route
from p2pchan.types import U64_MAX

LOCK_TIMEOUT = 50
NOW_MS = 1_000_000


def node(name: str) -> bytes:
    return hashlib.sha256(b"node:" + name.encode()).digest()


def channel_id(name: str) -> bytes:
    return hashlib.sha256(b"channel:" + name.encode()).digest()


def policy(
    base: int = 0,
    ppm: int = 0,
    *,
    min_amount: int = 0,
    max_amount: int = U64_MAX,
    disabled: bool = False,
    timestamp_ms: int = 1,
) -> ChannelPolicy:
    return ChannelPolicy(base, ppm, min_amount, max_amount, disabled, timestamp_ms)


class Net:
    """A graph built by node names; channels named "A-B" (or given a name)."""

    def __init__(self) -> None:
        self.graph = ChannelGraph()

    def channel(
        self,
        a: str,
        b: str,
        *,
        capacity: int = 10**9,
        settle_timeout: int = 100,
        forward: ChannelPolicy | None = None,
        backward: ChannelPolicy | None = None,
        name: str | None = None,
    ) -> bytes:
        """A channel a-b; `forward` is a's policy (a->b), `backward` b's (b->a); both free by
        default. Pass `policy(...)` to set one, or use `no_policy` to leave one out."""
        cid = channel_id(name or f"{a}-{b}")
        node1, node2 = sorted((node(a), node(b)))
        self.graph.add_channel(GraphChannel(cid, node1, node2, capacity, settle_timeout))
        for sender, chosen in ((a, forward), (b, backward)):
            if chosen is not NO_POLICY:
                self.graph.update_policy(cid, node(sender), chosen or policy())
        return cid

    def path(self, *stops: str, **options: object) -> list[bytes]:
        """Channels along stops[0] - stops[1] - ..., all with the same options."""
        return [
            self.channel(a, b, **options)  # type: ignore[arg-type]
            for a, b in itertools.pairwise(stops)
        ]

    def balances(self, source: str, amount: int | None = None) -> dict[bytes, int]:
        """The source can send `amount` (default: the capacity) on each of its channels."""
        return {
            channel.channel_id: channel.capacity if amount is None else amount
            for channel in self.graph.channels_of(node(source))
        }

    def route(
        self,
        source: str,
        target: str,
        amount: int,
        *,
        balances: Mapping[bytes, int] | None = None,
        lock_timeout: int = LOCK_TIMEOUT,
        fee_cap: int | None = None,
        max_hops: int = 20,
        mission: MissionControl | None = None,
        now_ms: int = NOW_MS,
        excluded: frozenset[bytes] = frozenset(),
        use_bounds: bool = True,
    ) -> Route:
        route = find_route(
            self.graph,
            node(source),
            node(target),
            amount,
            local_balances=self.balances(source) if balances is None else balances,
            lock_timeout=lock_timeout,
            fee_cap=max(amount, 0) if fee_cap is None else fee_cap,
            max_hops=max_hops,
            mission=mission,
            now_ms=now_ms,
            excluded=excluded,
            use_bounds=use_bounds,
        )
        check_route(
            self.graph,
            route,
            source=node(source),
            target=node(target),
            amount=amount,
            balances=self.balances(source) if balances is None else balances,
            lock_timeout=lock_timeout,
            fee_cap=max(amount, 0) if fee_cap is None else fee_cap,
            max_hops=max_hops,
            excluded=excluded,
        )
        return route


NO_POLICY = policy(timestamp_ms=0)  # a marker: leave this direction without a policy


def names(route: Route) -> list[bytes]:
    return [route.source, *(hop.node_id for hop in route.hops)]


def check_route(
    graph: ChannelGraph,
    route: Route,
    *,
    source: bytes,
    target: bytes,
    amount: int,
    balances: Mapping[bytes, int],
    lock_timeout: int,
    fee_cap: int,
    max_hops: int,
    excluded: frozenset[bytes],
) -> None:
    """Every constraint a route must meet, checked from the graph, not from the search."""
    nodes = names(route)
    assert nodes[0] == source and nodes[-1] == target
    assert len(set(nodes)) == len(nodes), "a route visits each node once"
    assert 1 <= len(route.hops) <= max_hops
    assert route.amount == amount and route.hops[-1].amount == amount
    assert route.hops[-1].fee == 0, "the payee charges nothing"
    for index, hop in enumerate(route.hops):
        sender = nodes[index]
        channel = graph.channel(hop.channel_id)
        assert channel is not None
        assert {channel.node1, channel.node2} == {sender, hop.node_id}
        assert hop.channel_id not in excluded
        assert channel.settle_timeout >= lock_timeout
        if index == 0:
            assert hop.amount <= balances[hop.channel_id]
            continue
        chosen = graph.policy(hop.channel_id, sender)
        assert chosen is not None and not chosen.disabled
        assert chosen.min_amount <= hop.amount <= chosen.max_amount
        assert hop.amount <= channel.capacity
        previous = route.hops[index - 1]
        assert previous.fee == forwarding_fee(hop.amount, chosen.fee_base, chosen.fee_ppm)
        assert previous.amount == hop.amount + previous.fee
    assert route.fee == sum(hop.fee for hop in route.hops) <= fee_cap
    assert route.hops[0].amount == amount + route.fee
