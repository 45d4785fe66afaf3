"""The Plasma wallet's rows in the node's database: what a watcher step stores comes back as a
restart needs it (sent transactions not found yet, confirmations, ours until the operator holds
them, exit requests, checked blocks, the user's outputs with their proofs), a joined chain's
row keeps its bad verdict, and a corrupt row is a `StoreError`, never a crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from p2pchan.errors import StoreError
from p2pchan.plasma.watcher import PersistBlock, PersistConfirmation, PersistOutput
from p2pchan.storage.db import NodeDatabase
from p2pchan.storage.plasma import (
    JoinedChain,
    forget_exit_requests,
    forget_sent,
    list_outputs,
    load_chains,
    load_wallet,
    mark_delivered,
    position_key,
    read_block,
    record_sent,
    request_exits,
    save_chain,
    write_watcher_outputs,
)
from p2pchan.types import Address
from p2pchan.wire.plasma import utxo_pos
from tests.unit.chain_helpers import identity
from tests.unit.plasma_sim import PlasmaSim

OLGA, ALICE, BOB = identity(9), identity(1), identity(2)


def chain_row(sim: PlasmaSim, **changes: object) -> JoinedChain:
    fields: dict[str, object] = {
        "plasma_id": sim.plasma_id,
        "operator": OLGA.node_id,
        "host": "127.0.0.1",
        "port": 7800,
        "challenge_period": 20,
        "exit_bond": 10,
        "created_block": 1,
        "withhold_timeout": 5,
        "joined_ms": 1_700_000_000_000,
        "bad_block": None,
        "bad_reason": "",
        **changes,
    }
    return JoinedChain(**fields)  # type: ignore[arg-type]


def paid_chain() -> PlasmaSim:
    """Alice deposits 100 and pays Bob 60 in block 1000; every watcher saw it."""
    sim = PlasmaSim([ALICE, BOB], OLGA)
    sim.deposit(ALICE, 100)
    sim.step()
    assert sim.pay(ALICE, BOB, 60)
    sim.build()
    sim.step()
    return sim


def test_a_steps_records_come_back_as_a_restart_needs_them(tmp_path: Path) -> None:
    sim = paid_chain()
    database = NodeDatabase.open(tmp_path)
    try:
        pid = sim.plasma_id
        [sent] = [s.signed for s in sim.watcher(ALICE).sent.values()]
        later = sim.watcher(ALICE).pay(BOB.node_id, 40)  # signed, not yet in a block
        database.run_now(record_sent(pid, sent, 1))
        database.run_now(record_sent(pid, later, 2))
        stored = sim.persisted[ALICE.node_id]
        work = write_watcher_outputs(pid, stored)
        assert work is not None and write_watcher_outputs(pid, []) is None
        database.run_now(work)
        database.run_now(work)  # a replay writes the same rows again: nothing changes
        wallet = database.run_now(lambda c: load_wallet(c, pid))
        assert wallet.sent == (later,)  # the first was found in block 1000
        [ours] = [o for o in stored if isinstance(o, PersistConfirmation)]
        assert wallet.confirmations == ((ours.tx_hash, ours.confirmation),)
        assert wallet.undelivered == wallet.confirmations
        assert wallet.stored_blocks == frozenset({1000})
        [block] = [o.block for o in stored if isinstance(o, PersistBlock)]
        assert database.run_now(lambda c: read_block(c, pid, 1000)) == block.encode()
        assert database.run_now(lambda c: read_block(c, pid, 2000)) is None
        outputs = database.run_now(lambda c: list_outputs(c, pid))
        assert [(p, o.amount) for p, o in outputs] == [
            (utxo_pos(1, 0, 0), 100),
            (utxo_pos(1000, 0, 1), 40),
        ]
        change = next(o for o in stored if isinstance(o, PersistOutput) and o.amount == 40)
        assert outputs[1][1].proof == change.proof and outputs[1][1].signed == change.signed

        owner = Address(ALICE.node_id)
        database.run_now(mark_delivered(pid, ours.tx_hash, owner))
        database.run_now(forget_sent(pid, later.tx_hash))
        database.run_now(forget_sent(pid, sent.tx_hash))  # found: kept
        database.run_now(request_exits(pid, [utxo_pos(1000, 0, 1), utxo_pos(1, 0, 0)]))
        database.run_now(forget_exit_requests(pid, [utxo_pos(1, 0, 0)]))
        wallet = database.run_now(lambda c: load_wallet(c, pid))
        assert wallet.sent == () and wallet.undelivered == ()
        assert wallet.exit_requests == (utxo_pos(1000, 0, 1),)
        received = write_watcher_outputs(pid, sim.persisted[BOB.node_id])
        assert received is not None
        database.run_now(received)
        wallet = database.run_now(lambda c: load_wallet(c, pid))
        assert wallet.undelivered == ()  # received confirmations are never handed over
    finally:
        database.close()


def test_a_joined_chain_keeps_its_bad_verdict(tmp_path: Path) -> None:
    sim = PlasmaSim([ALICE], OLGA)
    database = NodeDatabase.open(tmp_path)
    try:
        database.run_now(save_chain(chain_row(sim)))
        bad = chain_row(sim, bad_block=2000, bad_reason="invalid: transaction 0: no_inputs")
        database.run_now(save_chain(bad))
        assert database.run_now(load_chains) == [bad]
    finally:
        database.close()
    reopened = NodeDatabase.open(tmp_path)
    try:
        assert reopened.run_now(load_chains) == [bad]
    finally:
        reopened.close()


def test_a_corrupt_row_is_a_store_error(tmp_path: Path) -> None:
    sim = PlasmaSim([ALICE], OLGA)
    database = NodeDatabase.open(tmp_path)
    try:
        pid = sim.plasma_id

        def corrupt(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT INTO plasma_outputs VALUES (?, ?, ?)", (pid, position_key(1), b"\xc1")
            )
            connection.execute("INSERT INTO plasma_chains VALUES (?, ?)", (pid, b"\x90"))

        database.run_now(corrupt)
        with pytest.raises(StoreError, match="corrupt plasma output"):
            database.run_now(lambda c: list_outputs(c, pid))
        with pytest.raises(StoreError, match="corrupt plasma chain"):
            database.run_now(load_chains)
    finally:
        database.close()
