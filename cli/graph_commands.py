"""`p2pchan graph|route|setfees`: the network as gossip taught it, the route a payment would
take now, and our forwarding fees (gossiped at once)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from p2pchan_cli.common import call_node, emit, global_options, run
from p2pchan_cli.params import AMOUNT, HEX_ID, CountType, command
from p2pchan_cli.render import Column, key_values, render_table, short_id, text_of


@command()
@global_options
@click.pass_context
def graph(ctx: click.Context) -> None:
    """The channels and nodes gossip told us about, with each direction's fees.

    \b
    Example:
      p2pchan graph --json
    """
    known = run(ctx, lambda: call_node(ctx, "graph"))
    emit(ctx, known, lambda width: graph_view(known, width))


@command()
@global_options
@click.argument("node_id", metavar="NODE_ID", type=HEX_ID)
@click.argument("amount", metavar="AMOUNT", type=AMOUNT)
@click.pass_context
def route(ctx: click.Context, node_id: str, amount: int) -> None:
    """The hops, amounts and fee a payment of AMOUNT to NODE_ID would use now.

    \b
    Example:
      p2pchan route $CAROL 1000
    """
    found = run(ctx, lambda: call_node(ctx, "route", {"node_id": node_id, "amount": amount}))
    emit(ctx, found, lambda width: route_view(found, width))


@command()
@global_options
@click.argument("channel_id", metavar="CHANNEL_ID|--all", type=HEX_ID, required=False)
@click.option("--all", "every", is_flag=True, help="Every channel of ours (and new ones).")
@click.option("--base", type=CountType(0, 2**64 - 1), default=None, help="Base fee per payment.")
@click.option(
    "--ppm", type=CountType(0, 2**32 - 1), default=None, help="Proportional fee, per million."
)
@click.pass_context
def setfees(
    ctx: click.Context, channel_id: str | None, every: bool, base: int | None, ppm: int | None
) -> None:
    """Set what we charge to forward payments over a channel (or all of them).

    The new signed update of each channel direction goes out over gossip at once; payers
    routing with the old fees are still served for ten minutes.

    \b
    Example:
      p2pchan setfees --all --base 1 --ppm 100
    """
    if every == (channel_id is not None):
        raise click.UsageError("give a CHANNEL_ID or --all (not both)")
    if base is None and ppm is None:
        raise click.UsageError("give --base, --ppm or both")
    params: dict[str, Any] = {"base": base, "ppm": ppm}
    params.update({"all": True} if every else {"channel_id": channel_id})
    done = run(ctx, lambda: call_node(ctx, "setfees", params))
    emit(ctx, done, lambda _width: fees_view(done))


def graph_view(known: Mapping[str, Any], width: int) -> str:
    channels = known.get("channels") or []
    nodes = known.get("nodes") or []
    if not channels:
        return f"no channels known ({len(nodes)} nodes)"
    columns = [
        Column("channel"),
        Column("node 1", drop=2),
        Column("node 2", drop=2),
        Column("capacity", numeric=True),
        Column("fees 1→2"),
        Column("fees 2→1"),
    ]
    rows = [
        [
            short_id(c.get("channel_id")),
            short_id(c.get("node1")),
            short_id(c.get("node2")),
            text_of(c.get("capacity")),
            _fees(c.get("node1_policy")),
            _fees(c.get("node2_policy")),
        ]
        for c in channels
    ]
    table = render_table(columns, rows, width)
    return f"{table}\n\n{len(channels)} channels, {len(nodes)} nodes"


def _fees(policy: Any) -> str:
    """`1+100ppm`, `off` when disabled, `-` when the node announced nothing yet."""
    if not isinstance(policy, Mapping):
        return "-"
    if policy.get("disabled"):
        return "off"
    return f"{text_of(policy.get('fee_base'))}+{text_of(policy.get('fee_ppm'))}ppm"


def route_view(found: Mapping[str, Any], width: int) -> str:
    hops = found.get("hops") or []
    columns = [
        Column("hop", numeric=True),
        Column("node"),
        Column("channel", drop=1),
        Column("amount", numeric=True),
        Column("fee", numeric=True),
    ]
    rows = [
        [
            str(index),
            short_id(hop.get("node_id")),
            short_id(hop.get("channel_id")),
            text_of(hop.get("amount")),
            text_of(hop.get("fee")),
        ]
        for index, hop in enumerate(hops, start=1)
    ]
    total = key_values(
        [("amount", text_of(found.get("amount"))), ("total fee", text_of(found.get("fee")))]
    )
    return f"{render_table(columns, rows, width)}\n\n{total}"


def fees_view(done: Mapping[str, Any]) -> str:
    updates = done.get("updates") or []
    fees = f"{text_of(done.get('fee_base'))} + {text_of(done.get('fee_ppm'))} ppm"
    if not updates:
        return f"fees set to {fees} (for channels once they are usable)"
    lines = [f"fees set to {fees} on {len(updates)} channel(s), gossiped:"]
    lines += [f"  {short_id(u.get('channel_id'))}" for u in updates]
    return "\n".join(lines)
