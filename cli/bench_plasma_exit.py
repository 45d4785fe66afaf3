"""`p2pchan bench plasma-exit`: a mass exit after a withheld block, with real processes, and
the largest mass exit that starts within one challenge period.

Real part: a real layer 1 (`--block-time`, 1 s by default), a real `--dev` operator and N real
node processes, each the wallet and watcher of one user. Each user deposits and pays the next
one in a ring (so each owns a deposit-free change output and a received output, both in an
operator block: exits that need a Merkle proof and confirmations). Then the operator withholds
a block; every node finds the chain bad `--withhold-timeout` blocks after its commitment and
exits everything at once. Counted on layer 1, block by block: exits started, exits finalized,
and whether every user got back exactly what it owned.

Pure part: the same exits on the pure contract in this process (`bench_plasma.mass_exit`), for
the large N a handful of processes cannot reach: exits started per second, hence per one-second
layer-1 block (capped by the block's 20,000 transactions), and the largest N whose exits all
start within one challenge period: the exits of a bad chain must start between its detection
(`withhold_timeout` + 1 blocks after the bad block) and one challenge period after it to come
before the bad block's outputs (docs/PLASMA.md), so N = per-block pace * (cp - w - 1).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio

from p2pchan.errors import P2pchanError
from p2pchan.l1.blocks import MAX_BLOCK_TRANSACTIONS
from p2pchan.l1.client import L1Client, subscribe
from p2pchan.l1.events import PlasmaBlockSubmitted, PlasmaExitsFinalized, PlasmaExitStarted
from p2pchan.net.rpc_client import RpcClient
from p2pchan.types import Address
from p2pchan_cli.bench_l1 import machine_description
from p2pchan_cli.bench_plasma import mass_exit
from p2pchan_cli.processes import (
    ChildProcess,
    l1_process,
    node_process,
    p2pchan_argv,
    plasma_operator_process,
)

FUND = 1_000_000
DEPOSIT = 1_000
PAYMENT = 300
POLL = 0.1


@dataclass(frozen=True)
class MassExitConfig:
    nodes: int = 6
    block_time: float = 1.0
    challenge_period: int = 20
    withhold_timeout: int = 2
    pure_exits: int = 5_000  # 0: skip the pure part


@dataclass
class _Ledger:
    """Layer-1 events of the chain, by height, while the run goes on."""

    commits: dict[int, int]  # child block number: layer-1 height
    started: Counter[int]
    finalized: Counter[int]

    @classmethod
    def empty(cls) -> _Ledger:
        return cls({}, Counter(), Counter())


async def _record(host: str, port: int, from_height: int, ledger: _Ledger) -> None:
    async with subscribe(host, port, from_height) as notices:
        async for notice in notices:
            height = notice.header.height
            for event in notice.events:
                if isinstance(event, PlasmaBlockSubmitted):
                    ledger.commits[event.blknum] = height
                elif isinstance(event, PlasmaExitStarted):
                    ledger.started[height] += 1
                elif isinstance(event, PlasmaExitsFinalized):
                    ledger.finalized[height] += len(event.exits)


async def _call(datadir: Path, method: str, **params: Any) -> Any:
    async with RpcClient.connect(datadir) as rpc:
        return await rpc.call(method, params)


async def _until(datadir: Path, method: str, check: Any) -> Any:
    while True:
        result = await _call(datadir, method)
        if check(result):
            return result
        await trio.sleep(POLL)


async def _start_nodes(
    workdir: Path, l1: str, count: int, children: list[ChildProcess]
) -> list[tuple[Path, str]]:
    nodes = []
    for index in range(count):
        datadir = workdir / f"user{index}"
        await trio.run_process(
            p2pchan_argv("node", "init", "--datadir", str(datadir)), capture_stdout=True
        )
        child = node_process(datadir, l1, name=f"user{index}", log_level="warning")
        children.append(child)
        await child.start()
        nodes.append((datadir, str(child.ready["node_id"])))
    return nodes


async def run_mass_exit_bench(config: MassExitConfig) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="p2pchan-bench-plasma-exit-"))
    children: list[ChildProcess] = []
    try:
        report = await _real_part(config, workdir, children)
    finally:
        for child in reversed(children):
            await child.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if config.pure_exits:
        pure = mass_exit(config.pure_exits)
        per_block = min(pure["exits_started_per_s"] * config.block_time, MAX_BLOCK_TRANSACTIONS)
        report["pure"] = pure
        report["largest_n_within_challenge_period"] = {
            str(cp): int(per_block * (cp - config.withhold_timeout - 1))
            for cp in sorted({config.challenge_period, 100})
        }
    report["machine"] = machine_description()
    return report


async def _real_part(
    config: MassExitConfig, workdir: Path, children: list[ChildProcess]
) -> dict[str, Any]:
    chain = l1_process(
        workdir / "l1", "--port", "0", "--dev", "--block-time", str(config.block_time)
    )
    children.append(chain)
    ready = await chain.start()
    host, port = str(ready["host"]), int(ready["port"])
    l1 = f"{host}:{port}"
    operator = plasma_operator_process(
        workdir / "operator",
        l1,
        "--listen",
        "127.0.0.1:0",
        "--block-interval",
        str(min(config.block_time, 0.5)),
        "--challenge-period",
        str(config.challenge_period),
        "--dev",
        log_level="warning",
    )
    children.append(operator)
    operator_ready = await operator.start()
    nodes = await _start_nodes(workdir, l1, config.nodes, children)
    ledger = _Ledger.empty()
    async with L1Client.connect(host, port) as client, trio.open_nursery() as nursery:
        nursery.start_soon(_record, host, port, (await client.status()).height, ledger)
        for _, node_id in nodes:
            await client.faucet(Address(bytes.fromhex(node_id)), FUND)
        await client.wait_for_height((await client.status()).height + 1)
        join = {
            "host": operator_ready["host"],
            "port": operator_ready["port"],
            "withhold_timeout": config.withhold_timeout,
        }
        for datadir, _ in nodes:
            await _call(datadir, "plasma_join", **join)
        async with trio.open_nursery() as setup:
            for datadir, _ in nodes:
                setup.start_soon(partial(_call, datadir, "plasma_deposit", amount=DEPOSIT))
        async with trio.open_nursery() as setup:
            for index, (datadir, _) in enumerate(nodes):
                payee = nodes[(index + 1) % len(nodes)][1]
                setup.start_soon(
                    partial(_call, datadir, "plasma_send", node_id=payee, amount=PAYMENT)
                )
        owned = {}
        for datadir, node_id in nodes:
            balance = await _until(datadir, "plasma_balance", lambda b: b["pending"] == 0)
            owned[node_id] = balance["spendable"]
        before = {
            node_id: (await client.account(Address(bytes.fromhex(node_id)))).balance
            for _, node_id in nodes
        }
        withheld = await _call(workdir / "operator", "plasma_attack", attack="withhold-next")
        bad_block = int(withheld["block"])
        await _call(nodes[0][0], "plasma_send", node_id=nodes[1][1], amount=1, wait=False)
        began = time.perf_counter()
        for datadir, _ in nodes:
            await _until(datadir, "plasma_status", lambda s: not s["chain_ok"])
        detected = time.perf_counter()
        for datadir, _ in nodes:
            await _until(datadir, "plasma_balance", lambda b: not b["exiting"] and not b["pending"])
        paid = time.perf_counter()
        after = {
            node_id: (await client.account(Address(bytes.fromhex(node_id)))).balance
            for _, node_id in nodes
        }
        nursery.cancel_scope.cancel()
    gained = {node_id: after[node_id] - before[node_id] for node_id in before}
    if gained != owned:
        raise P2pchanError(f"a user was not paid what it owned: {gained} != {owned}")
    bad_height = ledger.commits[bad_block]
    starts = sorted(ledger.started)
    finals = sorted(ledger.finalized)
    return {
        "nodes": config.nodes,
        "exits": sum(ledger.started.values()),
        "block_time": config.block_time,
        "challenge_period": config.challenge_period,
        "withhold_timeout": config.withhold_timeout,
        "bad_block_height": bad_height,
        "first_exit_height": starts[0],
        "last_exit_height": starts[-1],
        "blocks_to_start_all": starts[-1] - starts[0] + 1,
        "all_started_within_challenge_period": starts[-1] - bad_height <= config.challenge_period,
        "max_exits_started_per_block": max(ledger.started.values()),
        "exits_started_by_height": {str(h): ledger.started[h] for h in starts},
        "exits_finalized_by_height": {str(h): ledger.finalized[h] for h in finals},
        "last_paid_height": finals[-1],
        "seconds_to_detect": round(detected - began, 2),
        "seconds_to_paid": round(paid - began, 2),
        "paid_in_full": True,
    }
