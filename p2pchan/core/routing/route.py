"""A route and what a route query asks for: the values routing's search and its numeric
bounds share (kept apart so neither imports the other)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_HOPS = 20
HOP_TIE = 1 / 32
"""Added per hop to every cost: among routes of equal fees and penalties the shorter wins, and
plateaus of zero-fee edges are not explored hop by hop. `HOP_TIE * MAX_HOPS < 1`, so it never
outweighs a unit of fee; a power of two, so sums of it stay exact in floats."""


@dataclass(frozen=True, slots=True)
class Hop:
    """Hop i goes over `channel_id` to `node_id`, locking `amount` on that channel;
    `fee` is what `node_id` keeps for forwarding (0 for the payee)."""

    node_id: bytes
    channel_id: bytes
    amount: int
    fee: int


@dataclass(frozen=True, slots=True)
class Route:
    source: bytes
    hops: tuple[Hop, ...]

    @property
    def amount(self) -> int:
        """What the payee receives."""
        return self.hops[-1].amount

    @property
    def fee(self) -> int:
        """Total fees: what the payer locks on its first hop beyond `amount`."""
        return sum(hop.fee for hop in self.hops)

    @property
    def target(self) -> bytes:
        return self.hops[-1].node_id

    def directions(self) -> tuple[tuple[bytes, bytes], ...]:
        """(channel_id, from_node) per hop, for `MissionControl.report_attempt`."""
        senders = (self.source, *(hop.node_id for hop in self.hops[:-1]))
        return tuple(
            (hop.channel_id, sender) for hop, sender in zip(self.hops, senders, strict=True)
        )


@dataclass(frozen=True, slots=True)
class RouteQuery:
    source: bytes
    target: bytes
    amount: int
    local_balances: Mapping[bytes, int]
    lock_timeout: int
    fee_cap: int
    max_hops: int
    excluded: frozenset[bytes]
