"""Gossip and the layer-1 channel view in the node's database, so a restart relearns nothing.

The machine's `PersistGossip` records become rows keyed by what they are about (a channel, a
channel direction, a node), each holding the message as it travels (msgpack), so loading is
strict decoding, as from a peer, without the signature checks (they passed before the rows were
written). A flood of a hundred updates is one `executemany` in one transaction. Amounts and
timestamps stay inside msgpack blobs: a u64 does not fit SQLite's signed integers.

The layer-1 view (`ChainChannels`) is stored beside it, one row per channel and its height in
`meta`. Write it in the transaction that records the node's last processed block: replaying a
block's events on a view that already holds them changes nothing, so a crash between the two
is harmless, but the view must never be behind the processed block.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from p2pchan.core.gossip.chain_view import ChainChannel, ChainChannels
from p2pchan.core.gossip.outputs import PersistGossip
from p2pchan.core.gossip.state import (
    GossipConfig,
    GossipState,
    KnownChannel,
    LocalChannel,
    rate_next,
)
from p2pchan.core.routing.graph import ChannelPolicy, GraphChannel, NodeInfo
from p2pchan.errors import RemoteProtocolError, StoreError
from p2pchan.types import Address, ChannelId, NodeId
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.fields import BOOL, BYTES32, SIGNATURE, U64, Optional
from p2pchan.wire.gossip_messages import ChannelAnnouncement, ChannelUpdate, NodeAnnouncement
from p2pchan.wire.records import Nested, Record, wire

Work = Callable[[sqlite3.Connection], None]
R = TypeVar("R", bound=Record)

MAX_ROW = 4096
CHAIN_HEIGHT_KEY = "chain_view_height"
_HEIGHT = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class _StoredChannel(Record):
    announcement: ChannelAnnouncement = wire(Nested(ChannelAnnouncement))
    capacity: int = wire(U64)
    settle_timeout: int = wire(U64)
    announced_ms: int = wire(U64)


@dataclass(frozen=True, slots=True)
class _StoredLocal(Record):
    partner: NodeId = wire(BYTES32)
    our_signature: bytes = wire(SIGNATURE)
    partner_signature: bytes | None = wire(Optional(SIGNATURE))
    update: ChannelUpdate = wire(Nested(ChannelUpdate))


@dataclass(frozen=True, slots=True)
class _StoredChainChannel(Record):
    participant_a: Address = wire(BYTES32)
    participant_b: Address = wire(BYTES32)
    settle_timeout: int = wire(U64)
    deposit_a: int = wire(U64)
    deposit_b: int = wire(U64)
    is_open: bool = wire(BOOL)


def _decode(record: type[R], blob: bytes, what: str) -> R:
    try:
        return record.from_wire(unpack(bytes(blob), max_len=MAX_ROW), what)
    except RemoteProtocolError as error:
        raise StoreError(f"corrupt {what} in the node database: {error}") from None


# -- gossip -------------------------------------------------------------------------------


def write_gossip(*records: PersistGossip) -> Work:
    """Write the machine's records, in order, inside the caller's transaction."""

    def work(connection: sqlite3.Connection) -> None:
        for persist in records:
            _write(connection, persist)

    return work


def _write(connection: sqlite3.Connection, persist: PersistGossip) -> None:
    execute = connection.executemany
    removed = [(channel_id,) for channel_id in persist.removed_channels]
    if removed:
        execute("DELETE FROM gossip_channels WHERE channel_id = ?", removed)
        execute("DELETE FROM gossip_updates WHERE channel_id = ?", removed)
        execute("DELETE FROM gossip_local WHERE channel_id = ?", removed)
    if persist.removed_updates:
        execute(
            "DELETE FROM gossip_updates WHERE channel_id = ? AND from_node = ?",
            persist.removed_updates,
        )
    if persist.removed_nodes:
        execute(
            "DELETE FROM gossip_nodes WHERE node_id = ?",
            [(node_id,) for node_id in persist.removed_nodes],
        )
    if persist.channels:
        execute(
            "INSERT OR REPLACE INTO gossip_channels (channel_id, record) VALUES (?, ?)",
            [
                (
                    known.announcement.channel_id,
                    pack(
                        _StoredChannel(
                            known.announcement,
                            known.capacity,
                            known.settle_timeout,
                            known.announced_ms,
                        ).to_wire()
                    ),
                )
                for known in persist.channels
            ],
        )
    if persist.updates:
        execute(
            "INSERT OR REPLACE INTO gossip_updates (channel_id, from_node, message) "
            "VALUES (?, ?, ?)",
            [
                (update.body.channel_id, update.body.from_node, pack(update.to_wire()))
                for update in persist.updates
            ],
        )
    if persist.nodes:
        execute(
            "INSERT OR REPLACE INTO gossip_nodes (node_id, message) VALUES (?, ?)",
            [(node.body.node_id, pack(node.to_wire())) for node in persist.nodes],
        )
    if persist.local:
        execute(
            "INSERT OR REPLACE INTO gossip_local (channel_id, record) VALUES (?, ?)",
            [
                (
                    local.channel_id,
                    pack(
                        _StoredLocal(
                            local.partner,
                            local.our_signature,
                            local.partner_signature,
                            local.update,
                        ).to_wire()
                    ),
                )
                for local in persist.local
            ],
        )


def load_gossip(connection: sqlite3.Connection, config: GossipConfig) -> GossipState:
    """The gossip state as it was written: graph, updates, nodes and our own records.

    What lives only in memory starts empty: held gossip, the outbox, who asked for a sync.
    Each direction's rate allowance restarts from its stored update, as if just accepted.
    """
    state = GossipState(config)
    _load_channels(connection, state)
    _load_updates(connection, state)
    _load_nodes(connection, state)
    for channel_id, blob in connection.execute("SELECT channel_id, record FROM gossip_local"):
        local = _decode(_StoredLocal, blob, "local channel")
        key = ChannelId(bytes(channel_id))
        state.local[key] = LocalChannel(
            key, local.partner, local.our_signature, local.partner_signature, local.update
        )
    state.own_node = state.nodes.get(config.node_id)
    return state


def _load_channels(connection: sqlite3.Connection, state: GossipState) -> None:
    for channel_id, blob in connection.execute("SELECT channel_id, record FROM gossip_channels"):
        stored = _decode(_StoredChannel, blob, "gossip channel")
        announcement = stored.announcement
        if announcement.channel_id != channel_id:
            raise StoreError("corrupt gossip channel in the node database: key mismatch")
        known = KnownChannel(
            announcement, stored.capacity, stored.settle_timeout, stored.announced_ms
        )
        state.channels[announcement.channel_id] = known
        state.graph.add_channel(
            GraphChannel(
                announcement.channel_id,
                announcement.node1,
                announcement.node2,
                stored.capacity,
                stored.settle_timeout,
            )
        )


def _load_updates(connection: sqlite3.Connection, state: GossipState) -> None:
    for (blob,) in connection.execute("SELECT message FROM gossip_updates"):
        update = _decode(ChannelUpdate, blob, "gossip update")
        body = update.body
        if state.graph.edge(body.channel_id, body.from_node) is None:
            continue  # its channel is gone: an orphan row, harmless
        key = (body.channel_id, body.from_node)
        state.updates[key] = update
        state.update_rates[key] = rate_next(state.config, None, body.timestamp_ms)
        policy = ChannelPolicy(
            body.fee_base,
            body.fee_ppm,
            body.min_amount,
            body.max_amount,
            body.disabled,
            body.timestamp_ms,
        )
        state.graph.update_policy(body.channel_id, body.from_node, policy)


def _load_nodes(connection: sqlite3.Connection, state: GossipState) -> None:
    for (blob,) in connection.execute("SELECT message FROM gossip_nodes"):
        node = _decode(NodeAnnouncement, blob, "gossip node")
        body = node.body
        if not state.graph.outgoing(body.node_id):
            continue
        state.nodes[body.node_id] = node
        state.node_rates[body.node_id] = rate_next(state.config, None, body.timestamp_ms)
        state.graph.set_node(NodeInfo(body.node_id, body.alias, body.addresses, body.timestamp_ms))


# -- the layer-1 channel view -------------------------------------------------------------


def write_chain_view(view: ChainChannels, changed: Iterable[ChannelId]) -> Work:
    """Write the rows of `changed` channels (as `ChainChannels.apply_block` returns them) and
    the view's height."""
    ids = list(changed)
    height = view.height

    def work(connection: sqlite3.Connection) -> None:
        rows = []
        gone = []
        for channel_id in ids:
            channel = view.channel(channel_id)
            if channel is None:
                gone.append((channel_id,))
                continue
            stored = _StoredChainChannel(
                channel.participant_a,
                channel.participant_b,
                channel.settle_timeout,
                channel.deposit_a,
                channel.deposit_b,
                channel.is_open,
            )
            rows.append((channel_id, pack(stored.to_wire())))
        connection.executemany("DELETE FROM chain_channels WHERE channel_id = ?", gone)
        connection.executemany(
            "INSERT OR REPLACE INTO chain_channels (channel_id, record) VALUES (?, ?)", rows
        )
        connection.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (CHAIN_HEIGHT_KEY, _HEIGHT.pack(height)),
        )

    return work


def load_chain_view(connection: sqlite3.Connection) -> ChainChannels:
    channels: dict[ChannelId, ChainChannel] = {}
    for channel_id, blob in connection.execute("SELECT channel_id, record FROM chain_channels"):
        stored = _decode(_StoredChainChannel, blob, "layer-1 channel")
        key = ChannelId(bytes(channel_id))
        channels[key] = ChainChannel(
            key,
            stored.participant_a,
            stored.participant_b,
            stored.settle_timeout,
            stored.deposit_a,
            stored.deposit_b,
            stored.is_open,
        )
    row = connection.execute("SELECT value FROM meta WHERE key = ?", (CHAIN_HEIGHT_KEY,))
    found = row.fetchone()
    height = 0
    if found is not None:
        if len(found[0]) != _HEIGHT.size:
            raise StoreError("corrupt layer-1 view height in the node database")
        (height,) = _HEIGHT.unpack(bytes(found[0]))
    return ChainChannels(channels, height)
