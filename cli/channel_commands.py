"""`p2pchan open|deposit|channels|close`: channels on a running node, over its RPC socket.

A command that waits for layer 1 and runs out of --timeout leaves the work going on in the
node (the transaction is sent; the chain will act on it): it says so, and what state the
channel is in, rather than only that it timed out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import click
import trio

from p2pchan.errors import P2pchanError, UserError
from p2pchan_cli.common import TimedOut, call_node, emit, global_options, run
from p2pchan_cli.params import AMOUNT, HEX_ID, NODE_ID_OR_PEER, CountType, PeerAddress, command
from p2pchan_cli.render import short_id
from p2pchan_cli.tables import channel_table
from p2pchan_cli.views import channel_view

STATE_LOOKUP_TIMEOUT = 5.0
ChannelFinder = Callable[[list[dict[str, Any]]], dict[str, Any] | None]


def channel_state_text(channel: dict[str, Any]) -> str:
    """What a channel is doing now, in a few words."""
    name = f"channel {short_id(channel.get('channel_id'))}"
    state = channel.get("state")
    if state == "opening":
        text = f"{name} is opening: its deposit is not on layer 1 yet"
    elif state == "closing":
        text = f"{name} is closing: our close is on its way to layer 1"
    elif state == "closed":
        window = channel.get("settle_timeout")
        text = (
            f"{name} is closed on layer 1 and settles by itself once its {window}-block window ends"
        )
    elif state == "settled" and channel.get("pending_locks"):
        text = f"{name} is settled; {channel['pending_locks']} locks await their unlock on layer 1"
    else:
        text = f"{name} is {state}"
    return f"{text} ({channel['note']})" if channel.get("note") else text


def still_going(
    ctx: click.Context, work: str, timed_out: TimedOut, find: ChannelFinder
) -> NoReturn:
    """Fail with the timeout, what goes on regardless, and where the channel is now."""

    async def lookup() -> Any:
        with trio.move_on_after(STATE_LOOKUP_TIMEOUT):
            return await call_node(ctx, "channels")
        return None

    try:
        channels = trio.run(lookup)
    except P2pchanError:
        channels = None
    channel = find(channels) if isinstance(channels, list) else None
    if channel is None:
        where = f"the {work} may still go on (its state is not known yet)"
    elif work == "close" and channel.get("state") == "open":
        where = f"{channel_state_text(channel)} (the partner may still agree to settle)"
    else:
        where = f"the {work} goes on: {channel_state_text(channel)}"
    raise UserError(f"{timed_out}; {where}; see `p2pchan channels`")


def _by_id(channel_id: str) -> ChannelFinder:
    return lambda channels: next((c for c in channels if c["channel_id"] == channel_id), None)


def _newest_with(peer: str) -> ChannelFinder:
    def find(channels: list[dict[str, Any]]) -> dict[str, Any] | None:
        live = [c for c in channels if c["peer"] == peer and c["state"] != "settled"]
        return live[-1] if live else None

    return find


@command("open")
@global_options
@click.argument("peer", metavar="NODE_ID[@HOST:PORT]", type=NODE_ID_OR_PEER)
@click.argument("amount", metavar="AMOUNT", type=AMOUNT)
@click.option(
    "--settle-timeout",
    type=CountType(20, 1_000_000),
    default=100,
    show_default=True,
    metavar="BLOCKS",
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
    ctx: click.Context, peer: PeerAddress, amount: int, settle_timeout: int, wait: bool
) -> None:
    """Open a channel with a connected peer, deposit AMOUNT.

    Only with a connected peer: NODE_ID@HOST:PORT connects first. Waits until the channel is open
    and funded on layer 1 (--no-wait: returns once the deposit is sent).

    \b
    Example:
      p2pchan open $BOB@127.0.0.1:9736 10000
    """
    params = {
        "node_id": peer.node_id,
        "amount": amount,
        "settle_timeout": settle_timeout,
        "wait": wait,
    }

    async def connect_then_open() -> Any:
        if peer.address is not None:
            where = {"host": peer.address.host, "port": peer.address.port}
            await call_node(ctx, "connect", {"node_id": peer.node_id, **where})
        return await call_node(ctx, "open", params)

    try:
        result = run(ctx, connect_then_open)
    except TimedOut as timed_out:
        still_going(ctx, "open", timed_out, _newest_with(peer.node_id))
    emit(ctx, result, lambda _width: channel_view(result))


@command()
@global_options
@click.argument("channel_id", metavar="CHANNEL_ID", type=HEX_ID)
@click.argument("total", metavar="TOTAL", type=AMOUNT)
@click.pass_context
def deposit(ctx: click.Context, channel_id: str, total: int) -> None:
    """Raise our total deposit in a channel to TOTAL.

    Waits until the deposit is on layer 1. The partner of a new channel deposits this way.

    \b
    Example:
      p2pchan --datadir /tmp/net/bob deposit $CHANNEL 5000
    """
    params = {"channel_id": channel_id, "total": total}
    try:
        result = run(ctx, lambda: call_node(ctx, "deposit", params))
    except TimedOut as timed_out:
        still_going(ctx, "deposit", timed_out, _by_id(channel_id))
    emit(ctx, result, lambda _width: channel_view(result))


@command()
@global_options
@click.pass_context
def channels(ctx: click.Context) -> None:
    """Every channel with its state and balances.

    \b
    Example:
      p2pchan channels
    """
    listed = run(ctx, lambda: call_node(ctx, "channels"))
    emit(ctx, listed, lambda width: channel_table(listed, width))


@command()
@global_options
@click.argument("channel_id", metavar="CHANNEL_ID", type=HEX_ID)
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
    """Close a channel (cooperatively, or alone with --force).

    A cooperative close needs the partner online and settles at once; a forced one is made on
    layer 1 alone and settles when the channel's settle window ends. Either way the close goes
    on if --timeout runs out.

    \b
    Example:
      p2pchan close $CHANNEL --timeout 30
    """
    params = {"channel_id": channel_id, "force": force, "cheat": cheat, "wait": wait}
    try:
        result = run(ctx, lambda: call_node(ctx, "close", params))
    except TimedOut as timed_out:
        still_going(ctx, "close", timed_out, _by_id(channel_id))
    emit(ctx, result, lambda _width: channel_view(result))
