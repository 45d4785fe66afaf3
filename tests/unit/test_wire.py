"""Strict wire decoding, message registries and length-prefixed framing.

Everything a peer sends is untrusted: each malformed input must end as a `RemoteProtocolError`
(the peer's fault, scored and logged), never as another exception in a reader task.
"""

from __future__ import annotations

import contextlib
import enum
from dataclasses import dataclass

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchan.errors import LocalProtocolError, RemoteProtocolError
from p2pchan.wire.codec import MessageList, MessageRegistry, UnknownMessage, pack, unpack
from p2pchan.wire.fields import (
    BOOL,
    BYTES32,
    U8,
    U64,
    Bytes,
    ListOf,
    Optional,
    Text,
)
from p2pchan.wire.framing import HEADER_SIZE, FrameDecoder, frame
from p2pchan.wire.records import Nested, NestedList, Record, wire

MAX_MESSAGE = 1024
U64_MAX = 2**64 - 1


# -- a small protocol of its own, so these tests do not depend on the real registries ----------


@enum.unique
class ItemType(enum.IntEnum):
    NOTE = 3


@enum.unique
class TestType(enum.IntEnum):
    __test__ = False  # not a pytest test class
    PAYMENT = 2
    ENVELOPE = 4
    RETIRED_EVEN = 6  # never registered: stands for an id this node does not know
    RETIRED_ODD = 7


ITEMS = MessageRegistry("test item", ItemType, max_message_size=MAX_MESSAGE)
REGISTRY = MessageRegistry("test", TestType, max_message_size=MAX_MESSAGE)


@ITEMS.message(ItemType.NOTE)
@dataclass(frozen=True, slots=True)
class Note(Record):
    text: str = wire(Text(8))


@dataclass(frozen=True, slots=True)
class Leg(Record):
    node: bytes = wire(BYTES32)
    fee: int = wire(U64)


@REGISTRY.message(TestType.PAYMENT)
@dataclass(frozen=True, slots=True)
class Payment(Record):
    amount: int = wire(U64)
    urgent: bool = wire(BOOL)
    payee: bytes = wire(BYTES32)
    memo: bytes = wire(Bytes(max_size=8))
    label: str = wire(Text(5))
    hops: tuple[int, ...] = wire(ListOf(U8, 3))
    expiry: int | None = wire(Optional(U64))


@REGISTRY.message(TestType.ENVELOPE)
@dataclass(frozen=True, slots=True)
class Envelope(Record):
    first: Leg = wire(Nested(Leg))
    legs: tuple[Leg, ...] = wire(NestedList(Leg, 2))
    notes: tuple[Record, ...] = wire(MessageList(ITEMS, 3))


def good_payment() -> Payment:
    return Payment(
        amount=5, urgent=True, payee=bytes(32), memo=b"hi", label="abc", hops=(1, 2), expiry=None
    )


def payment_wire(**changes: object) -> bytes:
    """A packed PAYMENT message whose fields are replaced by raw (possibly invalid) values."""
    fields = dict(zip(Payment.__dataclass_fields__, good_payment().to_wire(), strict=True))
    fields.update(changes)
    return pack([TestType.PAYMENT, *fields.values()])


# -- strict field checks -------------------------------------------------------------------------


def test_good_payment_decodes() -> None:
    assert REGISTRY.decode(payment_wire()) == good_payment()


def test_u64_bounds_are_inclusive_of_max() -> None:
    decoded = REGISTRY.decode(payment_wire(amount=U64_MAX, expiry=0))
    assert isinstance(decoded, Payment)
    assert decoded.amount == U64_MAX
    assert decoded.expiry == 0


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("amount", True, "expected u64, got bool"),
        ("amount", False, "expected u64, got bool"),
        ("amount", 1.0, "expected u64, got float"),
        ("amount", -1, "out of range for u64"),
        ("amount", -(2**63), "out of range for u64"),
        ("amount", None, "expected u64, got NoneType"),
        ("amount", b"\x01", "expected u64, got bytes"),
        ("amount", "1", "expected u64, got str"),
        ("urgent", 1, "expected bool, got int"),
        ("urgent", None, "expected bool, got NoneType"),
        ("payee", bytes(31), "expected 32 bytes, got 31"),
        ("payee", bytes(33), "expected 32 bytes, got 33"),
        ("payee", "0" * 32, "expected bytes, got str"),
        ("memo", bytes(9), "9 bytes, at most 8"),
        ("memo", None, "expected bytes, got NoneType"),
        ("label", "abcdef", "6 chars, at most 5"),
        ("label", b"abc", "expected str, got bytes"),
        ("hops", [1, 2, 3, 4], "4 items, at most 3"),
        ("hops", [1, 256], "out of range for u8"),
        ("hops", [1, True], "expected u8, got bool"),
        ("hops", None, "expected list, got NoneType"),
        ("expiry", -1, "out of range for u64"),
        ("expiry", 1.5, "expected u64, got float"),
    ],
)
def test_malformed_field_is_the_peers_fault(field: str, value: object, reason: str) -> None:
    with pytest.raises(RemoteProtocolError, match=reason) as raised:
        REGISTRY.decode(payment_wire(**{field: value}))
    assert f"Payment.{field}" in str(raised.value)  # the message names the field


def test_u64_overflow_is_rejected() -> None:
    # msgpack cannot carry 2**64 at all, so the bound is checked at the validator itself.
    with pytest.raises(RemoteProtocolError, match="out of range for u64"):
        U64.check(2**64, "amount")
    assert U64.check(U64_MAX, "amount") == U64_MAX


@pytest.mark.parametrize("count", [6, 8])
def test_wrong_array_length_for_a_record(count: int) -> None:
    fields = good_payment().to_wire()
    fields = [*fields, None][:count]
    with pytest.raises(RemoteProtocolError, match=f"expected 7 fields, got {count}"):
        REGISTRY.decode(pack([TestType.PAYMENT, *fields]))


def test_nested_record_must_be_an_array_of_the_right_length() -> None:
    envelope = Envelope(Leg(bytes(32), 1), (), ())
    [type_id, first, legs, notes] = msgpack.unpackb(REGISTRY.encode(envelope))
    with pytest.raises(RemoteProtocolError, match=r"Envelope\.first"):
        REGISTRY.decode(pack([type_id, [bytes(32)], legs, notes]))
    with pytest.raises(RemoteProtocolError, match=r"Envelope\.first"):
        REGISTRY.decode(pack([type_id, None, legs, notes]))
    with pytest.raises(RemoteProtocolError, match=r"Envelope.legs: 3 items, at most 2"):
        REGISTRY.decode(pack([type_id, first, [first] * 3, notes]))


# -- the msgpack layer -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"\x80", "an empty map"),
        (b"\x81\x01\x02", "a map"),
        (b"\x92\x01\x80", "an empty map inside an array"),
        (b"\xc7\x00\x05", "a zero-length ext"),
        (b"\xd4\x05\x00", "a fixext 1"),
        (b"\xd6\xff\x00\x00\x00\x01", "a timestamp ext"),
        (b"\x92\x01", "a truncated array"),
        (b"\xc4\x05abc", "truncated bytes"),
        (b"", "nothing"),
        (b"\x01\x02", "trailing data after the value"),
        (b"\x91" * 2000 + b"\x00", "arrays nested 2000 deep"),
        (b"\xa2\xff\xfe", "a str that is not UTF-8"),
        (b"\xc1", "the never-used byte 0xc1"),
    ],
)
def test_unpack_rejects(data: bytes, what: str) -> None:
    with pytest.raises(RemoteProtocolError):
        unpack(data, max_len=100_000)


def test_unpack_enforces_the_size_limit_before_decoding() -> None:
    data = pack([bytes(100)])
    assert unpack(data, max_len=len(data)) == [bytes(100)]
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        unpack(data, max_len=len(data) - 1)


def test_unpack_keeps_bytes_and_str_apart() -> None:
    assert unpack(pack([b"ab", "ab"]), max_len=100) == [b"ab", "ab"]


@pytest.mark.parametrize(
    "value", [5, None, b"\x02", "PAYMENT", [], [True, 1], [2.0, 1], [None], [[2]]]
)
def test_message_must_be_an_array_starting_with_an_int_id(value: object) -> None:
    with pytest.raises(RemoteProtocolError, match=r"must be an array \[type_id"):
        REGISTRY.decode(pack(value))


def test_message_size_limit() -> None:
    at_limit = pack([TestType.RETIRED_ODD, bytes(MAX_MESSAGE - 5)])
    assert len(at_limit) == MAX_MESSAGE
    assert isinstance(REGISTRY.decode(at_limit), UnknownMessage)
    with pytest.raises(RemoteProtocolError, match=f"exceeds {MAX_MESSAGE}"):
        REGISTRY.decode(pack([TestType.RETIRED_ODD, bytes(MAX_MESSAGE - 4)]))


def test_encode_refuses_a_message_over_the_limit() -> None:
    small = MessageRegistry("small", ItemType, max_message_size=8)

    @small.message(ItemType.NOTE)
    @dataclass(frozen=True, slots=True)
    class SmallNote(Record):
        text: str = wire(Text(100))

    assert small.decode(small.encode(SmallNote("abc"))) == SmallNote("abc")
    with pytest.raises(LocalProtocolError, match="exceeds 8"):
        small.encode(SmallNote("a" * 20))


# -- the registry ----------------------------------------------------------------------------------


def test_unknown_even_type_is_fatal() -> None:
    with pytest.raises(RemoteProtocolError, match="unknown even test message type 6"):
        REGISTRY.decode(pack([TestType.RETIRED_EVEN, 1, 2]))


def test_unknown_odd_type_is_skipped() -> None:
    decoded = REGISTRY.decode(pack([TestType.RETIRED_ODD, "anything", [1, 2]]))
    assert isinstance(decoded, UnknownMessage)
    assert decoded.type_id == TestType.RETIRED_ODD


def test_registering_an_id_twice_fails() -> None:
    registry = MessageRegistry("dup", TestType, max_message_size=MAX_MESSAGE)
    registry.message(TestType.PAYMENT)(Leg)
    with pytest.raises(TypeError, match="registered twice"):
        registry.message(TestType.PAYMENT)(Note)


def test_registering_an_id_of_another_enum_fails() -> None:
    registry = MessageRegistry("other", TestType, max_message_size=MAX_MESSAGE)
    with pytest.raises(TypeError, match="is not a TestType"):
        registry.message(ItemType.NOTE)  # type: ignore[arg-type]


def test_encode_refuses_a_record_of_another_registry() -> None:
    with pytest.raises(LocalProtocolError, match="is not a test message"):
        REGISTRY.encode(Leg(bytes(32), 1))  # never registered
    with pytest.raises(LocalProtocolError, match="is not a test message"):
        REGISTRY.encode(Note("hi"))  # registered, but in ITEMS


def test_round_trip_of_nested_records_and_message_lists() -> None:
    envelope = Envelope(
        first=Leg(bytes(range(32)), U64_MAX),
        legs=(Leg(bytes(32), 0), Leg(b"\xff" * 32, 7)),
        notes=(Note(""), Note("12345678")),
    )
    data = REGISTRY.encode(envelope)
    assert msgpack.unpackb(data)[0] == TestType.ENVELOPE  # [type_id, ...] on the wire
    assert REGISTRY.decode(data) == envelope
    assert REGISTRY.decode(REGISTRY.encode(good_payment())) == good_payment()


def test_message_list_skips_unknown_odd_and_rejects_unknown_even_items() -> None:
    leg = Leg(bytes(32), 1).to_wire()
    with_odd = pack([TestType.ENVELOPE, leg, [], [[ItemType.NOTE, "a"], [5, "?"], [3, "b"]]])
    decoded = REGISTRY.decode(with_odd)
    assert isinstance(decoded, Envelope)
    assert decoded.notes == (Note("a"), Note("b"))
    with pytest.raises(RemoteProtocolError, match="unknown even test item message type 4"):
        REGISTRY.decode(pack([TestType.ENVELOPE, leg, [], [[4]]]))
    with pytest.raises(RemoteProtocolError, match="at most 3"):
        REGISTRY.decode(pack([TestType.ENVELOPE, leg, [], [[3, "a"]] * 4]))
    with pytest.raises(RemoteProtocolError, match=r"notes\[0\].text"):
        REGISTRY.decode(pack([TestType.ENVELOPE, leg, [], [[3, "too long!"]]]))


# -- fuzzing: nothing but RemoteProtocolError escapes ---------------------------------------------


def msgpack_values() -> st.SearchStrategy[object]:
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=U64_MAX),
        st.floats(allow_nan=True),
        st.binary(max_size=40),
        st.text(max_size=10),
        st.sampled_from([2, 3, 4, 6, 7, U64_MAX]),
    )
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=4), max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_remote_protocol_error(data: bytes) -> None:
    for candidate in (data, bytes([0x94, TestType.ENVELOPE]) + data, b"\x98\x02" + data):
        with contextlib.suppress(RemoteProtocolError):
            REGISTRY.decode(candidate)


@settings(max_examples=200, deadline=None)
@given(st.lists(msgpack_values(), min_size=3, max_size=7), st.sampled_from(list(TestType)))
def test_arbitrary_messages_only_raise_remote_protocol_error(
    fields: list[object], type_id: TestType
) -> None:
    try:
        decoded = REGISTRY.decode(pack([int(type_id), *fields]))
    except RemoteProtocolError:
        return
    if not isinstance(decoded, UnknownMessage):
        # Whatever was accepted re-encodes to a message that decodes to the same value.
        assert REGISTRY.decode(REGISTRY.encode(decoded)) == decoded


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=6))
def test_frame_decoder_on_arbitrary_bytes_only_raises_remote_protocol_error(
    chunks: list[bytes],
) -> None:
    decoder = FrameDecoder(max_size=64)
    try:
        for chunk in chunks:
            for body in decoder.feed(chunk):
                assert len(body) <= 64
    except RemoteProtocolError:
        pass


# -- framing -------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=50), max_size=8), st.data())
def test_frames_round_trip_under_any_chunking(bodies: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(frame(body, max_size=50) for body in bodies)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder(max_size=50)
    received: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        received.extend(decoder.feed(stream[start:end]))
    assert received == bodies
    assert decoder.buffered == 0


def test_frame_layout_is_a_big_endian_length_then_the_body() -> None:
    assert frame(b"abc", max_size=3) == b"\x00\x00\x00\x03abc"
    with pytest.raises(LocalProtocolError, match="exceeds 3"):
        frame(b"abcd", max_size=3)


def test_oversize_length_is_rejected_before_the_body_arrives() -> None:
    decoder = FrameDecoder(max_size=1000)
    with pytest.raises(RemoteProtocolError, match="frame of 1001 bytes exceeds 1000"):
        decoder.feed((1001).to_bytes(4, "big"))  # the header alone is enough
    decoder = FrameDecoder(max_size=1000)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        decoder.feed(b"\xff\xff\xff\xff")


def test_oversize_length_after_a_good_frame_is_still_rejected() -> None:
    decoder = FrameDecoder(max_size=10)
    assert decoder.feed(frame(b"ok", max_size=10)) == [b"ok"]
    with pytest.raises(RemoteProtocolError):
        decoder.feed((11).to_bytes(4, "big"))


def test_buffered_reports_a_torn_frame() -> None:
    whole = frame(b"0123456789", max_size=10)
    for cut in range(1, len(whole)):
        decoder = FrameDecoder(max_size=10)
        assert decoder.feed(whole[:cut]) == []
        assert decoder.buffered == cut, f"torn after {cut} bytes"
        assert decoder.feed(whole[cut:]) == [b"0123456789"]
        assert decoder.buffered == 0


def test_buffered_counts_a_lone_header() -> None:
    # The header of a non-empty frame, then EOF: the connection closed inside a frame.
    decoder = FrameDecoder(max_size=10)
    assert decoder.feed(b"\x00\x00\x00\x05") == []
    assert decoder.buffered == HEADER_SIZE


def test_zero_length_frame() -> None:
    decoder = FrameDecoder(max_size=10)
    empty = frame(b"", max_size=10)
    assert empty == b"\x00\x00\x00\x00"
    assert decoder.feed(empty + empty + frame(b"x", max_size=10)) == [b"", b"", b"x"]
    assert decoder.buffered == 0
