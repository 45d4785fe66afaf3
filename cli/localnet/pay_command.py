"""`p2pchan localnet pay`: payments across a running local network, from an activity file or a
seeded random plan; live progress on a terminal, a summary, and one CSV row per payment.

Everything is checked (the network is running, the file is good, the options fit) before the
first payment; failed payments are results, not errors, so the command exits 0 once the plan
has run, whatever share of it failed (the summary says why they failed).
"""

from __future__ import annotations

import csv
import secrets
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from p2pchan.errors import UserError
from p2pchan_cli.common import emit, global_options, run, settings
from p2pchan_cli.localnet.activity import (
    CSV_COLUMNS,
    ActivityError,
    PaymentOutcome,
    PlannedPayment,
    csv_row,
    default_max_amount,
    flows_plan,
    parse_activity,
    payment_pairs,
    random_plan,
    summarize,
)
from p2pchan_cli.localnet.commands import DIR_OPTION, localnet
from p2pchan_cli.localnet.driver import run_plan
from p2pchan_cli.localnet.state import NetworkState, load_state
from p2pchan_cli.params import AMOUNT, SECONDS, Command, CountType


def plan_for(
    state: NetworkState,
    activity: Path | None,
    random_pairs: bool,
    rate: float,
    duration: float,
    seed: int,
    neighbours_only: bool,
    max_amount: int | None,
) -> list[PlannedPayment]:
    if activity is not None:
        try:
            text = activity.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise ActivityError(f"cannot read activity {activity}: {error}") from None
        aliases = {entry.alias for entry in state.nodes}
        return flows_plan(parse_activity(text, str(activity), aliases))
    pairs = payment_pairs(state.topology, neighbours_only=neighbours_only)
    return random_plan(
        seed, rate, duration, pairs, max_amount or default_max_amount(state.topology)
    )


def progress_bar(show: bool) -> Progress:
    return Progress(
        TextColumn("paying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "[green]{task.fields[succeeded]} succeeded[/] [red]{task.fields[failed]} failed[/] "
            "{task.fields[pending]} pending"
        ),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=True,
    )


async def run_activity(
    state: NetworkState,
    plan: list[PlannedPayment],
    concurrency: int,
    payment_timeout: float,
    show: bool,
) -> tuple[list[PaymentOutcome], float]:
    datadirs = {entry.alias: entry.datadir for entry in state.nodes}
    node_ids = {entry.alias: entry.node_id for entry in state.nodes}
    counts = {"succeeded": 0, "failed": 0, "pending": 0}
    with progress_bar(show) as progress:
        task = progress.add_task("paying", total=len(plan), **counts)

        def advance(outcome: PaymentOutcome) -> None:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
            progress.update(task, advance=1, **counts)

        return await run_plan(
            plan,
            datadirs,
            node_ids,
            concurrency=concurrency,
            payment_timeout=payment_timeout,
            on_outcome=advance,
        )


def summary_view(summary: dict[str, Any]) -> str:
    lines = [
        f"{summary['attempted']} payments in {summary['seconds']:.1f} s: "
        f"{summary['succeeded']} succeeded, {summary['failed']} failed, "
        f"{summary['pending']} pending ({summary['multi_hop']} succeeded across hops); "
        f"{summary['payments_per_s']} succeeded per second, "
        f"p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms"
        + (f" (seed {summary['seed']})" if summary["seed"] is not None else ""),
    ]
    for reason, count in list(summary["failure_reasons"].items())[:5]:
        lines.append(f"  failed {count} times: {reason}")
    lines.append("")
    width = max(len(alias) for alias in summary["nodes"])
    lines.append(f"{'node':<{width}} {'sent':>12} {'received':>12} {'fees paid':>10} {'earned':>8}")
    for alias, figures in summary["nodes"].items():
        lines.append(
            f"{alias:<{width}} {figures['sent']:>12} {figures['received']:>12} "
            f"{figures['fees_paid']:>10} {figures['fees_earned']:>8}"
        )
    return "\n".join(lines)


def write_csv(path: Path, outcomes: list[PaymentOutcome]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for outcome in outcomes:
            writer.writerow(csv_row(outcome))


@localnet.command(cls=Command)
@global_options
@DIR_OPTION
@click.option(
    "--activity",
    type=click.Path(path_type=Path, dir_okay=False),
    help='JSON lines {"from": A, "to": B, "amount": N, "interval": S, "count": N}.',
)
@click.option("--random", "random_pairs", is_flag=True, help="Random pairs and sizes from --seed.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True, max=10_000),
    default=5.0,
    show_default=True,
    help="Random payments/s.",
)
@click.option("--duration", type=SECONDS, default=10.0, show_default=True, help="Seconds (random).")
@click.option("--seed", type=CountType(0, 2**63 - 1), default=None, help="Default: a fresh one.")
@click.option(
    "--neighbours-only",
    is_flag=True,
    help="Random payments only between channel partners (no routing needed).",
)
@click.option("--max-amount", type=AMOUNT, default=None, help="Largest random payment.")
@click.option(
    "--concurrency", type=CountType(1, 10_000), default=32, show_default=True, help="In flight."
)
@click.option(
    "--payment-timeout",
    type=SECONDS,
    default=30.0,
    show_default=True,
    help="Seconds a payment may take before it counts as pending.",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write one row per payment here.",
)
@click.pass_context
def pay(
    ctx: click.Context,
    directory: Path,
    activity: Path | None,
    random_pairs: bool,
    rate: float,
    duration: float,
    seed: int | None,
    neighbours_only: bool,
    max_amount: int | None,
    concurrency: int,
    payment_timeout: float,
    csv_path: Path | None,
) -> None:
    """Drive payments across the whole network, concurrently; sum up.

    Defined flows (--activity FILE) or random ones (--random, sizes and pairs from --seed).
    Summary: attempted, succeeded, failed, pending, payments_per_s, p50_ms, p99_ms, failure
    reasons and per node sent/received/fees. Exit 0 once the plan has run.

    \b
    Example:
      p2pchan localnet pay --dir /tmp/ring --random --rate 20 --duration 30 --seed 7
      echo '{"from": "ann", "to": "ben", "amount": 100, "interval": 0.5, "count": 20}' > a.jsonl
      p2pchan localnet pay --dir /tmp/ring --activity a.jsonl --csv payments.csv
    """
    if (activity is None) == (not random_pairs):
        raise click.UsageError("give either --activity FILE or --random", ctx)
    state = load_state(directory.absolute())
    running = {process.name for process in state.running()}
    down = [entry.alias for entry in state.nodes if entry.alias not in running]
    if down:
        raise UserError(
            f"the network in {state.directory} is not running ({', '.join(down[:5])} down): "
            "`p2pchan localnet up` a new one"
        )
    chosen_seed = seed if seed is not None else secrets.randbelow(2**31)
    plan = plan_for(
        state, activity, random_pairs, rate, duration, chosen_seed, neighbours_only, max_amount
    )
    show = sys.stderr.isatty() and not settings(ctx).json
    outcomes, seconds = run(
        ctx, lambda: run_activity(state, plan, concurrency, payment_timeout, show)
    )
    aliases_by_id = {entry.node_id: entry.alias for entry in state.nodes}
    summary = {
        "seed": chosen_seed if random_pairs else None,
        **summarize(outcomes, seconds, aliases_by_id),
    }
    if csv_path is not None:
        write_csv(csv_path, outcomes)
    emit(ctx, summary, lambda _width: summary_view(summary))
