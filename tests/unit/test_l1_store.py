"""The layer-1 block log, the data-dir lock and the chain service's persistence.

A block reported as included must survive a restart; a record torn by a crash at the very end is
dropped (and said so in the log); damage anywhere before the end must stop the node rather than
silently lose blocks.
"""

from __future__ import annotations

import copy
import hashlib
import zlib
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from p2pchan.crypto.keys import Identity
from p2pchan.errors import ChainError, StoreError
from p2pchan.l1.genesis import Allocation, GenesisSpec
from p2pchan.l1.service import ChainService
from p2pchan.l1.store import GENESIS_FILE, LOG_FILE, BlockLog, ChainStore
from p2pchan.l1.transactions import (
    ChannelDeposit,
    ChannelOpen,
    Transfer,
    sign_transaction,
)

RECORDS = [b"first", b"", b"third record" * 3, bytes(range(256))]
HEADER = 4 + 4 + 32  # length, crc32 of the length, sha256 before each payload


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / LOG_FILE


def write_log(path: Path, records: list[bytes]) -> None:
    log = BlockLog(path)
    assert log.open() == []
    for record in records:
        log.append(record)
    log.close()


def reopen(path: Path) -> list[bytes]:
    log = BlockLog(path)
    try:
        return log.open()
    finally:
        log.close()


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# -- BlockLog ------------------------------------------------------------------------------------


def test_records_come_back_in_order_after_reopen(log_path: Path) -> None:
    write_log(log_path, RECORDS)
    assert reopen(log_path) == RECORDS
    log = BlockLog(log_path)
    assert log.open() == RECORDS
    log.append(b"fifth")
    log.close()
    assert reopen(log_path) == [*RECORDS, b"fifth"]


def test_record_layout_is_length_checksum_payload(log_path: Path) -> None:
    write_log(log_path, [b"abc"])
    length = b"\x00\x00\x00\x03"
    header_check = zlib.crc32(length).to_bytes(4, "big")
    expected = length + header_check + hashlib.sha256(b"abc").digest() + b"abc"
    assert log_path.read_bytes() == expected


def test_a_zero_filled_tail_is_dropped_as_torn(log_path: Path) -> None:
    """A power loss can leave zeros after the last good record; they are no corruption."""
    write_log(log_path, RECORDS)
    with open(log_path, "ab") as file:
        file.write(bytes(4096))
    log = BlockLog(log_path)
    assert log.open() == RECORDS
    log.close()


def test_torn_tail_is_dropped_logged_and_truncated_at_every_offset(log_path: Path) -> None:
    write_log(log_path, RECORDS)
    whole = log_path.read_bytes()
    good_end = len(whole) - HEADER - len(RECORDS[-1])
    for cut in range(good_end + 1, len(whole)):
        log_path.write_bytes(whole[:cut])
        log = BlockLog(log_path)
        with capture_logs() as logs:
            records = log.open()
        assert records == RECORDS[:-1], f"cut at {cut}"
        torn = [entry for entry in logs if entry["event"] == "block_log_torn_tail_dropped"]
        assert len(torn) == 1, f"cut at {cut}"
        assert torn[0]["dropped_bytes"] == cut - good_end
        assert torn[0]["log_level"] == "warning"
        assert log_path.stat().st_size == good_end
        log.append(b"after the tear")
        log.close()
        with capture_logs() as logs:
            assert reopen(log_path) == [*RECORDS[:-1], b"after the tear"]
        assert logs == [], f"a clean log reopened with warnings after cut at {cut}"


def test_clean_log_opens_without_warning(log_path: Path) -> None:
    write_log(log_path, RECORDS)
    with capture_logs() as logs:
        assert reopen(log_path) == RECORDS
    assert logs == []


def test_flipped_byte_in_the_last_records_payload_is_a_torn_tail(log_path: Path) -> None:
    write_log(log_path, RECORDS)
    size = log_path.stat().st_size
    flip_byte(log_path, size - 1)
    with capture_logs() as logs:
        assert reopen(log_path) == RECORDS[:-1]
    assert [entry["event"] for entry in logs] == ["block_log_torn_tail_dropped"]
    assert log_path.stat().st_size == size - HEADER - len(RECORDS[-1])


def test_flipped_checksum_byte_in_the_last_record_is_a_torn_tail(log_path: Path) -> None:
    write_log(log_path, RECORDS)
    size = log_path.stat().st_size
    flip_byte(log_path, size - len(RECORDS[-1]) - 1)  # last byte of its sha256
    assert reopen(log_path) == RECORDS[:-1]


def record_offsets(records: list[bytes]) -> list[int]:
    offsets, offset = [], 0
    for record in records:
        offsets.append(offset)
        offset += HEADER + len(record)
    return offsets


@pytest.mark.parametrize("index", [0, 2])
@pytest.mark.parametrize("where", ["payload", "checksum"])
def test_damage_in_a_middle_record_is_corruption(log_path: Path, index: int, where: str) -> None:
    write_log(log_path, RECORDS)
    before = log_path.read_bytes()
    start = record_offsets(RECORDS)[index]
    flip_byte(log_path, start + HEADER if where == "payload" else start + 4)
    with pytest.raises(StoreError, match="corrupt"):
        reopen(log_path)
    assert len(log_path.read_bytes()) == len(before), "a corrupt log must not be truncated"


def test_changed_length_of_a_middle_record_is_corruption(log_path: Path) -> None:
    write_log(log_path, RECORDS)
    flip_byte(log_path, record_offsets(RECORDS)[2] + 3)  # the length's header checksum fails
    with pytest.raises(StoreError, match="corrupt"):
        reopen(log_path)


def test_length_of_a_middle_record_pointing_past_the_end_is_corruption(log_path: Path) -> None:
    write_log(log_path, RECORDS)
    flip_byte(log_path, record_offsets(RECORDS)[1] + 1)  # length 0 -> 65536, past the end
    with pytest.raises(StoreError):
        reopen(log_path)


def test_read_returns_record_by_index(log_path: Path) -> None:
    write_log(log_path, RECORDS)
    log = BlockLog(log_path)
    log.open()
    try:
        for index, record in enumerate(RECORDS):
            assert log.read(index) == record
        log.append(b"appended")
        assert log.read(len(RECORDS)) == b"appended"
        assert log.read(0) == RECORDS[0]
    finally:
        log.close()


def test_read_after_a_dropped_torn_tail_and_append(log_path: Path) -> None:
    write_log(log_path, RECORDS)
    with log_path.open("r+b") as file:
        file.truncate(log_path.stat().st_size - 1)
    log = BlockLog(log_path)
    log.open()
    try:
        log.append(b"replacement")
        assert log.read(len(RECORDS) - 1) == b"replacement"
        assert log.read(1) == RECORDS[1]
    finally:
        log.close()


def test_append_and_read_refuse_a_closed_log(log_path: Path) -> None:
    log = BlockLog(log_path)
    with pytest.raises(StoreError, match="not open"):
        log.append(b"x")
    log.open()
    log.close()
    with pytest.raises(StoreError, match="not open"):
        log.read(0)


# -- the data-dir lock -----------------------------------------------------------------------------


def test_second_store_on_a_datadir_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    first = ChainStore(tmp_path)
    try:
        with pytest.raises(StoreError, match="in use by another process"):
            ChainStore(tmp_path)
    finally:
        first.close()
    second = ChainStore(tmp_path)
    second.close()


# -- ChainService persistence ------------------------------------------------------------------

ALICE = Identity(bytes([0xA1]) * 32)
BOB = Identity(bytes([0xB0]) * 32)
CAROL = Identity(bytes([0xC0]) * 32)


@pytest.fixture
def datadir(tmp_path: Path) -> Path:
    return tmp_path / "l1"


def open_service(datadir: Path, spec: GenesisSpec | None = None) -> ChainService:
    return ChainService.open(datadir, block_time=0, dev=True, genesis_spec=spec)


async def build_history(service: ChainService) -> None:
    """Three blocks: faucet grants, a channel with a deposit, a transfer."""
    chain_id = service.chain_id
    service.faucet(ALICE.node_id, 1_000)
    service.faucet(BOB.node_id, 500)
    await service.seal()
    service.submit(sign_transaction(ALICE, chain_id, 0, ChannelOpen(BOB.node_id, 20)))
    await service.seal()
    [channel_id] = service.confirmed.channels
    service.submit(
        sign_transaction(ALICE, chain_id, 1, ChannelDeposit(channel_id, ALICE.node_id, 300))
    )
    service.submit(sign_transaction(BOB, chain_id, 0, ChannelDeposit(channel_id, BOB.node_id, 100)))
    service.submit(sign_transaction(ALICE, chain_id, 2, Transfer(CAROL.node_id, 7)))
    await service.seal()


async def test_confirmed_state_survives_a_restart(datadir: Path) -> None:
    service = open_service(datadir)
    await build_history(service)
    head, state, tx_blocks = service.head, service.confirmed, dict(service.tx_blocks)
    block_2 = service.block(2)
    assert service.head.height == 3
    assert state.balance(ALICE.node_id) == 1_000 - 300 - 7
    assert state.accounts[ALICE.node_id].nonce == 3
    [channel] = state.channels.values()
    assert (channel.deposit_a, channel.deposit_b) == (300, 100)
    service.close()

    reopened = open_service(datadir)
    try:
        assert reopened.head == head
        assert reopened.head.hash == head.hash
        assert reopened.chain_id == service.chain_id
        assert reopened.confirmed == state  # balances, nonces, channels, supply, faucet count
        assert reopened.pending == state
        assert reopened.tx_blocks == tx_blocks
        assert [notice.header for notice in reopened.notices] == [
            notice.header for notice in service.notices
        ]
        assert reopened.block(2) == block_2
        # The chain goes on from where it stopped: the next nonce and the next block.
        reopened.submit(sign_transaction(ALICE, reopened.chain_id, 3, Transfer(CAROL.node_id, 1)))
        header = await reopened.seal()
        assert header.height == 4
        assert header.parent_hash == head.hash
    finally:
        reopened.close()


async def test_a_torn_last_block_is_dropped_on_restart(datadir: Path) -> None:
    service = open_service(datadir)
    service.faucet(ALICE.node_id, 1_000)
    first = await service.seal()
    service.close()
    service = open_service(datadir)
    state_after_first = copy.deepcopy(service.confirmed)  # the state is mutable
    service.submit(sign_transaction(ALICE, service.chain_id, 0, Transfer(BOB.node_id, 5)))
    await service.seal()
    service.close()
    log_file = datadir / LOG_FILE
    with log_file.open("r+b") as file:
        file.truncate(log_file.stat().st_size - 3)

    with capture_logs() as logs:
        reopened = open_service(datadir)
    try:
        assert "block_log_torn_tail_dropped" in [entry["event"] for entry in logs]
        assert reopened.head == first
        assert reopened.confirmed == state_after_first
    finally:
        reopened.close()


async def test_unsealed_transactions_are_not_confirmed(datadir: Path) -> None:
    service = open_service(datadir)
    service.faucet(ALICE.node_id, 1_000)
    await service.seal()
    tx_hash, block = service.submit(
        sign_transaction(ALICE, service.chain_id, 0, Transfer(BOB.node_id, 40))
    )
    assert block == 2
    assert service.is_pending(tx_hash)
    assert tx_hash not in service.tx_blocks
    assert service.confirmed.balance(ALICE.node_id) == 1_000
    assert service.confirmed.balance(BOB.node_id) == 0
    assert service.pending.balance(BOB.node_id) == 40  # admitted, answered at once
    with pytest.raises(ChainError, match="unknown_block"):
        service.block(2)
    confirmed = service.confirmed
    service.close()

    reopened = open_service(datadir)
    try:
        assert reopened.head.height == 1
        assert tx_hash not in reopened.tx_blocks
        assert not reopened.is_pending(tx_hash)
        assert reopened.confirmed == confirmed
        assert reopened.confirmed.accounts[ALICE.node_id].nonce == 0
    finally:
        reopened.close()


async def test_sealed_transaction_is_reported_with_its_block(datadir: Path) -> None:
    service = open_service(datadir)
    try:
        tx_hash, block = service.faucet(ALICE.node_id, 5)
        header = await service.seal()
        assert header.height == block == 1
        assert service.tx_blocks[tx_hash] == 1
        assert not service.is_pending(tx_hash)
    finally:
        service.close()


def test_garbage_genesis_file_is_a_store_error(datadir: Path) -> None:
    datadir.mkdir()
    (datadir / GENESIS_FILE).write_bytes(b"\x93not a genesis")
    with pytest.raises(StoreError, match=r"genesis\.bin is unreadable"):
        open_service(datadir)


def test_empty_genesis_file_is_a_store_error(datadir: Path) -> None:
    datadir.mkdir()
    (datadir / GENESIS_FILE).write_bytes(b"")
    with pytest.raises(StoreError, match="unreadable"):
        open_service(datadir)


def test_reopening_with_another_genesis_spec_is_refused(datadir: Path) -> None:
    spec = GenesisSpec(allocations=(Allocation(ALICE.node_id, 100),))
    open_service(datadir, spec).close()
    other = GenesisSpec(allocations=(Allocation(ALICE.node_id, 101),))
    with pytest.raises(StoreError, match="different genesis"):
        open_service(datadir, other)


def test_a_failed_open_releases_the_datadir(datadir: Path) -> None:
    open_service(datadir, GenesisSpec(allocations=(Allocation(ALICE.node_id, 100),))).close()
    with pytest.raises(StoreError, match="different genesis"):
        open_service(datadir, GenesisSpec())
    open_service(datadir).close()


def test_reopening_with_the_same_genesis_spec_or_none_works(datadir: Path) -> None:
    spec = GenesisSpec(allocations=(Allocation(ALICE.node_id, 100),), min_fee=1)
    service = open_service(datadir, spec)
    chain_id = service.chain_id
    service.close()
    for again in (spec, None):
        reopened = open_service(datadir, again)
        try:
            assert reopened.chain_id == chain_id
            assert reopened.confirmed.balance(ALICE.node_id) == 100
        finally:
            reopened.close()


def test_each_new_datadir_gets_a_fresh_chain_id(tmp_path: Path) -> None:
    first = open_service(tmp_path / "a")
    second = open_service(tmp_path / "b")
    try:
        assert first.chain_id != second.chain_id
    finally:
        first.close()
        second.close()
