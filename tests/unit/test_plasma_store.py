"""The operator's store: blocks and confirmations read back in order, the chain's identity,
a torn tail dropped, a second process kept out, and unreadable records refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pchan.errors import StoreError
from p2pchan.plasma.block import sign_block
from p2pchan.plasma.operator_store import LOG_FILE, OperatorStore, PlasmaMeta
from p2pchan.types import ChainId, PlasmaId
from p2pchan.wire.plasma import sign_confirmation
from tests.unit.chain_helpers import identity

OLGA, ALICE = identity(9), identity(1)
PLASMA = PlasmaId(b"\x42" * 32)


def test_blocks_confirmations_and_meta_survive_a_reopen(tmp_path: Path) -> None:
    store, blocks, confirmations = OperatorStore.open(tmp_path)
    assert (blocks, confirmations, store.read_meta()) == ([], [], None)
    meta = PlasmaMeta(1, ChainId(b"\x01" * 32), PLASMA, 3, False)
    store.write_meta(meta)
    first, _ = sign_block(OLGA, PLASMA, 1000, [])
    second, _ = sign_block(OLGA, PLASMA, 2000, [])
    store.append_block(1000, first.encode(), withheld=False)
    confirmation = sign_confirmation(ALICE, b"\x07" * 32, b"\x08" * 32)
    store.append_confirmation(b"\x07" * 32, confirmation)
    store.append_block(2000, second.encode(), withheld=True)
    assert store.read_block(2000) == second.encode() and store.read_block(3000) is None
    with pytest.raises(StoreError, match="in use"):
        OperatorStore.open(tmp_path)
    store.close()
    with (tmp_path / LOG_FILE).open("ab") as log:
        log.write(b"\x00\x00\x01\x00torn")  # a write cut short by a crash
    reopened, blocks, confirmations = OperatorStore.open(tmp_path)
    assert [(b.blknum, b.withheld) for b in blocks] == [(1000, False), (2000, True)]
    assert blocks[0].data == first.encode()
    assert [(c.tx_hash, c.confirmation) for c in confirmations] == [(b"\x07" * 32, confirmation)]
    assert reopened.read_meta() == meta
    assert reopened.read_block(1000) == first.encode()
    reopened.close()


def test_an_unreadable_record_is_refused(tmp_path: Path) -> None:
    store, _, _ = OperatorStore.open(tmp_path)
    store.log.append(b"\x92\x07\xc0")  # a record of an unknown kind
    store.close()
    with pytest.raises(StoreError, match="unreadable"):
        OperatorStore.open(tmp_path)
