"""Field validators for strict decoding of msgpack values.

A decoded msgpack value is untrusted: each field of a record names one of these validators, which
checks the exact Python type msgpack produced (so `True` is not an integer and `1.0` is not an
amount), the range and the length, and raises `RemoteProtocolError` with the field's path.
"""

from __future__ import annotations

from typing import Any, Protocol

from p2pchan.errors import RemoteProtocolError


class Field(Protocol):
    """Checks one decoded value and returns it in its in-memory form."""

    @property
    def plain(self) -> bool:
        """True when `to_wire` needs no conversion (msgpack packs the value as it is)."""
        ...

    def check(self, value: object, path: str) -> Any: ...

    def to_wire(self, value: Any) -> Any: ...


def fail(path: str, expected: str, value: object) -> RemoteProtocolError:
    shown = type(value).__name__
    return RemoteProtocolError(f"field {path}: expected {expected}, got {shown}")


class UInt:
    """An unsigned integer of `bits` bits."""

    __slots__ = ("bits", "limit")
    plain = True

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.limit = 2**bits

    def check(self, value: object, path: str) -> int:
        if type(value) is not int:
            raise fail(path, f"u{self.bits}", value)
        if not 0 <= value < self.limit:
            raise RemoteProtocolError(f"field {path}: {value} out of range for u{self.bits}")
        return value

    def to_wire(self, value: int) -> int:
        return value


class Bool:
    __slots__ = ()
    plain = True

    def check(self, value: object, path: str) -> bool:
        if type(value) is not bool:
            raise fail(path, "bool", value)
        return value

    def to_wire(self, value: bool) -> bool:
        return value


class Bytes:
    """A byte string of exactly `size` bytes, or of at most `max_size` bytes."""

    __slots__ = ("max_size", "size")
    plain = True

    def __init__(self, size: int | None = None, *, max_size: int | None = None) -> None:
        if (size is None) == (max_size is None):
            raise ValueError("give exactly one of size and max_size")
        self.size = size
        self.max_size = max_size

    def check(self, value: object, path: str) -> bytes:
        if type(value) is not bytes:
            raise fail(path, "bytes", value)
        if self.size is not None and len(value) != self.size:
            raise RemoteProtocolError(f"field {path}: expected {self.size} bytes, got {len(value)}")
        if self.max_size is not None and len(value) > self.max_size:
            raise RemoteProtocolError(f"field {path}: {len(value)} bytes, at most {self.max_size}")
        return value

    def to_wire(self, value: bytes) -> bytes:
        return value


class Text:
    """A UTF-8 string of at most `max_len` characters."""

    __slots__ = ("max_len",)
    plain = True

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len

    def check(self, value: object, path: str) -> str:
        if type(value) is not str:
            raise fail(path, "str", value)
        if len(value) > self.max_len:
            raise RemoteProtocolError(f"field {path}: {len(value)} chars, at most {self.max_len}")
        return value

    def to_wire(self, value: str) -> str:
        return value


class ListOf:
    """A list of at most `max_len` items, each checked by `item`; decoded as a tuple."""

    __slots__ = ("item", "max_len")

    def __init__(self, item: Field, max_len: int) -> None:
        self.item = item
        self.max_len = max_len

    @property
    def plain(self) -> bool:
        return self.item.plain

    def check(self, value: object, path: str) -> tuple[Any, ...]:
        if type(value) is not list:
            raise fail(path, "list", value)
        if len(value) > self.max_len:
            raise RemoteProtocolError(f"field {path}: {len(value)} items, at most {self.max_len}")
        check = self.item.check
        return tuple(check(item, f"{path}[{index}]") for index, item in enumerate(value))

    def to_wire(self, value: tuple[Any, ...] | list[Any]) -> list[Any]:
        to_wire = self.item.to_wire
        return [to_wire(item) for item in value]


class Optional:
    """`inner`, or nil (None)."""

    __slots__ = ("inner",)

    def __init__(self, inner: Field) -> None:
        self.inner = inner

    @property
    def plain(self) -> bool:
        return self.inner.plain

    def check(self, value: object, path: str) -> Any:
        return None if value is None else self.inner.check(value, path)

    def to_wire(self, value: Any) -> Any:
        return None if value is None else self.inner.to_wire(value)


U8 = UInt(8)
U16 = UInt(16)
U32 = UInt(32)
U64 = UInt(64)
BOOL = Bool()
BYTES32 = Bytes(32)
SIGNATURE = Bytes(64)
