"""`p2pchan pay-batch FILE [--concurrency N]`: many payments from a JSON-lines file.

Each line is `{"to": NODE_ID, "amount": N}` or `{"invoice": "p2pc1..."}`. Payments run N at a
time over one RPC connection, each waiting until final; a progress bar shows on a terminal. The
summary is `count, succeeded, failed, seconds, payments_per_s, p50_ms, p99_ms`. A payment the
node refuses counts as failed and the batch goes on; if the node goes away, the batch stops at
once with a clear error (never hangs).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import click
import trio
from rich.progress import Progress

from p2pchan.errors import UserError
from p2pchan.net.rpc_client import RpcClient, RpcError
from p2pchan.types import KEY_SIZE, parse_amount, parse_hex
from p2pchan_cli.common import emit, global_options, run
from p2pchan_cli.node_commands import require_datadir


def read_batch(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """The (method, params) of each payment in the file; a bad line is a one-line error."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error}") from None
    payments: list[tuple[str, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError as error:
            raise UserError(f"{path}:{number}: not JSON: {error}") from None
        if not isinstance(entry, dict):
            raise UserError(f"{path}:{number}: each line must be a JSON object")
        if set(entry) == {"invoice"} and isinstance(entry["invoice"], str):
            payments.append(("pay", {"invoice": entry["invoice"]}))
        elif set(entry) == {"to", "amount"}:
            parse_hex(str(entry["to"]), size=KEY_SIZE, what=f"{path}:{number}: to")
            amount = parse_amount(entry["amount"], f"{path}:{number}: amount")
            payments.append(("send", {"node_id": entry["to"], "amount": amount}))
        else:
            raise UserError(f'{path}:{number}: expected {{"to", "amount"}} or {{"invoice"}}')
    return payments


async def run_batch(
    datadir: Path, payments: list[tuple[str, dict[str, Any]]], concurrency: int, show: bool
) -> dict[str, Any]:
    latencies: list[float] = []
    counts = {"succeeded": 0, "failed": 0, "pending": 0}
    queue = iter(payments)
    started = time.perf_counter()
    with Progress(disable=not show, transient=True) as progress:
        task = progress.add_task("paying", total=len(payments))
        async with RpcClient.connect(datadir) as rpc, trio.open_nursery() as nursery:
            gone: list[str] = []

            async def worker() -> None:
                for method, params in queue:
                    begun = time.perf_counter()
                    try:
                        result = await rpc.call(method, params)
                        counts[result["status"]] += 1
                    except RpcError as error:
                        if error.rpc_code is None:  # the connection is gone: stop everything
                            gone.append(str(error))
                            nursery.cancel_scope.cancel()
                            return
                        counts["failed"] += 1
                    latencies.append(time.perf_counter() - begun)
                    progress.advance(task)

            for _ in range(max(1, min(concurrency, len(payments)))):
                nursery.start_soon(worker)
        if gone:
            done = sum(counts.values())
            raise UserError(
                f"the node went away after {done} of {len(payments)} payments: {gone[0]}"
            )
    seconds = time.perf_counter() - started
    latencies.sort()
    return {
        "count": len(payments),
        "succeeded": counts["succeeded"],
        "failed": counts["failed"],
        "pending": counts["pending"],
        "seconds": round(seconds, 3),
        "payments_per_s": round(len(payments) / seconds, 1) if seconds else None,
        "p50_ms": round(statistics.median(latencies) * 1000, 3) if latencies else None,
        "p99_ms": round(latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1000, 3)
        if latencies
        else None,
    }


@click.command("pay-batch")
@global_options
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--concurrency", type=click.IntRange(1, 10_000), default=16, show_default=True)
@click.pass_context
def pay_batch(ctx: click.Context, file: Path, concurrency: int) -> None:
    """Make every payment in FILE (JSON lines), CONCURRENCY at a time; print a summary."""
    datadir = require_datadir(ctx)
    payments = read_batch(file)
    show = sys.stderr.isatty()
    summary = run(ctx, lambda: run_batch(datadir, payments, concurrency, show))
    emit(ctx, summary)
    if summary["failed"] or summary["pending"]:
        click.echo(
            f"error: {summary['failed']} failed and {summary['pending']} pending of "
            f"{summary['count']} payments",
            err=True,
        )
        sys.exit(1)
