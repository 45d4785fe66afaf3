"""Scripted activity: flows from a file, random plans from a seed, and the summary."""

from __future__ import annotations

import pytest

from p2pchan_cli.localnet.activity import (
    ActivityError,
    PaymentOutcome,
    PlannedPayment,
    csv_row,
    default_max_amount,
    flows_plan,
    parse_activity,
    payment_pairs,
    random_plan,
    reason_kind,
    summarize,
)
from p2pchan_cli.localnet.topology import load_topology

ALIASES = {"alice", "bob", "carol"}


def test_flows_become_payments_in_time_order() -> None:
    text = (
        "# two flows\n"
        '{"from": "alice", "to": "bob", "amount": 10, "interval": 1, "count": 3}\n'
        "\n"
        '{"from": "carol", "to": "bob", "amount": 5, "interval": 0.5, "count": 2, "start": 0.25}\n'
    )
    plan = flows_plan(parse_activity(text, "a.jsonl", ALIASES))
    assert [(p.at, p.source, p.amount) for p in plan] == [
        (0.0, "alice", 10),
        (0.25, "carol", 5),
        (0.75, "carol", 5),
        (1.0, "alice", 10),
        (2.0, "alice", 10),
    ]
    assert [p.index for p in plan] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("garbage", "line 1: not valid JSON"),
        ("[1, 2]", "line 1: not a JSON object"),
        ('{"from": "alice"}', "missing amount, count, interval, to"),
        (
            '{"from": "zed", "to": "bob", "amount": 1, "interval": 1, "count": 1}',
            "from 'zed' is not",
        ),
        ('{"from": "bob", "to": "bob", "amount": 1, "interval": 1, "count": 1}', "the same node"),
        (
            '{"from": "alice", "to": "bob", "amount": 0, "interval": 1, "count": 1}',
            "amount must be",
        ),
        (
            '{"from": "alice", "to": "bob", "amount": "5", "interval": 1, "count": 1}',
            "amount must be",
        ),
        (
            '{"from": "alice", "to": "bob", "amount": 1, "interval": 0, "count": 1}',
            "interval must be",
        ),
        ('{"from": "alice", "to": "bob", "amount": 1, "interval": 1, "count": 0}', "count must be"),
        (
            '{"from": "alice", "to": "bob", "amount": 1, "interval": 1, "count": 1, "x": 1}',
            "unknown key 'x'",
        ),
    ],
)
def test_a_bad_line_refuses_the_whole_file(line: str, message: str) -> None:
    good = '{"from": "alice", "to": "bob", "amount": 1, "interval": 1, "count": 1}'
    with pytest.raises(ActivityError) as refused:
        parse_activity(f"{good}\n{line}\n", "a.jsonl", ALIASES)
    text = str(refused.value)
    assert message.replace("line 1", "line 2") in text and "nothing was paid" in text
    assert "\n" not in text


def test_the_first_bad_line_is_named_and_the_rest_counted() -> None:
    with pytest.raises(ActivityError, match=r"line 1: not valid JSON \(and 2 more bad lines\)"):
        parse_activity("x\ny\nz\n", "a.jsonl", ALIASES)
    with pytest.raises(ActivityError, match="no flows"):
        parse_activity("# only a comment\n", "a.jsonl", ALIASES)


def test_a_random_plan_is_the_same_for_the_same_seed_and_differs_otherwise() -> None:
    pairs = [("alice", "bob"), ("bob", "carol")]
    first = random_plan(7, 20.0, 10.0, pairs, 1000)
    assert first == random_plan(7, 20.0, 10.0, pairs, 1000)
    assert first != random_plan(8, 20.0, 10.0, pairs, 1000)
    assert 100 < len(first) < 320  # about rate * duration
    assert all(0 <= p.at < 10 and 1 <= p.amount <= 1000 for p in first)
    assert {(p.source, p.destination) for p in first} == set(pairs)
    assert [p.at for p in first] == sorted(p.at for p in first)


def test_pairs_are_neighbours_only_when_asked() -> None:
    line3 = load_topology("line3")
    neighbours = payment_pairs(line3, neighbours_only=True)
    assert sorted(neighbours) == [
        ("alice", "bob"),
        ("bob", "alice"),
        ("bob", "carol"),
        ("carol", "bob"),
    ]
    assert len(payment_pairs(line3, neighbours_only=False)) == 6
    assert default_max_amount(line3) == 10_000
    with pytest.raises(ActivityError, match="no pairs"):
        random_plan(1, 1.0, 1.0, [], 10)


def outcome(
    index: int, source: str, destination: str, amount: int, status: str, **kw: object
) -> PaymentOutcome:
    planned = PlannedPayment(index, float(index), source, destination, amount)
    return PaymentOutcome(
        planned,
        status,
        int(kw.get("fee", 0)),  # type: ignore[call-overload]
        float(kw.get("ms", 10.0)),  # type: ignore[arg-type]
        "ab" * 32 if status == "succeeded" else None,
        None if status == "succeeded" else str(kw.get("error", "no usable channel")),
        tuple(kw.get("route", ())),  # type: ignore[arg-type]
        tuple(kw.get("hop_fees", ())),  # type: ignore[arg-type]
    )


def test_the_summary_counts_latencies_and_books_per_node() -> None:
    ids = {"id-a": "alice", "id-b": "bob", "id-c": "carol"}
    outcomes = [
        outcome(
            0,
            "alice",
            "carol",
            100,
            "succeeded",
            fee=3,
            ms=10.0,
            route=("id-b", "id-c"),
            hop_fees=(3, 0),
        ),
        outcome(1, "alice", "bob", 50, "succeeded", ms=30.0, route=("id-b",), hop_fees=(0,)),
        outcome(2, "carol", "alice", 7, "failed", error="no route"),
        outcome(3, "bob", "alice", 7, "pending", error="no answer"),
    ]
    summary = summarize(outcomes, 2.0, ids)
    assert (summary["attempted"], summary["succeeded"], summary["failed"], summary["pending"]) == (
        4,
        2,
        1,
        1,
    )
    assert summary["payments_per_s"] == 1.0
    assert summary["multi_hop"] == 1  # alice → bob → carol; alice → bob is direct
    assert (summary["p50_ms"], summary["p99_ms"]) == (20.0, 30.0)
    assert summary["failure_reasons"] == {"no route": 1}
    assert summary["nodes"]["alice"] == {
        "sent": 150,
        "received": 0,
        "fees_paid": 3,
        "fees_earned": 0,
    }
    assert summary["nodes"]["bob"] == {"sent": 0, "received": 50, "fees_paid": 0, "fees_earned": 3}
    assert summary["nodes"]["carol"]["received"] == 100
    assert csv_row(outcomes[2])[5:] == ["failed", 0, 10.0, "", "no route"]


def test_failure_reasons_of_one_kind_count_together() -> None:
    ids = {"ab" * 32: "n001", "cd" * 32: "bob"}
    offline = "peer abababab…ababab is offline: nothing was sent"
    assert reason_kind(offline, ids) == "peer n001 is offline: nothing was sent"
    short = "no channel of ours can send 993 (at most 0), 20 hops"
    assert reason_kind(short, ids) == "no channel of ours can send N (at most N), N hops"
    assert reason_kind(None, ids) == reason_kind("", ids) == "no reason given"
