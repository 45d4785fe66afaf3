"""Misbehaviour scores: points for each fault a peer commits, a ban when they add up.

Scores decay linearly so a long-lived peer is not banned for rare glitches; crossing the
threshold bans the node id for a while (its connections are refused after the handshake).
The clock is passed in, so this is testable without time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p2pchan.types import NodeId

# Points per fault: a malformed message, a message not allowed now, an unanswered protocol duty.
MALFORMED_MESSAGE = 20
UNEXPECTED_MESSAGE = 10
# Faults an honest peer commits now and then by timing (retryable refusals: its height ahead of
# ours, a lock_expired a block early) are free up to this many a minute per session; beyond,
# each is scored, so a peer spamming them is banned and its work bounded.
BUDGET_PER_MINUTE = 60


@dataclass
class _Score:
    points: float
    updated_at: float


@dataclass
class MisbehaviourLedger:
    threshold: float = 100
    decay_per_second: float = 1 / 60
    ban_seconds: float = 600
    _scores: dict[NodeId, _Score] = field(default_factory=dict)
    _banned_until: dict[NodeId, float] = field(default_factory=dict)

    def add(self, node_id: NodeId, points: float, now: float) -> bool:
        """Record a fault; True if the peer is now banned (and must be disconnected)."""
        score = self._scores.get(node_id)
        if score is None:
            score = self._scores[node_id] = _Score(0, now)
        elapsed = max(now - score.updated_at, 0)
        score.points = max(score.points - elapsed * self.decay_per_second, 0) + points
        score.updated_at = now
        if score.points >= self.threshold:
            self._banned_until[node_id] = now + self.ban_seconds
            del self._scores[node_id]
            return True
        return False

    def score(self, node_id: NodeId, now: float) -> float:
        score = self._scores.get(node_id)
        if score is None:
            return 0
        return max(score.points - (now - score.updated_at) * self.decay_per_second, 0)

    def is_banned(self, node_id: NodeId, now: float) -> bool:
        until = self._banned_until.get(node_id)
        if until is None:
            return False
        if now >= until:
            del self._banned_until[node_id]
            return False
        return True
