"""The written-out decoders on the operator's and watcher's hot paths accept and refuse exactly
what the declared records do: transactions, signed transactions, submissions, blocks."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from p2pchan.errors import RemoteProtocolError
from p2pchan.plasma.api import (
    REQUESTS,
    RESPONSES,
    SubmitTxRequest,
    TxResult,
    decode_request,
    encode_response,
)
from p2pchan.plasma.block import PlasmaBlock
from p2pchan.wire.codec import pack, unpack
from p2pchan.wire.plasma import (
    MAX_BLKNUM,
    PlasmaTransaction,
    SignedPlasmaTx,
    check_signed_tx_value,
    check_tx_value,
    is_valid_utxo_pos,
)

ids = st.one_of(st.binary(min_size=31, max_size=33), st.integers(-5, 5), st.none())
integers = st.one_of(
    st.integers(0, 3),
    st.integers(-1, 2**64),
    st.just(MAX_BLKNUM),
    st.just(MAX_BLKNUM + 1),
    st.just(65_536),
    st.booleans(),
    st.floats(0, 2),
)
inputs = st.lists(integers, min_size=2, max_size=4)
outputs = st.lists(st.one_of(ids, integers), min_size=1, max_size=3)
transactions = st.one_of(
    st.lists(
        st.one_of(ids, st.lists(inputs, max_size=3), st.lists(outputs, max_size=3)), max_size=4
    ),
    st.tuples(ids, st.lists(inputs, max_size=3), st.lists(outputs, max_size=3)).map(list),
)


def generic_tx(value: Any) -> PlasmaTransaction | None:
    try:
        tx = PlasmaTransaction.from_wire(value)
    except RemoteProtocolError:
        return None
    if not all(is_valid_utxo_pos(tx_input.pos) for tx_input in tx.inputs):
        return None
    return tx


def fast_tx(value: Any) -> PlasmaTransaction | None:
    try:
        return check_tx_value(value)
    except RemoteProtocolError:
        return None


@given(transactions)
def test_the_fast_transaction_decoder_agrees_with_the_records(value: Any) -> None:
    assert fast_tx(value) == generic_tx(value)


def generic_request(body: bytes) -> object:
    try:
        return REQUESTS.decode(body)
    except RemoteProtocolError:
        return None


def fast_request(body: bytes) -> object:
    try:
        return decode_request(body)
    except RemoteProtocolError:
        return None


packable = integers.filter(lambda value: not isinstance(value, int) or value < 2**64)
signatures = st.lists(st.one_of(st.binary(min_size=63, max_size=65), packable), max_size=3)
submissions = st.tuples(
    st.one_of(st.just(4), st.just(4.0), st.just(True), st.just(2)),
    st.one_of(st.integers(-1, 2**32), st.booleans()),
    st.one_of(
        st.tuples(st.binary(max_size=1030), signatures).map(list),
        st.lists(st.binary(max_size=4), max_size=3),
    ),
    st.one_of(st.booleans(), st.integers(0, 1), st.none()),
).map(list)


@given(submissions)
def test_the_fast_request_decoder_agrees_with_the_records(value: list[Any]) -> None:
    body = pack(value)
    fast = fast_request(body)
    assert fast == generic_request(body)
    if isinstance(fast, SubmitTxRequest):
        assert fast.tx.signatures == tuple(value[2][1])


signed_values = st.one_of(
    st.tuples(st.binary(max_size=1030), signatures).map(list),
    st.lists(st.one_of(st.binary(max_size=4), packable), max_size=3),
    packable,
)


@given(signed_values)
def test_the_fast_signed_transaction_decoder_agrees_with_the_record(value: Any) -> None:
    try:
        generic: object = SignedPlasmaTx.from_wire(value)
    except RemoteProtocolError:
        generic = None
    try:
        fast: object = check_signed_tx_value(value, "tx")
    except RemoteProtocolError:
        fast = None
    assert fast == generic


blocks = st.tuples(
    ids, packable, st.lists(signed_values, max_size=3), st.binary(min_size=63, max_size=65)
).map(list)


@given(blocks)
def test_the_fast_block_decoder_agrees_with_the_record(value: list[Any]) -> None:
    body = pack(value)
    try:
        generic: object = PlasmaBlock.from_wire(unpack(body, max_len=1 << 20))
    except RemoteProtocolError:
        generic = None
    try:
        fast: object = PlasmaBlock.decode(body)
    except RemoteProtocolError:
        fast = None
    assert fast == generic


@given(
    st.integers(0, 2**32 - 1),
    st.binary(min_size=32, max_size=32),
    st.integers(0, 2**64 - 1),
    st.integers(0, 65_535),
    st.booleans(),
)
def test_admissions_are_encoded_as_the_registry_would(
    request_id: int, tx_hash: bytes, blknum: int, txindex: int, committed: bool
) -> None:
    result = TxResult(request_id, tx_hash, blknum, txindex, committed)
    assert encode_response(result) == RESPONSES.encode(result)
