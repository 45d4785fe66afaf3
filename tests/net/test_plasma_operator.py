"""The operator shell in one trio run, against an in-process layer 1 with short blocks:
deposits, transactions over TCP, blocks committed and served with proofs, the confirmations
relay, every refusal over the wire, hostile bytes, and a restart from the store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from structlog.testing import capture_logs

from p2pchan.crypto.keys import Identity
from p2pchan.crypto.merkle import verify_proof
from p2pchan.errors import PlasmaError
from p2pchan.l1.client import L1Client
from p2pchan.l1.server import L1Address, serve_l1
from p2pchan.l1.service import ChainService
from p2pchan.l1.wallet import Wallet
from p2pchan.plasma.block import check_block
from p2pchan.plasma.client import OperatorClient
from p2pchan.plasma.operator_server import Operator, OperatorConfig, open_operator
from p2pchan.types import PlasmaId
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

DEADLINE = 30
ALICE, BOB, CAROL = Identity(b"\x01" * 32), Identity(b"\x02" * 32), Identity(b"\x03" * 32)


@dataclass
class Running:
    l1: L1Address
    operator: Operator
    plasma_id: PlasmaId


@pytest.fixture
async def l1_ticking(tmp_path: Path) -> AsyncIterator[L1Address]:
    """A dev layer 1 sealing a block every 20 ms (the operator waits for its commitments)."""
    service = ChainService.open(tmp_path / "l1", block_time=0.02, dev=True)
    async with trio.open_nursery() as nursery:
        address = await nursery.start(serve_l1, service, "127.0.0.1", 0)
        async with L1Client.connect(address.host, address.port) as client:
            for who in (ALICE, BOB, CAROL):
                await client.faucet(who.node_id, 10_000, wait=True)
        yield address
        nursery.cancel_scope.cancel()
    service.close()


async def start_operator(
    nursery: trio.Nursery, l1: L1Address, datadir: Path, **options: object
) -> Operator:
    config = OperatorConfig(
        datadir=datadir,
        l1_host=l1.host,
        l1_port=l1.port,
        block_interval=0.05,
        challenge_period=20,
        **options,  # type: ignore[arg-type]
    )
    operator = await open_operator(config)
    await nursery.start(operator.run)
    return operator


async def deposit(l1: L1Address, operator: Operator, who: Identity, amount: int) -> int:
    """Deposit on layer 1 and return the deposit output's position, once the operator has
    followed layer 1 past the block holding it (it learns deposits from layer 1's events)."""
    async with L1Client.connect(l1.host, l1.port) as client:
        wallet = Wallet(client, who, (await client.status()).chain_id)
        included = await wallet.plasma_deposit(operator.plasma_id, amount, wait=True)
        info = await client.plasma_chain(operator.plasma_id)
    assert info is not None
    await operator.chain.wait_followed(included.block)
    return utxo_pos(info.next_deposit_block - 1, 0, 0)


def spend(
    plasma_id: PlasmaId, spends: list[tuple[int, Identity]], outputs: list[tuple[Identity, int]]
) -> SignedPlasmaTx:
    tx = PlasmaTransaction(
        plasma_id,
        tuple(TxInput(*split_utxo_pos(position)) for position, _ in spends),
        tuple(TxOutput(who.node_id, amount) for who, amount in outputs),
    )
    return sign_tx(tx, [who for _, who in spends])


async def assert_deposit_served(client: OperatorClient, owner: Identity, position: int) -> None:
    """The operator serves a deposit it has learnt as its owner's output."""
    owned = await client.utxos(owner.node_id)
    assert any(output.utxo_pos == position for output in owned), (position, owned)


async def test_transactions_are_admitted_committed_and_served(
    l1_ticking: L1Address, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            operator = await start_operator(nursery, l1_ticking, tmp_path / "op")
            plasma_id = operator.plasma_id
            alice_coin = await deposit(l1_ticking, operator, ALICE, 500)
            async with OperatorClient.connect("127.0.0.1", operator.port) as client:
                await assert_deposit_served(client, ALICE, alice_coin)
                to_bob = spend(plasma_id, [(alice_coin, ALICE)], [(BOB, 200), (ALICE, 300)])
                result = await client.submit(to_bob, wait=True)
                assert result.committed and (result.blknum, result.txindex) == (1000, 0)
                block = await client.block(1000)
                async with L1Client.connect(l1_ticking.host, l1_ticking.port) as l1:
                    commit = await l1.plasma_block(plasma_id, 1000)
                assert commit is not None
                check_block(
                    block,
                    plasma_id=plasma_id,
                    blknum=1000,
                    operator=operator.identity.node_id,
                    root=commit.root,
                )
                proof = await client.proof(1000, 0)
                assert proof.tx == to_bob and proof.root == commit.root
                assert verify_proof(to_bob.leaf, 0, proof.proof, commit.root)
                bob_utxos = await client.utxos(BOB.node_id)
                assert [(o.utxo_pos, o.output.amount) for o in bob_utxos] == [
                    (utxo_pos(1000, 0, 0), 200)
                ]
                # Alice confirms; Bob fetches her confirmation through the operator.
                confirmation = sign_confirmation(ALICE, to_bob.tx_hash, commit.root)
                await client.confirm(to_bob.tx_hash, confirmation)
                relayed = await client.confirmations(to_bob.tx_hash)
                assert relayed.blknum == 1000 and relayed.confirmations == (confirmation,)
                status = await client.status()
                assert (status.plasma_id, status.committed_block) == (plasma_id, 1000)
                assert status.next_block == 2000
            operator.stop()
        operator.close()


async def test_every_refusal_has_its_code_over_the_wire(
    l1_ticking: L1Address, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            operator = await start_operator(nursery, l1_ticking, tmp_path / "op")
            plasma_id = operator.plasma_id
            coin = await deposit(l1_ticking, operator, ALICE, 100)
            async with OperatorClient.connect("127.0.0.1", operator.port) as client:
                await assert_deposit_served(client, ALICE, coin)
                cases = [
                    (spend(plasma_id, [(utxo_pos(9, 0, 0), ALICE)], [(BOB, 1)]), "missing_input"),
                    (
                        spend(plasma_id, [(coin, ALICE), (coin, ALICE)], [(BOB, 200)]),
                        "duplicate_input",
                    ),
                    (spend(plasma_id, [(coin, BOB)], [(BOB, 100)]), "bad_signature"),
                    (spend(plasma_id, [(coin, ALICE)], [(BOB, 101)]), "unbalanced"),
                    (spend(PlasmaId(bytes(32)), [(coin, ALICE)], [(BOB, 100)]), "wrong_plasma"),
                    (SignedPlasmaTx(b"\x93\xc4\x01", ()), "malformed"),
                ]
                for signed, code in cases:
                    with pytest.raises(PlasmaError) as refused:
                        await client.submit(signed)
                    assert refused.value.code == code, (code, refused.value)
                first = spend(plasma_id, [(coin, ALICE)], [(BOB, 100)])
                await client.submit(first)
                with pytest.raises(PlasmaError) as twice:
                    await client.submit(spend(plasma_id, [(coin, ALICE)], [(CAROL, 100)]))
                assert twice.value.code == "spent_input"
                with pytest.raises(PlasmaError) as again:
                    await client.submit(first)
                assert again.value.code == "duplicate_tx"
                with pytest.raises(PlasmaError) as missing:
                    await client.block(7000)
                assert missing.value.code == "unknown_block"
                with pytest.raises(PlasmaError) as unknown:
                    await client.confirm(
                        b"\x01" * 32, sign_confirmation(ALICE, b"\x01" * 32, bytes(32))
                    )
                assert unknown.value.code == "unknown_tx"
            operator.stop()
        operator.close()


async def test_hostile_bytes_close_only_that_connection(
    l1_ticking: L1Address, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            operator = await start_operator(nursery, l1_ticking, tmp_path / "op")
            async with OperatorClient.connect("127.0.0.1", operator.port) as bystander:
                with capture_logs() as logs:
                    for garbage in (
                        b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1",  # bytes msgpack never uses
                        b"\xff\xff\xff\xff",  # a frame far over the limit
                        b"\x00\x00\x00\x03\x93\x04\x01",  # a submit missing its fields
                        b"\x00\x00\x00\x10\x92",  # a truncated frame, then EOF
                    ):
                        stream = await trio.open_tcp_stream("127.0.0.1", operator.port)
                        async with stream:
                            await stream.send_all(garbage)
                            await stream.send_eof()
                            assert await stream.receive_some(1024) == b""
                    status = await bystander.status()
                drops = [entry for entry in logs if entry["event"] == "plasma_connection_dropped"]
                assert len(drops) == 4
                assert status.plasma_id == operator.plasma_id
            operator.stop()
        operator.close()


async def test_a_restarted_operator_serves_what_it_committed(
    l1_ticking: L1Address, tmp_path: Path
) -> None:
    with trio.fail_after(DEADLINE):
        datadir = tmp_path / "op"
        async with trio.open_nursery() as nursery:
            operator = await start_operator(nursery, l1_ticking, datadir)
            plasma_id = operator.plasma_id
            coin = await deposit(l1_ticking, operator, ALICE, 100)
            async with OperatorClient.connect("127.0.0.1", operator.port) as client:
                await assert_deposit_served(client, ALICE, coin)
                signed = spend(plasma_id, [(coin, ALICE)], [(BOB, 100)])
                await client.submit(signed, wait=True)
                served = await client.block(1000)
            operator.stop()
        operator.close()
        async with trio.open_nursery() as nursery:
            restarted = await start_operator(nursery, l1_ticking, datadir)
            assert restarted.plasma_id == plasma_id  # not a second chain
            async with OperatorClient.connect("127.0.0.1", restarted.port) as client:
                assert await client.block(1000) == served
                with pytest.raises(PlasmaError) as spent:
                    await client.submit(spend(plasma_id, [(coin, ALICE)], [(CAROL, 100)]))
                assert spent.value.code == "spent_input"
                bob = await client.utxos(BOB.node_id)
                assert [owned.utxo_pos for owned in bob] == [utxo_pos(1000, 0, 0)]
                next_tx = spend(plasma_id, [(utxo_pos(1000, 0, 0), BOB)], [(CAROL, 100)])
                assert (await client.submit(next_tx, wait=True)).blknum == 2000
            restarted.stop()
        restarted.close()
