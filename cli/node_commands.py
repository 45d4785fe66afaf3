"""`p2pchan node init|start`: create a node's key and run the node (the commands that talk to a
running node are in `info_commands.py` and beside it, so that they import nothing of this)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import click
import structlog
import trio

from p2pchan.core.gossip.state import FeePolicy
from p2pchan.crypto.keys import KEY_FILE_NAME, Identity, load_key_file, write_key_file
from p2pchan.errors import UserError
from p2pchan.gc_tuning import tune_for_server
from p2pchan.net.config import NodeConfig
from p2pchan.net.misbehave import Misbehave, parse_modes
from p2pchan.net.node import open_node
from p2pchan.net.peers import PeerConfig
from p2pchan_cli.common import (
    check_port_free,
    emit,
    global_options,
    l1_address,
    node_datadir,
    server_logging,
)
from p2pchan_cli.params import DAYS, HOST_PORT, Command, HostPort

log = structlog.get_logger("p2pchan.cli")


@click.group()
def node() -> None:
    """Create and run a channel node."""


node.command_class = Command


@node.command()
@global_options
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the data dir and the node's key (0600); print the node id.

    \b
    Example:
      BOB=$(p2pchan node init --datadir /tmp/net/bob)
    """
    datadir = node_datadir(ctx)
    datadir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_path = datadir / KEY_FILE_NAME
    created = not key_path.exists()
    if created:
        write_key_file(key_path, Identity.generate())
    identity = load_key_file(key_path)
    document = {"node_id": identity.node_id.hex(), "created": created}
    emit(ctx, document, lambda _width: identity.node_id.hex())


@node.command()
@global_options
@click.option(
    "--listen",
    "listen",
    type=HOST_PORT,
    default="127.0.0.1:0",
    show_default=True,
    metavar="HOST:PORT",
    help="Where peers connect (port 0 picks a free one).",
)
@click.option("--alias", default="", help="A name shown to peers.")
@click.option(
    "--fee-base",
    type=click.IntRange(0, 2**64 - 1),
    default=1,
    show_default=True,
    help="What we charge per forwarded payment (see `setfees`).",
)
@click.option(
    "--fee-ppm",
    type=click.IntRange(0, 2**32 - 1),
    default=100,
    show_default=True,
    help="...plus this much per million of the amount forwarded.",
)
@click.option("--dev", is_flag=True, help="Allow dev-only commands (test attacks, debug RPCs).")
@click.option(
    "--misbehave",
    default="",
    metavar="MODE[,MODE]",
    help="With --dev only: attack honest partners (for tests and chaos): "
    + ", ".join(mode.value for mode in Misbehave)
    + ". See docs/PROTOCOL.md.",
)
@click.option(
    "--keep-payments",
    "keep_payments",
    type=DAYS,
    default=None,
    metavar="DAYS",
    help="Delete payment records and invoices final for longer than this (default: keep all). "
    "Pending payments and anything a channel still needs are always kept.",
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
    listen: HostPort,
    alias: str,
    fee_base: int,
    fee_ppm: int,
    dev: bool,
    misbehave: str,
    keep_payments: float | None,
    ping_interval: float,
    pong_timeout: float,
    reconnect_max: float,
    profile_path: Path | None,
) -> None:
    """Run the node in the foreground (SIGINT/SIGTERM stop it cleanly).

    Writes DATADIR/node.json once ready. The layer-1 node comes from --l1 or $P2PCHAN_L1.

    \b
    Example:
      p2pchan node start --datadir /tmp/net/bob --listen 127.0.0.1:9736 --l1 127.0.0.1:7700
      p2pchan node start --datadir /tmp/net/shop --keep-payments 90
    """
    datadir = node_datadir(ctx)
    chain = l1_address(ctx, ready_file_fallback=False)
    check_port_free(listen, "--listen")
    modes = parse_modes(misbehave)
    if modes and not dev:
        raise UserError("--misbehave needs --dev: attack modes are for tests and chaos runs")
    server_logging(ctx)
    config = NodeConfig(
        datadir=datadir,
        listen_host=listen.host,
        listen_port=listen.port,
        l1_host=chain.host,
        l1_port=chain.port,
        alias=alias,
        dev=dev,
        misbehave=modes,
        keep_payments_days=keep_payments,
        fee_policy=FeePolicy(fee_base=fee_base, fee_ppm=fee_ppm),
        peer=PeerConfig(
            ping_interval=ping_interval, pong_timeout=pong_timeout, reconnect_max=reconnect_max
        ),
    )

    async def serve() -> None:
        running = await open_node(config)
        tune_for_server()  # start-up is done: what it built stays
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
