"""`p2pchan send|pay|invoice|decode|payments|invoices`: payments on a running node.

`payments` and `invoices` show history a page at a time (the node reads it from its database,
whatever its size); a full page says on stderr how to ask for the next.

`send` and `pay` wait until the payment is final. The result goes to stdout (text or JSON);
a payment that failed also says why on stderr (exit 1), and one still pending when --timeout
ran out says so (exit 3): it may yet succeed or fail, and `payments --hash` tells later.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import click

from p2pchan.core.payment.records import INVOICE_STATUSES, PAYMENT_STATUSES
from p2pchan.net.api.pages import DEFAULT_PAGE, MAX_PAGE
from p2pchan_cli.common import (
    EXIT_CODES_HELP,
    EXIT_PENDING,
    TimedOut,
    call_node,
    emit,
    fail,
    global_options,
    run,
    settings,
)
from p2pchan_cli.params import AMOUNT, HEX_ID, CountType, command
from p2pchan_cli.tables import invoice_table, payment_table
from p2pchan_cli.views import decoded_invoice_view, payment_view

F = TypeVar("F", bound=Callable[..., Any])


def _timeout_param(ctx: click.Context) -> dict[str, Any]:
    """With --timeout the node answers `pending` a little before the CLI would give up."""
    timeout = settings(ctx).timeout
    return {} if timeout is None else {"timeout": max(timeout - 0.5, timeout * 0.8)}


def _pay(ctx: click.Context, method: str, params: dict[str, Any]) -> None:
    try:
        result = run(ctx, lambda: call_node(ctx, method, params))
    except TimedOut as timed_out:
        fail(
            f"{timed_out}; the payment may still complete: see `p2pchan payments --status pending`",
            EXIT_PENDING,
        )
    emit(ctx, result, lambda _width: payment_view(result))
    if result["status"] == "failed":
        fail(f"payment failed: {result.get('error') or 'no reason given'}")
    if result["status"] == "pending":
        fail(
            f"payment still pending after {settings(ctx).timeout:g} s: it may yet succeed or "
            f"fail; see `p2pchan payments --hash {result['payment_hash'][:16]}`",
            EXIT_PENDING,
        )


@command(epilog=EXIT_CODES_HELP)
@global_options
@click.argument("node_id", metavar="NODE_ID", type=HEX_ID)
@click.argument("amount", metavar="AMOUNT", type=AMOUNT)
@click.pass_context
def send(ctx: click.Context, node_id: str, amount: int) -> None:
    """Pay a peer without an invoice; waits until final.

    \b
    Example:
      p2pchan send $BOB 250
    """
    _pay(ctx, "send", {"node_id": node_id, "amount": amount, **_timeout_param(ctx)})


@command(epilog=EXIT_CODES_HELP)
@global_options
@click.argument("invoice_text", metavar="INVOICE")
@click.pass_context
def pay(ctx: click.Context, invoice_text: str) -> None:
    """Pay an invoice (p2pc1...); waits until final.

    \b
    Example:
      p2pchan pay p2pc1slcibgoeeb6o4wun33bjzvzqyqlly7ef4kzjvvtzb...
    """
    _pay(ctx, "pay", {"invoice": invoice_text, **_timeout_param(ctx)})


@command()
@global_options
@click.argument("invoice_text", metavar="INVOICE")
@click.pass_context
def decode(ctx: click.Context, invoice_text: str) -> None:
    """Show what an invoice asks for.

    Payee, amount, payment hash, description, expiry, route hints. Refused, with the reason, if
    it is malformed, expired or for another network.

    \b
    Example:
      p2pchan decode p2pc1slcibgoeeb6o4wun33bjzvzqyqlly7ef4kzjvvtzb...
    """
    result = run(ctx, lambda: call_node(ctx, "decode", {"invoice": invoice_text}))
    now_ms = time.time_ns() // 1_000_000
    emit(ctx, result, lambda _width: decoded_invoice_view(result, now_ms))


@command()
@global_options
@click.argument("amount", metavar="AMOUNT", type=AMOUNT)
@click.option("--description", default="", help="Shown to the payer (at most 640 characters).")
@click.option(
    "--expiry",
    type=CountType(1, 2**32 - 1),
    default=None,
    metavar="SECONDS",
    help="Seconds until the invoice expires (default 3600).",
)
@click.pass_context
def invoice(ctx: click.Context, amount: int, description: str, expiry: int | None) -> None:
    """Create an invoice for AMOUNT; print it (p2pc1...).

    \b
    Example:
      p2pchan --datadir /tmp/net/bob invoice 1000 --description coffee
    """
    params = {"amount": amount, "description": description, "expiry": expiry}
    result = run(ctx, lambda: call_node(ctx, "invoice", params))
    emit(ctx, result, lambda _width: str(result["invoice"]))


def _hash_prefix(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not (
        0 < len(value) <= 64 and all(c in "0123456789abcdef" for c in value.lower())
    ):
        raise click.UsageError(f"--hash must be hex (a payment hash or its start), got {value!r}")
    return None if value is None else value.lower()


def _history_options(statuses: tuple[str, ...], what: str) -> Callable[[F], F]:
    """The options of a page of history: --limit, --index-offset or --cursor, --status,
    --hash."""

    def decorate(command: F) -> F:
        options = [
            click.option(
                "--limit",
                type=CountType(1, MAX_PAGE),
                default=DEFAULT_PAGE,
                show_default=True,
                metavar="N",
                help=f"At most this many {what}.",
            ),
            click.option(
                "--index-offset",
                type=CountType(0, 2**62),
                default=None,
                metavar="N",
                help=f"Skip the newest N {what} (or use --cursor).",
            ),
            click.option(
                "--cursor",
                type=CountType(1, 2**63 - 1),
                default=None,
                metavar="INDEX",
                help=f"Only {what} older than this index (the last one of the page before).",
            ),
            click.option(
                "--hash",
                "payment_hash",
                metavar="HASH",
                callback=_hash_prefix,
                help="Only this payment hash (its first digits are enough).",
            ),
            click.option(
                "--status", type=click.Choice(statuses), help=f"Only {what} in this state."
            ),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _page(
    ctx: click.Context,
    method: str,
    limit: int,
    index_offset: int | None,
    cursor: int | None,
    filters: dict[str, Any],
) -> list[dict[str, Any]]:
    """One page of history from the node; on stderr, how to get the next one if it is full."""
    if index_offset is not None and cursor is not None:
        raise click.UsageError("give --index-offset or --cursor, not both")
    params = {"limit": limit, "index_offset": index_offset, "cursor": cursor, **filters}
    listed: list[dict[str, Any]] = run(ctx, lambda: call_node(ctx, method, params))
    if len(listed) == limit and listed[-1].get("index") is not None:
        click.echo(
            f"note: {limit} shown, there may be more: add --cursor {listed[-1]['index']}",
            err=True,
        )
    return listed


@command()
@global_options
@_history_options(PAYMENT_STATUSES, "payments")
@click.pass_context
def payments(
    ctx: click.Context,
    limit: int,
    index_offset: int | None,
    cursor: int | None,
    payment_hash: str | None,
    status: str | None,
) -> None:
    """Payments sent and received, newest first, a page at a time.

    Failed ones with their reason, refused ones (never sent) included. Each has an index: give
    the last one's as --cursor for the next page. `info` counts them all.

    \b
    Example:
      p2pchan payments --status failed --limit 20
    """
    filters = {"payment_hash": payment_hash, "status": status}
    listed = _page(ctx, "payments", limit, index_offset, cursor, filters)
    emit(ctx, listed, lambda width: payment_table(listed, width))


@command()
@global_options
@_history_options(INVOICE_STATUSES, "invoices")
@click.pass_context
def invoices(
    ctx: click.Context,
    limit: int,
    index_offset: int | None,
    cursor: int | None,
    payment_hash: str | None,
    status: str | None,
) -> None:
    """Our invoices, newest first, a page at a time.

    \b
    Example:
      p2pchan --datadir /tmp/net/bob invoices --status open
    """
    filters = {"payment_hash": payment_hash, "status": status}
    listed = _page(ctx, "invoices", limit, index_offset, cursor, filters)
    emit(ctx, listed, lambda width: invoice_table(listed, width))
