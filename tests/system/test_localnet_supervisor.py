"""Processes of a local network known only by pid: a pid counts as ours only while its command
line names the data dir it was started with, and stopping reaches paused and stubborn ones."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from p2pchan.errors import UserError
from p2pchan_cli.localnet.state import load_state
from p2pchan_cli.localnet.supervisor import Tracked, free_ports, is_ours, stop_processes
from p2pchan_cli.processes import ChildProcess

pytestmark = pytest.mark.slow
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


PATIENT = "import time; print('ready', flush=True); time.sleep(60)"


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)


async def test_a_pid_is_ours_only_with_its_data_dir_and_stop_reaches_every_one(
    tmp_path: Path,
) -> None:
    paused = start(sys.executable, "-c", PATIENT, str(tmp_path / "a"))
    stubborn = start(sys.executable, "-c", STUBBORN, str(tmp_path / "b"))
    try:
        for process in (paused, stubborn):
            assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        mine = Tracked("a", paused.pid, tmp_path / "a")
        assert is_ours(mine)
        assert not is_ours(Tracked("a", paused.pid, tmp_path / "other"))
        paused.send_signal(signal.SIGSTOP)
        with trio.fail_after(30):
            killed = await stop_processes(
                [mine, Tracked("b", stubborn.pid, tmp_path / "b")], grace_period=1
            )
        assert killed == [
            "b"
        ]  # the paused one took SIGTERM after SIGCONT; the other needed SIGKILL
        assert paused.wait(5) == -signal.SIGTERM and stubborn.wait(5) == -signal.SIGKILL
        assert not is_ours(mine)
    finally:
        for process in (paused, stubborn):
            process.kill()
            process.wait()


def test_free_ports_are_distinct() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20 and all(0 < port < 65536 for port in ports)


def test_a_damaged_state_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "localnet.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot read"):
        load_state(tmp_path)
    (tmp_path / "localnet.json").write_text(json.dumps({"version": 1, "name": "x"}))
    with pytest.raises(UserError, match="is damaged"):
        load_state(tmp_path)


async def test_a_process_not_ready_in_time_is_killed_not_left_behind(tmp_path: Path) -> None:
    never_ready = ChildProcess(
        "slow",
        [sys.executable, "-c", PATIENT],
        tmp_path / "slow.json",
        tmp_path / "slow.log",
        ready_timeout=0.5,
    )
    with trio.fail_after(30), pytest.raises(UserError, match=r"slow not ready after 0\.5 s"):
        await never_ready.start()
    assert never_ready.process is not None and never_ready.process.returncode == -signal.SIGKILL
    assert not never_ready.running
