"""Mission control: penalties after failures, fading with time, eased by successes, bounded."""

from __future__ import annotations

import pytest

from p2pchan.core.routing.mission import MAX_STREAK, MissionControl
from p2pchan.errors import LocalProtocolError
from tests.unit.routing_helpers import channel_id, node

HALF = 60_000
CID = channel_id("c")
A, B = node("A"), node("B")


def test_a_failure_is_penalised_fully_then_fades_by_half_lives() -> None:
    mission = MissionControl(half_life_ms=HALF)
    assert mission.penalty(CID, A, 0) == 0.0
    mission.report_failure(CID, A, 1000)
    assert mission.penalty(CID, A, 1000) == 1.0
    assert mission.penalty(CID, A, 1000 + HALF) == pytest.approx(0.5)
    assert mission.penalty(CID, A, 1000 + 3 * HALF) == pytest.approx(0.125)
    assert mission.penalty(CID, A, 1000 + 7 * HALF) == 0.0  # below forget_below: forgotten


def test_only_the_failed_direction_is_penalised() -> None:
    mission = MissionControl(half_life_ms=HALF)
    mission.report_failure(CID, A, 0)
    assert mission.penalty(CID, B, 0) == 0.0
    assert mission.penalty(channel_id("other"), A, 0) == 0.0


def test_repeated_failures_fade_more_slowly() -> None:
    mission = MissionControl(half_life_ms=HALF)
    mission.report_failure(CID, A, 0)
    mission.report_failure(CID, A, 0)
    mission.report_failure(CID, A, 0)
    assert mission.penalty(CID, A, 3 * HALF) == pytest.approx(0.5)
    for _ in range(20):
        mission.report_failure(CID, A, 0)
    assert mission.penalty(CID, A, MAX_STREAK * HALF) == pytest.approx(0.5)


def test_a_success_ends_the_streak_and_halves_what_is_left() -> None:
    mission = MissionControl(half_life_ms=HALF)
    mission.report_failure(CID, A, 0)
    mission.report_failure(CID, A, 0)
    mission.report_success(CID, A, 0)
    assert mission.penalty(CID, A, 0) == pytest.approx(0.5)
    assert mission.penalty(CID, A, HALF) == pytest.approx(0.25)  # one half-life again
    for _ in range(4):
        mission.report_success(CID, A, HALF)
    assert mission.penalty(CID, A, HALF) == pytest.approx(0.25 / 16)
    mission.report_success(CID, A, HALF)  # below forget_below: dropped
    assert mission.penalty(CID, A, HALF) == 0.0 and len(mission) == 0


def test_a_success_without_history_stores_nothing() -> None:
    mission = MissionControl()
    mission.report_success(CID, A, 0)
    assert len(mission) == 0


def test_an_attempt_teaches_success_before_the_failed_hop_and_failure_at_it() -> None:
    mission = MissionControl(half_life_ms=HALF)
    hops = [(channel_id(f"c{i}"), node(f"N{i}")) for i in range(4)]
    for channel, sender in hops:
        mission.report_failure(channel, sender, 0)
    mission.report_attempt(hops, failed_at=2, now_ms=0)
    assert [mission.penalty(c, s, 0) for c, s in hops] == [0.5, 0.5, 1.0, 1.0]
    mission.report_attempt(hops, failed_at=None, now_ms=0)
    assert [mission.penalty(c, s, 0) for c, s in hops] == [0.25, 0.25, 0.5, 0.5]
    with pytest.raises(LocalProtocolError):
        mission.report_attempt(hops, failed_at=4, now_ms=0)


def test_times_out_of_order_never_raise_a_penalty_above_one() -> None:
    mission = MissionControl(half_life_ms=HALF)
    mission.report_failure(CID, A, 10 * HALF)
    mission.report_failure(CID, A, 0)  # reported late
    assert mission.penalty(CID, A, 0) == 1.0
    assert mission.penalty(CID, A, 10 * HALF) == 1.0
    assert mission.penalty(CID, A, 12 * HALF) == pytest.approx(0.5)  # streak 2


def test_memory_is_bounded_the_least_recently_reported_go_first() -> None:
    mission = MissionControl(max_entries=3)
    for index in range(3):
        mission.report_failure(channel_id(f"c{index}"), A, 0)
    mission.report_failure(channel_id("c0"), A, 1)  # c0 is now the most recent
    mission.report_failure(channel_id("c3"), A, 2)
    assert len(mission) == 3
    assert mission.penalty(channel_id("c1"), A, 2) == 0.0
    assert mission.penalty(channel_id("c0"), A, 2) > 0.9


def test_penalties_lists_the_live_ones_and_faded_entries_can_be_dropped() -> None:
    mission = MissionControl(half_life_ms=HALF)
    mission.report_failure(channel_id("old"), A, 0)
    mission.report_failure(channel_id("new"), A, 10 * HALF)
    assert mission.penalties(10 * HALF) == {(channel_id("new"), A): 1.0}
    assert mission.forget_faded(10 * HALF) == 1
    assert len(mission) == 1


@pytest.mark.parametrize(
    "options", [{"half_life_ms": 0}, {"max_entries": 0}, {"forget_below": 0.0}]
)
def test_a_nonsensical_configuration_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(LocalProtocolError):
        MissionControl(**options)  # type: ignore[arg-type]
