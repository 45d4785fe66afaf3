"""What `bench gossip` makes of the nodes' `gossip_stored` lines: first sightings per node
(the earliest wins, foreign and torn lines are ignored), when a node knew everything, the
spread and delay figures, the report's seconds, and the tail reader that hands over only
whole lines."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

from p2pchan.errors import UserError
from p2pchan_cli.bench_gossip import GossipBenchConfig, OpenedChannel, expected_messages, report
from p2pchan_cli.bench_gossip_logs import (
    LogTail,
    Sightings,
    channel_key,
    distribution,
    node_key,
    percentile,
    propagation,
    update_key,
)

C1, C2 = "c1" * 32, "c2" * 32
A, B, C = "aa" * 32, "bb" * 32, "cc" * 32
T0 = 1_800_000_000.0


def line(at: float, **fields: Any) -> str:
    """A log line as a node writes it (structlog's JSON renderer, ISO time in UTC)."""
    stamp = datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat().replace("+00:00", "Z")
    event = {"channels": [], "updates": [], "nodes": [], **fields}
    return json.dumps({**event, "event": "gossip_stored", "level": "debug", "timestamp": stamp})


def test_a_line_records_every_message_it_names_at_its_time() -> None:
    sightings = Sightings()
    taken = sightings.add_line(
        "n0", line(T0 + 1.5, channels=[C1], updates=[[C1, A, 123]], nodes=[[A, 456]])
    )
    assert taken
    assert sightings.first_seen == {
        channel_key(C1): {"n0": T0 + 1.5},
        update_key(C1, A): {"n0": T0 + 1.5},
        node_key(A): {"n0": T0 + 1.5},
    }


def test_the_first_sighting_wins_whatever_order_the_lines_are_read_in() -> None:
    sightings = Sightings()
    sightings.add_line("n0", line(T0 + 2, channels=[C1]))
    sightings.add_line("n0", line(T0 + 1, channels=[C1]))
    sightings.add_line("n0", line(T0 + 3, channels=[C1]))
    assert sightings.first_seen[channel_key(C1)] == {"n0": T0 + 1}


@pytest.mark.parametrize(
    "text",
    [
        '{"event": "node_ready", "timestamp": "2026-11-30T14:00:00Z"}',
        "not json at all, though it says gossip_stored",
        '{"event": "gossip_stored", "timestamp": "yesterday", "channels": ["x"]}',
        '{"event": "gossip_stored", "channels": ["x"]}',
        '{"event": "gossip_stored", "timestamp": "2026-11-30T14:00:00Z", "updates": [["x"]]}',
        '{"event": "gossip_stored", "timestamp": "2026-11-30T14:00:00Z", "channels": 5}',
        '{"event": "gossip_stored", "timestamp": "2026-11-30T14:00',  # torn by a crash
        "",
    ],
)
def test_lines_that_are_not_whole_gossip_lines_are_ignored(text: str) -> None:
    sightings = Sightings()
    assert not sightings.add_line("n0", text)
    assert sightings.first_seen == {}


def test_a_node_is_complete_once_it_stored_every_expected_message() -> None:
    sightings = Sightings()
    expected = [channel_key(C1), update_key(C1, A), update_key(C1, B)]
    sightings.add_line("n0", line(T0 + 1, channels=[C1], updates=[[C1, A, 1]]))
    assert sightings.missing("n0", expected) == 1
    assert sightings.complete_at("n0", expected) is None
    sightings.add_line("n0", line(T0 + 4, updates=[[C1, B, 1]]))
    assert sightings.missing("n0", expected) == 0
    assert sightings.complete_at("n0", expected) == T0 + 4
    assert sightings.missing("n1", expected) == 3


def test_spread_runs_from_the_origin_to_the_last_node_and_delays_cover_every_node() -> None:
    sightings = Sightings()
    sightings.add("n0", T0, [channel_key(C1)])  # the origin
    sightings.add("n1", T0 + 0.5, [channel_key(C1)])
    sightings.add("n2", T0 + 2.0, [channel_key(C1)])
    sightings.add("n1", T0 + 1.0, [channel_key(C2)])
    sightings.add("n0", T0 + 1.2, [channel_key(C2)])  # n2 never stores C2
    figures = propagation(sightings, [channel_key(C1), channel_key(C2)], ["n0", "n1", "n2"])
    assert figures["messages"] == 2 and figures["incomplete"] == 1
    assert figures["spread_s"] == {"count": 1, "p50": 2.0, "p95": 2.0, "max": 2.0}
    assert figures["delay_s"]["count"] == 5
    assert figures["delay_s"]["max"] == 2.0 and figures["delay_s"]["p50"] == 0.2
    assert set(figures["spread_s_by_kind"]) == {"channel"}


def test_percentiles_are_nearest_rank_and_an_empty_run_says_none() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 1.0)) == (
        50.0,
        95.0,
        100.0,
    )
    assert percentile([7.0], 0.95) == 7.0
    assert distribution([]) == {"count": 0, "p50": None, "p95": None, "max": None}
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def _channels() -> list[OpenedChannel]:
    return [OpenedChannel(C1, A, B, T0 + 10), OpenedChannel(C2, B, C, T0 + 12)]


def test_every_node_must_learn_each_channel_both_updates_and_every_channel_node() -> None:
    graph, nodes = expected_messages(_channels())
    assert graph == [
        channel_key(C1),
        update_key(C1, A),
        update_key(C1, B),
        channel_key(C2),
        update_key(C2, B),
        update_key(C2, C),
    ]
    assert nodes == [node_key(A), node_key(B), node_key(C)]


def test_the_report_times_convergence_from_the_last_channel_usable() -> None:
    opened = _channels()
    graph, nodes = expected_messages(opened)
    sightings = Sightings()
    sightings.add("n0", T0 + 11, graph[:3])
    sightings.add("n0", T0 + 12.5, graph[3:] + nodes)
    sightings.add("n1", T0 + 11.5, graph[:3])
    sightings.add("n1", T0 + 13.0, graph[3:])  # never a node announcement
    document = report(GossipBenchConfig(2, 2), opened, sightings, ["n0", "n1"], {"extra": 1})
    assert document["seconds"] == 1.0  # n1, the last, 1 s after the last open returned
    assert document["seconds_from_last_origin"] == 0.5
    assert document["seconds_with_node_announcements"] is None
    assert document["opening_seconds"] == 2.0
    assert document["channels_and_updates"]["spread_s"]["max"] == 0.5
    assert document["node_announcements"]["incomplete"] == 3
    assert document["extra"] == 1


def test_no_report_before_every_node_knows_everything() -> None:
    opened = _channels()
    graph, _ = expected_messages(opened)
    sightings = Sightings()
    sightings.add("n0", T0 + 11, graph)
    with pytest.raises(UserError, match="not every node"):
        report(GossipBenchConfig(2, 2), opened, sightings, ["n0", "n1"], {})


def test_the_tail_hands_over_whole_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "node.log"
    tail = LogTail(path)
    assert tail.new_lines() == []  # not written yet
    path.write_bytes(b'{"a": 1}\n{"b":')
    assert tail.new_lines() == ['{"a": 1}']
    assert tail.new_lines() == []
    with path.open("ab") as file:
        file.write(b' 2}\n{"c": 3}\n')
    assert tail.new_lines() == ['{"b": 2}', '{"c": 3}']
