"""`p2pchan open|deposit|channels|close|send|invoice|pay|payments|invoices`: channels and
payments on a running node, over its RPC socket."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.table import Table

from p2pchan.types import KEY_SIZE, parse_amount, parse_hex
from p2pchan_cli.common import EXIT_PENDING, emit, global_options, run, settings
from p2pchan_cli.node_commands import call_node


def _channel_table(channels: list[dict[str, Any]]) -> Table:
    table = Table("state", "capacity", "local", "remote", "locks")
    table.add_column("channel_id", min_width=64, no_wrap=True)
    table.add_column("peer", min_width=64, no_wrap=True)
    for c in channels:
        table.add_row(
            c["state"],
            str(c["capacity"]),
            str(c["local_balance"]),
            str(c["remote_balance"]),
            str(c["pending_locks"]),
            c["channel_id"],
            c["peer"],
        )
    return table


def _list_table(rows: list[dict[str, Any]], columns: list[str]) -> Table:
    table = Table(*columns)
    for row in rows:
        table.add_row(*(str(row.get(column, "")) for column in columns))
    return table


@click.command("open")
@global_options
@click.argument("node_id")
@click.argument("amount")
@click.option(
    "--settle-timeout",
    type=click.IntRange(20, 1_000_000),
    default=100,
    show_default=True,
    help="Blocks the partner has to dispute a close.",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until the channel is open and funded on layer 1.",
)
@click.pass_context
def open_channel(
    ctx: click.Context, node_id: str, amount: str, settle_timeout: int, wait: bool
) -> None:
    """Open a channel with NODE_ID (a connected peer) and deposit AMOUNT into it."""
    parse_hex(node_id, size=KEY_SIZE, what="NODE_ID")
    params = {
        "node_id": node_id,
        "amount": parse_amount(amount),
        "settle_timeout": settle_timeout,
        "wait": wait,
    }
    emit(ctx, run(ctx, lambda: call_node(ctx, "open", params)))


@click.command()
@global_options
@click.argument("channel_id")
@click.argument("total")
@click.pass_context
def deposit(ctx: click.Context, channel_id: str, total: str) -> None:
    """Raise our total deposit in CHANNEL_ID to TOTAL (waits until it is on layer 1)."""
    parse_hex(channel_id, size=32, what="CHANNEL_ID")
    params = {"channel_id": channel_id, "total": parse_amount(total)}
    emit(ctx, run(ctx, lambda: call_node(ctx, "deposit", params)))


@click.command()
@global_options
@click.pass_context
def channels(ctx: click.Context) -> None:
    """Every channel with its state and balances."""
    listed = run(ctx, lambda: call_node(ctx, "channels"))
    emit(
        ctx,
        listed,
        lambda console: console.print(_channel_table(listed) if listed else "no channels"),
    )


@click.command()
@global_options
@click.argument("channel_id")
@click.option("--force", is_flag=True, help="Close unilaterally on layer 1 (no partner needed).")
@click.option(
    "--cheat",
    is_flag=True,
    help="Dev nodes only, with --force: close without our own sent proofs (an attack).",
)
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until the channel is settled on layer 1.",
)
@click.pass_context
def close(ctx: click.Context, channel_id: str, force: bool, cheat: bool, wait: bool) -> None:
    """Close CHANNEL_ID: cooperatively when the partner agrees, else with --force."""
    parse_hex(channel_id, size=32, what="CHANNEL_ID")
    params = {"channel_id": channel_id, "force": force, "cheat": cheat, "wait": wait}
    emit(ctx, run(ctx, lambda: call_node(ctx, "close", params)))


def _emit_payment(ctx: click.Context, result: dict[str, Any]) -> None:
    emit(ctx, result)
    if result["status"] == "failed":
        sys.exit(1)
    if result["status"] == "pending":
        sys.exit(EXIT_PENDING)


def _timeout_param(ctx: click.Context) -> dict[str, Any]:
    """With --timeout the node answers `pending` a little before the CLI would give up."""
    timeout = settings(ctx).timeout
    return {} if timeout is None else {"timeout": max(timeout - 0.5, timeout * 0.8)}


@click.command()
@global_options
@click.argument("node_id")
@click.argument("amount")
@click.pass_context
def send(ctx: click.Context, node_id: str, amount: str) -> None:
    """Pay AMOUNT to NODE_ID spontaneously (no invoice); waits until final."""
    parse_hex(node_id, size=KEY_SIZE, what="NODE_ID")
    params = {"node_id": node_id, "amount": parse_amount(amount), **_timeout_param(ctx)}
    _emit_payment(ctx, run(ctx, lambda: call_node(ctx, "send", params)))


@click.command()
@global_options
@click.argument("invoice_text", metavar="INVOICE")
@click.pass_context
def pay(ctx: click.Context, invoice_text: str) -> None:
    """Pay an invoice (p2pc1...); waits until final."""
    params = {"invoice": invoice_text, **_timeout_param(ctx)}
    _emit_payment(ctx, run(ctx, lambda: call_node(ctx, "pay", params)))


@click.command()
@global_options
@click.argument("amount")
@click.option("--description", default="", help="Shown to the payer.")
@click.option(
    "--expiry",
    type=click.IntRange(1, 2**32 - 1),
    default=None,
    help="Seconds until the invoice expires (default 3600).",
)
@click.pass_context
def invoice(ctx: click.Context, amount: str, description: str, expiry: int | None) -> None:
    """Create an invoice for AMOUNT."""
    params = {"amount": parse_amount(amount), "description": description, "expiry": expiry}
    result = run(ctx, lambda: call_node(ctx, "invoice", params))
    emit(ctx, result, lambda console: console.print(result["invoice"], soft_wrap=True))


@click.command()
@global_options
@click.pass_context
def payments(ctx: click.Context) -> None:
    """Payments sent and received."""
    listed = run(ctx, lambda: call_node(ctx, "payments"))
    columns = ["payment_hash", "direction", "amount", "fee", "status"]
    emit(ctx, listed, lambda console: console.print(_list_table(listed, columns)))


@click.command()
@global_options
@click.pass_context
def invoices(ctx: click.Context) -> None:
    """Our invoices."""
    listed = run(ctx, lambda: call_node(ctx, "invoices"))
    columns = ["payment_hash", "amount", "status", "description"]
    emit(ctx, listed, lambda console: console.print(_list_table(listed, columns)))


CHANNEL_COMMANDS = [open_channel, deposit, channels, close, send, pay, invoice, payments, invoices]
