"""Gossip in the node's database: what the machine asked to persist reloads as the same state
(graph included), removals stick, the layer-1 view survives a restart, and a corrupt row is a
StoreError, never a half-loaded graph."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from p2pchan.core.gossip import machine
from p2pchan.core.gossip.chain_view import ChainChannels
from p2pchan.core.gossip.outputs import GossipOutput, PersistGossip
from p2pchan.core.gossip.state import HORIZON_MS, FeePolicy, GossipState
from p2pchan.errors import StoreError
from p2pchan.l1.events import ChannelClosed, ChannelDeposited, ChannelOpened, ChannelSettled
from p2pchan.storage.db import MIGRATIONS, NodeDatabase
from p2pchan.storage.gossip import (
    load_chain_view,
    load_gossip,
    write_chain_view,
    write_gossip,
)
from p2pchan.types import Address
from tests.unit.gossip_helpers import (
    NOW_MS,
    announcement,
    channel_id,
    identity,
    node_announcement,
    open_on_chain,
    snapshot,
    state_of,
    update,
)

ALICE, BOB, CAROL, DAVE = (identity(name) for name in ("alice", "bob", "carol", "dave"))
AB, BC, CD = channel_id("ab"), channel_id("bc"), channel_id("cd")


@pytest.fixture
def database(tmp_path: Path) -> Iterator[NodeDatabase]:
    database = NodeDatabase.open(tmp_path)
    yield database
    database.close()


def persist(database: NodeDatabase, outputs: list[GossipOutput]) -> None:
    records = [output for output in outputs if isinstance(output, PersistGossip)]
    database.run_now(write_gossip(*records))


def reload(database: NodeDatabase, state: GossipState) -> GossipState:
    return database.run_now(lambda connection: load_gossip(connection, state.config))


def durable(state: GossipState) -> object:
    """The part of the state that must survive a restart: not held gossip nor the outbox, nor
    our own node announcement while it is not flooded (the node announces itself at start)."""
    full = snapshot(state)
    assert isinstance(full, tuple)
    channels, updates, nodes = full[:3]
    local, graph = full[7], full[11:]
    return channels, updates, nodes, local, graph


def built(database: NodeDatabase) -> tuple[GossipState, ChainChannels]:
    """Bob's gossip: his channel with Carol (complete), one with Alice (only his half yet),
    a channel between Carol and Dave he heard of, updates and node announcements."""
    chain = ChainChannels()
    for channel, a, b in ((AB, ALICE, BOB), (BC, BOB, CAROL), (CD, CAROL, DAVE)):
        open_on_chain(chain, channel, a, b)
    bob = state_of(BOB)
    fees = FeePolicy(fee_base=3, fee_ppm=30)
    for channel, partner in ((AB, ALICE), (BC, CAROL)):
        persist(
            database,
            machine.local_channel_usable(bob, channel, partner.node_id, fees, NOW_MS, chain, BOB),
        )
    persist(database, machine.announce_node(bob, "bob", ["127.0.0.1:1"], NOW_MS, chain, BOB))
    flood = [
        announcement(BC, BOB, CAROL),
        announcement(CD, CAROL, DAVE),
        update(BC, CAROL, max_amount=2**64 - 1),  # a u64 beyond SQLite's integers
        update(CD, DAVE, NOW_MS - 3),
        node_announcement(CAROL, alias="carol"),
        node_announcement(DAVE, alias="dave ☺", addresses=("[::1]:9735", "d.example:1")),
    ]
    for message in flood:
        persist(database, machine.on_gossip(bob, DAVE.node_id, message, NOW_MS, chain))
    assert bob.local[BC].complete and not bob.local[AB].complete
    assert bob.own_node is not None and bob.graph.node(BOB.node_id) is not None
    return bob, chain


def test_what_the_machine_persisted_reloads_as_the_same_state(database: NodeDatabase) -> None:
    bob, _ = built(database)
    loaded = reload(database, bob)
    assert durable(loaded) == durable(bob)
    assert loaded.graph.channel_count() == 2
    assert loaded.own_node == bob.own_node


def test_a_reloaded_state_refuses_what_it_already_has_and_takes_what_is_newer(
    database: NodeDatabase,
) -> None:
    bob, chain = built(database)
    loaded = reload(database, bob)
    assert (
        machine.on_gossip(loaded, DAVE.node_id, update(CD, DAVE, NOW_MS - 3), NOW_MS, chain) == []
    )
    outputs = machine.on_gossip(loaded, DAVE.node_id, update(CD, DAVE, NOW_MS), NOW_MS, chain)
    assert [type(output) for output in outputs] == [PersistGossip]
    # Our incomplete announcement is still offered to Alice on reconnect after the restart.
    [send] = machine.on_peer_connected(loaded, ALICE.node_id, NOW_MS)
    assert len(send.messages) == 2  # type: ignore[union-attr]


def test_removals_are_persisted(database: NodeDatabase) -> None:
    bob, chain = built(database)
    event = ChannelClosed(CD, Address(CAROL.node_id), 3, 0, 0)
    chain.apply_block(chain.height + 1, [event])
    persist(database, machine.on_chain_block(bob, [event], NOW_MS, chain))
    persist(database, machine.prune(bob, NOW_MS + HORIZON_MS + 1))
    loaded = reload(database, bob)
    assert durable(loaded) == durable(bob)
    assert loaded.graph.channel(CD) is None and loaded.graph.node(DAVE.node_id) is None
    assert loaded.updates == {}


def test_the_layer_1_view_survives_a_restart(database: NodeDatabase) -> None:
    view = ChainChannels()
    blocks = [
        [
            ChannelOpened(AB, Address(ALICE.node_id), Address(BOB.node_id), 100),
            ChannelOpened(BC, Address(BOB.node_id), Address(CAROL.node_id), 40),
        ],
        [ChannelDeposited(AB, Address(BOB.node_id), 2**64 - 1)],
        [ChannelClosed(BC, Address(BOB.node_id), 3, 0, 0)],
        [ChannelSettled(AB, 0, 0, 0, 0)],
    ]
    for height, events in enumerate(blocks, start=1):
        changed = view.apply_block(height, events)
        database.run_now(write_chain_view(view, changed))
        loaded = database.run_now(load_chain_view)
        assert loaded.height == height
        assert sorted(loaded.channels(), key=repr) == sorted(view.channels(), key=repr)
    assert loaded.channel(AB) is None
    closed = loaded.channel(BC)
    assert closed is not None and not closed.is_open


@pytest.mark.parametrize(
    ("table", "value"),
    [
        ("gossip_channels", b"\x93\x01\x02\x03"),
        ("gossip_local", b"not msgpack \xc1"),
        ("chain_channels", b"\x96" + b"\x00" * 6),
    ],
)
def test_a_corrupt_row_is_a_store_error(database: NodeDatabase, table: str, value: bytes) -> None:
    database.run_now(
        lambda connection: connection.execute(
            f"INSERT INTO {table} (channel_id, record) VALUES (?, ?)", (bytes(32), value)
        )
    )
    with pytest.raises(StoreError, match="corrupt"):
        if table == "chain_channels":
            database.run_now(load_chain_view)
        else:
            database.run_now(lambda connection: load_gossip(connection, state_of(BOB).config))


def test_a_corrupt_update_is_a_store_error(database: NodeDatabase) -> None:
    database.run_now(
        lambda connection: connection.execute(
            "INSERT INTO gossip_updates VALUES (?, ?, ?)", (bytes(32), bytes(32), b"\x92\xc4\x00")
        )
    )
    with pytest.raises(StoreError, match="corrupt gossip update"):
        database.run_now(lambda connection: load_gossip(connection, state_of(BOB).config))


def test_an_existing_database_gains_the_gossip_tables(tmp_path: Path) -> None:
    path = tmp_path / "node.sqlite"
    connection = sqlite3.connect(path)
    for version, script in enumerate(MIGRATIONS[:2], start=1):
        connection.executescript(script)
        connection.execute(f"PRAGMA user_version = {version}")
    connection.commit()
    connection.close()
    database = NodeDatabase.open(tmp_path)
    try:
        state = database.run_now(lambda c: load_gossip(c, state_of(BOB).config))
        assert state.channels == {}
        assert database.run_now(load_chain_view).height == 0
    finally:
        database.close()
