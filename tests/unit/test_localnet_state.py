"""A network's state file: what `up` writes is what `status`, `pay` and `down` read back, and
`up` refuses a dir that is not empty before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchan.errors import UserError
from p2pchan_cli.localnet.commands import check_new_directory
from p2pchan_cli.localnet.network import Network
from p2pchan_cli.localnet.state import load_state
from p2pchan_cli.localnet.topology import load_topology


def test_the_state_file_reads_back_what_was_written(tmp_path: Path) -> None:
    network = Network(tmp_path, load_topology("line3"))
    network.prepare()
    network.write_state()
    state = load_state(tmp_path)
    assert state.topology == load_topology("line3") and state.name == "line3"
    assert [(n.alias, n.node_id, n.port) for n in state.nodes] == [
        (node.alias, node.node_id, node.port) for node in network.nodes.values()
    ]
    assert state.l1_port == network.l1_port and state.processes() == []
    assert all(
        (tmp_path / alias / "node.key").stat().st_mode & 0o077 == 0 for alias in network.nodes
    )
    ports = [network.l1_port, *(node.port for node in network.nodes.values())]
    assert len(set(ports)) == 4


def test_up_wants_a_new_or_empty_dir(tmp_path: Path) -> None:
    check_new_directory(tmp_path / "new")
    check_new_directory(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is not empty and holds no network"):
        check_new_directory(tmp_path)
    network = Network(tmp_path / "net", load_topology("line3"))
    network.prepare()
    network.write_state()
    with pytest.raises(UserError, match="holds a stopped network"):
        check_new_directory(tmp_path / "net")
