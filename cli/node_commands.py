"""`p2pchan node init|start` and the node commands that talk to a running node over RPC."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import click
import structlog
import trio
from rich.console import Console
from rich.table import Table

from p2pchan.crypto.keys import KEY_FILE_NAME, Identity, load_key_file, write_key_file
from p2pchan.errors import UserError
from p2pchan.net.misbehave import Misbehave, parse_modes
from p2pchan.net.node import NodeConfig, open_node
from p2pchan.net.peers import PeerConfig
from p2pchan.net.rpc_client import RpcClient
from p2pchan.types import KEY_SIZE, parse_hex
from p2pchan_cli.common import (
    emit,
    global_options,
    l1_address,
    parse_host_port,
    run,
    server_logging,
    settings,
)

log = structlog.get_logger("p2pchan.cli")


def require_datadir(ctx: click.Context) -> Path:
    datadir = settings(ctx).datadir
    if datadir is None:
        raise UserError("this command needs --datadir")
    return datadir


async def call_node(ctx: click.Context, method: str, params: dict[str, Any] | None = None) -> Any:
    async with RpcClient.connect(require_datadir(ctx)) as rpc:
        return await rpc.call(method, params or {})


@click.group()
def node() -> None:
    """Create and run a channel node."""


@node.command()
@global_options
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the data dir and the node's key (0600); print the node id."""
    datadir = require_datadir(ctx)
    datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path = datadir / KEY_FILE_NAME
    created = not key_path.exists()
    if created:
        write_key_file(key_path, Identity.generate())
    identity = load_key_file(key_path)
    document = {"node_id": identity.node_id.hex(), "created": created}
    emit(ctx, document, lambda console: console.print(identity.node_id.hex()))


@node.command()
@global_options
@click.option(
    "--listen",
    "listen",
    default="127.0.0.1:0",
    show_default=True,
    metavar="HOST:PORT",
    help="Where peers connect (port 0 picks a free one).",
)
@click.option("--alias", default="", help="A name shown to peers.")
@click.option("--dev", is_flag=True, help="Allow dev-only commands (test attacks, debug RPCs).")
@click.option(
    "--misbehave",
    default="",
    metavar="MODE[,MODE]",
    help="With --dev only: attack honest partners (for tests and chaos): "
    + ", ".join(mode.value for mode in Misbehave)
    + ". See docs/PROTOCOL.md.",
)
@click.option("--ping-interval", type=click.FloatRange(min=0), default=30.0, hidden=True)
@click.option("--pong-timeout", type=click.FloatRange(min=0.01), default=20.0, hidden=True)
@click.option("--reconnect-max", type=click.FloatRange(min=0.01), default=30.0, hidden=True)
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(path_type=Path, dir_okay=False),
    hidden=True,
    help="Write cProfile statistics here on a clean stop.",
)
@click.pass_context
def start(
    ctx: click.Context,
    listen: str,
    alias: str,
    dev: bool,
    misbehave: str,
    ping_interval: float,
    pong_timeout: float,
    reconnect_max: float,
    profile_path: Path | None,
) -> None:
    """Run the node in the foreground (SIGINT/SIGTERM stop it cleanly)."""
    server_logging(ctx)
    datadir = require_datadir(ctx)
    modes = parse_modes(misbehave)
    if modes and not dev:
        raise UserError("--misbehave needs --dev: attack modes are for tests and chaos runs")
    listen_host, listen_port = parse_host_port(listen, "--listen")
    l1_host, l1_port = l1_address(ctx)
    config = NodeConfig(
        datadir=datadir,
        listen_host=listen_host,
        listen_port=listen_port,
        l1_host=l1_host,
        l1_port=l1_port,
        alias=alias,
        dev=dev,
        misbehave=modes,
        peer=PeerConfig(
            ping_interval=ping_interval, pong_timeout=pong_timeout, reconnect_max=reconnect_max
        ),
    )

    async def serve() -> None:
        running = await open_node(config)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(running.run)
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        await running.stop(f"shutting down ({signal.Signals(signum).name})")
                        break
        finally:
            running.close()
            log.info("node_stopped", pid=os.getpid())  # still inside the run: node id bound

    if profile_path is None:
        trio.run(serve)
    else:
        import cProfile

        with cProfile.Profile() as profiler:
            trio.run(serve)
        profiler.dump_stats(profile_path)


def _peer_table(peers: list[dict[str, Any]]) -> Table:
    table = Table("address", "connected", "direction")
    table.add_column("node_id", min_width=64, no_wrap=True)
    for peer in peers:
        table.add_row(
            peer["node_id"],
            f"{peer['host']}:{peer['port']}",
            str(peer["connected"]),
            peer["direction"] or "-",
        )
    return table


@click.command()
@global_options
@click.pass_context
def info(ctx: click.Context) -> None:
    """The node's id, addresses, layer-1 view and counts."""
    emit(ctx, run(ctx, lambda: call_node(ctx, "info")))


@click.command()
@global_options
@click.argument("peer", metavar="NODE_ID@HOST:PORT")
@click.pass_context
def connect(ctx: click.Context, peer: str) -> None:
    """Connect to a peer and keep reconnecting to it (remembered across restarts)."""
    node_id, sep, address = peer.partition("@")
    if not sep:
        raise UserError("give the peer as NODE_ID@HOST:PORT")
    parse_hex(node_id, size=KEY_SIZE, what="NODE_ID")
    host, port = parse_host_port(address, "peer address")
    params = {"node_id": node_id, "host": host, "port": port}
    emit(ctx, run(ctx, lambda: call_node(ctx, "connect", params)))


@click.command()
@global_options
@click.pass_context
def peers(ctx: click.Context) -> None:
    """Connected and remembered peers."""
    listed = run(ctx, lambda: call_node(ctx, "peers"))

    def human(console: Console) -> None:
        console.print(_peer_table(listed) if listed else "no peers")

    emit(ctx, listed, human)


@click.command()
@global_options
@click.argument("node_id")
@click.pass_context
def disconnect(ctx: click.Context, node_id: str) -> None:
    """Close the connection to a peer and stop reconnecting to it."""
    parse_hex(node_id, size=KEY_SIZE, what="NODE_ID")
    emit(ctx, run(ctx, lambda: call_node(ctx, "disconnect", {"node_id": node_id})))


NODE_COMMANDS = [info, connect, peers, disconnect]
