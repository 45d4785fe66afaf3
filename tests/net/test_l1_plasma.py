"""The Plasma root contract through the layer-1 API: wallet calls, queries, events, and the
child chain's state surviving a layer-1 restart exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from p2pchan.crypto.keys import Identity
from p2pchan.crypto.merkle import MerkleTree
from p2pchan.errors import ChainError
from p2pchan.l1.client import L1Client, subscribe
from p2pchan.l1.events import (
    PlasmaBlockSubmitted,
    PlasmaCreated,
    PlasmaDeposited,
    PlasmaExitStarted,
)
from p2pchan.l1.plasma_contract import plasma_id_for
from p2pchan.l1.plasma_state import ExitStatus
from p2pchan.l1.service import ChainService
from p2pchan.l1.transactions import (
    Call,
    PlasmaCreate,
    PlasmaDeposit,
    PlasmaFinalizeExits,
    PlasmaStartExit,
    PlasmaSubmitBlock,
    sign_transaction,
)
from p2pchan.l1.wallet import Wallet
from p2pchan.types import PlasmaId
from p2pchan.wire.plasma import (
    PlasmaTransaction,
    TxInput,
    TxOutput,
    deposit_tx,
    sign_confirmation,
    sign_tx,
    utxo_pos,
)
from tests.conftest import RunningL1
from tests.unit.chain_helpers import plasma_snapshot

DEADLINE = 20
PERIOD = 20


async def test_a_child_chain_through_the_api(l1_server: RunningL1) -> None:
    with trio.fail_after(DEADLINE):
        operator, alice = Identity.generate(), Identity.generate()
        address = l1_server.address
        async with L1Client.connect(address.host, address.port) as client:
            for who in (operator, alice):
                await client.faucet(who.node_id, 1_000)
            await client.mine()
            chain_id = (await client.status()).chain_id
            olga, wallet = Wallet(client, operator, chain_id), Wallet(client, alice, chain_id)
            async with subscribe(address.host, address.port, from_height=2) as notices:
                plasma_id, _ = await olga.create_plasma(5, PERIOD, wait=False)
                await client.mine()  # block 2
                await wallet.plasma_deposit(plasma_id, 100)
                await client.mine()  # block 3
                tx = PlasmaTransaction(
                    plasma_id, (TxInput(1, 0, 0),), (TxOutput(alice.node_id, 100),)
                )
                signed = sign_tx(tx, [alice])
                tree = MerkleTree([signed.leaf])
                await olga.send(PlasmaSubmitBlock(plasma_id, tree.root))
                await client.mine()  # block 4
                confirmation = sign_confirmation(alice, signed.tx_hash, tree.root)
                position = utxo_pos(1000, 0, 0)
                await wallet.send(
                    PlasmaStartExit(plasma_id, position, signed, tree.proof(0), (confirmation,))
                )
                await client.mine()  # block 5
                events = []
                async for notice in notices:
                    events.extend(notice.events)
                    if notice.header.height == 5:
                        break
            assert events == [
                PlasmaCreated(plasma_id, operator.node_id, 5, PERIOD),
                PlasmaDeposited(plasma_id, 1, alice.node_id, 100, 3),
                PlasmaBlockSubmitted(plasma_id, 1000, tree.root, 4),
                PlasmaExitStarted(plasma_id, position, alice.node_id, 100, 4 + 2 * PERIOD),
            ]
            info = await client.plasma_chain(plasma_id)
            assert info is not None
            assert (info.operator, info.current_block, info.next_deposit_block) == (
                operator.node_id,
                1000,
                1001,
            )
            assert (info.deposits_held, info.bonds_held, info.queued_exits) == (100, 5, 1)
            assert info.next_exitable_at == 4 + 2 * PERIOD
            assert (await client.status()).contract_holdings == 105
            commit = await client.plasma_block(plasma_id, 1000)
            assert commit is not None and (commit.root, commit.height) == (tree.root, 4)
            deposit_commit = await client.plasma_block(plasma_id, 1)
            assert deposit_commit is not None
            assert (
                deposit_commit.root
                == MerkleTree([deposit_tx(plasma_id, alice.node_id, 100).leaf]).root
            )
            assert await client.plasma_block(plasma_id, 2000) is None
            record = await client.plasma_exit(plasma_id, position)
            assert record is not None and record.status == ExitStatus.QUEUED
            assert await client.plasma_exit(plasma_id, position + 1) is None
            assert await client.plasma_chain(PlasmaId(bytes(32))) is None

            with pytest.raises(ChainError) as early:
                await wallet.plasma_finalize_exits(plasma_id)
            assert early.value.code == "exits_not_due"
            await client.mine(2 * PERIOD)
            await wallet.plasma_finalize_exits(plasma_id)
            await client.mine()
            record = await client.plasma_exit(plasma_id, position)
            assert record is not None and (record.status, record.paid) == (ExitStatus.PAID, 100)
            assert (await client.account(alice.node_id)).balance == 1_000


async def test_child_chains_survive_a_layer_1_restart_exactly(tmp_path: Path) -> None:
    operator, alice = Identity.generate(), Identity.generate()
    service = ChainService.open(tmp_path, block_time=0, dev=True)
    service.faucet(operator.node_id, 1_000)
    service.faucet(alice.node_id, 1_000)
    await service.seal()
    chain_id = service.chain_id

    def submit(who: Identity, nonce: int, call: Call) -> None:
        service.submit(sign_transaction(who, chain_id, nonce, call))

    plasma_id = plasma_id_for(chain_id, operator.node_id, 0)
    submit(operator, 0, PlasmaCreate(3, PERIOD))
    await service.seal()
    for nonce in range(3):
        submit(alice, nonce, PlasmaDeposit(plasma_id, 10 + nonce))
    submit(operator, 1, PlasmaSubmitBlock(plasma_id, b"\x01" * 32))
    await service.seal()
    for nonce, position in enumerate((utxo_pos(1, 0, 0), utxo_pos(3, 0, 0)), start=3):
        deposit = deposit_tx(plasma_id, alice.node_id, 10 + (position // 10**9) - 1)
        submit(alice, nonce, PlasmaStartExit(plasma_id, position, deposit, b"", ()))
    await service.seal()
    for _ in range(3 * PERIOD):
        await service.seal()
    submit(operator, 2, PlasmaFinalizeExits(plasma_id, 1))
    await service.seal()
    before = plasma_snapshot(service.confirmed.plasma[plasma_id])
    assert before["exits"][utxo_pos(1, 0, 0)][6] == ExitStatus.PAID
    assert before["exits"][utxo_pos(3, 0, 0)][6] == ExitStatus.QUEUED
    holdings = service.confirmed.contract_holdings()
    service.close()

    reopened = ChainService.open(tmp_path, block_time=0, dev=True)
    assert plasma_snapshot(reopened.confirmed.plasma[plasma_id]) == before
    assert plasma_snapshot(reopened.pending.plasma[plasma_id]) == before
    assert reopened.confirmed.contract_holdings() == holdings == 11 + 12 + 3
    reopened.close()
