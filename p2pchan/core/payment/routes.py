"""Where a payment goes: straight over our channel with the payee, or along the cheapest route
the gossiped graph offers, and the onion that carries it.

`plan` is what `send`, `pay` and `route` all call, so `route` shows exactly the hops, amounts and
fees a payment would use now: a payee that is our usable, online channel partner is paid
directly (no fee, a plain payload); anyone else through `routing.find_route` over the graph,
with our own channels' exact sendable amounts, a fee cap (5 %, at least 10), the hop limit
(20) and one expiry E for every hop (DESIGN.md "Payments across hops").

An invoice's route hints (`invoice_hints`: the payee's channels with the most inbound room) let
a payer whose graph lacks the payee's channels route over them all the same: each hinted
channel that our own view of layer 1 shows open between the hint's node and the payee is added
to the graph for the search only, with the hinted fees.

The onion's session key is derived from our key, the payment hash and the attempt's number
(keyed BLAKE2b): unpredictable to anyone else, never the same for two onions, and no random
source in the core.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from p2pchan.core.channel.state import Channel
from p2pchan.core.gossip.state import FeePolicy
from p2pchan.core.invoice import MAX_ROUTE_HINTS, RouteHint
from p2pchan.core.payment.fees import default_fee_cap
from p2pchan.core.routing.graph import ChannelPolicy, GraphChannel
from p2pchan.core.routing.pathfind import find_route
from p2pchan.core.routing.route import Hop, Route
from p2pchan.core.state import NodeState
from p2pchan.core.timing import payer_lock_timeout
from p2pchan.crypto.sphinx import Onion, OnionHop, build_onion
from p2pchan.errors import NoRoute
from p2pchan.types import Address, ChannelId, NodeId, Secret, SecretHash
from p2pchan.wire.onion_payload import FinalPayload, ForwardPayload

_SESSION_LABEL = b"p2pchan/onion_session/1"


@dataclass(frozen=True, slots=True)
class Plan:
    """How a payment goes out: over `channel` with `route` (one hop: direct), its lock
    expiring `lock_timeout` blocks from now."""

    channel: Channel
    route: Route
    lock_timeout: int

    @property
    def direct(self) -> bool:
        return len(self.route.hops) == 1


def plan(
    state: NodeState,
    payee: Address,
    amount: int,
    *,
    min_lock_timeout: int = 0,
    excluded: frozenset[ChannelId] = frozenset(),
    hints: tuple[RouteHint, ...] = (),
) -> Plan:
    """The route a payment of `amount` to `payee` takes now (`NoRoute` with the reason)."""
    direct = state.channel_with(payee)
    if (
        direct is not None
        and direct.takes_new_transfers
        and payee in state.online
        and direct.channel_id not in excluded
    ):
        timeout = payer_lock_timeout(direct.lock_window, min_lock_timeout)
        if timeout is None:
            raise NoRoute("lock_timeout", f"the invoice wants a lock timeout of {min_lock_timeout}")
        hop = Hop(payee, direct.channel_id, amount, 0)
        return Plan(direct, Route(state.us, (hop,)), timeout)
    balances = _sendable(state)
    # One expiry for every hop: each channel of the route must take it (settle_timeout >= it).
    timeout = payer_lock_timeout(state.config.max_lock_timeout, min_lock_timeout)
    if timeout is None:
        raise NoRoute("lock_timeout", f"the invoice wants a lock timeout of {min_lock_timeout}")
    with _hinted(state, payee, hints):
        route = find_route(
            state.graph,
            state.us,
            payee,
            amount,
            local_balances=balances,
            lock_timeout=timeout,
            fee_cap=default_fee_cap(amount),
            mission=state.mission,
            now_ms=state.now_ms,
            excluded=excluded,
        )
    first = state.channels[ChannelId(route.hops[0].channel_id)]
    return Plan(first, route, min(timeout, first.lock_window))


@contextmanager
def _hinted(state: NodeState, payee: Address, hints: tuple[RouteHint, ...]) -> Iterator[None]:
    """The graph with the hinted channels it lacks, for one search."""
    graph = state.graph
    added = []
    for hint in hints:
        on_chain = state.chain_view.channel(hint.channel_id)
        if (
            graph.channel(hint.channel_id) is not None
            or on_chain is None
            or not on_chain.is_open
            or not on_chain.is_between(hint.node_id, payee)
            or hint.node_id == payee
        ):
            continue
        node1, node2 = sorted((bytes(hint.node_id), bytes(payee)))
        graph.add_channel(
            GraphChannel(hint.channel_id, node1, node2, on_chain.capacity, on_chain.settle_timeout)
        )
        policy = ChannelPolicy(hint.fee_base, hint.fee_ppm, 1, on_chain.capacity, False, 0)
        graph.update_policy(hint.channel_id, hint.node_id, policy)
        added.append(hint.channel_id)
    try:
        yield
    finally:
        for channel_id in added:
            graph.remove_channel(channel_id)


def invoice_hints(state: NodeState) -> tuple[RouteHint, ...]:
    """Hints for an invoice of ours: our usable channels with the most room to receive, with
    what each partner charges to forward to us (as gossip told us; else the default fees)."""
    usable = sorted(
        (c for c in state.channels.values() if c.takes_new_transfers),
        key=lambda c: c.remote_balance(),
        reverse=True,
    )
    hints = []
    for channel in usable[:MAX_ROUTE_HINTS]:
        update = state.network.updates.get((channel.channel_id, NodeId(channel.partner)))
        if update is not None:
            base, ppm = update.body.fee_base, update.body.fee_ppm
        else:
            base, ppm = FeePolicy().fee_base, FeePolicy().fee_ppm
        hints.append(RouteHint(channel.partner, channel.channel_id, base, ppm))
    return tuple(hints)


def _sendable(state: NodeState) -> Mapping[bytes, int]:
    """What we can send now on each usable channel with an online partner."""
    return {
        channel_id: channel.available_to_send()
        for channel_id, channel in state.channels.items()
        if channel.takes_new_transfers and channel.partner in state.online
    }


def session_key(state: NodeState, secrethash: SecretHash, attempt: int) -> bytes:
    """The onion session key of one attempt of one payment (see the module comment)."""
    return hashlib.blake2b(
        _SESSION_LABEL + secrethash + attempt.to_bytes(4, "big"),
        key=state.identity.seed(),
        digest_size=32,
    ).digest()


def onion_for(
    route: Route, expiration: int, secret: Secret | None, key: bytes, secrethash: SecretHash
) -> Onion:
    """The onion of a routed payment: each hop learns the next node, the amount to lock towards
    it and E; the payee its amount, E and (spontaneous payments) the secret."""
    hops = route.hops
    layers = [
        OnionHop(hop.node_id, ForwardPayload(Address(nxt.node_id), nxt.amount, expiration).encode())
        for hop, nxt in itertools.pairwise(hops)
    ]
    final = FinalPayload(hops[-1].amount, expiration, secret).encode()
    layers.append(OnionHop(hops[-1].node_id, final))
    return build_onion(layers, key, secrethash)
