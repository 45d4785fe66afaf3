"""`p2pchan plasma ...`: run a child chain's operator, drive a --dev operator's attacks, and
the user's side through the channel node, which is the user's Plasma wallet and watcher:
`join`, `deposit`, `send`, `utxos`, `balance`, `exit`, `exits`, `status`.

The user's commands talk to the node in DATADIR (the node's, as for every node command); the
operator's take the operator's own DATADIR. With one chain joined, the user's commands use it;
with several, `--chain PLASMA_ID` says which.
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
from p2pchan.net.plasma_wallets import DEFAULT_WITHHOLD_TIMEOUT
from p2pchan.net.rpc_client import RpcClient
from p2pchan.plasma.operator_server import OperatorConfig, open_operator
from p2pchan.plasma.wallet_view import OUTPUT_STATUSES
from p2pchan_cli.common import (
    EXIT_CODES_HELP,
    EXIT_PENDING,
    TimedOut,
    call_node,
    check_port_free,
    emit,
    fail,
    global_options,
    l1_address,
    run,
    server_logging,
    settings,
)
from p2pchan_cli.params import AMOUNT, HEX_ID, HOST_PORT, Command, HostPort
from p2pchan_cli.tables import plasma_exit_table, plasma_exits_table, plasma_utxo_table
from p2pchan_cli.views import plasma_balance_view, plasma_send_view, plasma_status_view

log = structlog.get_logger("p2pchan.cli")


@click.group()
def plasma() -> None:
    """Plasma child chains on the same layer 1: the operator process, its dev attacks, and
    the node as the user's wallet and watcher."""


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


# -- the user's side, through the node ----------------------------------------------------------

_CHAIN = click.option(
    "--chain",
    "plasma_id",
    type=HEX_ID,
    default=None,
    metavar="PLASMA_ID",
    help="The child chain (needed only when the node joined several).",
)


async def _call_wallet(
    ctx: click.Context, method: str, plasma_id: str | None, params: dict[str, Any]
) -> Any:
    chosen = {} if plasma_id is None else {"plasma_id": plasma_id}
    return await call_node(ctx, method, {**params, **chosen})


@plasma.command()
@global_options
@click.argument("address", metavar="HOST:PORT", type=HOST_PORT)
@click.option(
    "--withhold-timeout",
    type=click.IntRange(min=1),
    default=DEFAULT_WITHHOLD_TIMEOUT,
    show_default=True,
    help="Layer-1 blocks a committed block may stay unserved before the node exits "
    "everything (below the chain's challenge period).",
)
@click.pass_context
def join(ctx: click.Context, address: HostPort, withhold_timeout: int) -> None:
    """Join the child chain of the operator at HOST:PORT; waits until the node's watcher
    caught up with it. Prints the plasma id.

    \b
    Example:
      p2pchan plasma join 127.0.0.1:7800
    """
    params = {"host": address.host, "port": address.port, "withhold_timeout": withhold_timeout}
    result = run(ctx, lambda: call_node(ctx, "plasma_join", params))
    emit(ctx, result, lambda _width: plasma_status_view(result))


@plasma.command("deposit")
@global_options
@_CHAIN
@click.argument("amount", metavar="AMOUNT", type=AMOUNT)
@click.pass_context
def deposit_command(ctx: click.Context, plasma_id: str | None, amount: int) -> None:
    """Move AMOUNT from the node's layer-1 account into the child chain; prints the new
    output's position (utxo_pos).

    \b
    Example:
      p2pchan plasma deposit 500
    """
    result = run(ctx, lambda: _call_wallet(ctx, "plasma_deposit", plasma_id, {"amount": amount}))
    emit(ctx, result, lambda _width: f"deposited {result['amount']}: output {result['utxo_pos']}")


@plasma.command("send", epilog=EXIT_CODES_HELP)
@global_options
@_CHAIN
@click.argument("node_id", metavar="NODE_ID", type=HEX_ID)
@click.argument("amount", metavar="AMOUNT", type=AMOUNT)
@click.option("--no-wait", is_flag=True, help="Return once the operator admitted it.")
@click.pass_context
def send_command(
    ctx: click.Context, plasma_id: str | None, node_id: str, amount: int, no_wait: bool
) -> None:
    """Pay NODE_ID on the child chain from spendable outputs; waits until the payment's block
    is on layer 1, checked and confirmed (then the payee can spend it).

    \b
    Example:
      p2pchan plasma send $BOB 120
    """
    params = {"node_id": node_id, "amount": amount, "wait": not no_wait}
    try:
        result = run(ctx, lambda: _call_wallet(ctx, "plasma_send", plasma_id, params))
    except TimedOut as timed_out:
        fail(
            f"{timed_out}; the payment may still be confirmed: see `p2pchan plasma utxos`",
            EXIT_PENDING,
        )
    emit(ctx, result, lambda _width: plasma_send_view(result))


@plasma.command()
@global_options
@_CHAIN
@click.option("--status", type=click.Choice(OUTPUT_STATUSES), help="Only outputs in this state.")
@click.pass_context
def utxos(ctx: click.Context, plasma_id: str | None, status: str | None) -> None:
    """The node's outputs on the child chain, and what each is now.

    \b
    Example:
      p2pchan plasma utxos --status spendable
    """
    params = {} if status is None else {"status": status}
    listed = run(ctx, lambda: _call_wallet(ctx, "plasma_utxos", plasma_id, params))
    emit(ctx, listed, lambda width: plasma_utxo_table(listed, width))


@plasma.command()
@global_options
@_CHAIN
@click.pass_context
def balance(ctx: click.Context, plasma_id: str | None) -> None:
    """What the node holds on the child chain: spendable, pending, exiting (and exited).

    \b
    Example:
      p2pchan plasma balance --json
    """
    result = run(ctx, lambda: _call_wallet(ctx, "plasma_balance", plasma_id, {}))
    emit(ctx, result, lambda _width: plasma_balance_view(result))


@plasma.command("exit")
@global_options
@_CHAIN
@click.argument("utxo_pos", metavar="[UTXO_POS]", type=AMOUNT, required=False)
@click.option("--all", "every", is_flag=True, help="Exit every spendable output.")
@click.option("--no-wait", is_flag=True, help="Return before layer 1 queued the exits.")
@click.option(
    "--cheat",
    is_flag=True,
    help="On a --dev node only: exit UTXO_POS although it is spent (its bond is lost to "
    "whoever challenges it).",
)
@click.pass_context
def exit_command(
    ctx: click.Context,
    plasma_id: str | None,
    utxo_pos: int | None,
    every: bool,
    no_wait: bool,
    cheat: bool,
) -> None:
    """Leave the child chain with UTXO_POS (or --all): starts its exit on layer 1, with the
    chain's bond; it is paid after the challenge period (`plasma exits`).

    \b
    Example:
      p2pchan plasma exit --all
    """
    if (utxo_pos is None) == (not every):
        raise click.UsageError("give UTXO_POS or --all", ctx)
    if cheat and utxo_pos is None:
        raise click.UsageError("--cheat needs UTXO_POS", ctx)
    params: dict[str, Any] = {"wait": not no_wait, "cheat": cheat}
    params.update({"all": True} if every else {"utxo_pos": utxo_pos})
    listed = run(ctx, lambda: _call_wallet(ctx, "plasma_exit", plasma_id, params))
    emit(ctx, listed, lambda width: plasma_exit_table(listed, width))


@plasma.command()
@global_options
@_CHAIN
@click.pass_context
def exits(ctx: click.Context, plasma_id: str | None) -> None:
    """Every exit of the child chain, in the order layer 1 pays them.

    \b
    Example:
      p2pchan plasma exits
    """
    listed = run(ctx, lambda: _call_wallet(ctx, "plasma_exits", plasma_id, {}))
    emit(ctx, listed, lambda width: plasma_exits_table(listed, width))


@plasma.command()
@global_options
@_CHAIN
@click.pass_context
def status(ctx: click.Context, plasma_id: str | None) -> None:
    """The node's view of the child chain: the last block it checked, and whether the chain
    is good (if not, why: the node exited everything and uses it no more).

    \b
    Example:
      p2pchan plasma status
    """
    result = run(ctx, lambda: _call_wallet(ctx, "plasma_status", plasma_id, {}))
    emit(ctx, result, lambda _width: plasma_status_view(result))
