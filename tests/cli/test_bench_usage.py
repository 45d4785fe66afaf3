"""`bench multihop` and `bench gossip` on the command line: what they hand the benchmark (its
defaults included) and the one-line refusals of what they cannot run, all without starting a
process (the benchmark itself is replaced; the system tests run the real thing)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from p2pchan_cli import bench_commands
from p2pchan_cli.bench_gossip import GossipBenchConfig
from p2pchan_cli.bench_multihop import MultihopBenchConfig
from tests.cli.test_usage import one_error_line, run_cli


@pytest.fixture
def configs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The configs the commands pass on; each run answers with a small document."""
    seen: list[Any] = []

    async def fake(config: Any, _progress: Any) -> dict[str, Any]:
        seen.append(config)
        return {"ran": type(config).__name__}

    monkeypatch.setattr(bench_commands, "run_multihop_bench", fake)
    monkeypatch.setattr(bench_commands, "run_gossip_bench", fake)
    return seen


def test_multihop_defaults_to_two_hops_and_prints_one_json_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], configs: list[Any]
) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "bench", "multihop", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"ran": "MultihopBenchConfig"}
    assert configs == [MultihopBenchConfig(hops=2, payments=20_000, concurrency=100)]


def test_multihop_takes_hops_payments_concurrency_and_no_direct(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], configs: list[Any]
) -> None:
    args = ["--hops", "4", "--payments", "300", "--concurrency", "483", "--no-direct"]
    code, _out, _err = run_cli(monkeypatch, capsys, "bench", "multihop", *args, "--json")
    assert code == 0
    assert configs == [MultihopBenchConfig(4, 300, 483, direct=False)]


def test_gossip_defaults_to_twice_as_many_channels_as_nodes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], configs: list[Any]
) -> None:
    for args in (["--nodes", "50"], ["--nodes", "4"], ["--nodes", "6", "--channels", "7"]):
        code, _out, _err = run_cli(monkeypatch, capsys, "bench", "gossip", *args, "--json")
        assert code == 0
    assert configs == [
        GossipBenchConfig(50, 100),
        GossipBenchConfig(4, 6),  # four nodes have six pairs, not eight
        GossipBenchConfig(6, 7),
    ]


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["multihop", "--hops", "0"], "--hops"),
        (["multihop", "--hops", "21"], "--hops"),
        (["multihop", "--concurrency", "484"], "--concurrency"),
        (["multihop", "--payments", "0"], "--payments"),
        (["gossip", "--nodes", "2"], "--nodes"),
        (["gossip", "--nodes", "10", "--channels", "9"], "10 nodes take from 10 to 45 channels"),
        (["gossip", "--nodes", "10", "--channels", "46"], "10 nodes take from 10 to 45 channels"),
        (["gossip", "--deadline", "0"], "--deadline"),
    ],
)
def test_what_cannot_run_is_refused_in_one_line_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    configs: list[Any],
    args: list[str],
    reason: str,
) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "bench", *args)
    assert (code, out) == (2, "")
    assert reason in one_error_line(err)
    assert configs == []
