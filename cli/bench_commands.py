"""`p2pchan bench ...`: benchmarks against real processes (results go in docs/BENCHMARKS.md)."""

from __future__ import annotations

from pathlib import Path

import click

from p2pchan.l1.plasma_state import MIN_CHALLENGE_PERIOD
from p2pchan_cli.bench_channel import ChannelBenchConfig, run_channel_bench
from p2pchan_cli.bench_l1 import L1BenchConfig, run_l1_bench
from p2pchan_cli.bench_pathfind import PathfindBenchConfig, run_pathfind_bench
from p2pchan_cli.bench_plasma import PlasmaBenchConfig, run_plasma_bench
from p2pchan_cli.bench_plasma_exit import MassExitConfig, run_mass_exit_bench
from p2pchan_cli.bench_transport import TransportBenchConfig, run_transport_bench
from p2pchan_cli.common import emit, global_options, run
from p2pchan_cli.params import Command


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
