"""The chaos smoke: 60 s of random payments, many across hops, on five nodes while every kind
of fault is injected (kills, pauses, link delays, drops, resets and partitions, a layer-1
restart, cheating closes, attack modes), then everything healed, settled and checked: every
invariant holds, and the run leaves no process behind."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import trio

from p2pchan_cli.chaos.schedule import ALL_KINDS
from p2pchan_cli.processes import p2pchan_argv
from tests.system.localnet_support import processes_under, stop_everything_under

pytestmark = pytest.mark.slow
SEED = 14
DEADLINE = 280  # 60 s of chaos, the network's start, and the settling after


async def test_sixty_seconds_of_every_fault_break_no_invariant(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    try:
        with trio.fail_after(DEADLINE):
            done = await trio.run_process(
                p2pchan_argv(
                    "chaos",
                    "--topology",
                    "ring5",
                    "--duration",
                    "60",
                    "--seed",
                    str(SEED),
                    "--dir",
                    str(run_dir),
                    "--json",
                ),
                stdin=subprocess.DEVNULL,
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
    finally:
        with trio.CancelScope(shield=True):
            await stop_everything_under(tmp_path)
    assert done.returncode == 0, done.stderr.decode()[-3000:] + done.stdout.decode()[-3000:]
    report = json.loads(done.stdout)
    assert report["seed"] == SEED
    assert set(report["faults"]) == {kind.value for kind in ALL_KINDS}, report["faults"]
    assert report["invariants"] == dict.fromkeys(report["invariants"], "ok")
    assert len(report["invariants"]) == 5 and report["violations"] == []
    payments = report["payments"]
    assert payments["attempted"] > 100 and payments["succeeded"] > 0
    assert payments["multi_hop"] > 0  # paid across the ring, mediators keeping their fees
    assert payments["attempted"] == payments["succeeded"] + payments["failed"] + payments["pending"]
    assert f"--seed {SEED}" in report["replay"]
    assert processes_under(tmp_path) == []
