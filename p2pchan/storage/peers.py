"""Remembered peers: the ones we connected to, reconnected to after a restart."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from p2pchan.types import Address, NodeId

Work = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True, slots=True)
class RememberedPeer:
    node_id: NodeId
    host: str
    port: int


def remember_peer(peer: RememberedPeer, now_ms: int) -> Work:
    def work(connection: sqlite3.Connection) -> None:
        connection.execute(
            "INSERT INTO peers (node_id, host, port, added_at_ms) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (node_id) DO UPDATE SET host = excluded.host, port = excluded.port",
            (peer.node_id, peer.host, peer.port, now_ms),
        )

    return work


def forget_peer(node_id: NodeId) -> Work:
    def work(connection: sqlite3.Connection) -> None:
        connection.execute("DELETE FROM peers WHERE node_id = ?", (node_id,))

    return work


def load_peers(connection: sqlite3.Connection) -> list[RememberedPeer]:
    rows = connection.execute("SELECT node_id, host, port FROM peers ORDER BY added_at_ms")
    return [RememberedPeer(NodeId(Address(bytes(row[0]))), row[1], row[2]) for row in rows]
