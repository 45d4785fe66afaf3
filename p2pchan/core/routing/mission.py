"""Mission control: what past payment attempts taught about each channel direction.

After a direction fails, routes avoid it for a while; the memory fades so a channel that failed
once (its partner was offline, its balance was on the other side) gets used again later. The
model, kept simple enough to explain in one line per rule:

- a failure sets the direction's penalty to 1.0; consecutive failures make it fade more slowly
  (half-life x the number of consecutive failures, at most `MAX_STREAK`);
- the penalty halves every half-life after the last event (`penalty(...)` computes it on read);
- a success ends the failure streak and halves what is left of the penalty;
- an entry below `forget_below` counts as zero and is dropped; at most `max_entries` directions
  are remembered, the least recently reported forgotten first (bounded memory).

`pathfind.penalty_cost` turns a penalty into a fee-like cost: a fresh failure costs more than the
whole fee cap, so any other route within the cap is preferred; half-faded, half of that.

Pure: every time is an input (`now_ms`); no clock inside. Mutable (an LRU table), owned by the
payer's shell and fed every attempt's outcome.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from p2pchan.errors import LocalProtocolError

DEFAULT_HALF_LIFE_MS = 5 * 60_000
DEFAULT_MAX_ENTRIES = 10_000
DEFAULT_FORGET_BELOW = 0.01
MAX_STREAK = 8

Direction = tuple[bytes, bytes]
"""(channel_id, from_node): the direction `from_node` forwards on."""


@dataclass(slots=True)
class _Entry:
    penalty: float  # at `at_ms`
    at_ms: int
    streak: int  # consecutive failures

    def now(self, now_ms: int, half_life_ms: int) -> float:
        elapsed = max(0, now_ms - self.at_ms)
        return float(self.penalty * 0.5 ** (elapsed / (half_life_ms * max(1, self.streak))))


class MissionControl:
    """Penalties per channel direction, fading with time; see the module comment."""

    def __init__(
        self,
        *,
        half_life_ms: int = DEFAULT_HALF_LIFE_MS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        forget_below: float = DEFAULT_FORGET_BELOW,
    ) -> None:
        if half_life_ms <= 0 or max_entries <= 0 or not 0 < forget_below < 1:
            raise LocalProtocolError("mission control needs a positive half-life and size")
        self.half_life_ms = half_life_ms
        self.max_entries = max_entries
        self.forget_below = forget_below
        self._entries: OrderedDict[Direction, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def report_failure(self, channel_id: bytes, from_node: bytes, now_ms: int) -> None:
        """`from_node` could not forward over `channel_id` (or the channel refused the lock)."""
        key = (channel_id, from_node)
        entry = self._entries.get(key)
        if entry is None:
            self._store(key, _Entry(1.0, now_ms, 1))
            return
        entry.streak = min(entry.streak + 1, MAX_STREAK)
        entry.penalty = 1.0
        entry.at_ms = max(entry.at_ms, now_ms)
        self._entries.move_to_end(key)

    def report_success(self, channel_id: bytes, from_node: bytes, now_ms: int) -> None:
        """The direction carried a lock: the streak ends and half the penalty is forgiven."""
        key = (channel_id, from_node)
        entry = self._entries.get(key)
        if entry is None:
            return
        remaining = entry.now(now_ms, self.half_life_ms) / 2
        if remaining < self.forget_below:
            del self._entries[key]
            return
        entry.penalty = remaining
        entry.at_ms = max(entry.at_ms, now_ms)
        entry.streak = 0
        self._entries.move_to_end(key)

    def report_attempt(
        self, directions: Sequence[Direction], failed_at: int | None, now_ms: int
    ) -> None:
        """One attempt's outcome along its route (`Route.directions()`): every direction before
        `failed_at` forwarded (a success), the one at `failed_at` failed; None: all succeeded."""
        if failed_at is not None and not 0 <= failed_at < len(directions):
            raise LocalProtocolError(
                f"failed hop {failed_at} is not on a {len(directions)}-hop route"
            )
        for index, (channel_id, from_node) in enumerate(directions):
            if failed_at is not None and index == failed_at:
                self.report_failure(channel_id, from_node, now_ms)
                return
            self.report_success(channel_id, from_node, now_ms)

    def penalty(self, channel_id: bytes, from_node: bytes, now_ms: int) -> float:
        """0.0 (nothing against it) to 1.0 (failed just now)."""
        entry = self._entries.get((channel_id, from_node))
        if entry is None:
            return 0.0
        value = entry.now(now_ms, self.half_life_ms)
        return value if value >= self.forget_below else 0.0

    def penalties(self, now_ms: int) -> dict[Direction, float]:
        """Every direction with a penalty above zero at `now_ms`."""
        result = {}
        for key, entry in self._entries.items():
            value = entry.now(now_ms, self.half_life_ms)
            if value >= self.forget_below:
                result[key] = value
        return result

    def forget_faded(self, now_ms: int) -> int:
        """Drop entries whose penalty has faded below `forget_below`; returns how many."""
        faded = [
            key
            for key, entry in self._entries.items()
            if entry.now(now_ms, self.half_life_ms) < self.forget_below
        ]
        for key in faded:
            del self._entries[key]
        return len(faded)

    def _store(self, key: Direction, entry: _Entry) -> None:
        self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
