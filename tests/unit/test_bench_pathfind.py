"""`p2pchan bench pathfind` runs end to end on a small graph, reproducibly from its seed."""

from __future__ import annotations

import json

from click.testing import CliRunner

from p2pchan_cli.bench_pathfind import TAIL, synthetic_graph
from p2pchan_cli.main import cli


def test_the_synthetic_graph_is_the_same_for_the_same_seed() -> None:
    first, core, tail = synthetic_graph(7, 300, 1200)
    again, _, _ = synthetic_graph(7, 300, 1200)
    other, _, _ = synthetic_graph(8, 300, 1200)
    assert first.channel_count() == 1200 and len(core) + len(tail) == 300 and len(tail) == TAIL
    assert sorted(c.channel_id for c in first.channels()) == sorted(
        c.channel_id for c in again.channels()
    )
    assert sorted(c.channel_id for c in first.channels()) != sorted(
        c.channel_id for c in other.channels()
    )
    degrees = sorted(len(first.outgoing(node)) for node in core)
    assert degrees[-1] > 5 * degrees[len(degrees) // 2], "preferential attachment: hubs"


def test_the_command_prints_its_figures_as_json() -> None:
    result = CliRunner().invoke(
        cli,
        ["bench", "pathfind", "--nodes", "300", "--channels", "1200", "--queries", "5", "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["seed"] == 1 and report["queries"] == 5
    assert report["no_path_worst_case"] == "no_path"  # the tail is beyond the hop limit
    for field in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "graph_build_ms", "index_build_ms"):
        assert report[field] >= 0


def test_fewer_channels_than_nodes_is_refused() -> None:
    result = CliRunner().invoke(
        cli, ["bench", "pathfind", "--nodes", "300", "--channels", "200", "--json"]
    )
    assert result.exit_code != 0
    assert "--channels" in result.output
