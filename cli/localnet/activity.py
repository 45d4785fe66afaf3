"""Scripted payments across a network: an activity file or a seeded random plan, and the
summary of what happened. Pure: the clock and the seed come in as arguments.

An activity file has one flow per line, JSON: `{"from": "alice", "to": "carol", "amount": 100,
"interval": 0.5, "count": 10}` (optionally `"start": SECONDS`), with blank lines and `#`
comments skipped; a flow pays `count` times, `interval` seconds apart. A random plan draws
Poisson arrivals at `rate` per second for `duration` seconds, each a pair and a log-uniform
size, all from `random.Random(seed)`: the same seed, topology and options give the same plan.
Pairs are any two distinct nodes (paid across hops where they share no channel; a pair with no
route fails with the node's reason), or only channel neighbours with `neighbours_only`.
"""

from __future__ import annotations

import json
import math
import random
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from p2pchan.errors import UserError
from p2pchan.types import U64_MAX
from p2pchan_cli.localnet.topology import Topology

MAX_FLOW_COUNT = 1_000_000
MAX_PLANNED = 5_000_000
_FLOW_KEYS = {"from", "to", "amount", "interval", "count"}
_OPTIONAL_KEYS = {"start"}


class ActivityError(UserError):
    """An activity file that cannot be run; the message names the first bad line."""


@dataclass(frozen=True)
class Flow:
    line: int
    source: str
    destination: str
    amount: int
    interval: float
    count: int
    start: float = 0.0


@dataclass(frozen=True)
class PlannedPayment:
    index: int
    at: float  # seconds after the activity starts
    source: str
    destination: str
    amount: int


@dataclass(frozen=True)
class PaymentOutcome:
    planned: PlannedPayment
    status: str  # succeeded, failed, pending (no final answer in time)
    fee: int
    duration_ms: float
    payment_hash: str | None
    error: str | None
    route: tuple[str, ...] = ()  # the node ids of the hops, payee last
    hop_fees: tuple[int, ...] = ()


def parse_activity(text: str, name: str, aliases: set[str]) -> list[Flow]:
    """The flows of an activity file; `ActivityError` naming the first bad line (and how many
    more there are), so nothing is paid from a file with any mistake."""
    flows: list[Flow] = []
    errors: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            flows.append(_parse_flow(line, number, aliases))
        except ActivityError as error:
            errors.append(str(error))
    if errors:
        more = f" (and {len(errors) - 1} more bad lines)" if len(errors) > 1 else ""
        raise ActivityError(f"activity {name}: {errors[0]}{more}; nothing was paid")
    if not flows:
        raise ActivityError(f"activity {name}: no flows (one JSON object per line)")
    return flows


def _parse_flow(line: str, number: int, aliases: set[str]) -> Flow:
    def bad(message: str) -> ActivityError:
        return ActivityError(f"line {number}: {message}")

    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        raise bad("not valid JSON") from None
    if not isinstance(entry, dict):
        raise bad("not a JSON object")
    missing = _FLOW_KEYS - set(entry)
    if missing:
        raise bad(f"missing {', '.join(sorted(missing))}")
    unknown = set(entry) - _FLOW_KEYS - _OPTIONAL_KEYS
    if unknown:
        raise bad(f"unknown key {sorted(unknown)[0]!r}")
    ends = []
    for key in ("from", "to"):
        alias = entry[key]
        if not isinstance(alias, str) or alias not in aliases:
            raise bad(f"{key} {alias!r} is not a node of the network")
        ends.append(alias)
    if ends[0] == ends[1]:
        raise bad("from and to are the same node")
    amount = entry["amount"]
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= U64_MAX:
        raise bad(f"amount must be a whole number from 1 to {U64_MAX}, got {amount!r}")
    count = entry["count"]
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_FLOW_COUNT:
        raise bad(f"count must be a whole number from 1 to {MAX_FLOW_COUNT}, got {count!r}")
    interval = _seconds(entry["interval"], "interval", bad, allow_zero=False)
    start = _seconds(entry.get("start", 0), "start", bad, allow_zero=True)
    return Flow(number, ends[0], ends[1], amount, interval, count, start)


def _seconds(value: Any, key: str, bad: Any, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad(f"{key} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero) or value > 10**6:
        raise bad(f"{key} must be a number of seconds {'from 0' if allow_zero else 'above 0'}")
    return float(value)


def flows_plan(flows: Sequence[Flow]) -> list[PlannedPayment]:
    """Every payment of every flow, in order of time (a flow's own in order)."""
    timed = [
        (flow.start + k * flow.interval, order, flow)
        for order, flow in enumerate(flows)
        for k in range(flow.count)
    ]
    if len(timed) > MAX_PLANNED:
        raise ActivityError(f"the activity plans {len(timed)} payments, more than {MAX_PLANNED}")
    timed.sort(key=lambda item: (item[0], item[1]))
    return [
        PlannedPayment(index, at, flow.source, flow.destination, flow.amount)
        for index, (at, _order, flow) in enumerate(timed)
    ]


def payment_pairs(topology: Topology, *, neighbours_only: bool) -> list[tuple[str, str]]:
    """Ordered (payer, payee) pairs: both directions of every channel, or every two nodes."""
    if neighbours_only:
        return [pair for c in topology.channels for pair in ((c.a, c.b), (c.b, c.a))]
    aliases = [node.alias for node in topology.nodes]
    return [(a, b) for a in aliases for b in aliases if a != b]


def random_plan(
    seed: int,
    rate: float,
    duration: float,
    pairs: Sequence[tuple[str, str]],
    max_amount: int,
) -> list[PlannedPayment]:
    """Poisson arrivals at `rate`/s over `duration` s; each a pair and a log-uniform amount in
    [1, max_amount], all drawn from `seed`."""
    if not pairs:
        raise ActivityError("no pairs to pay between (a network without channels?)")
    if rate * duration > MAX_PLANNED:
        raise ActivityError(f"rate * duration plans more than {MAX_PLANNED} payments")
    rng = random.Random(seed)
    plan: list[PlannedPayment] = []
    at = rng.expovariate(rate)
    while at < duration:
        source, destination = pairs[rng.randrange(len(pairs))]
        amount = min(max_amount, int(math.exp(rng.uniform(0, math.log(max_amount + 1)))))
        plan.append(PlannedPayment(len(plan), at, source, destination, max(amount, 1)))
        at += rng.expovariate(rate)
    return plan


def default_max_amount(topology: Topology) -> int:
    """A payment size every channel carries many times over: 1 % of the smallest deposit."""
    deposits = [d for c in topology.channels for d in (c.deposit_a, c.deposit_b) if d]
    return max(1, min(deposits, default=100) // 100)


def summarize(
    outcomes: Sequence[PaymentOutcome], seconds: float, aliases_by_id: dict[str, str]
) -> dict[str, Any]:
    """`attempted, succeeded, failed, pending, payments_per_s` (succeeded per second),
    `multi_hop` (succeeded across more than one hop),
    `p50_ms, p99_ms` (of succeeded payments), `failure_reasons`, and per node `sent,
    received, fees_paid, fees_earned` (from succeeded payments)."""
    counts = Counter(outcome.status for outcome in outcomes)
    reasons = Counter(
        reason_kind(outcome.error, aliases_by_id)
        for outcome in outcomes
        if outcome.status == "failed"
    )
    latencies = sorted(o.duration_ms for o in outcomes if o.status == "succeeded")
    per_node: dict[str, dict[str, int]] = {
        alias: {"sent": 0, "received": 0, "fees_paid": 0, "fees_earned": 0}
        for alias in aliases_by_id.values()
    }
    for outcome in outcomes:
        if outcome.status != "succeeded":
            continue
        planned = outcome.planned
        per_node[planned.source]["sent"] += planned.amount
        per_node[planned.source]["fees_paid"] += outcome.fee
        per_node[planned.destination]["received"] += planned.amount
        for node_id, fee in zip(outcome.route, outcome.hop_fees, strict=False):
            alias = aliases_by_id.get(node_id)
            if alias is not None and alias != planned.destination:
                per_node[alias]["fees_earned"] += fee
    return {
        "attempted": len(outcomes),
        "succeeded": counts["succeeded"],
        "failed": counts["failed"],
        "pending": counts["pending"],
        "seconds": round(seconds, 3),
        "payments_per_s": round(counts["succeeded"] / seconds, 2) if seconds > 0 else None,
        "multi_hop": sum(1 for o in outcomes if o.status == "succeeded" and len(o.route) > 1),
        "p50_ms": round(statistics.median(latencies), 3) if latencies else None,
        "p99_ms": round(_percentile(latencies, 0.99), 3) if latencies else None,
        "failure_reasons": dict(reasons.most_common()),
        "nodes": per_node,
    }


def reason_kind(error: str | None, aliases_by_id: dict[str, str]) -> str:
    """A failure reason with node ids as aliases and numbers as N, so that failures of one
    kind count together (`peer bob is offline`, `... can send N (at most N)`)."""
    if not error:
        return "no reason given"
    for node_id, alias in aliases_by_id.items():
        shown = node_id if len(node_id) <= 15 else f"{node_id[:8]}…{node_id[-6:]}"  # short_hex
        error = error.replace(shown, alias)
    return _NUMBER.sub("N", error)


_NUMBER = re.compile(r"\b\d+\b")


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, max(math.ceil(len(ordered) * fraction) - 1, 0))]


CSV_COLUMNS = (
    "index",
    "at_s",
    "from",
    "to",
    "amount",
    "status",
    "fee",
    "duration_ms",
    "payment_hash",
    "error",
)


def csv_row(outcome: PaymentOutcome) -> list[Any]:
    planned = outcome.planned
    return [
        planned.index,
        round(planned.at, 3),
        planned.source,
        planned.destination,
        planned.amount,
        outcome.status,
        outcome.fee,
        round(outcome.duration_ms, 3),
        outcome.payment_hash or "",
        outcome.error or "",
    ]
