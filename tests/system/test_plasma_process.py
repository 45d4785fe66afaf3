"""The Plasma operator as a real process with a real layer 1: the CLI contract, deposits via
layer 1 and transactions over TCP committed and served, kill -9 mid-stream losing no block whose
root reached layer 1, the --dev attack switches, and one-line failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from p2pchan.crypto.keys import Identity
from p2pchan.errors import P2pchanError, PlasmaError
from p2pchan.l1.client import L1Client
from p2pchan.l1.wallet import Wallet
from p2pchan.plasma.block import PlasmaBlock, check_block, validate_transactions
from p2pchan.plasma.client import OperatorClient
from p2pchan.plasma.utxo import UtxoSet
from p2pchan.types import PlasmaId
from p2pchan.wire.plasma import (
    PlasmaTransaction,
    SignedPlasmaTx,
    TxInput,
    TxOutput,
    sign_tx,
    split_utxo_pos,
    utxo_pos,
)
from p2pchan_cli.processes import ChildProcess, l1_process, plasma_operator_process
from tests.conftest import ProcessRegistry
from tests.system.support import p2pchan, poll_until

pytestmark = pytest.mark.slow
DEADLINE = 120


async def start_l1(processes: ProcessRegistry, root: Path) -> dict[str, Any]:
    chain = processes.add(l1_process(root / "l1", "--port", "0", "--block-time", "0.05", "--dev"))
    return await chain.start()


async def start_operator(
    processes: ProcessRegistry, datadir: Path, l1: str, *extra: str
) -> ChildProcess:
    child = processes.add(
        plasma_operator_process(
            datadir,
            l1,
            "--listen",
            "127.0.0.1:0",
            "--block-interval",
            "0.05",
            "--challenge-period",
            "20",
            *extra,
        )
    )
    await child.start()
    return child


async def deposits(
    l1: dict[str, Any], who: Identity, plasma_id: PlasmaId, amounts: list[int]
) -> list[int]:
    """Deposit each amount (pipelined, all waited for); return the positions, in order."""
    async with L1Client.connect(l1["host"], l1["port"]) as client:
        await client.faucet(who.node_id, sum(amounts) + 1000, wait=True)
        wallet = Wallet(client, who, (await client.status()).chain_id)
        results = [await wallet.plasma_deposit(plasma_id, amount) for amount in amounts]
        await client.wait_for_height(max(result.block for result in results))
        info = await client.plasma_chain(plasma_id)
    assert info is not None
    last = info.next_deposit_block - 1
    return [utxo_pos(blknum, 0, 0) for blknum in range(last - len(amounts) + 1, last + 1)]


def pay(
    plasma_id: PlasmaId, position: int, owner: Identity, to: Identity, amount: int
) -> SignedPlasmaTx:
    tx = PlasmaTransaction(
        plasma_id, (TxInput(*split_utxo_pos(position)),), (TxOutput(to.node_id, amount),)
    )
    return sign_tx(tx, [owner])


async def until_known(client: OperatorClient, owner: Identity, positions: list[int]) -> None:
    """Poll the operator (another process) until it has learnt these deposits from layer 1."""

    async def known() -> bool:
        owned = {owned.utxo_pos for owned in await client.utxos(owner.node_id)}
        return set(positions) <= owned

    await poll_until(known, f"the operator to know deposits {positions}")


async def committed_roots(l1: dict[str, Any], plasma_id: PlasmaId) -> dict[int, bytes]:
    async with L1Client.connect(l1["host"], l1["port"]) as client:
        info = await client.plasma_chain(plasma_id)
        assert info is not None
        roots = {}
        for blknum in range(1000, info.current_block + 1, 1000):
            commit = await client.plasma_block(plasma_id, blknum)
            assert commit is not None
            roots[blknum] = commit.root
    return roots


async def test_cli_contract_transactions_committed_and_attacks(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        l1 = await start_l1(processes, tmp_path)
        l1_address = f"{l1['host']}:{l1['port']}"
        datadir = tmp_path / "operator"
        operator = await start_operator(processes, datadir, l1_address, "--dev")
        ready = json.loads((datadir / "plasma.json").read_text())
        assert set(ready) == {"plasma_id", "operator", "host", "port", "rpc", "pid"}
        assert ready["pid"] == operator.process.pid  # type: ignore[union-attr]
        assert (datadir / "node.key").stat().st_mode & 0o077 == 0
        plasma_id = PlasmaId(bytes.fromhex(ready["plasma_id"]))
        operator_id = bytes.fromhex(ready["operator"])

        alice, bob = Identity.generate(), Identity.generate()
        first, second = await deposits(l1, alice, plasma_id, [300, 200])
        async with OperatorClient.connect(ready["host"], ready["port"]) as client:
            await until_known(client, alice, [first, second])
            result = await client.submit(pay(plasma_id, first, alice, bob, 300), wait=True)
            assert result.committed
            roots = await committed_roots(l1, plasma_id)
            block = await client.block(result.blknum)
            check_block(
                block,
                plasma_id=plasma_id,
                blknum=result.blknum,
                operator=operator_id,
                root=roots[result.blknum],
            )

            async def attack(*args: str) -> dict[str, Any]:
                outcome = await p2pchan(
                    "--datadir", str(datadir), "plasma", "attack", *args, "--json"
                )
                return dict(outcome.json())

            # mint: an output from nothing, in a committed and served block.
            minted = await attack("mint", "1000")
            mint_block = int(minted["block"])
            await wait_committed(l1, plasma_id, mint_block)
            served = await client.block(mint_block)
            assert any(tx.signatures == () for tx in served.transactions)
            assert verdict_on(served, alice, first, second, bob, result.blknum) == "no_inputs"
            # double-spend: Alice's spent coin again, signed by the operator.
            spent = await attack("double-spend", str(first))
            await wait_committed(l1, plasma_id, int(spent["block"]))
            double = await client.block(int(spent["block"]))
            assert verdict_on(double, alice, first, second, bob, result.blknum) in (
                "spent_input",
                "bad_signature",
            )
            # withhold-next: the root reaches layer 1, the block is never served.
            withheld = await attack("withhold-next")
            await client.submit(pay(plasma_id, second, alice, bob, 200))
            await wait_committed(l1, plasma_id, int(withheld["block"]))
            with pytest.raises(PlasmaError) as unavailable:
                await client.block(int(withheld["block"]))
            assert unavailable.value.code == "unknown_block"
        assert await operator.stop() == 0
        assert not (datadir / "plasma.json").exists()


def verdict_on(
    block: PlasmaBlock,
    alice: Identity,
    first: int,
    second: int,
    bob: Identity,
    paid_in: int,
) -> str:
    """What a watcher that saw Alice's deposits and her payment to Bob says of `block`."""
    utxos = UtxoSet()
    utxos.add(second, TxOutput(alice.node_id, 200))
    utxos.add(utxo_pos(paid_in, 0, 0), TxOutput(bob.node_id, 300))
    utxos.add(first, TxOutput(alice.node_id, 300))
    utxos.spend(first)
    try:
        validate_transactions(utxos, block)
    except PlasmaError as error:
        return error.code
    return "valid"


async def wait_committed(l1: dict[str, Any], plasma_id: PlasmaId, blknum: int) -> None:
    async with L1Client.connect(l1["host"], l1["port"]) as client:
        while True:
            if await client.plasma_block(plasma_id, blknum) is not None:
                return
            await client.wait_for_height((await client.status()).height + 1)


async def test_kill_9_mid_stream_loses_no_block_whose_root_reached_layer_1(
    processes: ProcessRegistry, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        l1 = await start_l1(processes, tmp_path)
        l1_address = f"{l1['host']}:{l1['port']}"
        datadir = tmp_path / "operator"
        operator = await start_operator(processes, datadir, l1_address)
        ready = operator.ready
        plasma_id = PlasmaId(bytes.fromhex(ready["plasma_id"]))
        payers = [Identity.generate() for _ in range(4)]
        payee = Identity.generate()
        coins: list[tuple[int, Identity]] = []
        for payer in payers:
            coins += [(p, payer) for p in await deposits(l1, payer, plasma_id, [5] * 50)]
        txs = [pay(plasma_id, position, payer, payee, 5) for position, payer in coins]

        async with OperatorClient.connect(ready["host"], ready["port"]) as client:
            await until_known(client, payers[-1], [coins[-1][0]])

            async def stream() -> None:
                """Send transactions steadily until the operator dies under us."""
                try:
                    for signed in txs:
                        await client.submit(signed)
                        await trio.sleep(0.01)  # a steady stream, not a burst: pacing, no wait
                except P2pchanError:
                    return

            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream)
                await wait_committed(l1, plasma_id, 2000)
                operator.kill()  # mid-stream: blocks being built, roots being submitted
                await operator.wait_exit()
        committed = await committed_roots(l1, plasma_id)
        assert len(committed) >= 2

        restarted = await start_operator(processes, datadir, l1_address)
        assert restarted.ready["plasma_id"] == ready["plasma_id"]  # not a second chain
        host, port = restarted.ready["host"], restarted.ready["port"]
        async with OperatorClient.connect(host, port) as client:
            included: set[bytes] = set()
            for blknum, root in committed.items():
                block = await client.block(blknum)
                check_block(
                    block,
                    plasma_id=plasma_id,
                    blknum=blknum,
                    operator=bytes.fromhex(ready["operator"]),
                    root=root,
                )
                included.update(signed.tx_hash for signed in block.transactions)
            assert 0 < len(included) < len(txs)  # killed mid-stream
            for signed in txs:
                if signed.tx_hash in included:
                    with pytest.raises(PlasmaError) as refused:
                        await client.submit(signed)
                    assert refused.value.code == "duplicate_tx"
                    continue
                try:  # lost with the process, unless its block reached the disk in time
                    await client.submit(signed)
                except PlasmaError as error:
                    assert error.code == "duplicate_tx"

            async def all_committed() -> bool:
                status = await client.status()
                built = not status.pending_transactions
                return built and status.committed_block == status.next_block - 1000

            await poll_until(all_committed, "every block built and committed")
            paid = await client.utxos(payee.node_id)
        assert len(paid) == len(txs)  # every payment is in a committed block, none twice
        assert {owned.output.amount for owned in paid} == {5}


async def test_one_line_failures(processes: ProcessRegistry, tmp_path: Path) -> None:
    with trio.fail_after(DEADLINE):
        l1 = await start_l1(processes, tmp_path)
        l1_address = f"{l1['host']}:{l1['port']}"
        honest = await start_operator(processes, tmp_path / "honest", l1_address)
        port = str(honest.ready["port"])
        cases = [
            (
                (
                    "plasma",
                    "operator",
                    "--datadir",
                    str(tmp_path / "a"),
                    "--l1",
                    l1_address,
                    "--listen",
                    f"127.0.0.1:{port}",
                ),
                "is in use",
            ),
            (
                (
                    "plasma",
                    "operator",
                    "--datadir",
                    str(tmp_path / "b"),
                    "--l1",
                    "127.0.0.1:1",
                    "--l1-wait",
                    "0.3",
                ),
                "cannot reach layer 1",
            ),
            (
                ("plasma", "operator", "--datadir", str(tmp_path / "honest"), "--l1", l1_address),
                "in use",
            ),
            (
                ("--datadir", str(tmp_path / "honest"), "plasma", "attack", "mint", "5"),
                "not_dev",
            ),
        ]
        for args, reason in cases:
            result = await p2pchan(*args)
            assert result.returncode == 1, (args, result)
            assert result.stderr.count("\n") == 1 and reason in result.stderr, (args, result)
        # A malformed argument is a usage error (exit 2), worded as everywhere else.
        bad = ("--datadir", str(tmp_path / "honest"), "plasma", "attack", "mint", "x")
        result = await p2pchan(*bad)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result
        assert "AMOUNT must be a whole number" in result.stderr
