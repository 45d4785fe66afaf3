"""`p2pchan l1 ...`: run the toy layer-1 node and talk to it."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import click
import structlog
import trio

from p2pchan.l1.client import L1Client
from p2pchan.l1.genesis import load_genesis_spec
from p2pchan.l1.server import READY_FILE, serve_l1
from p2pchan.l1.service import ChainService
from p2pchan.log import bind_process
from p2pchan.types import Address
from p2pchan_cli.common import (
    check_port_free,
    emit,
    global_options,
    l1_address,
    run,
    server_logging,
    settings,
)
from p2pchan_cli.params import AMOUNT, HEX_ID, Command, CountType, HostPort
from p2pchan_cli.views import l1_view

log = structlog.get_logger("p2pchan.cli")


@click.group()
def l1() -> None:
    """Run the toy layer-1 chain and query it."""


l1.command_class = Command


@l1.command()
@global_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=CountType(0, 65535),
    default=7700,
    show_default=True,
    help="Port to listen on (0 picks a free one; see DATADIR/l1.json).",
)
@click.option(
    "--block-time",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds between blocks; 0 makes blocks only on `l1 mine`.",
)
@click.option("--dev", is_flag=True, help="Enable the faucet (a development chain).")
@click.option(
    "--genesis",
    "genesis_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Genesis file: initial allocations and parameters (first start only).",
)
@click.pass_context
def start(
    ctx: click.Context,
    host: str,
    port: int,
    block_time: float,
    dev: bool,
    genesis_file: Path | None,
) -> None:
    """Start the layer-1 node in the foreground (SIGINT/SIGTERM stop it cleanly).

    Writes DATADIR/l1.json once listening.

    \b
    Example:
      p2pchan l1 start --datadir /tmp/net/l1 --port 7700 --dev
    """
    datadir = settings(ctx).datadir
    if datadir is None:
        raise click.UsageError("l1 start needs --datadir (the chain's own directory)", ctx)
    check_port_free(HostPort(host, port), "--port")
    server_logging(ctx)
    spec = load_genesis_spec(genesis_file) if genesis_file is not None else None
    bind_process(process="l1")
    service = ChainService.open(datadir, block_time=block_time, dev=dev, genesis_spec=spec)

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: serve_l1(
                    service, host, port, ready_file=datadir / READY_FILE, task_status=task_status
                )
            )
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("l1_stopping", signal=signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break

    try:
        trio.run(serve)
    finally:
        service.close()
    log.info("l1_stopped")


@l1.command()
@global_options
@click.pass_context
def status(ctx: click.Context) -> None:
    """Chain id, height and totals.

    \b
    Example:
      p2pchan l1 status --l1 127.0.0.1:7700
    """
    chain = l1_address(ctx)

    async def main() -> dict[str, Any]:
        async with L1Client.connect(chain.host, chain.port) as client:
            result = await client.status()
        return {
            "chain_id": result.chain_id.hex(),
            "height": result.height,
            "head_hash": result.head_hash.hex(),
            "block_time": result.block_time_ms / 1000,
            "dev": result.dev,
            "min_fee": result.min_fee,
            "pending_transactions": result.pending_transactions,
            "supply": result.supply,
            "burned": result.burned,
            "contract_holdings": result.contract_holdings,
        }

    document = run(ctx, main)
    emit(ctx, document, lambda _width: l1_view(document))


@l1.command()
@global_options
@click.argument("node_id", metavar="NODE_ID", type=HEX_ID)
@click.argument("amount", metavar="AMOUNT", type=AMOUNT)
@click.option(
    "--wait/--no-wait",
    default=None,
    help="Wait until the grant is in a durable block (default: wait unless --block-time is 0).",
)
@click.pass_context
def faucet(ctx: click.Context, node_id: str, amount: int, wait: bool | None) -> None:
    """Grant AMOUNT to NODE_ID on a --dev chain.

    \b
    Example:
      p2pchan l1 faucet $ALICE 100000 --l1 127.0.0.1:7700
    """
    address = Address(bytes.fromhex(node_id))
    value = amount
    chain = l1_address(ctx)

    async def main() -> dict[str, Any]:
        async with L1Client.connect(chain.host, chain.port) as client:
            should_wait = wait if wait is not None else (await client.status()).block_time_ms > 0
            result = await client.faucet(address, value, wait=should_wait)
        return {
            "node_id": address.hex(),
            "amount": value,
            "tx_hash": result.tx_hash.hex(),
            "block": result.block,
            "included": result.included,
        }

    document = run(ctx, main)
    emit(ctx, document, lambda _width: l1_view(document))


@l1.command()
@global_options
@click.argument("node_id", metavar="NODE_ID", type=HEX_ID)
@click.pass_context
def balance(ctx: click.Context, node_id: str) -> None:
    """Balance and nonce of NODE_ID as of the head block (and with pending transactions).

    \b
    Example:
      p2pchan l1 balance $BOB --l1 127.0.0.1:7700
    """
    address = Address(bytes.fromhex(node_id))
    chain = l1_address(ctx)

    async def main() -> dict[str, Any]:
        async with L1Client.connect(chain.host, chain.port) as client:
            result = await client.account(address)
        return {
            "node_id": address.hex(),
            "balance": result.balance,
            "nonce": result.nonce,
            "pending_balance": result.pending_balance,
            "pending_nonce": result.pending_nonce,
        }

    document = run(ctx, main)
    emit(ctx, document, lambda _width: l1_view(document))


@l1.command()
@global_options
@click.argument("count", metavar="N", type=CountType(1, 10_000), default=1)
@click.pass_context
def mine(ctx: click.Context, count: int) -> None:
    """Seal N blocks now (for --block-time 0 chains; works on any).

    \b
    Example:
      p2pchan l1 mine 3 --l1 127.0.0.1:7700
    """
    chain = l1_address(ctx)

    async def main() -> dict[str, Any]:
        async with L1Client.connect(chain.host, chain.port) as client:
            return {"height": await client.mine(count)}

    document = run(ctx, main)
    emit(ctx, document, lambda _width: l1_view(document))
