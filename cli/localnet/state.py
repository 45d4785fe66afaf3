"""A local network's state file, `D/localnet.json`: what `localnet up` started and where.

`status`, `down` and `pay` know the network only through it: its topology, each node's alias,
id, port and data dir, and the pids (checked against their data dirs before any signal).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from p2pchan.errors import UserError
from p2pchan_cli.localnet.network import STATE_FILE, STATE_VERSION
from p2pchan_cli.localnet.supervisor import Tracked, is_ours
from p2pchan_cli.localnet.topology import Topology, TopologyError, parse_topology


@dataclass(frozen=True)
class NodeEntry:
    alias: str
    node_id: str
    host: str
    port: int
    datadir: Path


@dataclass(frozen=True)
class NetworkState:
    directory: Path
    name: str
    topology: Topology
    l1_host: str
    l1_port: int
    l1_datadir: Path
    nodes: tuple[NodeEntry, ...]
    channels: tuple[dict[str, Any], ...]
    pids: dict[str, int]
    notes: tuple[str, ...]

    def node(self, alias: str) -> NodeEntry:
        for entry in self.nodes:
            if entry.alias == alias:
                return entry
        raise KeyError(alias)

    def processes(self) -> list[Tracked]:
        """Every process the network started, nodes first, the layer 1 last."""
        datadirs = {entry.alias: entry.datadir for entry in self.nodes}
        datadirs["l1"] = self.l1_datadir
        named = [(name, pid) for name, pid in self.pids.items() if name in datadirs]
        named.sort(key=lambda item: item[0] == "l1")
        return [Tracked(name, pid, datadirs[name]) for name, pid in named]

    def running(self) -> list[Tracked]:
        return [process for process in self.processes() if is_ours(process)]


def load_state(directory: Path) -> NetworkState:
    """The network in `directory`; `UserError` in one line if it holds none (or a broken one)."""
    path = directory / STATE_FILE
    if not directory.is_dir():
        raise UserError(f"{directory} holds no local network (no such directory)")
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(
            f"{directory} holds no local network (no {STATE_FILE}): start one with "
            "`p2pchan localnet up --topology NAME --dir DIR`"
        ) from None
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    try:
        if document["version"] != STATE_VERSION:
            raise UserError(f"{path}: unknown version {document['version']!r}")
        topology = replace(
            parse_topology(document["topology"], str(path)), name=str(document["name"])
        )
        return NetworkState(
            directory,
            str(document["name"]),
            topology,
            str(document["l1"]["host"]),
            int(document["l1"]["port"]),
            Path(document["l1"]["datadir"]),
            tuple(
                NodeEntry(
                    str(n["alias"]),
                    str(n["node_id"]),
                    str(n["host"]),
                    int(n["port"]),
                    Path(n["datadir"]),
                )
                for n in document["nodes"]
            ),
            tuple(document["channels"]),
            {str(name): int(pid) for name, pid in document["pids"].items()},
            tuple(str(note) for note in document.get("notes", [])),
        )
    except TopologyError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise UserError(f"{path} is damaged ({type(error).__name__}: {error})") from None
