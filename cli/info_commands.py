"""`p2pchan info|connect|peers|disconnect`: the node and its peers, over its RPC socket.

Apart from `node_commands.py` (which runs a node) so that these client commands import nothing
of the server."""

from __future__ import annotations

import click

from p2pchan_cli.common import call_node, emit, global_options, run
from p2pchan_cli.params import HEX_ID, PEER, PeerAddress, command
from p2pchan_cli.render import short_id
from p2pchan_cli.tables import peer_table
from p2pchan_cli.views import info_view, peer_view


@command()
@global_options
@click.pass_context
def info(ctx: click.Context) -> None:
    """The node's id, uri, version, layer-1 view and counts.

    \b
    Example:
      p2pchan --datadir /tmp/net/alice info
    """
    result = run(ctx, lambda: call_node(ctx, "info"))
    emit(ctx, result, lambda _width: info_view(result))


@command()
@global_options
@click.argument("peer", metavar="NODE_ID@HOST:PORT", type=PEER)
@click.pass_context
def connect(ctx: click.Context, peer: PeerAddress) -> None:
    """Connect to a peer and keep reconnecting to it.

    The peer is remembered: redialled with backoff whenever the connection drops, and after a
    restart.

    \b
    Example:
      p2pchan connect $BOB@127.0.0.1:9736
    """
    assert peer.address is not None  # PEER requires one
    params = {"node_id": peer.node_id, "host": peer.address.host, "port": peer.address.port}
    result = run(ctx, lambda: call_node(ctx, "connect", params))
    emit(ctx, result, lambda _width: peer_view(result))


@command()
@global_options
@click.pass_context
def peers(ctx: click.Context) -> None:
    """Connected and remembered peers.

    \b
    Example:
      p2pchan peers
    """
    listed = run(ctx, lambda: call_node(ctx, "peers"))
    emit(ctx, listed, lambda width: peer_table(listed, width))


@command()
@global_options
@click.argument("node_id", metavar="NODE_ID", type=HEX_ID)
@click.pass_context
def disconnect(ctx: click.Context, node_id: str) -> None:
    """Close the connection to a peer and stop reconnecting to it.

    \b
    Example:
      p2pchan disconnect $BOB
    """
    result = run(ctx, lambda: call_node(ctx, "disconnect", {"node_id": node_id}))
    emit(ctx, result, lambda _width: f"disconnected from {short_id(node_id)}")
