"""`p2pchan chaos`: a chaos run from the command line, its report, and its exit status.

The report gives the seed (and the command that replays the run), faults by kind, payments
attempted / succeeded / failed, and each invariant `ok` or the details of its violation; the
exit status is 1 on any violation. The run's directory (logs of every process) is removed
after a clean run and kept, with its path in the report, after a violation or an error.
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from p2pchan.errors import UserError
from p2pchan_cli.chaos.runner import ChaosOptions, ChaosResult, ChaosRun
from p2pchan_cli.chaos.schedule import parse_fault_list
from p2pchan_cli.common import emit, global_options, run, settings
from p2pchan_cli.localnet.supervisor import until_signalled
from p2pchan_cli.localnet.topology import load_topology
from p2pchan_cli.params import SECONDS, Command, CountType

MIN_DURATION = 5.0
MAX_REASONS = 5


def replay_command(options: ChaosOptions, topology_name: str, faults: str) -> str:
    command = (
        f"p2pchan chaos --topology {topology_name} --duration {options.duration:g} "
        f"--seed {options.seed} --faults {faults} --rate {options.rate:g} "
        f"--fault-interval {options.fault_interval:g} "
        f"--block-time {options.topology.block_time:g}"
    )
    return command + (" --neighbours-only" if options.neighbours_only else "")


def report_of(result: ChaosResult, replay: str, kept: Path | None) -> dict[str, Any]:
    return {
        "seed": result.seed,
        "replay": replay,
        "faults": result.faults,
        "faults_skipped": result.skipped,
        "payments": result.payments,
        "invariants": result.verdict.invariants,
        "violations": result.verdict.violations,
        "attackers": result.attackers,
        "fault_errors": result.fault_errors,
        "seconds": round(result.seconds, 1),
        "phases": result.phases,
        "dir": str(kept) if kept is not None else None,
    }


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))


def report_view(report: dict[str, Any]) -> str:
    payments = report["payments"]
    lines = [
        f"chaos run, seed {report['seed']}, {report['seconds']} s",
        f"faults: {_counts(report['faults']) or 'none'}"
        + (f" (skipped: {_counts(report['faults_skipped'])})" if report["faults_skipped"] else ""),
        f"payments: {payments['attempted']} attempted, {payments['succeeded']} succeeded, "
        f"{payments['failed']} failed, {payments['pending']} without a final answer in time; "
        f"{payments['multi_hop']} of those succeeded crossed more than one hop",
        *(
            f"  failed {count}x: {reason}"
            for reason, count in list(payments["failure_reasons"].items())[:MAX_REASONS]
        ),
        f"attackers (excluded from 2-4): {', '.join(report['attackers']) or 'none'}",
        "invariants:",
        *(f"  {name}: {verdict}" for name, verdict in report["invariants"].items()),
    ]
    if report["violations"]:
        lines.append(f"{len(report['violations'])} violations; logs kept in {report['dir']}")
    lines.append(f"replay: {report['replay']}")
    return "\n".join(lines)


@click.command(cls=Command)
@global_options
@click.option("--topology", "topology_name", required=True, metavar="NAME|FILE")
@click.option("--duration", type=SECONDS, required=True, help="Seconds of faults and payments.")
@click.option("--seed", type=CountType(0, 2**63 - 1), default=None, help="Default: a fresh one.")
@click.option(
    "--faults",
    default="all",
    show_default=True,
    metavar="LIST",
    help="Kinds, optionally weighted: kill, pause, delay, drop, reset, partition, l1-restart, "
    "cheat, misbehave; e.g. kill=5,pause,reset.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True, max=10_000),
    default=5.0,
    show_default=True,
    help="Payments per second.",
)
@click.option(
    "--fault-interval",
    type=SECONDS,
    default=2.0,
    show_default=True,
    help="Mean seconds between faults.",
)
@click.option(
    "--neighbours-only", is_flag=True, help="Pay only between channel partners (no routing)."
)
@click.option(
    "--block-time",
    type=click.FloatRange(min=0.1, max=10),
    default=None,
    help="Seconds between layer-1 blocks (default: the topology's). Longer blocks give slow "
    "restarts on a loaded machine more time: a node may be away two thirds of 10 blocks.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Keep the run's processes' data and logs here (default: a temporary dir).",
)
@click.pass_context
def chaos(
    ctx: click.Context,
    topology_name: str,
    duration: float,
    seed: int | None,
    faults: str,
    rate: float,
    fault_interval: float,
    neighbours_only: bool,
    block_time: float | None,
    directory: Path | None,
) -> None:
    """Random payments while faults are injected; then heal, settle, check the invariants.

    Kills and restarts nodes, pauses them past the keep-alive, delays, drops, resets and
    partitions links through per-link proxies, restarts layer 1, closes with a cheat while
    the partner is paused, and switches attack modes on. Exit 1 on any violation; the same
    seed replays the same payments and faults.

    \b
    Example:
      p2pchan chaos --topology ring5 --duration 60 --seed 42
      p2pchan chaos --topology hub10 --duration 600 --faults kill=5,pause,reset --json
    """
    if duration < MIN_DURATION:
        raise click.UsageError(f"--duration must be at least {MIN_DURATION:g} s", ctx)
    topology = load_topology(topology_name)
    if block_time is not None:
        topology = replace(topology, block_time=block_time)
    try:
        weights = parse_fault_list(faults)
    except UserError as error:
        raise click.UsageError(str(error), ctx) from None
    chosen_seed = seed if seed is not None else secrets.randbelow(2**31)
    if directory is not None:
        directory = directory.absolute()
        if directory.exists() and any(directory.iterdir()):
            raise UserError(f"{directory} is not empty: choose another --dir")
        directory.mkdir(parents=True, exist_ok=True)
        workdir = directory
    else:
        workdir = Path(tempfile.mkdtemp(prefix="p2pchan-chaos-"))
    options = ChaosOptions(
        topology,
        duration,
        chosen_seed,
        weights,
        workdir,
        rate=rate,
        fault_interval=fault_interval,
        neighbours_only=neighbours_only,
    )
    show = sys.stderr.isatty() and not settings(ctx).json
    console = Console(stderr=True)

    def progress(text: str) -> None:
        if show:
            console.print(f"[dim]{text}[/]")

    try:
        result = run(ctx, lambda: until_signalled(ChaosRun(options, progress).run))
    except BaseException:
        click.echo(f"chaos run failed (seed {chosen_seed}); logs kept in {workdir}", err=True)
        raise
    kept = workdir if (result.verdict.violations or directory is not None) else None
    if kept is None:
        shutil.rmtree(workdir, ignore_errors=True)
    report = report_of(result, replay_command(options, topology_name, faults), kept)
    emit(ctx, report, lambda _width: report_view(report))
    if result.verdict.violations:
        sys.exit(1)
