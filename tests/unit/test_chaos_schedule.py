"""The chaos schedule: the same seed replays it, every kind asked for is in it, and no two
faults hold one target at once, nor keep a node away past what invariant 3 allows."""

from __future__ import annotations

import pytest

from p2pchan.errors import UserError
from p2pchan_cli.chaos.schedule import (
    ALL_KINDS,
    FaultKind,
    Timings,
    make_schedule,
    parse_fault_list,
)
from p2pchan_cli.localnet.topology import load_topology

TIMINGS = Timings(keep_alive=1.5, max_away=3.3)


def test_the_same_seed_gives_the_same_schedule() -> None:
    ring = load_topology("ring5")
    weights = parse_fault_list("all")
    first = make_schedule(11, 60, ring, weights, TIMINGS, 2.0)
    assert first == make_schedule(11, 60, ring, weights, TIMINGS, 2.0)
    assert first != make_schedule(12, 60, ring, weights, TIMINGS, 2.0)


@pytest.mark.parametrize("seed", range(20))
def test_sixty_seconds_on_five_nodes_hold_every_kind(seed: int) -> None:
    schedule = make_schedule(
        seed, 60, load_topology("ring5"), parse_fault_list("all"), TIMINGS, 2.0
    )
    assert {fault.kind for fault in schedule} == set(ALL_KINDS)
    assert all(fault.at + fault.duration < 60 for fault in schedule)
    assert [fault.at for fault in schedule] == sorted(fault.at for fault in schedule)


@pytest.mark.parametrize("seed", range(20))
def test_no_node_is_held_by_two_faults_or_away_too_long(seed: int) -> None:
    ring = load_topology("ring5")
    schedule = make_schedule(seed, 120, ring, parse_fault_list("all"), TIMINGS, 1.0)
    held: dict[str, float] = {}
    cheaters = set()
    misbehaving = set()
    for fault in schedule:
        if fault.kind in (FaultKind.KILL, FaultKind.PAUSE, FaultKind.CHEAT, FaultKind.MISBEHAVE):
            for alias in fault.targets:
                assert held.get(alias, -1) <= fault.at, (seed, fault)
                held[alias] = fault.at + fault.duration
        if fault.kind in (FaultKind.KILL, FaultKind.PAUSE, FaultKind.CHEAT):
            assert fault.duration <= TIMINGS.max_away
        if fault.kind == FaultKind.PAUSE:
            assert fault.duration > TIMINGS.keep_alive  # noticed as a dead peer
        if fault.kind == FaultKind.CHEAT:
            cheaters.add(fault.targets[0])
            assert ring.adjacent(*fault.targets)
        if fault.kind == FaultKind.MISBEHAVE:
            misbehaving.add(fault.targets[0])
            assert fault.detail in {
                mode
                for mode in (
                    "ignore-lock-expired",
                    "refuse-lock-expired",
                    "withhold-reveal",
                    "withhold-ack",
                    "spam-retryable",
                    "coop-freeze",
                    "withhold-unlock",
                )
            }
    # One node in five attacks: the other four stay honest for invariants 2-4 to judge.
    assert len(cheaters | misbehaving) == 1


def test_weights_choose_what_the_schedule_holds() -> None:
    ring = load_topology("ring5")
    schedule = make_schedule(3, 300, ring, parse_fault_list("kill=9,pause"), TIMINGS, 1.0)
    kinds = [fault.kind for fault in schedule]
    assert set(kinds) == {FaultKind.KILL, FaultKind.PAUSE}
    assert kinds.count(FaultKind.KILL) > 3 * kinds.count(FaultKind.PAUSE)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "no faults given"), ("kill,fire", "unknown fault 'fire'"), ("kill=0", "weight must be")],
)
def test_bad_fault_lists_are_refused(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_fault_list(text)


def test_a_block_time_too_short_for_a_pause_is_refused() -> None:
    with pytest.raises(UserError, match="block time is too short"):
        Timings(keep_alive=1.5, max_away=1.0)
