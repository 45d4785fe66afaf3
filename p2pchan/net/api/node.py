"""The RPC methods about the node itself and its peers: info, connect, peers, disconnect (and,
on --dev nodes, the transport benchmark's flood)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import trio

import p2pchan
from p2pchan.core.channel.state import ChannelStatus
from p2pchan.errors import ChainError, UserError
from p2pchan.net.api.context import NodeContext
from p2pchan.net.api.params import node_id as _node_id
from p2pchan.net.rpc import RpcParamError, RpcServer, param, parsed_param
from p2pchan.storage.payment_history import payment_counts
from p2pchan.wire.peer_messages import PONG_SUPPRESSED, Ping

# The chain watcher may be this many blocks behind layer 1's head and still count as synced: a
# block just sealed reaches it a moment later.
SYNCED_LAG_BLOCKS = 1
INFO_L1_SECONDS = 2.0  # `info` answers without layer 1's figures rather than wait longer


def register(rpc: RpcServer, node: NodeContext) -> None:

    async def info(params: dict[str, Any]) -> dict[str, Any]:
        l1_balance: int | None = None
        l1_height: int | None = None
        try:
            with trio.move_on_after(INFO_L1_SECONDS):
                l1_balance = (await node.link.account(node.identity.node_id)).balance
                l1_height = (await node.link.status()).height
        except ChainError:
            pass  # layer 1 unreachable right now
        height = node.chain.height
        synced = (
            l1_height is not None
            and node.chain.connected
            and l1_height - height <= SYNCED_LAG_BLOCKS
        )
        # Every state counts, settled included: the same channels `channels` lists.
        states = Counter(str(c.status) for c in node.driver.state.channels.values())
        await node.driver.history.catch_up()
        payments = await node.driver.database.run(payment_counts)
        host, port = node.peers.listen_host, node.peers.listen_port
        return {
            "node_id": node.identity.node_id.hex(),
            "alias": node.config.alias,
            "host": host,
            "port": port,
            "block_height": height,
            "l1_balance": l1_balance,
            "peers": len(node.peers.sessions),
            "channels": sum(states.values()),
            "uri": f"{node.identity.node_id.hex()}@{_uri_host(host)}:{port}",
            "version": p2pchan.__version__,
            "l1_height": l1_height,
            "synced": synced,
            "channel_states": {str(s): states[str(s)] for s in ChannelStatus if states[str(s)]},
            "payments": payments,
        }

    async def connect(params: dict[str, Any]) -> dict[str, Any]:
        node_id = parsed_param(params, "node_id", _node_id)
        host = param(params, "host", str)
        port = param(params, "port", int)
        if not 0 < port < 65536:
            raise RpcParamError(f"port {port} is out of range")
        return (await node.peers.connect(node_id, host, port)).to_json()

    async def peers(params: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            peer.to_json() | node.peers.traffic(peer.node_id) for peer in node.peers.all_peers()
        ]

    async def disconnect(params: dict[str, Any]) -> dict[str, Any]:
        node_id = parsed_param(params, "node_id", _node_id)
        if not await node.peers.disconnect(node_id):
            raise UserError(f"unknown peer {node_id.hex()}")
        return {"node_id": node_id.hex(), "disconnected": True}

    async def debug_flood(params: dict[str, Any]) -> dict[str, Any]:
        """Dev nodes only: send COUNT pings that want no pong, then one that does (a barrier:
        when its pong arrives, the peer has read them all). For transport benchmarks."""
        if not node.config.dev:
            raise UserError("debug_flood needs a node started with --dev")
        node_id = parsed_param(params, "node_id", _node_id)
        count = param(params, "count", int)
        size = param(params, "size", int, default=32)
        session = node.peers.sessions.get(node_id)
        if session is None:
            raise UserError(f"not connected to {node_id.hex()}")
        flood = Ping(PONG_SUPPRESSED, bytes(size))
        started = trio.current_time()
        for _ in range(count):
            await session.send(flood)
        round_trip = await session.ping()
        elapsed = trio.current_time() - started
        return {
            "messages": count,
            "seconds": elapsed,
            "messages_per_s": count / elapsed if elapsed else None,
            "barrier_round_trip_s": round_trip,
        }

    for name, handler in (
        ("info", info),
        ("connect", connect),
        ("peers", peers),
        ("disconnect", disconnect),
        ("debug_flood", debug_flood),
    ):
        rpc.register(name, handler)


def _uri_host(host: str) -> str:
    """A host as it goes before `:port` (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host
