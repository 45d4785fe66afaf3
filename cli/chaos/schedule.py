"""The fault schedule of a chaos run. Pure: everything is drawn from `random.Random(seed)`, so
the same seed, topology, duration and fault list give the same schedule.

Faults start at random times (exponential gaps, `mean_interval` on average), each on targets
that no other fault holds at that moment, so a node is never both killed and paused, and no
node is ever away longer than `max_away` seconds at once: invariant 3 promises nothing to a
node down for reveal_timeout blocks while it holds a lock it could claim, so the schedule stays
inside that promise. Every kind asked for appears at least once (the first ones come first, at
most three mean intervals apart, and within the first half of a short run), then kinds are
drawn by weight (`kill=5` in the list weighs kill five times).

Kinds: `kill` (kill -9, restart after the downtime), `pause` (SIGSTOP, SIGCONT after more than
the keep-alive), `delay`, `drop`, `reset` (of one link's proxy), `partition` (every link
between two halves of the nodes), `l1-restart` (kill -9 of layer 1, restart), `cheat` (pause a
channel's partner, `close --force --cheat` by the other end, resume the partner) and
`misbehave` (restart a node with attack modes for a while, then honest again).
"""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass

from p2pchan.errors import UserError
from p2pchan.net.misbehave import Misbehave
from p2pchan_cli.localnet.topology import Topology


class FaultKind(enum.StrEnum):
    KILL = "kill"
    PAUSE = "pause"
    DELAY = "delay"
    DROP = "drop"
    RESET = "reset"
    PARTITION = "partition"
    L1_RESTART = "l1-restart"
    CHEAT = "cheat"
    MISBEHAVE = "misbehave"


ALL_KINDS = tuple(FaultKind)
LINK_KINDS = (FaultKind.DELAY, FaultKind.DROP, FaultKind.RESET)
# Attacks a restarted node runs for a while; the partner must come out whole.
MISBEHAVE_MODES = tuple(mode.value for mode in Misbehave)


@dataclass(frozen=True)
class Timings:
    """How long faults last, in seconds (from the chain's block time and the keep-alive)."""

    keep_alive: float  # ping interval + pong timeout of the chaos nodes
    max_away: float  # longest a node may be unreachable (under reveal_timeout blocks)
    link_fault: float = 3.0  # longest delay/drop/partition
    misbehave: float = 8.0  # longest attack spell

    @property
    def recovery(self) -> float:
        """How long a node stays up after a fault before the next may take it: in any window
        of reveal_timeout blocks (1.5 max_away) it is then up for a stretch of at least half
        max_away, a third of reveal_timeout, to land what it must on layer 1."""
        return self.max_away / 2

    def __post_init__(self) -> None:
        if self.max_away <= self.keep_alive:
            raise UserError(
                "the block time is too short for chaos: a pause longer than the keep-alive "
                "must stay under reveal_timeout blocks"
            )


@dataclass(frozen=True)
class Fault:
    at: float  # seconds after the run starts
    kind: FaultKind
    targets: tuple[str, ...]  # node aliases; for link faults the channel's (a, b); l1: ()
    duration: float  # how long it lasts (downtime, pause, link fault, attack)
    detail: str = ""  # delay seconds, misbehave mode, the partition's other half


def parse_fault_list(text: str) -> dict[FaultKind, int]:
    """`kill=5,pause,delay` → weights; `all` for every kind, weight 1. UserError if unknown."""
    weights: dict[FaultKind, int] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        name, _, weight_text = part.partition("=")
        if name == "all":
            for kind in ALL_KINDS:
                weights.setdefault(kind, 1)
            continue
        try:
            kind = FaultKind(name)
        except ValueError:
            known = ", ".join(kind.value for kind in ALL_KINDS)
            raise UserError(f"unknown fault {name!r} (known: {known}, or all)") from None
        if weight_text and not (weight_text.isdigit() and 1 <= int(weight_text) <= 100):
            raise UserError(f"fault weight must be a whole number from 1 to 100, got {part!r}")
        weights[kind] = int(weight_text) if weight_text else 1
    if not weights:
        raise UserError("no faults given (use --faults all, or a list such as kill,pause)")
    return weights


def make_schedule(
    seed: int,
    duration: float,
    topology: Topology,
    weights: dict[FaultKind, int],
    timings: Timings,
    mean_interval: float,
) -> list[Fault]:
    """The faults of a run, by start time; none ends after `duration`."""
    rng = random.Random(seed)
    aliases = [node.alias for node in topology.nodes]
    attackers = chosen_attackers(rng, topology)
    links = [(c.a, c.b) for c in topology.channels]
    kinds = [kind for kind in ALL_KINDS if kind in weights]
    if not links:
        kinds = [k for k in kinds if k not in (*LINK_KINDS, FaultKind.PARTITION, FaultKind.CHEAT)]
    busy_until: dict[str, float] = {}  # alias, "l1" or "link:a:b" → when its fault ends
    cheated: set[tuple[str, str]] = set()
    faults: list[Fault] = []
    # The first of each kind spread over the first half, the rest drawn by weight.
    must = list(kinds)
    rng.shuffle(must)
    at = rng.uniform(0.5, 1.5)
    while at < duration:
        kind = must[0] if must else _weighted(rng, kinds, weights)
        fault = _draw(
            rng, kind, at, aliases, attackers, links, busy_until, cheated, timings, duration
        )
        if must:  # placed, or tried again after the other kinds still to come
            must.pop(0)
            if fault is None:
                must.append(kind)
        if fault is not None:
            faults.append(fault)
            for key in _holds(fault, links):
                busy_until[key] = fault.at + fault.duration + timings.keep_alive
            if kind == FaultKind.CHEAT:
                cheated.add((fault.targets[0], fault.targets[1]))
        if must:  # spread over the first half of a short run; as often as later in a long one
            gap = min(duration / (2 * len(kinds) + 2), 3 * mean_interval)
        else:
            gap = rng.expovariate(1 / mean_interval)
        at += max(gap, 0.2)
    return faults


def chosen_attackers(rng: random.Random, topology: Topology) -> list[str]:
    """The nodes that may cheat or misbehave: those the topology makes attackers, else one in
    five drawn from the seed (at least one). Everyone else stays honest all run long, so
    invariants 2-4 always have honest nodes to judge."""
    given = [node.alias for node in topology.nodes if node.misbehave]
    if given:
        return given
    aliases = [node.alias for node in topology.nodes]
    return sorted(rng.sample(aliases, max(1, len(aliases) // 5)))


def _weighted(
    rng: random.Random, kinds: Sequence[FaultKind], weights: dict[FaultKind, int]
) -> FaultKind:
    return rng.choices(list(kinds), weights=[weights[kind] for kind in kinds])[0]


def _holds(fault: Fault, links: Sequence[tuple[str, str]]) -> list[str]:
    """What a fault keeps busy while it lasts."""
    if fault.kind == FaultKind.L1_RESTART:
        return ["l1"]
    if fault.kind in LINK_KINDS:
        return [f"link:{fault.targets[0]}:{fault.targets[1]}"]
    if fault.kind == FaultKind.PARTITION:
        return [f"link:{a}:{b}" for a, b in links]
    return list(fault.targets)


def _draw(
    rng: random.Random,
    kind: FaultKind,
    at: float,
    aliases: Sequence[str],
    attackers: Sequence[str],
    links: Sequence[tuple[str, str]],
    busy_until: dict[str, float],
    cheated: set[tuple[str, str]],
    timings: Timings,
    duration: float,
) -> Fault | None:
    def free(key: str) -> bool:
        return busy_until.get(key, -1.0) <= at

    def fits(length: float) -> bool:
        return at + length + timings.keep_alive < duration

    if kind in (FaultKind.KILL, FaultKind.PAUSE, FaultKind.MISBEHAVE):
        pool = attackers if kind == FaultKind.MISBEHAVE else aliases
        candidates = [alias for alias in pool if free(alias)]
        if not candidates:
            return None
        target = rng.choice(candidates)
        if kind == FaultKind.KILL:
            length = rng.uniform(0.1, max(0.2, timings.max_away / 3))
            return Fault(at, kind, (target,), length) if fits(length) else None
        if kind == FaultKind.PAUSE:
            length = rng.uniform(timings.keep_alive + 0.3, timings.max_away)
            return Fault(at, kind, (target,), length) if fits(length) else None
        length = rng.uniform(timings.misbehave / 2, timings.misbehave)
        mode = rng.choice(MISBEHAVE_MODES)
        return Fault(at, kind, (target,), length, mode) if fits(length) else None
    if kind == FaultKind.L1_RESTART:
        length = rng.uniform(0.5, timings.max_away / 2)
        return Fault(at, kind, (), length) if free("l1") and fits(length) else None
    if kind in LINK_KINDS:
        candidates = [link for link in links if free(f"link:{link[0]}:{link[1]}")]
        if not candidates:
            return None
        a, b = rng.choice(candidates)
        if kind == FaultKind.RESET:
            return Fault(at, kind, (a, b), 0.0)
        length = rng.uniform(timings.keep_alive / 2, timings.link_fault)
        delay = round(rng.uniform(0.05, 0.5), 3) if kind == FaultKind.DELAY else 0.0
        detail = f"{delay:g}" if kind == FaultKind.DELAY else ""
        return Fault(at, kind, (a, b), length, detail) if fits(length) else None
    if kind == FaultKind.PARTITION:
        if not all(free(f"link:{a}:{b}") for a, b in links) or len(aliases) < 2:
            return None
        shuffled = list(aliases)
        rng.shuffle(shuffled)
        half = tuple(sorted(shuffled[: max(1, len(shuffled) // 2)]))
        length = rng.uniform(timings.keep_alive, timings.link_fault)
        return Fault(at, kind, half, length) if fits(length) else None
    # CHEAT: an attacker closes while its partner is paused; once per channel.
    candidates = [
        (cheater, victim)
        for a, b in links
        for cheater, victim in ((a, b), (b, a))
        if cheater in attackers
        and free(cheater)
        and free(victim)
        and (a, b) not in cheated
        and (b, a) not in cheated
    ]
    if not candidates:
        return None
    cheater, victim = rng.choice(candidates)
    length = rng.uniform(timings.keep_alive + 0.3, timings.max_away)
    return Fault(at, kind, (cheater, victim), length) if fits(length) else None
