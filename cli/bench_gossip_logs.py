"""When each node first knew each gossip message, read from the nodes' logs, and what that says
about propagation.

A node logging at debug writes one `gossip_stored` line per step that made gossip durable
(`p2pchan.net.driver`): the channels, updates (channel, direction's node, timestamp) and node
announcements it stored, stamped with the time of the write. `Sightings` keeps, per message,
the first time each node stored it. A message's origin is the first time any node stored it
(its own node, or the partner that completed a channel announcement), so every figure is a
difference of clocks on one machine, never a clock against a signed timestamp.

Pure apart from `LogTail`, which reads a growing log file line by line.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

GOSSIP_EVENT = "gossip_stored"

# ("channel", channel id) | ("update", channel id, direction's node id) | ("node", node id)
MessageKey = tuple[str, ...]


def channel_key(channel_id: str) -> MessageKey:
    return ("channel", channel_id)


def update_key(channel_id: str, from_node: str) -> MessageKey:
    return ("update", channel_id, from_node)


def node_key(node_id: str) -> MessageKey:
    return ("node", node_id)


class Sightings:
    """First time (Unix seconds) each node stored each message. An update is one message per
    channel direction whatever its timestamp: the benchmark's nodes sign one each."""

    def __init__(self) -> None:
        self.first_seen: dict[MessageKey, dict[str, float]] = {}

    def add(self, node: str, at: float, keys: Iterable[MessageKey]) -> None:
        for key in keys:
            seen = self.first_seen.setdefault(key, {})
            if node not in seen or at < seen[node]:
                seen[node] = at

    def add_line(self, node: str, line: str) -> bool:
        """Take one log line of `node`'s; False if it is not a gossip line (ignored)."""
        event = _gossip_event(line)
        if event is None:
            return False
        at, keys = event
        self.add(node, at, keys)
        return True

    def missing(self, node: str, expected: Iterable[MessageKey]) -> int:
        """How many of `expected` the node has not stored yet."""
        return sum(1 for key in expected if node not in self.first_seen.get(key, {}))

    def complete_at(self, node: str, expected: Iterable[MessageKey]) -> float | None:
        """When the node had stored every one of `expected` (None: not yet)."""
        latest = 0.0
        for key in expected:
            at = self.first_seen.get(key, {}).get(node)
            if at is None:
                return None
            latest = max(latest, at)
        return latest


def _gossip_event(line: str) -> tuple[float, list[MessageKey]] | None:
    if GOSSIP_EVENT not in line:
        return None
    try:
        event = json.loads(line)
        if event.get("event") != GOSSIP_EVENT:
            return None
        at = datetime.datetime.fromisoformat(event["timestamp"]).timestamp()
        keys = [channel_key(str(c)) for c in event.get("channels", [])]
        keys += [update_key(str(u[0]), str(u[1])) for u in event.get("updates", [])]
        keys += [node_key(str(n[0])) for n in event.get("nodes", [])]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None  # a torn or foreign line: not ours to judge
    return at, keys


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of values sorted ascending (the largest for 1.0)."""
    if not ordered:
        raise ValueError("no values")
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered) - 1e-9)))
    return ordered[rank - 1]


def distribution(values: Iterable[float], digits: int = 3) -> dict[str, float | int | None]:
    """count, p50, p95 and max of `values` (None where there are none)."""
    ordered = sorted(values)
    if not ordered:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    return {
        "count": len(ordered),
        "p50": round(percentile(ordered, 0.5), digits),
        "p95": round(percentile(ordered, 0.95), digits),
        "max": round(ordered[-1], digits),
    }


def propagation(
    sightings: Sightings, expected: Sequence[MessageKey], nodes: Sequence[str]
) -> dict[str, Any]:
    """Per message, seconds from its origin until the last node stored it (`spread_s`), and
    per message and node, seconds from its origin until that node stored it (`delay_s`);
    `spread_s` also by kind. Messages some node never stored count in `incomplete`."""
    spreads: dict[str, list[float]] = {}
    delays: list[float] = []
    incomplete = 0
    for key in expected:
        seen = sightings.first_seen.get(key, {})
        times = [seen[node] for node in nodes if node in seen]
        if len(times) < len(nodes):
            incomplete += 1
        if not times:
            continue
        origin = min(times)
        delays += [at - origin for at in times]
        if len(times) == len(nodes):
            spreads.setdefault(key[0], []).append(max(times) - origin)
    every = [spread for kind in spreads.values() for spread in kind]
    return {
        "messages": len(expected),
        "incomplete": incomplete,
        "spread_s": distribution(every),
        "delay_s": distribution(delays),
        "spread_s_by_kind": {kind: distribution(spreads[kind]) for kind in sorted(spreads)},
    }


class LogTail:
    """The complete lines appended to a file since the last call (a partial last line waits
    for its end)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as file:
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        return [line.decode(errors="replace") for line in complete]
