"""`p2pchan bench ...`: benchmarks against real processes (results go in docs/BENCHMARKS.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import click

from p2pchan.core.routing.route import MAX_HOPS
from p2pchan.l1.plasma_state import MIN_CHALLENGE_PERIOD
from p2pchan_cli.bench_channel import ChannelBenchConfig, run_channel_bench
from p2pchan_cli.bench_gossip import GossipBenchConfig, run_gossip_bench
from p2pchan_cli.bench_l1 import L1BenchConfig, run_l1_bench
from p2pchan_cli.bench_multihop import MAX_PER_DIRECTION, MultihopBenchConfig, run_multihop_bench
from p2pchan_cli.bench_pathfind import PathfindBenchConfig, run_pathfind_bench
from p2pchan_cli.bench_plasma import PlasmaBenchConfig, run_plasma_bench
from p2pchan_cli.bench_plasma_exit import MassExitConfig, run_mass_exit_bench
from p2pchan_cli.bench_progress import ProgressLine
from p2pchan_cli.bench_restart import RestartBenchConfig, run_restart_bench
from p2pchan_cli.bench_topology import MIN_NODES, max_channels
from p2pchan_cli.bench_transport import TransportBenchConfig, run_transport_bench
from p2pchan_cli.common import emit, global_options, run
from p2pchan_cli.params import Command


def _with_progress(
    ctx: click.Context, main: Callable[[ProgressLine], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """Run a benchmark that draws a progress line (on a terminal), erased however it ends."""
    progress = ProgressLine()
    try:
        return run(ctx, lambda: main(progress))
    finally:
        progress.clear()


@click.group()
def bench() -> None:
    """Measure throughput and latency on this machine."""


bench.command_class = Command


@bench.command("l1")
@global_options
@click.option(
    "--transactions", type=click.IntRange(1, 1_000_000), default=20_000, show_default=True
)
@click.option("--senders", type=click.IntRange(1, 4096), default=32, show_default=True)
@click.option("--connections", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--block-time", type=click.FloatRange(min=0.01), default=0.1, show_default=True)
@click.pass_context
def bench_l1(
    ctx: click.Context, transactions: int, senders: int, connections: int, block_time: float
) -> None:
    """Layer-1 transactions per second, durably.

    Signed transfers verified and included per second, the block log fsynced every block.

    \b
    Example:
      p2pchan bench l1 --transactions 5000 --json
    """
    config = L1BenchConfig(transactions, senders, connections, block_time)
    emit(ctx, run(ctx, lambda: run_l1_bench(config)))


@bench.command("transport")
@global_options
@click.option("--messages", type=click.IntRange(1, 10_000_000), default=200_000, show_default=True)
@click.option(
    "--size",
    type=click.IntRange(0, 60_000),
    default=32,
    show_default=True,
    help="Padding bytes per message.",
)
@click.option("--handshakes", type=click.IntRange(1, 100_000), default=200, show_default=True)
@click.pass_context
def bench_transport(ctx: click.Context, messages: int, size: int, handshakes: int) -> None:
    """Encrypted messages per second, and handshake latency.

    Between two node processes over the Noise transport.

    \b
    Example:
      p2pchan bench transport --messages 50000
    """
    config = TransportBenchConfig(messages, size, handshakes)
    emit(ctx, run(ctx, lambda: run_transport_bench(config)))


@bench.command("channel")
@global_options
@click.option("--payments", type=click.IntRange(1, 10_000_000), default=20_000, show_default=True)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 966),
    default=100,
    show_default=True,
    help="Payments in flight (over 483: split between both directions).",
)
@click.option(
    "--profile-dir",
    type=click.Path(path_type=Path, file_okay=False),
    hidden=True,
    help="Profile both nodes (cProfile) into this directory.",
)
@click.pass_context
def bench_channel(
    ctx: click.Context, payments: int, concurrency: int, profile_dir: Path | None
) -> None:
    """Payments per second and latency over one channel.

    Between two node processes, every state durable.

    \b
    Example:
      p2pchan bench channel --payments 20000 --concurrency 100
    """
    config = ChannelBenchConfig(payments, concurrency, profile_dir=profile_dir)
    emit(ctx, run(ctx, lambda: run_channel_bench(config)))


@bench.command("restart")
@global_options
@click.option("--payments", type=click.IntRange(1, 100_000_000), default=100_000, show_default=True)
@click.pass_context
def bench_restart(ctx: click.Context, payments: int) -> None:
    """Restart time and memory of a node after N payments.

    Two nodes make N payments (483 in flight); the payer is killed with SIGKILL and started
    again: the time to its node.json and to its first payment, its memory before and after,
    how long `payments --limit 20` takes then, and each node's database bytes per payment;
    the same restart before any payment (fresh_*) for comparison.

    \b
    Example:
      p2pchan bench restart --payments 1000000 --json
    """
    config = RestartBenchConfig(payments)
    emit(ctx, run(ctx, lambda: run_restart_bench(config)))


@bench.command("pathfind")
@global_options
@click.option("--nodes", type=click.IntRange(100, 1_000_000), default=15_000, show_default=True)
@click.option("--channels", type=click.IntRange(100, 10_000_000), default=60_000, show_default=True)
@click.option("--queries", type=click.IntRange(1, 100_000), default=200, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--engine",
    type=click.Choice(["bounds", "plain"]),
    default="bounds",
    show_default=True,
    help="plain: the pure-Python search without numpy/scipy bounds, for comparison.",
)
@click.pass_context
def bench_pathfind(
    ctx: click.Context,
    nodes: int,
    channels: int,
    queries: int,
    seed: int,
    engine: str,
) -> None:
    """Route queries on a Lightning-sized graph: latency per query.

    A synthetic graph (15,000 nodes, 60,000 channels by default) built from a seed; the build
    time is reported too.

    \b
    Example:
      p2pchan bench pathfind --queries 50 --json
    """
    if channels < nodes:
        raise click.BadParameter("at least as many channels as nodes", param_hint="--channels")
    config = PathfindBenchConfig(nodes, channels, queries, seed, engine)
    emit(ctx, run_pathfind_bench(config))


@bench.command("plasma")
@global_options
@click.option(
    "--transactions", type=click.IntRange(1, 1_000_000), default=20_000, show_default=True
)
@click.option("--connections", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--block-interval",
    type=click.FloatRange(min=0.01),
    default=0.5,
    show_default=True,
    help="The operator's seconds between blocks.",
)
@click.option(
    "--exits",
    type=click.IntRange(0, 1_000_000),
    default=2_000,
    show_default=True,
    help="Exits for the mass-exit measurement on the pure contract (0 skips it).",
)
@click.option(
    "--profile",
    type=click.Path(path_type=Path, dir_okay=False),
    hidden=True,
    help="Profile the operator (cProfile) into this file.",
)
@click.pass_context
def bench_plasma(
    ctx: click.Context,
    transactions: int,
    connections: int,
    block_interval: float,
    exits: int,
    profile: Path | None,
) -> None:
    """Plasma: signed transactions one operator commits per second.

    With its store syncing; also a watcher's checking pace, and a mass exit's pace per
    layer-1 block.

    \b
    Example:
      p2pchan bench plasma --transactions 20000 --json
    """
    config = PlasmaBenchConfig(
        transactions, connections, block_interval=block_interval, exits=exits, profile=profile
    )
    emit(ctx, run(ctx, lambda: run_plasma_bench(config)))


@bench.command("plasma-exit")
@global_options
@click.option(
    "--nodes",
    type=click.IntRange(2, 64),
    default=6,
    show_default=True,
    help="Users, each a real node process (two outputs each).",
)
@click.option("--block-time", type=click.FloatRange(min=0.05), default=1.0, show_default=True)
@click.option(
    "--challenge-period",
    type=click.IntRange(MIN_CHALLENGE_PERIOD, 10_000),
    default=MIN_CHALLENGE_PERIOD,
    show_default=True,
)
@click.option("--withhold-timeout", type=click.IntRange(1, 100), default=2, show_default=True)
@click.option(
    "--pure-exits",
    type=click.IntRange(0, 1_000_000),
    default=5_000,
    show_default=True,
    help="Exits for the pace on the pure contract (0 skips it).",
)
@click.pass_context
def bench_plasma_exit(
    ctx: click.Context,
    nodes: int,
    block_time: float,
    challenge_period: int,
    withhold_timeout: int,
    pure_exits: int,
) -> None:
    """Plasma mass exit: every user's node exits at once after a withheld block.

    Exits started and finalized per layer-1 block with real processes, every user paid what
    it owned; and, from the pure contract's pace, the largest mass exit that starts within
    one challenge period.

    \b
    Example:
      p2pchan bench plasma-exit --nodes 6 --block-time 1 --json
    """
    if withhold_timeout >= challenge_period:
        raise click.BadParameter("below the challenge period", param_hint="--withhold-timeout")
    config = MassExitConfig(nodes, block_time, challenge_period, withhold_timeout, pure_exits)
    emit(ctx, run(ctx, lambda: run_mass_exit_bench(config)))


@bench.command("multihop")
@global_options
@click.option(
    "--hops",
    type=click.IntRange(1, MAX_HOPS),
    default=2,
    show_default=True,
    help="Channels between payer and payee (hops + 1 node processes in a line).",
)
@click.option("--payments", type=click.IntRange(1, 10_000_000), default=20_000, show_default=True)
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_PER_DIRECTION),
    default=100,
    show_default=True,
    help="Payments in flight (one direction: at most its lock limit).",
)
@click.option(
    "--direct/--no-direct",
    default=True,
    show_default=True,
    help="Also measure the same payments over the payer's own channel, for the ratio.",
)
@click.option(
    "--profile-dir",
    type=click.Path(path_type=Path, file_okay=False),
    hidden=True,
    help="Profile every node (cProfile) into this directory.",
)
@click.pass_context
def bench_multihop(
    ctx: click.Context,
    hops: int,
    payments: int,
    concurrency: int,
    direct: bool,
    profile_dir: Path | None,
) -> None:
    """Payments per second and latency across hops.

    Between node processes in a line, routed over the graph they learnt by gossip, every
    state durable; in the same run, the same payments over one channel, for the ratio.

    \b
    Example:
      p2pchan bench multihop --hops 2 --payments 20000 --json
    """
    config = MultihopBenchConfig(
        hops, payments, concurrency, direct=direct, profile_dir=profile_dir
    )
    emit(ctx, _with_progress(ctx, lambda progress: run_multihop_bench(config, progress)))


@bench.command("gossip")
@global_options
@click.option("--nodes", type=click.IntRange(MIN_NODES, 200), default=50, show_default=True)
@click.option(
    "--channels",
    type=click.IntRange(MIN_NODES),
    default=None,
    help="Channels: a ring through every node plus random chords  [default: twice --nodes]",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Draws the chords.")
@click.option(
    "--deadline",
    type=click.FloatRange(min=1),
    default=300.0,
    show_default=True,
    help="Seconds the whole run may take, start-up included.",
)
@click.option(
    "--workdir",
    type=click.Path(path_type=Path, file_okay=False),
    hidden=True,
    help="Run in this new directory and keep it (the nodes' logs), to look into a run.",
)
@click.pass_context
def bench_gossip(
    ctx: click.Context,
    nodes: int,
    channels: int | None,
    seed: int,
    deadline: float,
    workdir: Path | None,
) -> None:
    """Seconds until every node knows every channel and update.

    Node processes joined by channels opened at once on one layer 1; from the last channel
    usable until every node has stored every announcement and update. Also per message, how
    long it took to reach the last node, and each node's traffic and memory.

    \b
    Example:
      p2pchan bench gossip --nodes 50 --json
    """
    count = min(2 * nodes, max_channels(nodes)) if channels is None else channels
    if not nodes <= count <= max_channels(nodes):
        raise click.BadParameter(
            f"{nodes} nodes take from {nodes} to {max_channels(nodes)} channels",
            param_hint="--channels",
        )
    config = GossipBenchConfig(nodes, count, seed, deadline, workdir)
    emit(ctx, _with_progress(ctx, lambda progress: run_gossip_bench(config, progress)))
