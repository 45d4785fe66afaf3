"""Genesis files written by operators, and the genesis block that fixes a chain's id.

A bad genesis file is the operator's mistake: it must end as one `UserError` line that says what
is wrong, never as a traceback. Two chains must never share a chain id.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p2pchan.errors import RemoteProtocolError, UserError
from p2pchan.l1.genesis import (
    GENESIS_VERSION,
    Allocation,
    Genesis,
    GenesisSpec,
    load_genesis_spec,
)
from p2pchan.types import U64_MAX, Address

ALICE = "a1" * 32
BOB = "b0" * 32


def write_json(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(document))
    return path


def test_good_genesis_file(tmp_path: Path) -> None:
    path = write_json(
        tmp_path,
        {"allocations": {ALICE: 1_000, BOB.upper(): U64_MAX - 1_000}, "min_fee": 2, "dev": True},
    )
    spec = load_genesis_spec(path)
    assert spec == GenesisSpec(
        allocations=(
            Allocation(Address(bytes.fromhex(ALICE)), 1_000),
            Allocation(Address(bytes.fromhex(BOB)), U64_MAX - 1_000),
        ),
        min_fee=2,
        dev=True,
    )


def test_empty_object_is_an_empty_genesis(tmp_path: Path) -> None:
    assert load_genesis_spec(write_json(tmp_path, {})) == GenesisSpec()


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ({"allocations": {"zz" * 32: 1}}, "genesis account is not hex"),
        ({"allocations": {"a1" * 31: 1}}, "genesis account must be 32 bytes"),
        ({"allocations": {"a1" * 33: 1}}, "genesis account must be 32 bytes"),
        ({"allocations": {ALICE: -1}}, f"genesis amount for {ALICE} must be between 0 and"),
        ({"allocations": {ALICE: 2**64}}, "must be between 0 and 18446744073709551615"),
        ({"allocations": {ALICE: 1.5}}, f"genesis amount for {ALICE} must be an integer"),
        ({"allocations": {ALICE: None}}, "must be an integer, got null"),
        ({"allocations": {ALICE: [1]}}, "must be an integer"),
        ({"allocations": {ALICE: True}}, "must be an integer"),
        ({"allocations": {ALICE: "ten"}}, "must be an integer, got 'ten'"),
        ({"allocations": {ALICE: U64_MAX, BOB: 1}}, "add up to more than u64"),
        ({"allocations": [[ALICE, 1]]}, "allocations must be an object"),
        ({"min_fee": -1}, "min_fee must be between 0 and"),
        ({"min_fee": 2**64}, "min_fee must be between 0 and"),
        ({"min_fee": None}, "min_fee must be an integer"),
        ({"dev": 1}, "dev must be true or false"),
        ({"dev": "true"}, "dev must be true or false"),
        ({"allocation": {}}, r"unknown keys \['allocation'\]"),
        ({"allocations": {}, "chain_id": "00"}, r"unknown keys \['chain_id'\]"),
        ([], "must hold a JSON object"),
        ("genesis", "must hold a JSON object"),
        (None, "must hold a JSON object"),
    ],
)
def test_bad_genesis_file_is_a_user_error(tmp_path: Path, document: object, reason: str) -> None:
    with pytest.raises(UserError, match=reason) as raised:
        load_genesis_spec(write_json(tmp_path, document))
    assert "\n" not in str(raised.value)  # one line for the operator


@pytest.mark.parametrize("text", ["{", "", "{'allocations': {}}", "[" * 100_000, "\udcff"])
def test_unparsable_genesis_file_is_a_user_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "genesis.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(UserError, match="cannot read genesis file"):
        load_genesis_spec(path)


def test_missing_genesis_file_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read genesis file"):
        load_genesis_spec(tmp_path / "nope.json")


def make_genesis(nonce: bytes = bytes(32), **changes: object) -> Genesis:
    spec = GenesisSpec(
        allocations=(Allocation(Address(bytes.fromhex(ALICE)), 10),), min_fee=1, dev=False
    )
    genesis = spec.create(nonce=nonce, timestamp_ms=1_700_000_000_000, dev=False)
    fields = {name: getattr(genesis, name) for name in Genesis.__dataclass_fields__}
    fields.update(changes)
    return Genesis(**fields)  # type: ignore[arg-type]


def test_chain_id_differs_with_the_nonce() -> None:
    first = make_genesis(bytes(32))
    second = make_genesis(bytes(31) + b"\x01")
    assert first.allocations == second.allocations
    assert first.chain_id != second.chain_id
    assert len(first.chain_id) == 32


def test_chain_id_depends_on_every_field() -> None:
    base = make_genesis()
    for changes in (
        {"timestamp_ms": 1},
        {"dev": True},
        {"min_fee": 2},
        {"allocations": ()},
        {"allocations": (Allocation(Address(bytes.fromhex(ALICE)), 11),)},
    ):
        assert make_genesis(**changes).chain_id != base.chain_id, changes
    assert make_genesis().chain_id == base.chain_id  # and it is deterministic


def test_spec_dev_or_the_dev_flag_makes_a_dev_chain() -> None:
    assert GenesisSpec(dev=True).create(nonce=bytes(32), timestamp_ms=0, dev=False).dev
    assert GenesisSpec().create(nonce=bytes(32), timestamp_ms=0, dev=True).dev
    assert not GenesisSpec().create(nonce=bytes(32), timestamp_ms=0, dev=False).dev


def test_genesis_round_trip() -> None:
    genesis = make_genesis(
        b"\x07" * 32,
        dev=True,
        allocations=(
            Allocation(Address(bytes.fromhex(ALICE)), 0),
            Allocation(Address(bytes.fromhex(BOB)), U64_MAX),
        ),
    )
    decoded = Genesis.decode(genesis.encode())
    assert decoded == genesis
    assert decoded.chain_id == genesis.chain_id
    assert decoded.supply == U64_MAX
    assert decoded.version == GENESIS_VERSION


def test_decode_rejects_another_version() -> None:
    with pytest.raises(RemoteProtocolError, match="unsupported genesis version 2"):
        Genesis.decode(make_genesis(version=2).encode())


def test_decode_rejects_allocations_over_u64() -> None:
    over = (
        Allocation(Address(bytes.fromhex(ALICE)), U64_MAX),
        Allocation(Address(bytes.fromhex(BOB)), 1),
    )
    with pytest.raises(RemoteProtocolError, match="exceed u64"):
        Genesis.decode(make_genesis(allocations=over).encode())


@pytest.mark.parametrize("data", [b"", b"\x80", b"\x96" + bytes(6), b"garbage"])
def test_decode_rejects_garbage(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        Genesis.decode(data)
