"""`p2pchan bench restart`: what a payer's history costs it at restart. Two `--dev` node
processes and a layer 1, one channel; node a pays node b N payments of 1 (483 in flight,
generated inside the node by `debug_send_many`, in rounds so that the generator's own lists stay
small), then a is killed with SIGKILL and started again on the same data dir.

Measured: `restart_s`, from starting the process to its `node.json` (what is live loaded, the
journal left by the crash read for pending payments, layer 1 caught up); `first_payment_s`, from
the same start until a new payment to b has succeeded (b redialled, the channel re-synced); a's
resident memory just before the kill (`rss_mb_before`) and after that first payment
(`rss_mb_after`); the time `payments --limit 20` takes to answer then (`first_page_ms`: it first
compacts what the crash left in the journal) and once a has gone idle (`page_ms`); the size of
each node's database (its file and WAL) per payment, then. The same kill and restart of a made
before any payment (`fresh_*`) is the yardstick.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from p2pchan.errors import P2pchanError
from p2pchan.net.rpc_client import RpcClient, RpcError
from p2pchan_cli.bench_channel import MAX_PER_DIRECTION, start_network
from p2pchan_cli.bench_l1 import machine_description
from p2pchan_cli.processes import ChildProcess, node_process

ROUND = 100_000  # payments per `debug_send_many` call
FIRST_PAYMENT_TIMEOUT = 120.0
SETTLE_SECONDS = 3.0  # for the restarted payer to compact its journal before its size is read


@dataclass(frozen=True)
class RestartBenchConfig:
    payments: int = 100_000
    concurrency: int = MAX_PER_DIRECTION


def rss_mb(process: ChildProcess) -> float:
    """The resident memory of a child process, in MB (from /proc)."""
    assert process.process is not None
    for line in Path(f"/proc/{process.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise P2pchanError("no VmRSS in /proc: this benchmark needs Linux")


def database_bytes(datadir: Path) -> int:
    return sum(
        path.stat().st_size
        for path in (datadir / "node.sqlite", datadir / "node.sqlite-wal")
        if path.exists()
    )


async def _pay(payer: ChildProcess, payee: ChildProcess, count: int, concurrency: int) -> float:
    """`count` payments of 1 from payer to payee, in rounds; the seconds they took."""
    started = time.perf_counter()
    async with RpcClient.connect(payer.ready_file.parent) as rpc:
        left = count
        while left:
            this_round = min(left, ROUND)
            result = await rpc.call(
                "debug_send_many",
                {
                    "node_id": payee.ready["node_id"],
                    "amount": 1,
                    "count": this_round,
                    "concurrency": concurrency,
                },
            )
            if result["succeeded"] != this_round:
                raise P2pchanError(f"only {result['succeeded']} of {this_round} succeeded")
            left -= this_round
    return time.perf_counter() - started


async def _first_payment(payer: ChildProcess, payee: ChildProcess) -> None:
    """Send 1 to the payee as soon as the restarted payer can (it redials, re-syncs)."""
    with trio.fail_after(FIRST_PAYMENT_TIMEOUT):
        async with RpcClient.connect(payer.ready_file.parent) as rpc:
            while True:
                try:
                    params = {"node_id": payee.ready["node_id"], "amount": 1, "timeout": 30}
                    result = await rpc.call("send", params)
                except RpcError:
                    await trio.sleep(0.01)  # not reconnected yet: nothing was sent
                    continue
                if result["status"] == "succeeded":
                    return
                raise P2pchanError(f"the first payment after the restart: {result}")


@dataclass(frozen=True)
class Restarted:
    restart_s: float  # from the process's start to its node.json
    first_payment_s: float  # from the same start to a new payment's success
    rss_mb: float  # after that payment


async def _kill_and_restart(children: list[ChildProcess]) -> Restarted:
    """Kill the payer (children[1]) with SIGKILL, start it again on its data dir (it replaces
    the old one in `children`), and pay the payee once."""
    chain, payer, payee = children
    payer.kill()
    await payer.wait_exit()
    l1 = f"{chain.ready['host']}:{chain.ready['port']}"
    restarted = node_process(payer.ready_file.parent, l1, "--dev", name="a", log_level="warning")
    children[1] = restarted
    started = time.perf_counter()
    await restarted.start()
    restart_s = time.perf_counter() - started
    await _first_payment(restarted, payee)
    return Restarted(restart_s, time.perf_counter() - started, rss_mb(restarted))


async def _page_ms(payer: ChildProcess) -> float:
    """How long `payments --limit 20` takes the payer to answer (the RPC, as the CLI asks)."""
    async with RpcClient.connect(payer.ready_file.parent) as rpc:
        started = time.perf_counter()
        await rpc.call("payments", {"limit": 20})
        return (time.perf_counter() - started) * 1000


async def run_restart_bench(config: RestartBenchConfig) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="p2pchan-bench-restart-"))
    children: list[ChildProcess] = []
    try:
        await start_network(workdir, config.payments + 10_000, children, None)
        fresh = await _kill_and_restart(children)  # the yardstick: no history yet
        seconds = await _pay(children[1], children[2], config.payments, config.concurrency)
        rss_before = rss_mb(children[1])
        after = await _kill_and_restart(children)
        page_ms = await _page_ms(children[1])  # compacts first what the crash left
        await trio.sleep(SETTLE_SECONDS)
        page_settled_ms = await _page_ms(children[1])
        payer_bytes = database_bytes(children[1].ready_file.parent)
        payee_bytes = database_bytes(children[2].ready_file.parent)
        rss_settled = rss_mb(children[1])
    finally:
        for child in reversed(children):
            await child.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "payments": config.payments,
        "payments_per_s": round(config.payments / seconds),
        "restart_s": round(after.restart_s, 3),
        "first_payment_s": round(after.first_payment_s, 3),
        "fresh_restart_s": round(fresh.restart_s, 3),
        "fresh_first_payment_s": round(fresh.first_payment_s, 3),
        "rss_mb_fresh": round(fresh.rss_mb, 1),
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(after.rss_mb, 1),
        "rss_mb_settled": round(rss_settled, 1),
        "first_page_ms": round(page_ms, 1),
        "page_ms": round(page_settled_ms, 1),
        "db_bytes_per_payment": round(payer_bytes / config.payments, 1),
        "payee_db_bytes_per_payment": round(payee_bytes / config.payments, 1),
        "machine": machine_description(),
    }
