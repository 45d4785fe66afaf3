"""find_route: the cheapest route that fits every rule a payer and its hops rely on.

Every test runs twice: with the compiled bounds (numpy + scipy) and with the plain search, which
must agree. Each returned route is also re-checked against the graph by `check_route`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from p2pchan.core.payment.fees import forwarding_fee
from p2pchan.core.routing.mission import MissionControl
from p2pchan.core.routing.pathfind import penalty_cost
from p2pchan.core.routing.route import MAX_HOPS
from p2pchan.errors import LocalProtocolError, NoRoute, UserError
from tests.unit.routing_helpers import NO_POLICY, NOW_MS, Net, channel_id, names, node, policy


@pytest.fixture(params=[True, False], ids=["bounds", "plain"])
def use_bounds(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def via(route: object) -> list[str]:
    """The names of a route's nodes (single letters A..Z, then T0..)."""
    known = {node(name): name for name in [*"ABCDEFGHIJKLMNOPQRSTUVWXYZ"]}
    known.update({node(f"T{i}"): f"T{i}" for i in range(30)})
    return [known[n] for n in names(route)]  # type: ignore[arg-type]


def test_the_cheapest_route_wins_over_a_shorter_dearer_one(use_bounds: bool) -> None:
    net = Net()
    net.path("A", "B", "D", forward=policy(base=50))  # 2 hops: B charges 50
    net.path("A", "C", "E", "D", forward=policy(base=10))  # 3 hops: C and E charge 10 each
    route = net.route("A", "D", 1000, use_bounds=use_bounds)
    assert via(route) == ["A", "C", "E", "D"]
    assert route.fee == 20
    assert [hop.amount for hop in route.hops] == [1020, 1010, 1000]
    assert [hop.fee for hop in route.hops] == [10, 10, 0]


def test_equal_fees_prefer_fewer_hops(use_bounds: bool) -> None:
    net = Net()
    net.path("A", "B", "D")
    net.path("A", "C", "E", "D")
    assert via(net.route("A", "D", 1000, use_bounds=use_bounds)) == ["A", "B", "D"]


def test_fees_are_exact_and_compound_hop_by_hop(use_bounds: bool) -> None:
    net = Net()
    net.channel("A", "B")
    net.channel("B", "C", forward=policy(base=7, ppm=12_345))
    net.channel("C", "D", forward=policy(base=3, ppm=250_001))
    route = net.route("A", "D", 999_999, use_bounds=use_bounds)
    at_c = 999_999 + forwarding_fee(999_999, 3, 250_001)
    at_b = at_c + forwarding_fee(at_c, 7, 12_345)
    assert [hop.amount for hop in route.hops] == [at_b, at_c, 999_999]
    assert [hop.fee for hop in route.hops] == [at_b - at_c, at_c - 999_999, 0]
    assert route.fee == at_b - 999_999 and route.amount == 999_999


def test_the_payer_pays_no_fee_for_its_own_first_hop(use_bounds: bool) -> None:
    net = Net()
    net.channel("A", "B", forward=policy(base=1000, ppm=500_000))
    route = net.route("A", "B", 100, use_bounds=use_bounds)
    assert route.fee == 0 and route.hops[0].amount == 100


def test_a_path_whose_fees_push_an_early_hop_over_its_capacity_is_not_returned(
    use_bounds: bool,
) -> None:
    net = Net()
    # Via B: B->C can carry 1000 + C's fee? C charges 5, so B->C carries 1005 > capacity 1003.
    net.channel("A", "B")
    net.channel("B", "C", capacity=1003, forward=policy(base=1))
    net.channel("C", "D", forward=policy(base=5))
    # Dearer but fits.
    net.channel("A", "E")
    net.channel("E", "F", forward=policy(base=20))
    net.channel("F", "D", forward=policy(base=20))
    route = net.route("A", "D", 1000, use_bounds=use_bounds)
    assert via(route) == ["A", "E", "F", "D"]
    # The cheap path alone carries the amount only if the capacity covers the fee too.
    assert via(net.route("A", "D", 998, use_bounds=use_bounds)) == ["A", "B", "C", "D"]


def test_min_and_max_amounts_apply_to_the_exact_amount_forwarded(use_bounds: bool) -> None:
    net = Net()
    net.channel("A", "B")
    net.channel("B", "D", forward=policy(base=1, min_amount=500, max_amount=1000))
    net.channel("A", "C")
    net.channel("C", "D", forward=policy(base=9))
    assert via(net.route("A", "D", 1000, use_bounds=use_bounds)) == ["A", "B", "D"]
    assert via(net.route("A", "D", 500, use_bounds=use_bounds)) == ["A", "B", "D"]
    assert via(net.route("A", "D", 1001, use_bounds=use_bounds)) == ["A", "C", "D"]
    assert via(net.route("A", "D", 499, use_bounds=use_bounds)) == ["A", "C", "D"]


def test_a_max_amount_counts_the_fees_of_later_hops(use_bounds: bool) -> None:
    net = Net()
    net.channel("A", "B")
    net.channel("B", "C", forward=policy(max_amount=1004))
    net.channel("C", "D", forward=policy(base=5))
    with pytest.raises(NoRoute) as error:
        net.route("A", "D", 1000, use_bounds=use_bounds)
    assert error.value.reason == "no_path"
    assert net.route("A", "D", 999, use_bounds=use_bounds).fee == 5


def test_disabled_directions_and_missing_policies_are_not_used(use_bounds: bool) -> None:
    net = Net()
    net.channel("A", "B")
    net.channel("B", "D", forward=policy(disabled=True))
    net.channel("A", "C")
    net.channel("C", "D", forward=NO_POLICY)
    net.channel("A", "E")
    net.channel("E", "D", forward=policy(base=100))
    assert via(net.route("A", "D", 1000, use_bounds=use_bounds)) == ["A", "E", "D"]


def test_direction_matters(use_bounds: bool) -> None:
    net = Net()
    net.channel("A", "B", forward=policy(base=5))
    # B forwards to C only disabled; C forwards to B for free.
    net.channel("B", "C", forward=policy(disabled=True), backward=policy())
    net.channel("C", "D", forward=policy(), backward=policy())
    net.channel("D", "A", forward=policy(), backward=policy())
    with pytest.raises(NoRoute):
        net.route("A", "C", 1000, balances={channel_id("A-B"): 10**6}, use_bounds=use_bounds)
    route = net.route("D", "B", 1000, use_bounds=use_bounds)
    assert via(route) == ["D", "C", "B"]  # D-A-B would pay A's 5


def test_a_direction_is_charged_by_its_own_policy(use_bounds: bool) -> None:
    net = Net()
    net.channel("A", "B")
    net.channel("B", "C", forward=policy(base=3), backward=policy(base=300))
    net.channel("C", "D")
    assert net.route("A", "C", 1000, use_bounds=use_bounds).fee == 3  # B forwards B->C
    assert net.route("D", "B", 1000, use_bounds=use_bounds).fee == 300  # C forwards C->B
    assert net.route("D", "A", 1000, use_bounds=use_bounds).fee == 300  # and B->A is free


def test_the_fee_cap_refuses_dearer_routes(use_bounds: bool) -> None:
    net = Net()
    net.path("A", "B", "D", forward=policy(base=30))
    net.path("A", "C", "E", "D", forward=policy(base=12))  # 24 in all
    assert net.route("A", "D", 1000, fee_cap=24, use_bounds=use_bounds).fee == 24
    net2 = Net()
    net2.path("A", "B", "D", forward=policy(base=30))
    assert net2.route("A", "D", 1000, fee_cap=30, use_bounds=use_bounds).fee == 30
    with pytest.raises(NoRoute) as error:
        net2.route("A", "D", 1000, fee_cap=29, use_bounds=use_bounds)
    assert error.value.reason == "no_path"


def test_a_dearer_route_within_the_cap_is_found_when_the_cheap_one_is_too_long(
    use_bounds: bool,
) -> None:
    net = Net()
    chain = ["A", *[f"T{i}" for i in range(MAX_HOPS)], "Z"]  # 21 hops, free
    net.path(*chain)
    net.path("A", "B", "Z", forward=policy(base=40))  # 2 hops, 40
    route = net.route("A", "Z", 1000, use_bounds=use_bounds)
    assert via(route) == ["A", "B", "Z"] and route.fee == 40


def test_the_hop_limit_accepts_twenty_hops_and_refuses_twenty_one(use_bounds: bool) -> None:
    net = Net()
    twenty = ["A", *[f"T{i}" for i in range(MAX_HOPS - 1)], "Y"]
    net.path(*twenty)
    net.channel("Y", "Z")  # Z is one hop further
    route = net.route("A", "Y", 1000, use_bounds=use_bounds)
    assert len(route.hops) == MAX_HOPS
    with pytest.raises(NoRoute) as error:
        net.route("A", "Z", 1000, max_hops=MAX_HOPS, use_bounds=use_bounds)
    assert error.value.reason == "no_path"
    # A smaller limit is honoured too.
    with pytest.raises(NoRoute):
        net.route("A", "Y", 1000, max_hops=MAX_HOPS - 1, use_bounds=use_bounds)


def test_local_balances_replace_capacity_on_the_payers_own_channels(use_bounds: bool) -> None:
    net = Net()
    ab = net.channel("A", "B", capacity=100)
    ac = net.channel("A", "C", capacity=10**6)
    net.channel("B", "D", forward=policy(base=1))
    net.channel("C", "D", forward=policy(base=5))
    # A's cheap channel holds 100 in all, but A can send 5,000 on it now (the capacity is
    # layer 1's figure; what A can send is A's own view).
    route = net.route("A", "D", 2000, balances={ab: 5000, ac: 0}, use_bounds=use_bounds)
    assert via(route) == ["A", "B", "D"]
    route = net.route("A", "D", 2000, balances={ab: 2000, ac: 10**6}, use_bounds=use_bounds)
    assert via(route) == ["A", "C", "D"]  # 2001 needed on A-B
    route = net.route("A", "D", 2000, balances={ac: 10**6}, use_bounds=use_bounds)
    assert via(route) == ["A", "C", "D"]  # a channel not listed is not usable


def test_a_balance_too_small_everywhere_is_reported_as_such(use_bounds: bool) -> None:
    net = Net()
    net.channel("A", "B")
    with pytest.raises(NoRoute) as error:
        net.route("A", "B", 1001, balances=net.balances("A", 1000), use_bounds=use_bounds)
    assert error.value.reason == "insufficient_balance"
    assert "1000" in str(error.value)


def test_channels_settling_faster_than_the_lock_timeout_are_not_used(use_bounds: bool) -> None:
    net = Net()
    net.path("A", "B", "D", settle_timeout=49)
    net.path("A", "C", "D", settle_timeout=50, forward=policy(base=2))
    assert via(net.route("A", "D", 1000, lock_timeout=50, use_bounds=use_bounds)) == [
        "A",
        "C",
        "D",
    ]
    assert via(net.route("A", "D", 1000, lock_timeout=49, use_bounds=use_bounds)) == [
        "A",
        "B",
        "D",
    ]
    with pytest.raises(NoRoute):
        net.route("A", "D", 1000, lock_timeout=51, use_bounds=use_bounds)


def test_excluded_channels_are_not_used_either_way(use_bounds: bool) -> None:
    net = Net()
    net.path("A", "B", "D")
    net.path("A", "C", "D", forward=policy(base=5))
    excluded = frozenset({channel_id("B-D")})
    assert via(net.route("A", "D", 1000, excluded=excluded, use_bounds=use_bounds)) == [
        "A",
        "C",
        "D",
    ]
    with pytest.raises(NoRoute):
        net.route("D", "B", 1000, excluded=excluded | {channel_id("A-B")}, use_bounds=use_bounds)


def test_mission_control_steers_around_a_failure_then_forgets_it(use_bounds: bool) -> None:
    net = Net()
    net.path("A", "B", "D", forward=policy(base=1))
    net.path("A", "C", "D", forward=policy(base=40))
    mission = MissionControl(half_life_ms=60_000)
    assert via(net.route("A", "D", 1000, mission=mission, use_bounds=use_bounds))[1] == "B"
    mission.report_failure(channel_id("B-D"), node("B"), NOW_MS)
    steered = net.route("A", "D", 1000, mission=mission, now_ms=NOW_MS, use_bounds=use_bounds)
    assert via(steered) == ["A", "C", "D"]
    # Still avoided a little later, back once the penalty has faded below the fee difference.
    later = NOW_MS + 60_000
    assert (
        via(net.route("A", "D", 1000, mission=mission, now_ms=later, use_bounds=use_bounds))[1]
        == "C"
    )
    much_later = NOW_MS + 10 * 60_000
    back = net.route("A", "D", 1000, mission=mission, now_ms=much_later, use_bounds=use_bounds)
    assert via(back) == ["A", "B", "D"]


def test_a_penalised_channel_is_still_used_when_nothing_else_fits(use_bounds: bool) -> None:
    net = Net()
    net.path("A", "B", "D")
    mission = MissionControl()
    mission.report_failure(channel_id("B-D"), node("B"), NOW_MS)
    route = net.route("A", "D", 1000, mission=mission, now_ms=NOW_MS, use_bounds=use_bounds)
    assert via(route) == ["A", "B", "D"] and route.fee == 0


def test_a_penalty_only_affects_its_own_direction(use_bounds: bool) -> None:
    net = Net()
    net.path("A", "B", "D", forward=policy(base=1), backward=policy(base=1))
    net.path("A", "C", "D", forward=policy(base=5), backward=policy(base=5))
    mission = MissionControl()
    mission.report_failure(channel_id("B-D"), node("D"), NOW_MS)  # D -> B failed
    route = net.route("A", "D", 1000, mission=mission, now_ms=NOW_MS, use_bounds=use_bounds)
    assert via(route) == ["A", "B", "D"]


def test_a_fresh_failure_costs_more_than_the_whole_fee_cap() -> None:
    assert penalty_cost(1.0, 50) == 51
    assert penalty_cost(0.5, 50) == 26
    assert penalty_cost(0.0, 50) == 0
    assert penalty_cost(2.0, 50) == 51


def test_routes_do_not_depend_on_the_order_the_graph_was_built_in(use_bounds: bool) -> None:
    specs = [
        ("A", "B", policy(base=5)),
        ("A", "C", policy(base=5)),
        ("B", "D", policy(base=5)),
        ("C", "D", policy(base=5)),
        ("B", "C", policy(base=0)),
        ("D", "E", policy(base=1)),
    ]
    routes = []
    for order in (specs, list(reversed(specs)), specs[2:] + specs[:2]):
        net = Net()
        for a, b, chosen in order:
            net.channel(a, b, forward=chosen, backward=chosen)
        routes.append(net.route("A", "E", 1000, use_bounds=use_bounds))
        routes.append(net.route("A", "E", 1000, use_bounds=use_bounds))
    assert all(route == routes[0] for route in routes)


def test_route_directions_name_each_forwarding_node() -> None:
    net = Net()
    net.path("A", "B", "C")
    route = net.route("A", "C", 10)
    assert route.directions() == (
        (channel_id("A-B"), node("A")),
        (channel_id("B-C"), node("B")),
    )
    assert route.target == node("C")


@pytest.mark.parametrize(
    ("source", "target", "amount", "reason"),
    [
        ("A", "B", 0, "invalid_amount"),
        ("A", "B", -5, "invalid_amount"),
        ("A", "B", 2**64, "invalid_amount"),
        ("A", "A", 10, "source_is_target"),
        ("A", "Q", 10, "unknown_target"),
        ("Q", "A", 10, "unknown_source"),
        ("A", "C", 10, "no_path"),
    ],
)
def test_impossible_requests_raise_no_route_with_a_reason(
    source: str, target: str, amount: int, reason: str, use_bounds: bool
) -> None:
    net = Net()
    net.channel("A", "B")
    net.channel("C", "D")  # another island
    with pytest.raises(NoRoute) as error:
        net.route(source, target, amount, balances=net.balances("A"), use_bounds=use_bounds)
    assert error.value.reason == reason
    assert isinstance(error.value, UserError)
    assert "\n" not in str(error.value)


def test_an_announced_node_without_channels_has_no_path(use_bounds: bool) -> None:
    from p2pchan.core.routing.graph import NodeInfo

    net = Net()
    net.channel("A", "B")
    net.graph.set_node(NodeInfo(node("Q"), alias="lonely", timestamp_ms=5))
    with pytest.raises(NoRoute) as error:
        net.route("A", "Q", 10, use_bounds=use_bounds)
    assert error.value.reason == "no_path"


@pytest.mark.parametrize(
    "options",
    [
        {"max_hops": 0},
        {"max_hops": MAX_HOPS + 1},
        {"fee_cap": -1},
        {"lock_timeout": -1},
        {"excluded": frozenset({b"short"})},
    ],
)
def test_a_misused_api_is_a_local_error(options: dict[str, object]) -> None:
    net = Net()
    net.channel("A", "B")
    with pytest.raises(LocalProtocolError):
        net.route("A", "B", 10, **options)  # type: ignore[arg-type]


def test_routing_works_without_numpy_and_scipy() -> None:
    script = (
        "import sys\n"
        "sys.modules['numpy'] = None\n"
        "sys.modules['scipy'] = None\n"
        "from tests.unit.routing_helpers import Net, policy\n"
        "net = Net()\n"
        "net.path('A', 'B', 'C', forward=policy(base=3))\n"
        "print(net.route('A', 'C', 100).fee)\n"
        "print(net.graph.index_cache)\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=root,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "None"]
