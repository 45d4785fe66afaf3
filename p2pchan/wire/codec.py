"""Message registry and the msgpack codec with limits.

A message is a `Record` with a type id; on the wire it is the array `[type_id, *fields]`. Each
protocol (the layer-1 API, the peer protocol) has its own `MessageRegistry` whose ids come from
an `@enum.unique` IntEnum, so an id is never given twice; retired ids stay in the enum, marked
retired, and are never reused. An unknown even id is fatal, an unknown odd id is skipped.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

from p2pchan.errors import LocalProtocolError, RemoteProtocolError
from p2pchan.wire.records import Record

R = TypeVar("R", bound=type[Record])

# msgpack raises these for malformed input; all of them are the sender's fault.
_MSGPACK_ERRORS = (ValueError, TypeError, OverflowError, msgpack.UnpackException)


def _reject_map(value: object) -> Any:
    # max_map_len=0 still lets an empty map through; this catches it.
    raise ValueError("maps are not allowed")


def _reject_ext(code: int, data: bytes) -> Any:
    # max_ext_len=0 still lets a zero-length ext (ext 8, length 0) through; this catches it.
    raise ValueError("ext types are not allowed")


def pack(value: Any) -> bytes:
    """Encode a value built from ints, bytes, str, bool, None, lists and tuples."""
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes, *, max_len: int) -> Any:
    """Decode untrusted msgpack: one value, no maps, no ext types, bounded sizes.

    The caller checks types and ranges (see `Record.from_wire`).
    """
    if len(data) > max_len:
        raise RemoteProtocolError(f"message of {len(data)} bytes exceeds {max_len}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_map_len=0,
            max_ext_len=0,
            object_hook=_reject_map,
            ext_hook=_reject_ext,
            max_bin_len=max_len,
            max_str_len=max_len,
            max_array_len=max_len,
        )
    except _MSGPACK_ERRORS as error:
        raise RemoteProtocolError(f"undecodable msgpack: {type(error).__name__} {error}") from None


class UnknownRequiredMessage(RemoteProtocolError):
    """An unknown even message type: the receiver must understand it, so the connection ends."""


class UnknownMessage:
    """An odd, unknown message type: skipped by the receiver for forward compatibility."""

    __slots__ = ("type_id",)

    def __init__(self, type_id: int) -> None:
        self.type_id = type_id

    def __repr__(self) -> str:
        return f"UnknownMessage({self.type_id})"


class MessageRegistry:
    """Maps the type ids of one protocol to record classes."""

    def __init__(self, name: str, ids: type[enum.IntEnum], *, max_message_size: int) -> None:
        self.name = name
        self.ids = ids
        self.max_message_size = max_message_size
        self._by_id: dict[int, type[Record]] = {}

    def message(self, type_id: enum.IntEnum) -> Callable[[R], R]:
        """Class decorator: register a record class under `type_id`."""
        if not isinstance(type_id, self.ids):
            raise TypeError(f"{type_id!r} is not a {self.ids.__name__}")

        def register(cls: R) -> R:
            if int(type_id) in self._by_id:
                raise TypeError(f"{self.name} type id {type_id!r} registered twice")
            cls.TYPE_ID = int(type_id)  # type: ignore[attr-defined]
            self._by_id[int(type_id)] = cls
            return cls

        return register

    def encode(self, message: Record) -> bytes:
        type_id: int | None = getattr(message, "TYPE_ID", None)
        if type_id is None or self._by_id.get(type_id) is not type(message):
            raise LocalProtocolError(f"{type(message).__name__} is not a {self.name} message")
        data = pack([type_id, *message.to_wire()])
        if len(data) > self.max_message_size:
            raise LocalProtocolError(
                f"{type(message).__name__} of {len(data)} bytes exceeds {self.max_message_size}"
            )
        return data

    def decode(self, data: bytes) -> Record | UnknownMessage:
        """Decode and check one message; raise `RemoteProtocolError` on anything malformed."""
        return self.decode_value(unpack(data, max_len=self.max_message_size))

    def decode_value(self, value: object, path: str | None = None) -> Record | UnknownMessage:
        """Check an already unpacked `[type_id, ...fields]` array."""
        if type(value) is not list or not value or type(value[0]) is not int:
            raise RemoteProtocolError(f"{self.name} message must be an array [type_id, ...]")
        type_id = value[0]
        if type_id < 0:
            raise RemoteProtocolError(f"negative {self.name} message type {type_id}")
        cls = self._by_id.get(type_id)
        if cls is None:
            if type_id % 2 == 0:
                raise UnknownRequiredMessage(f"unknown even {self.name} message type {type_id}")
            return UnknownMessage(type_id)
        return cls.from_wire(value[1:], path or cls.__name__)


class MessageList:
    """A record field holding a list of messages of one registry, each as `[type_id, ...]`."""

    __slots__ = ("max_len", "registry")
    plain = False

    def __init__(self, registry: MessageRegistry, max_len: int) -> None:
        self.registry = registry
        self.max_len = max_len

    def check(self, value: object, path: str) -> tuple[Record, ...]:
        if type(value) is not list or len(value) > self.max_len:
            raise RemoteProtocolError(f"field {path}: expected a list of at most {self.max_len}")
        messages = []
        for index, item in enumerate(value):
            message = self.registry.decode_value(item, f"{path}[{index}]")
            if isinstance(message, Record):
                messages.append(message)
        return tuple(messages)

    def to_wire(self, value: tuple[Record, ...]) -> list[Any]:
        return [[message.TYPE_ID, *message.to_wire()] for message in value]  # type: ignore[attr-defined]
