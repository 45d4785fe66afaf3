"""`p2pchan bench plasma`: one operator's committed transactions per second, a watcher's pace,
and (with the pure contract) a mass exit's pace per layer-1 block.

A real layer 1 and a real operator process run with their logs fsynced as in production (the
operator appends and fdatasyncs each block before committing its root). Setup: a few deposits
fanned out inside the child chain (each output split in two, level by level) until there is one
output per transaction to measure. Then the benchmark pre-signs one transaction per output (one
input, one output: one Ed25519 verification each), pipelines them over a few connections, and
stops the clock when layer 1 holds the root of the block with the last one. The watcher part
fetches those blocks and checks each as a watcher does (operator signature, root, every
transaction against the UTXO set), timed apart from the fetching. The mass exit part applies
signed `plasma_start_exit` calls (Merkle proof, confirmation and three signatures each) and
`plasma_finalize_exits` calls to a layer-1 state in this process and converts the rates to
exits per one-second layer-1 block.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from p2pchan.crypto.keys import Identity
from p2pchan.crypto.merkle import MerkleTree
from p2pchan.errors import P2pchanError
from p2pchan.l1 import chain as l1_chain
from p2pchan.l1.blocks import MAX_BLOCK_TRANSACTIONS
from p2pchan.l1.client import L1Client
from p2pchan.l1.genesis import Allocation, GenesisSpec
from p2pchan.l1.plasma_contract import plasma_id_for
from p2pchan.l1.plasma_state import MAX_FINALIZE_PER_CALL
from p2pchan.l1.state import ChainState
from p2pchan.l1.transactions import (
    PlasmaCreate,
    PlasmaDeposit,
    PlasmaFinalizeExits,
    PlasmaStartExit,
    PlasmaSubmitBlock,
    decode_transaction,
    sign_transaction,
)
from p2pchan.l1.wallet import Wallet
from p2pchan.plasma.api import (
    MAX_REQUEST_SIZE,
    MAX_RESPONSE_SIZE,
    REQUESTS,
    RESPONSES,
    SubmitTxRequest,
    TxResult,
)
from p2pchan.plasma.block import check_block, validate_transactions
from p2pchan.plasma.client import OperatorClient
from p2pchan.plasma.utxo import UtxoSet
from p2pchan.types import PlasmaId
from p2pchan.wire.framing import FrameDecoder, frame
from p2pchan.wire.plasma import (
    PlasmaTransaction,
    SignedPlasmaTx,
    TxInput,
    TxOutput,
    sign_confirmation,
    sign_tx,
    split_utxo_pos,
    utxo_pos,
)
from p2pchan_cli.bench_l1 import machine_description
from p2pchan_cli.processes import l1_process, plasma_operator_process

DEPOSIT_AMOUNT = 1 << 24


@dataclass(frozen=True)
class PlasmaBenchConfig:
    transactions: int = 20_000
    connections: int = 4
    block_interval: float = 0.5
    l1_block_time: float = 0.2
    depositors: int = 64
    exits: int = 2_000  # 0: skip the mass-exit part
    profile: Path | None = None  # write the operator's cProfile statistics here


@dataclass(frozen=True)
class Coin:
    position: int
    owner: Identity
    amount: int


def _spend(plasma_id: PlasmaId, coin: Coin, outputs: list[TxOutput]) -> SignedPlasmaTx:
    tx = PlasmaTransaction(plasma_id, (TxInput(*split_utxo_pos(coin.position)),), tuple(outputs))
    return sign_tx(tx, [coin.owner])


async def _pipeline(host: str, port: int, frames: list[bytes], results: list[TxResult]) -> None:
    """Send every frame on one connection; collect each admission."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:

        async def send_all() -> None:
            for start in range(0, len(frames), 256):
                await stream.send_all(b"".join(frames[start : start + 256]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_all)
            decoder = FrameDecoder(max_size=MAX_RESPONSE_SIZE)
            received = 0
            while received < len(frames):
                data = await stream.receive_some(1 << 20)
                if not data:
                    raise P2pchanError("the operator closed the benchmark connection")
                for body in decoder.feed(data):
                    response = RESPONSES.decode(body)
                    if not isinstance(response, TxResult):
                        raise P2pchanError(f"transaction refused: {response}")
                    results.append(response)
                    received += 1


def _frames(txs: list[SignedPlasmaTx], connections: int) -> list[list[bytes]]:
    per_connection: list[list[bytes]] = [[] for _ in range(connections)]
    for index, signed in enumerate(txs):
        request = SubmitTxRequest(index + 1, signed, False)
        encoded = frame(REQUESTS.encode(request), max_size=MAX_REQUEST_SIZE)
        per_connection[index % connections].append(encoded)
    return per_connection


async def _send_all(
    host: str, port: int, txs: list[SignedPlasmaTx], connections: int
) -> list[TxResult]:
    results: list[TxResult] = []
    async with trio.open_nursery() as nursery:
        for frames in _frames(txs, connections):
            nursery.start_soon(_pipeline, host, port, frames, results)
    return results


async def _until_committed(l1: L1Client, plasma_id: PlasmaId, blknum: int) -> None:
    while await l1.plasma_block(plasma_id, blknum) is None:
        await l1.wait_for_height((await l1.status()).height + 1)


async def _deposit_all(l1: L1Client, plasma_id: PlasmaId, depositors: list[Identity]) -> list[Coin]:
    chain_id = (await l1.status()).chain_id
    for who in depositors:
        await l1.faucet(who.node_id, DEPOSIT_AMOUNT, wait=False)
    await l1.wait_for_height((await l1.status()).height + 2)
    results = []
    for who in depositors:  # one deposit each, in this order: blocks 1, 2, ...
        results.append(await Wallet(l1, who, chain_id).plasma_deposit(plasma_id, DEPOSIT_AMOUNT))
    await l1.wait_for_height(max(result.block for result in results))
    return [
        Coin(utxo_pos(index + 1, 0, 0), who, DEPOSIT_AMOUNT) for index, who in enumerate(depositors)
    ]


async def _until_operator_knows(host: str, port: int, depositor: Identity) -> None:
    """The operator learns deposits from layer 1's events: poll it (another process)."""
    async with OperatorClient.connect(host, port) as client:
        while True:
            if await client.utxos(depositor.node_id):
                return
            await trio.sleep(0.05)


async def _fan_out(
    host: str, port: int, l1: L1Client, plasma_id: PlasmaId, coins: list[Coin], wanted: int
) -> list[Coin]:
    """Split every coin in two, level by level, until there are `wanted` of them."""
    while len(coins) < wanted:
        splits = [
            _spend(
                plasma_id,
                coin,
                [
                    TxOutput(coin.owner.node_id, coin.amount // 2),
                    TxOutput(coin.owner.node_id, coin.amount - coin.amount // 2),
                ],
            )
            for coin in coins[: wanted - len(coins)]
        ]
        results = await _send_all(host, port, splits, 4)
        by_hash = {result.tx_hash: result for result in results}
        await _until_committed(l1, plasma_id, max(result.blknum for result in results))
        next_coins = coins[len(splits) :]
        for coin, signed in zip(coins, splits, strict=False):
            placed = by_hash[signed.tx_hash]
            for oindex, amount in enumerate((coin.amount // 2, coin.amount - coin.amount // 2)):
                next_coins.append(
                    Coin(utxo_pos(placed.blknum, placed.txindex, oindex), coin.owner, amount)
                )
        coins = next_coins
    return coins[:wanted]


async def _watch(
    host: str,
    port: int,
    l1: L1Client,
    plasma_id: PlasmaId,
    operator: bytes,
    depositors: list[Identity],
    last_block: int,
    measured_from: int,
) -> dict[str, Any]:
    """Fetch every block and check it as a watcher does; time the measured blocks' checks."""
    utxos = UtxoSet()
    for index, who in enumerate(depositors):
        utxos.add(utxo_pos(index + 1, 0, 0), TxOutput(who.node_id, DEPOSIT_AMOUNT))
    checked_seconds = fetched_seconds = 0.0
    blocks = transactions = 0
    async with OperatorClient.connect(host, port) as client:
        for blknum in range(1000, last_block + 1, 1000):
            commit = await l1.plasma_block(plasma_id, blknum)
            assert commit is not None
            fetch_started = time.perf_counter()
            block = await client.block(blknum)
            check_started = time.perf_counter()
            check_block(
                block, plasma_id=plasma_id, blknum=blknum, operator=operator, root=commit.root
            )
            validate_transactions(utxos, block)
            done = time.perf_counter()
            if blknum >= measured_from:
                fetched_seconds += check_started - fetch_started
                checked_seconds += done - check_started
                blocks += 1
                transactions += len(block.transactions)
    return {
        "watcher_blocks": blocks,
        "watcher_transactions": transactions,
        "watcher_check_seconds": round(checked_seconds, 3),
        "watcher_blocks_per_s": round(blocks / checked_seconds, 1) if checked_seconds else None,
        "watcher_transactions_per_s": round(transactions / checked_seconds)
        if checked_seconds
        else None,
        "watcher_fetch_seconds": round(fetched_seconds, 3),
    }


async def run_plasma_bench(config: PlasmaBenchConfig) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="p2pchan-bench-plasma-"))
    chain = l1_process(
        workdir / "l1",
        "--port",
        "0",
        "--dev",
        "--block-time",
        str(config.l1_block_time),
        log_level="warning",
    )
    operator = None
    try:
        l1_ready = await chain.start()
        l1_address = f"{l1_ready['host']}:{l1_ready['port']}"
        operator = plasma_operator_process(
            workdir / "operator",
            l1_address,
            "--listen",
            "127.0.0.1:0",
            "--block-interval",
            str(config.block_interval),
            "--challenge-period",
            "20",
            *(["--profile", str(config.profile.absolute())] if config.profile else []),
            log_level="warning",
        )
        ready = await operator.start()
        host, port = ready["host"], int(ready["port"])
        plasma_id = PlasmaId(bytes.fromhex(ready["plasma_id"]))
        depositors = [
            Identity(bytes([1 + i % 250, i // 250]) * 16) for i in range(config.depositors)
        ]
        async with L1Client.connect(l1_ready["host"], int(l1_ready["port"])) as l1:
            coins = await _deposit_all(l1, plasma_id, depositors)
            await _until_operator_knows(host, port, depositors[-1])
            coins = await _fan_out(host, port, l1, plasma_id, coins, config.transactions)
            recipients = [Identity(bytes([200, i]) * 16).node_id for i in range(64)]
            sign_started = time.perf_counter()
            txs = [
                _spend(plasma_id, coin, [TxOutput(recipients[index % 64], coin.amount)])
                for index, coin in enumerate(coins)
            ]
            sign_seconds = time.perf_counter() - sign_started
            started = time.perf_counter()
            results = await _send_all(host, port, txs, config.connections)
            admitted = time.perf_counter()
            last_block = max(result.blknum for result in results)
            first_block = min(result.blknum for result in results)
            await _until_committed(l1, plasma_id, last_block)
            committed = time.perf_counter()
            watcher = await _watch(
                host,
                port,
                l1,
                plasma_id,
                bytes.fromhex(ready["operator"]),
                depositors,
                last_block,
                first_block,
            )
    finally:
        if operator is not None:
            await operator.stop()
        await chain.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = committed - started
    report: dict[str, Any] = {
        "transactions": config.transactions,
        "connections": config.connections,
        "block_interval": config.block_interval,
        "blocks": (last_block - first_block) // 1000 + 1,
        "seconds": round(seconds, 3),
        "transactions_per_s": round(config.transactions / seconds),
        "admitted_per_s": round(config.transactions / (admitted - started)),
        "client_sign_per_s": round(config.transactions / sign_seconds),
        **watcher,
    }
    if config.exits:
        report.update(mass_exit(config.exits))
    report["machine"] = machine_description()
    return report


def mass_exit(count: int) -> dict[str, Any]:
    """Exits started and finalized per layer-1 block, measured on the pure contract."""
    operator, owner = Identity(b"\x51" * 32), Identity(b"\x52" * 32)
    genesis = GenesisSpec(
        (Allocation(operator.node_id, 10**9), Allocation(owner.node_id, 10**12))
    ).create(nonce=bytes(32), timestamp_ms=0, dev=True)
    state = ChainState.from_genesis(genesis)
    chain_id = genesis.chain_id
    nonces = {operator.node_id: 0, owner.node_id: 0}

    def signed(who: Identity, call: Any) -> Any:
        tx = sign_transaction(who, chain_id, nonces[who.node_id], call)
        nonces[who.node_id] += 1
        return tx

    plasma_id = plasma_id_for(chain_id, operator.node_id, 0)
    height = 1
    l1_chain.apply(state, decode_transaction(signed(operator, PlasmaCreate(1, 20))), height)
    # One deposit, one block of `count` payments to the owner (each with its own output).
    l1_chain.apply(
        state, decode_transaction(signed(owner, PlasmaDeposit(plasma_id, count))), height
    )
    payments = []
    for index in range(count):  # each spends "something" of the owner's: one confirmation each
        tx = PlasmaTransaction(
            plasma_id, (TxInput(1 + index, 0, 0),), (TxOutput(owner.node_id, 1),)
        )
        payments.append(sign_tx(tx, [owner]))
    tree = MerkleTree([payment.leaf for payment in payments])
    l1_chain.apply(
        state, decode_transaction(signed(operator, PlasmaSubmitBlock(plasma_id, tree.root))), height
    )
    exits = []
    for index, payment in enumerate(payments):
        confirmations = tuple(
            sign_confirmation(owner, payment.tx_hash, tree.root) for _ in payment.signatures
        )
        call = PlasmaStartExit(
            plasma_id, utxo_pos(1000, index, 0), payment, tree.proof(index), confirmations
        )
        exits.append(signed(owner, call))
    height = 2
    started = time.perf_counter()
    for tx in exits:  # what layer 1 does per call: verify the envelope, then apply it
        l1_chain.apply(state, decode_transaction(tx), height)
    start_seconds = time.perf_counter() - started
    finalizes = [
        signed(owner, PlasmaFinalizeExits(plasma_id, MAX_FINALIZE_PER_CALL))
        for _ in range(-(-count // MAX_FINALIZE_PER_CALL))
    ]
    height = 1000
    started = time.perf_counter()
    for tx in finalizes:
        l1_chain.apply(state, decode_transaction(tx), height)
    finalize_seconds = time.perf_counter() - started
    assert not state.plasma[plasma_id].queue
    started_per_s = count / start_seconds
    finalized_per_s = count / finalize_seconds
    return {
        "exits": count,
        "exits_started_per_s": round(started_per_s),
        "exits_finalized_per_s": round(finalized_per_s),
        "exits_started_per_1s_block": round(min(started_per_s, MAX_BLOCK_TRANSACTIONS)),
        "exits_finalized_per_1s_block": round(
            min(finalized_per_s, MAX_BLOCK_TRANSACTIONS * MAX_FINALIZE_PER_CALL)
        ),
    }
