"""`p2pchan plasma ...`: run a child chain's operator, and drive a --dev operator's attacks.

The user-side commands (join, deposit, send, utxos, balance, exit, exits, status) go through
the channel node, which is the user's Plasma wallet and watcher; they come with the node side.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import click
import structlog
import trio

from p2pchan.crypto.merkle import MAX_LEAVES
from p2pchan.errors import UserError
from p2pchan.l1.plasma_state import MAX_CHALLENGE_PERIOD, MIN_CHALLENGE_PERIOD
from p2pchan.log import bind_process
from p2pchan.net.rpc_client import RpcClient
from p2pchan.plasma.operator_server import OperatorConfig, open_operator
from p2pchan_cli.common import (
    check_port_free,
    emit,
    global_options,
    l1_address,
    run,
    server_logging,
    settings,
)
from p2pchan_cli.params import AMOUNT, HOST_PORT, Command, HostPort

log = structlog.get_logger("p2pchan.cli")


@click.group()
def plasma() -> None:
    """Plasma child chains on the same layer 1: the operator process and its dev attacks."""


plasma.command_class = Command


def operator_datadir(ctx: click.Context) -> Path:
    """The operator's own data dir: never the node's default (`~/.p2pchan`)."""
    datadir = settings(ctx).datadir
    if datadir is None:
        raise UserError("the operator needs its own --datadir")
    return datadir


@plasma.command()
@global_options
@click.option(
    "--listen",
    type=HOST_PORT,
    default="127.0.0.1:7800",
    show_default=True,
    help="Where users connect (port 0 picks a free one; see DATADIR/plasma.json).",
)
@click.option(
    "--block-interval",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Seconds between blocks (a full block is built at once).",
)
@click.option(
    "--exit-bond",
    type=AMOUNT,
    default=10,
    show_default=True,
    help="Bond an exit posts on layer 1 (set when the chain is created).",
)
@click.option(
    "--challenge-period",
    type=click.IntRange(MIN_CHALLENGE_PERIOD, MAX_CHALLENGE_PERIOD),
    default=100,
    show_default=True,
    help="Layer-1 blocks an exit can be challenged (set when the chain is created).",
)
@click.option("--dev", is_flag=True, help="Allow the attack switches (`plasma attack`).")
@click.option(
    "--max-block-txs", type=click.IntRange(1, MAX_LEAVES), default=MAX_LEAVES, hidden=True
)
@click.option("--l1-wait", type=click.FloatRange(min=0), default=10.0, hidden=True)
@click.option(
    "--profile",
    "profile_path",
    type=click.Path(path_type=Path, dir_okay=False),
    hidden=True,
    help="Write cProfile statistics here on a clean stop.",
)
@click.pass_context
def operator(
    ctx: click.Context,
    listen: HostPort,
    block_interval: float,
    exit_bond: int,
    challenge_period: int,
    dev: bool,
    max_block_txs: int,
    l1_wait: float,
    profile_path: Path | None,
) -> None:
    """Run a child chain's operator in the foreground (SIGINT/SIGTERM stop it cleanly).

    On first start it creates the chain on layer 1 with the key in DATADIR (created when
    missing; fund it first where layer 1 charges fees). Writes DATADIR/plasma.json once ready.

    \b
    Example:
      p2pchan plasma operator --datadir /tmp/op --l1 127.0.0.1:7700 --listen 127.0.0.1:7800
    """
    datadir = operator_datadir(ctx)
    chain = l1_address(ctx, ready_file_fallback=False)
    check_port_free(listen, "--listen")
    server_logging(ctx)
    config = OperatorConfig(
        datadir=datadir,
        l1_host=chain.host,
        l1_port=chain.port,
        listen_host=listen.host,
        listen_port=listen.port,
        block_interval=block_interval,
        exit_bond=exit_bond,
        challenge_period=challenge_period,
        dev=dev,
        max_block_txs=max_block_txs,
        l1_wait=l1_wait,
    )
    bind_process(process="plasma_operator")

    async def serve() -> None:
        running = await open_operator(config)
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(running.run)
                with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        log.info("plasma_operator_stopping", signal=signal.Signals(signum).name)
                        running.stop()
                        break
        finally:
            running.close()
            log.info("plasma_operator_stopped", pid=os.getpid())

    if profile_path is None:
        trio.run(serve)
    else:
        import cProfile

        with cProfile.Profile() as profiler:
            trio.run(serve)
        profiler.dump_stats(profile_path)


async def _call_operator(ctx: click.Context, method: str, params: dict[str, Any]) -> Any:
    async with RpcClient.connect(operator_datadir(ctx)) as rpc:
        return await rpc.call(method, params)


@plasma.group()
def attack() -> None:
    """Switch on an attack for the next block of a --dev operator.

    DATADIR is the operator's.

    \b
    Example:
      p2pchan plasma attack withhold-next --datadir /tmp/op
    """


@attack.command("withhold-next", cls=Command)
@global_options
@click.pass_context
def withhold_next(ctx: click.Context) -> None:
    """Commit the next block's root on layer 1 but never serve the block.

    \b
    Example:
      p2pchan plasma attack withhold-next --datadir /tmp/op
    """
    params = {"attack": "withhold-next"}
    emit(ctx, run(ctx, lambda: _call_operator(ctx, "plasma_attack", params)))


@attack.command(cls=Command)
@global_options
@click.argument("amount", type=AMOUNT)
@click.pass_context
def mint(ctx: click.Context, amount: int) -> None:
    """Put an output of AMOUNT from nothing, to the operator, into the next block.

    \b
    Example:
      p2pchan plasma attack mint 1000 --datadir /tmp/op
    """
    params = {"attack": "mint", "amount": amount}
    emit(ctx, run(ctx, lambda: _call_operator(ctx, "plasma_attack", params)))


@attack.command("double-spend", cls=Command)
@global_options
@click.argument("utxo_pos", type=AMOUNT)
@click.pass_context
def double_spend(ctx: click.Context, utxo_pos: int) -> None:
    """Spend UTXO_POS again in the next block, for the operator, signed by the operator.

    \b
    Example:
      p2pchan plasma attack double-spend 1000000000 --datadir /tmp/op
    """
    params = {"attack": "double-spend", "utxo_pos": utxo_pos}
    emit(ctx, run(ctx, lambda: _call_operator(ctx, "plasma_attack", params)))
