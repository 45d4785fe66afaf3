"""`p2pchan bench transport`: encrypted messages per second between two node processes, one
way, and the latency of a Noise handshake with a node.

Node A floods node B with small pings that want no pong (real protocol messages, each in its own
encrypted frame, writes coalesced), then sends one ping that does want a pong: when it comes back,
B has read and decrypted everything before it. The handshake latency is measured from this
process: TCP connect, the three acts and both inits.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from p2pchan.crypto.keys import Identity
from p2pchan.net.rpc_client import RpcClient
from p2pchan.net.transport import initiate
from p2pchan.types import Address, NodeId
from p2pchan.wire.peer_messages import PEER_MESSAGES, PROTOCOL_VERSION, Init
from p2pchan_cli.bench_l1 import machine_description
from p2pchan_cli.processes import l1_process, node_process, p2pchan_argv


@dataclass(frozen=True)
class TransportBenchConfig:
    messages: int = 200_000
    size: int = 32
    handshakes: int = 200


async def _handshake_latencies(
    host: str, port: int, node_id: NodeId, chain_id: bytes, count: int
) -> list[float]:
    me = Identity.generate()
    init = PEER_MESSAGES.encode(Init(PROTOCOL_VERSION, chain_id, b""))  # type: ignore[arg-type]
    latencies = []
    for _ in range(count):
        started = trio.current_time()
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            secure = await initiate(stream, me, node_id)
            await secure.send([init])
            bodies = await secure.receive()
            assert bodies, "the node closed the connection during init"
            latencies.append(trio.current_time() - started)
    return latencies


async def run_transport_bench(config: TransportBenchConfig) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="p2pchan-bench-transport-"))
    chain = l1_process(workdir / "l1", "--port", "0", "--dev", log_level="warning")
    nodes = [
        node_process(workdir / name, "", "--dev", name=name, log_level="warning")
        for name in ("a", "b")
    ]
    try:
        ready = await chain.start()
        l1 = f"{ready['host']}:{ready['port']}"
        for node in nodes:
            await trio.run_process(
                p2pchan_argv("node", "init", "--datadir", str(node.ready_file.parent)),
                capture_stdout=True,
            )
            node.argv[node.argv.index("--l1") + 1] = l1
            await node.start()
        a, b = nodes
        async with RpcClient.connect(a.ready_file.parent) as rpc:
            peer = {"node_id": b.ready["node_id"], "host": b.ready["host"], "port": b.ready["port"]}
            await rpc.call("connect", peer)
            await rpc.call("debug_flood", {"node_id": peer["node_id"], "count": 1000})  # warm up
            flood = await rpc.call(
                "debug_flood",
                {"node_id": peer["node_id"], "count": config.messages, "size": config.size},
            )
        latencies = await _handshake_latencies(
            b.ready["host"],
            b.ready["port"],
            NodeId(Address(bytes.fromhex(b.ready["node_id"]))),
            bytes.fromhex(ready["chain_id"]),
            config.handshakes,
        )
    finally:
        for child in (*nodes, chain):
            await child.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    latencies.sort()
    return {
        "messages": config.messages,
        "message_size": config.size,
        "seconds": round(flood["seconds"], 3),
        "messages_per_s": round(flood["messages_per_s"]),
        "handshakes": config.handshakes,
        "handshake_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "handshake_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
        "machine": machine_description(),
    }
