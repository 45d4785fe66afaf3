"""The chain service's admission limits: a block never holds more than replay can decode."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchan.crypto.keys import Identity
from p2pchan.errors import ChainError, StoreError
from p2pchan.l1 import service as service_module
from p2pchan.l1.service import ChainService
from p2pchan.l1.transactions import Transfer, sign_transaction


async def test_a_full_block_refuses_more_until_sealed_and_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "MAX_BLOCK_TRANSACTIONS", 3)
    payer, payee = Identity.generate(), Identity.generate()
    service = ChainService.open(tmp_path, block_time=0, dev=True)
    service.faucet(payer.node_id, 100)
    await service.seal()

    def transfer(nonce: int) -> None:
        call = Transfer(payee.node_id, 1)
        service.submit(sign_transaction(payer, service.chain_id, nonce, call))

    for nonce in range(3):
        transfer(nonce)
    with pytest.raises(ChainError) as refused:
        transfer(3)
    assert refused.value.code == "block_full"
    assert service.pending.accounts[payer.node_id].nonce == 3  # the refusal changed nothing
    await service.seal()
    transfer(3)  # room again in the next block
    await service.seal()
    head = service.head
    service.close()

    reopened = ChainService.open(tmp_path, block_time=0, dev=True)
    assert reopened.head == head
    assert reopened.confirmed.balance(payee.node_id) == 4
    reopened.close()


async def test_a_failed_block_write_stops_the_chain_and_a_restart_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payer, payee = Identity.generate(), Identity.generate()
    service = ChainService.open(tmp_path, block_time=0, dev=True)
    service.faucet(payer.node_id, 100)
    await service.seal()
    service.submit(sign_transaction(payer, service.chain_id, 0, Transfer(payee.node_id, 7)))

    def disk_full(_data: bytes) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(service.store, "append_block", disk_full)
    with pytest.raises(OSError):
        await service.seal()
    # Nothing more is admitted or sealed: the pending state holds a block that never landed.
    with pytest.raises(StoreError, match="layer 1 stopped"):
        service.faucet(payee.node_id, 1)
    with pytest.raises(StoreError, match="layer 1 stopped"):
        await service.seal()
    service.close()

    reopened = ChainService.open(tmp_path, block_time=0, dev=True)
    assert reopened.head.height == 1  # the failed block never existed
    assert reopened.confirmed.balance(payer.node_id) == 100
    reopened.submit(sign_transaction(payer, reopened.chain_id, 0, Transfer(payee.node_id, 7)))
    await reopened.seal()
    assert reopened.confirmed.balance(payee.node_id) == 7
    reopened.close()
