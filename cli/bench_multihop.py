"""`p2pchan bench multihop`: payments per second and their latency across hops, between node
processes in a line, and in the same run the direct figure over one channel, for the ratio.

Layer 1 and hops + 1 `node start --dev` processes, n0 - n1 - ... - nH, each channel opened
by its left node with a deposit large enough for the whole run (every payment at the fee
cap). The benchmark waits until n0's graph (learnt over gossip) holds every channel and
`route` to nH has `hops` hops, then n0's `debug_send_many` sends spontaneous payments to nH:
the same path as `send`, routed through the mediators, onions and all, every state durable.
Then, unless `--no-direct`, the same count and concurrency from n0 to n1 over their channel
alone (what `bench channel` measures). Each phase reports its rate, p50/p99 latency (measured
in the payer), outcome counts and every process's CPU time per payment (from /proc), the
first answer to "where does the time go"; `--profile-dir` adds each node's cProfile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from p2pchan.core.payment.fees import default_fee_cap
from p2pchan.errors import UserError
from p2pchan.net.rpc_client import RpcError
from p2pchan_cli.bench_l1 import machine_description
from p2pchan_cli.bench_network import (
    BenchNetwork,
    BenchNode,
    bench_network,
    cpu_snapshot,
    cpu_spent,
    load_average,
)
from p2pchan_cli.bench_progress import ProgressLine

BLOCK_TIME = 0.5
FEE_BASE = 1  # the nodes' default forwarding policy, given explicitly so the figures say it
FEE_PPM = 100
ROUTE_TIMEOUT = 90.0  # until the payer's graph holds the line (a few blocks and gossip ticks)
QUIESCENT_TIMEOUT = 60.0
MAX_PER_DIRECTION = 483  # pending locks of one channel direction


@dataclass(frozen=True)
class MultihopBenchConfig:
    hops: int = 2
    payments: int = 20_000
    concurrency: int = 100
    amount: int = 1_000
    direct: bool = True
    profile_dir: Path | None = None  # write each node's cProfile statistics here


def channel_deposit(config: MultihopBenchConfig) -> int:
    """Enough for every payment of the run at the fee cap (twice on the first channel, which
    also carries the direct phase), plus room."""
    per_payment = config.amount + default_fee_cap(config.amount)
    phases = 2 if config.direct else 1
    return per_payment * config.payments * phases + 10_000


def phase_figures(
    sent: dict[str, Any], cpu: dict[str, float | None], seconds: float
) -> dict[str, Any]:
    """One phase's figures from the payer's `debug_send_many` answer, the CPU seconds each
    process spent in the phase and its wall time. The rate counts succeeded payments only."""
    succeeded = int(sent["succeeded"])
    return {
        "payments": int(sent["count"]),
        "succeeded": succeeded,
        "failed": int(sent["failed"]),
        "pending": int(sent["pending"]),
        "seconds": round(seconds, 3),
        "payments_per_s": round(succeeded / seconds) if seconds > 0 else None,
        "p50_ms": _rounded(sent.get("p50_ms")),
        "p99_ms": _rounded(sent.get("p99_ms")),
        "cpu_s": {name: _rounded(used, 3) for name, used in cpu.items()},
        "cpu_us_per_payment": {
            name: round(used / succeeded * 1e6) if used is not None and succeeded else None
            for name, used in cpu.items()
        },
    }


def _rounded(value: Any, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def ratio(multihop: dict[str, Any], direct: dict[str, Any] | None) -> float | None:
    """Multi-hop payments per second over direct ones (None without both)."""
    if direct is None or not multihop["payments_per_s"] or not direct["payments_per_s"]:
        return None
    return round(float(multihop["payments_per_s"]) / float(direct["payments_per_s"]), 3)


async def _build_line(
    network: BenchNetwork, config: MultihopBenchConfig, progress: ProgressLine
) -> tuple[list[BenchNode], list[str]]:
    count = config.hops + 1
    progress.show(f"starting layer 1 and {count} nodes")
    await network.start_l1(BLOCK_TIME)
    fees = ("--fee-base", str(FEE_BASE), "--fee-ppm", str(FEE_PPM))
    if config.profile_dir is not None:
        config.profile_dir.mkdir(parents=True, exist_ok=True)
    nodes = []
    for index in range(count):
        name = f"n{index}"
        profile = []
        if config.profile_dir is not None:
            profile = ["--profile", str(config.profile_dir.resolve() / f"{name}.prof")]
        nodes.append(network.add_node(name, "--dev", *fees, *profile))
    await network.start_nodes(nodes, lambda ready: progress.show(f"{ready}/{count} nodes ready"))
    deposit = channel_deposit(config)
    progress.show(f"funding and opening {config.hops} channels")
    await network.fund({node.node_id: deposit + 1_000_000 for node in nodes[:-1]})
    channel_ids: list[str] = [""] * config.hops

    async def open_one(index: int) -> None:
        await network.connect(nodes[index], nodes[index + 1])
        channel_ids[index] = await network.open_channel(nodes[index], nodes[index + 1], deposit)

    async with trio.open_nursery() as nursery:
        for index in range(config.hops):
            nursery.start_soon(open_one, index)
    return nodes, channel_ids


async def _wait_for_route(
    payer: BenchNode, payee: BenchNode, config: MultihopBenchConfig, progress: ProgressLine
) -> dict[str, Any]:
    """`route` to the payee once the payer's graph holds every channel of the line."""
    progress.show("waiting for the payer's graph to hold the line (gossip)")
    with trio.move_on_after(ROUTE_TIMEOUT):
        while True:
            graph = await payer.call("graph")
            if len(graph["channels"]) >= config.hops:
                try:
                    route = await payer.call(
                        "route", {"node_id": payee.node_id, "amount": config.amount}
                    )
                except RpcError:
                    route = None  # an update not here yet
                if route is not None and len(route["hops"]) == config.hops:
                    return dict(route)
            await trio.sleep(0.2)
    raise UserError(
        f"after {ROUTE_TIMEOUT:g} s the payer still has no {config.hops}-hop route to the payee"
    )


async def _quiescent(nodes: list[BenchNode]) -> list[dict[str, Any]]:
    """Every node's channels once no lock is pending anywhere (the last unlocks acked)."""
    with trio.move_on_after(QUIESCENT_TIMEOUT):
        while True:
            views = [await node.call("channels") for node in nodes]
            if not any(channel["pending_locks"] for view in views for channel in view):
                return [channel for view in views for channel in view]
            await trio.sleep(0.1)
    raise UserError(f"locks still pending {QUIESCENT_TIMEOUT:g} s after the run")


async def _phase(
    network: BenchNetwork,
    payer: BenchNode,
    payee: BenchNode,
    config: MultihopBenchConfig,
    progress: ProgressLine,
    label: str,
) -> dict[str, Any]:
    """One `debug_send_many` run, with every process's CPU time around it."""
    progress.show(f"{label}: {config.payments} payments, {config.concurrency} in flight")
    before = cpu_snapshot(network.children)
    started = time.perf_counter()
    sent = await payer.call(
        "debug_send_many",
        {
            "node_id": payee.node_id,
            "amount": config.amount,
            "count": config.payments,
            "concurrency": config.concurrency,
        },
    )
    seconds = time.perf_counter() - started
    cpu = cpu_spent(before, cpu_snapshot(network.children))
    progress.show(f"{label}: waiting for the last unlocks")
    await _quiescent(network.nodes)
    return phase_figures(sent, cpu, seconds)


def _check_books(channels: list[dict[str, Any]]) -> None:
    for channel in channels:
        if channel["local_balance"] + channel["remote_balance"] != channel["capacity"]:
            raise UserError(f"channel {channel['channel_id']} does not add up after the run")


async def run_multihop_bench(
    config: MultihopBenchConfig, progress: ProgressLine | None = None
) -> dict[str, Any]:
    progress = progress or ProgressLine(enabled=False)
    load_at_start = load_average()
    async with bench_network("p2pchan-bench-multihop-") as network:
        nodes, channel_ids = await _build_line(network, config, progress)
        payer, payee = nodes[0], nodes[-1]
        route = await _wait_for_route(payer, payee, config, progress)
        multihop = await _phase(network, payer, payee, config, progress, "multi-hop")
        received = {c["channel_id"]: c for c in await payee.call("channels")}[channel_ids[-1]]
        expected = multihop["succeeded"] * config.amount
        if received["local_balance"] != expected:
            raise UserError(
                f"the payee holds {received['local_balance']} after the run, not the "
                f"{expected} its {multihop['succeeded']} succeeded payments brought"
            )
        direct = None
        if config.direct:
            direct = await _phase(network, payer, nodes[1], config, progress, "direct")
        _check_books(await _quiescent(network.nodes))
        progress.show("stopping")
    return {
        "hops": config.hops,
        "nodes": len(nodes),
        "payments": config.payments,
        "concurrency": config.concurrency,
        "amount": config.amount,
        "route_fee": route["fee"],
        "fee_policy": {"base": FEE_BASE, "ppm": FEE_PPM},
        "multihop": multihop,
        "direct": direct,
        "ratio": ratio(multihop, direct),
        "load_average_1m_at_start": load_at_start,
        "machine": machine_description(),
    }
