"""`p2pchan bench multihop` and `p2pchan bench gossip` end to end with real processes, small
enough for CI: each prints one JSON document whose figures hang together, and leaves no
process and no temporary directory behind, also when interrupted with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pchan_cli.processes import p2pchan_argv

pytestmark = pytest.mark.slow
DEADLINE = 240  # a bench's own start-up on a loaded two-core machine, and its teardown


async def bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    """Run `p2pchan bench ARGS --json` with its temporary directories under `tmp_path`."""
    with trio.fail_after(DEADLINE):
        done = await trio.run_process(
            p2pchan_argv("bench", *args, "--json"),
            stdin=subprocess.DEVNULL,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env={**os.environ, "TMPDIR": str(tmp_path)},
        )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stderr == b"", "no progress line when stderr is not a terminal"
    document: dict[str, Any] = json.loads(done.stdout)
    assert _leftovers(tmp_path) == [], "the work directory outlived the run"
    return document


async def test_multihop_pays_across_two_hops_and_over_one_channel_for_the_ratio(
    tmp_path: Path,
) -> None:
    report = await bench(tmp_path, "multihop", "--payments", "150", "--concurrency", "20")
    assert (report["hops"], report["nodes"], report["payments"]) == (2, 3, 150)
    assert report["route_fee"] == 1  # the mediator's base fee; 100 ppm of 1000 rounds to 0
    for phase in (report["multihop"], report["direct"]):
        assert (phase["succeeded"], phase["failed"], phase["pending"]) == (150, 0, 0)
        assert phase["payments_per_s"] > 0 and 0 < phase["p50_ms"] <= phase["p99_ms"]
        assert set(phase["cpu_us_per_payment"]) == {"l1", "n0", "n1", "n2"}
    assert report["multihop"]["cpu_us_per_payment"]["n1"] > 0, "the mediator forwarded"
    assert report["ratio"] == round(
        report["multihop"]["payments_per_s"] / report["direct"]["payments_per_s"], 3
    )


async def test_gossip_reaches_every_node_of_six_and_says_how_fast(tmp_path: Path) -> None:
    report = await bench(tmp_path, "gossip", "--nodes", "6", "--deadline", "180")
    assert (report["nodes"], report["channels"]) == (6, 12)
    graph = report["channels_and_updates"]
    assert (graph["messages"], graph["incomplete"]) == (36, 0)  # 12 channels, 24 updates
    assert graph["spread_s"]["count"] == 36 and graph["delay_s"]["count"] == 36 * 6
    assert 0 <= graph["spread_s"]["p50"] <= graph["spread_s"]["max"]
    assert report["node_announcements"]["incomplete"] == 0
    assert report["seconds"] >= 0 and report["seconds_with_node_announcements"] is not None
    assert report["bytes_sent_per_node"]["p50"] > 0
    assert report["resident_mb_per_node"]["count"] == 6


def _leftovers(tmp_path: Path) -> list[Path]:
    return list(tmp_path.iterdir())


def _pids(tmp_path: Path) -> list[int]:
    """The pids in the ready files of the benchmark's processes so far."""
    pids = []
    for ready in [*tmp_path.glob("*/*/node.json"), *tmp_path.glob("*/l1/l1.json")]:
        try:
            pids.append(int(json.loads(ready.read_text())["pid"]))
        except (OSError, ValueError, KeyError):
            continue  # being written
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited (its parent reaps it)


async def test_ctrl_c_stops_every_process_and_removes_the_directory(tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        process = await trio.lowlevel.open_process(
            p2pchan_argv("bench", "gossip", "--nodes", "6", "--json"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "TMPDIR": str(tmp_path)},
        )
        try:
            pids: list[int] = []
            while len(pids) < 3:  # layer 1 and some nodes are up (nothing to wait on: poll)
                assert process.poll() is None, "the benchmark ended by itself"
                pids = _pids(tmp_path)
                await trio.sleep(0.1)
            process.send_signal(signal.SIGINT)
            assert await process.wait() == 130
        finally:
            if process.returncode is None:
                process.kill()
        assert process.stderr is not None
        assert (await process.stderr.receive_some()).decode().strip() == "error: interrupted"
        assert _leftovers(tmp_path) == []
        assert not [pid for pid in pids if _alive(pid)], "the benchmark stops what it started"
