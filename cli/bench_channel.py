"""`p2pchan bench channel`: payments per second and their latency over one channel between two
node processes, every state durable (SQLite, synchronous=FULL).

Both nodes fund the channel. Up to 483 payments in flight go one way (the lock limit of one
direction); more are split between both directions, so 966 is the most a channel carries. The
payments are generated inside the nodes (the `debug_send_many` RPC of --dev nodes) through the
same path as `send`: spontaneous payments, each a lock, a reveal and an unlock, batched into
shared balance proofs. The same run measures Ed25519 sign+verify pairs per second here, the
bound the crypto sets.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from p2pchan.crypto.keys import Identity
from p2pchan.crypto.signing import SigningTag, verify
from p2pchan.errors import P2pchanError
from p2pchan.l1.client import L1Client
from p2pchan.net.rpc_client import RpcClient
from p2pchan.types import Address
from p2pchan_cli.bench_l1 import machine_description
from p2pchan_cli.processes import ChildProcess, l1_process, node_process, p2pchan_argv

MAX_PER_DIRECTION = 483


@dataclass(frozen=True)
class ChannelBenchConfig:
    payments: int = 20_000
    concurrency: int = 100
    amount: int = 1
    profile_dir: Path | None = None  # write each node's cProfile statistics here


def sign_verify_per_second(seconds: float = 1.0) -> float:
    identity = Identity.generate()
    data = bytes(120)
    pairs = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        verify(
            identity.node_id,
            SigningTag.BALANCE_PROOF,
            data,
            identity.sign(SigningTag.BALANCE_PROOF, data),
        )
        pairs += 1
    return pairs / (time.perf_counter() - started)


async def start_network(
    workdir: Path, deposit: int, children: list[ChildProcess], profile_dir: Path | None
) -> None:
    """Start layer 1 and nodes a and b (appended to `children` as they start, so the caller
    stops them whatever happens), fund both, and open a channel both sides deposit into."""
    chain = l1_process(
        workdir / "l1", "--port", "0", "--dev", "--block-time", "0.5", log_level="warning"
    )
    children.append(chain)
    ready = await chain.start()
    l1 = f"{ready['host']}:{ready['port']}"
    nodes = []
    for name in ("a", "b"):
        datadir = workdir / name
        await trio.run_process(
            p2pchan_argv("node", "init", "--datadir", str(datadir)), capture_stdout=True
        )
        extra = ["--profile", str(profile_dir / f"{name}.prof")] if profile_dir else []
        node = node_process(datadir, l1, "--dev", *extra, name=name, log_level="warning")
        children.append(node)
        await node.start()
        nodes.append(node)
    async with L1Client.connect(ready["host"], ready["port"]) as client:
        for node in nodes:
            node_id = Address(bytes.fromhex(node.ready["node_id"]))
            await client.faucet(node_id, deposit, wait=True)
    a, b = nodes
    async with (
        RpcClient.connect(a.ready_file.parent) as rpc_a,
        RpcClient.connect(b.ready_file.parent) as rpc_b,
    ):
        peer = {"node_id": b.ready["node_id"], "host": b.ready["host"], "port": b.ready["port"]}
        await rpc_a.call("connect", peer)
        channel = await rpc_a.call("open", {"node_id": b.ready["node_id"], "amount": deposit})
        await rpc_b.call("deposit", {"channel_id": channel["channel_id"], "total": deposit})


async def quiescent_channel(node: ChildProcess) -> dict[str, Any]:
    """The channel once its last unlocks are acked (no lock pending), within 30 s."""
    with trio.fail_after(30):
        async with RpcClient.connect(node.ready_file.parent) as rpc:
            while True:
                (channel,) = await rpc.call("channels")
                if not channel["pending_locks"]:
                    return dict(channel)
                await trio.sleep(0.05)


async def run_channel_bench(config: ChannelBenchConfig) -> dict[str, Any]:
    crypto_bound = sign_verify_per_second()
    workdir = Path(tempfile.mkdtemp(prefix="p2pchan-bench-channel-"))
    deposit = config.payments * config.amount + 1_000
    both_ways = config.concurrency > MAX_PER_DIRECTION
    children: list[ChildProcess] = []
    try:
        await start_network(workdir, deposit, children, config.profile_dir)
        _chain, a, b = children
        directions = [(a, b)] + ([(b, a)] if both_ways else [])
        per_direction = config.payments // len(directions)
        in_flight = config.concurrency // len(directions)
        results: list[dict[str, Any]] = []

        async def drive(payer: ChildProcess, payee: ChildProcess) -> None:
            async with RpcClient.connect(payer.ready_file.parent) as rpc:
                results.append(
                    await rpc.call(
                        "debug_send_many",
                        {
                            "node_id": payee.ready["node_id"],
                            "amount": config.amount,
                            "count": per_direction,
                            "concurrency": in_flight,
                            "latencies": True,
                        },
                    )
                )

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for payer, payee in directions:
                nursery.start_soon(drive, payer, payee)
        seconds = time.perf_counter() - started
        channel = await quiescent_channel(a)
    finally:
        for child in reversed(children):
            await child.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    latencies = sorted(x for result in results for x in result["latencies_ms"])
    succeeded = sum(result["succeeded"] for result in results)
    total = per_direction * len(directions)
    if succeeded != total:
        raise P2pchanError(f"only {succeeded} of {total} payments succeeded")
    if channel["local_balance"] + channel["remote_balance"] != channel["capacity"]:
        raise P2pchanError(f"the channel does not add up after the run: {channel}")
    return {
        "payments": total,
        "concurrency": in_flight * len(directions),
        "directions": len(directions),
        "seconds": round(seconds, 3),
        "payments_per_s": round(total / seconds),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[max(int(len(latencies) * 0.99) - 1, 0)], 2),
        "sign_verify_per_s": round(crypto_bound),
        "machine": machine_description(),
    }
