"""`localnet up|status|pay|down` as a user runs them, against real processes: a network comes
up with its channels open and runs in the background, takes scripted and random payments,
survives a `kill -9` of a node as far as `status` and `down` are concerned, and goes away
completely; bad topologies, bad activity files and wrong dirs get one line and start nothing.
"""

from __future__ import annotations

import csv
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from p2pchan_cli.localnet.supervisor import Tracked, is_ours
from tests.system.localnet_support import processes_under, stop_everything_under
from tests.system.support import CommandResult, p2pchan

pytestmark = pytest.mark.slow
DEADLINE = 150


@pytest.fixture
async def net_dir(tmp_path: Path) -> AsyncIterator[Path]:
    directory = tmp_path / "net"
    try:
        yield directory
    finally:
        with trio.CancelScope(shield=True):
            await stop_everything_under(tmp_path)


def one_line_failure(result: CommandResult, code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    return result.stderr[len("error: ") : -1]


async def test_a_network_comes_up_takes_payments_and_goes_away(net_dir: Path) -> None:
    with trio.fail_after(DEADLINE):
        up = (
            await p2pchan("localnet", "up", "--topology", "line3", "--dir", str(net_dir), "--json")
        ).json()
        assert [node["alias"] for node in up["nodes"]] == ["alice", "bob", "carol"]
        assert all(channel["channel_id"] for channel in up["channels"])
        assert up["notes"] == []  # fees set and gossip converged: nothing skipped
        text = await p2pchan("localnet", "status", "--dir", str(net_dir))
        assert "layer 1" in text.stdout and "up" in text.stdout

        status = (await p2pchan("localnet", "status", "--dir", str(net_dir), "--json")).json()
        assert status["l1"]["alive"] and status["l1"]["height"] > 0
        bob = next(node for node in status["nodes"] if node["alias"] == "bob")
        assert bob["alive"] is True and bob["peers"] == 2
        assert sorted(c["peer"] for c in bob["channels"]) == ["alice", "carol"]
        assert all(
            c["state"] == "open" and c["local_balance"] == 1_000_000 for c in bob["channels"]
        )

        # The same network again: refused, nothing started.
        again = await p2pchan("localnet", "up", "--topology", "line3", "--dir", str(net_dir))
        assert "a network is already running in" in one_line_failure(again)

        activity = net_dir.parent / "activity.jsonl"
        activity.write_text(
            '{"from": "alice", "to": "bob", "amount": 100, "interval": 0.05, "count": 10}\n'
            "# carol pays across bob, who keeps a fee of 1 each time\n"
            '{"from": "carol", "to": "alice", "amount": 7, "interval": 0.1, "count": 3}\n'
        )
        table = net_dir.parent / "payments.csv"
        paid = await p2pchan(
            "localnet",
            "pay",
            "--dir",
            str(net_dir),
            "--activity",
            str(activity),
            "--csv",
            str(table),
            "--json",
        )
        summary = paid.json()
        assert summary["attempted"] == 13
        assert (
            summary["nodes"]["alice"]["sent"] >= 1000
            and summary["nodes"]["bob"]["received"] >= 1000
        )
        assert summary["succeeded"] == 13, summary["failure_reasons"]
        assert summary["nodes"]["carol"]["fees_paid"] == 3
        assert summary["nodes"]["bob"]["fees_earned"] == 3
        rows = list(csv.DictReader(table.read_text().splitlines()))
        assert len(rows) == 13 and {row["from"] for row in rows} == {"alice", "carol"}
        assert {row["fee"] for row in rows if row["from"] == "carol"} == {"1"}

        random_pay = await p2pchan(
            "localnet",
            "pay",
            "--dir",
            str(net_dir),
            "--random",
            "--rate",
            "20",
            "--duration",
            "2",
            "--seed",
            "5",
            "--json",
        )
        randomly = random_pay.json()
        assert randomly["seed"] == 5 and randomly["attempted"] > 10
        assert randomly["succeeded"] == randomly["attempted"], randomly["failure_reasons"]

        state = json.loads((net_dir / "localnet.json").read_text())
        os.kill(state["pids"]["bob"], signal.SIGKILL)
        status = (await p2pchan("localnet", "status", "--dir", str(net_dir), "--json")).json()
        assert [node["alive"] for node in status["nodes"]] == [True, False, True]

        down = (await p2pchan("localnet", "down", "--dir", str(net_dir), "--json")).json()
        assert sorted(down["stopped"]) == ["alice", "carol", "l1"] and down["already_gone"] == [
            "bob"
        ]
        datadirs = {name: net_dir / name for name in state["pids"]}
        assert not any(
            is_ours(Tracked(name, pid, datadirs[name])) for name, pid in state["pids"].items()
        )
        assert processes_under(net_dir) == []
        assert (await p2pchan("localnet", "down", "--dir", str(net_dir))).returncode == 0
        status = (await p2pchan("localnet", "status", "--dir", str(net_dir), "--json")).json()
        assert not status["l1"]["alive"] and not any(node["alive"] for node in status["nodes"])
        assert (net_dir / "alice" / "node.log").exists()  # logs stay


BAD_TOPOLOGIES = [
    ("syntax.toml", "[[nodes]\nalias=", "not valid TOML"),
    (
        "unknown.toml",
        '[[nodes]]\nalias = "a"\n[[channels]]\na = "a"\nb = "zed"\ndeposit_a = 1\n',
        "unknown node 'zed'",
    ),
    (
        "twice.toml",
        '[[nodes]]\nalias = "a"\n[[nodes]]\nalias = "b"\n'
        '[[channels]]\na = "a"\nb = "b"\ndeposit_a = 1\n'
        '[[channels]]\na = "b"\nb = "a"\ndeposit_a = 1\n',
        "duplicates channel 1",
    ),
    (
        "too-much.json",
        json.dumps(
            {
                "nodes": [{"alias": "a", "funds": 5}, {"alias": "b"}],
                "channels": [{"a": "a", "b": "b", "deposit_a": 6}],
            }
        ),
        "more than its funds 5",
    ),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD_TOPOLOGIES)
async def test_a_bad_topology_starts_nothing(
    net_dir: Path, name: str, text: str, message: str
) -> None:
    topology = net_dir.parent / name
    topology.write_text(text)
    with trio.fail_after(DEADLINE):
        result = await p2pchan("localnet", "up", "--topology", str(topology), "--dir", str(net_dir))
    assert message in one_line_failure(result)
    assert not await trio.Path(net_dir).exists()
    assert processes_under(net_dir.parent) == []


async def test_wrong_dirs_and_garbage_activity_get_one_line(net_dir: Path) -> None:
    with trio.fail_after(DEADLINE):
        for command in ("status", "down"):
            result = await p2pchan("localnet", command, "--dir", str(net_dir))
            assert "holds no local network" in one_line_failure(result)
        busy = net_dir.parent / "busy"
        busy.mkdir()
        (busy / "something").write_text("x")
        result = await p2pchan("localnet", "up", "--topology", "line3", "--dir", str(busy))
        assert "is not empty and holds no network" in one_line_failure(result)
        neither = await p2pchan("localnet", "pay", "--dir", str(net_dir))
        assert "give either --activity FILE or --random" in one_line_failure(neither, code=2)

        assert (
            await p2pchan("localnet", "up", "--topology", "line3", "--dir", str(net_dir))
        ).returncode == 0
        garbage = net_dir.parent / "garbage.jsonl"
        garbage.write_text(
            '{"from": "alice", "to": "bob", "amount": 1, "interval": 1, "count": 1}\nnot json\n'
        )
        result = await p2pchan("localnet", "pay", "--dir", str(net_dir), "--activity", str(garbage))
        assert "line 2: not valid JSON; nothing was paid" in one_line_failure(result)
        payments = await p2pchan("--datadir", str(net_dir / "alice"), "payments", "--json")
        assert payments.json() == []
        assert (await p2pchan("localnet", "down", "--dir", str(net_dir))).returncode == 0
        stopped = await p2pchan("localnet", "up", "--topology", "line3", "--dir", str(net_dir))
        assert "holds a stopped network" in one_line_failure(stopped)
        result = await p2pchan("localnet", "pay", "--dir", str(net_dir), "--random")
        assert "is not running" in one_line_failure(result)
