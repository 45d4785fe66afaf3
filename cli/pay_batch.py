"""`p2pchan pay-batch FILE [--concurrency N]`: many payments from a JSON-lines file.

Each line is `{"to": NODE_ID, "amount": N}` or `{"invoice": "p2pc1..."}`. The whole file is
checked before anything is paid: UTF-8 text, one JSON object per line, exactly those keys, a
node id of 64 hex digits, an amount that is a JSON integer from 1 to u64 (not `"10"`, not
`10.0`), an invoice that parses and is signed by its payee, no invoice twice, no payment to the
node itself. Every bad line is named with its number, one line each on stderr, and nothing is
paid.

Payments then run N at a time over one RPC connection, each waiting until final; a progress bar
on a terminal counts those that succeeded and failed. The summary is `count, succeeded, failed,
pending, seconds, payments_per_s, p50_ms, p99_ms` and `failure_reasons` (reason -> how many). A
payment the node refuses counts as failed and the batch goes on; if the node goes away, the
batch stops at once with a clear error (never hangs).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import trio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from p2pchan.core.invoice import parse_invoice
from p2pchan.errors import UserError
from p2pchan.net.rpc_client import RpcClient, RpcError
from p2pchan.types import positive_amount
from p2pchan_cli.common import call_node, emit, fail, global_options, node_datadir, run
from p2pchan_cli.params import CountType, command
from p2pchan_cli.views import batch_summary_view

Payment = tuple[str, dict[str, Any]]  # (RPC method, params)
MAX_ERRORS_SHOWN = 20
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class BadBatch(UserError):
    """Lines of a batch file that cannot be paid; `errors` has one message per line."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__(errors[0])
        self.errors = errors


@dataclass(frozen=True)
class BatchLine:
    number: int
    payee: str  # hex node id
    payment: Payment


def check_line(line: str, seen_invoices: dict[str, int], number: int) -> BatchLine:
    """One line as the payment it asks for; `UserError` saying what is wrong with it."""
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):
        raise UserError("not a JSON object (not valid JSON)") from None
    if not isinstance(entry, dict):
        raise UserError(f"not a JSON object (a {type(entry).__name__})")
    if set(entry) == {"invoice"}:
        text = entry["invoice"]
        if not isinstance(text, str):
            raise UserError("invoice must be a string")
        payee = parse_invoice(text).payee.hex()
        key = text.strip().lower()
        if key in seen_invoices:
            raise UserError(f"the same invoice as line {seen_invoices[key]}")
        seen_invoices[key] = number
        return BatchLine(number, payee, ("pay", {"invoice": text}))
    if set(entry) == {"to", "amount"}:
        to = entry["to"]
        if not isinstance(to, str) or len(to) != 64 or not HEX_DIGITS.issuperset(to):
            raise UserError(f"to must be a node id of 64 hex digits, got {json.dumps(to)}")
        amount = positive_amount(entry["amount"])
        return BatchLine(number, to.lower(), ("send", {"node_id": to.lower(), "amount": amount}))
    keys = ", ".join(sorted(entry)) or "none"
    raise UserError(f'expected the keys {{"to", "amount"}} or {{"invoice"}}, got {keys}')


def read_batch(path: Path) -> list[BatchLine]:
    """Every payment in the file, or `BadBatch` naming each bad line (nothing is paid then)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UserError(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x}); "
            "a batch file is JSON lines"
        ) from None
    payments: list[BatchLine] = []
    errors: list[str] = []
    seen_invoices: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            payments.append(check_line(line, seen_invoices, number))
        except UserError as error:
            errors.append(f"{path}:{number}: {error}")
    if errors:
        raise BadBatch(errors)
    if not payments:
        raise UserError(f"{path} holds no payments")
    return payments


def refuse_payments_to(us: str, path: Path, lines: list[BatchLine]) -> None:
    """`BadBatch` naming the lines that would pay this node itself."""
    ours = [
        f"{path}:{line.number}: that is this node's own id" for line in lines if line.payee == us
    ]
    if ours:
        raise BadBatch(ours)


def progress_bar(show: bool, console: Console | None = None) -> Progress:
    """The batch's progress on stderr: done of all, how many succeeded and failed, time."""
    return Progress(
        TextColumn("paying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "[green]{task.fields[succeeded]} succeeded[/] [red]{task.fields[failed]} failed"
        ),
        TimeElapsedColumn(),
        console=console or Console(stderr=True),
        disable=not show,
        transient=True,
    )


async def run_batch(
    datadir: Path, payments: list[Payment], concurrency: int, show: bool
) -> dict[str, Any]:
    latencies: list[float] = []
    counts = {"succeeded": 0, "failed": 0, "pending": 0}
    reasons: Counter[str] = Counter()
    queue = iter(payments)
    started = time.perf_counter()
    with progress_bar(show) as progress:
        task = progress.add_task("paying", total=len(payments), succeeded=0, failed=0)
        async with RpcClient.connect(datadir) as rpc, trio.open_nursery() as nursery:
            gone: list[str] = []

            async def worker() -> None:
                for method, params in queue:
                    begun = time.perf_counter()
                    try:
                        result = await rpc.call(method, params)
                        counts[result["status"]] += 1
                        if result["status"] == "failed":
                            reasons[result.get("error") or "no reason given"] += 1
                    except RpcError as error:
                        if error.rpc_code is None:  # the connection is gone: stop everything
                            gone.append(str(error))
                            nursery.cancel_scope.cancel()
                            return
                        counts["failed"] += 1
                        reasons[error.message] += 1
                    latencies.append(time.perf_counter() - begun)
                    progress.update(
                        task, advance=1, succeeded=counts["succeeded"], failed=counts["failed"]
                    )

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
        "failure_reasons": dict(reasons.most_common()),
    }


@command("pay-batch")
@global_options
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--concurrency",
    type=CountType(1, 10_000),
    default=16,
    show_default=True,
    help="Payments in flight at once.",
)
@click.pass_context
def pay_batch(ctx: click.Context, file: Path, concurrency: int) -> None:
    """Make every payment in a JSON-lines file; sum up.

    CONCURRENCY payments at a time. Each line is {"to": NODE_ID, "amount": N} or
    {"invoice": "p2pc1..."}. Every line is checked before anything is paid. Exit 1 if any
    payment failed.

    \b
    Example:
      printf '{"to": "%s", "amount": 5}\\n' $BOB $BOB > batch.jsonl
      p2pchan pay-batch batch.jsonl --concurrency 8
    """
    datadir = node_datadir(ctx)
    try:
        lines = read_batch(file)
        us = run(ctx, lambda: call_node(ctx, "info"))["node_id"]
        refuse_payments_to(us, file, lines)
    except BadBatch as bad:
        shown = bad.errors[:MAX_ERRORS_SHOWN]
        for message in shown[:-1]:
            click.echo(f"error: {message}", err=True)
        more = len(bad.errors) - len(shown)
        fail(shown[-1] + (f" (and {more} more bad lines)" if more else "") + "; nothing was paid")
    payments = [line.payment for line in lines]
    show = sys.stderr.isatty()
    summary = run(ctx, lambda: run_batch(datadir, payments, concurrency, show))
    emit(ctx, summary, lambda _width: batch_summary_view(summary))
    if summary["failed"] or summary["pending"]:
        reasons = summary["failure_reasons"]
        top = f"; most often: {next(iter(reasons))}" if reasons else ""
        fail(
            f"{summary['failed']} failed and {summary['pending']} pending of "
            f"{summary['count']} payments{top}"
        )
