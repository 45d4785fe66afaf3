"""Records: frozen dataclasses that travel as msgpack arrays.

A record declares each field's wire validator with `wire(...)`; fields go on the wire in
declaration order, as an array (never a map). `Record.from_wire` checks an untrusted decoded value
field by field. A record can nest another record with `Nested(cls)`.

    @dataclass(frozen=True, slots=True)
    class Account(Record):
        balance: int = wire(U64)
        nonce: int = wire(U64)
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self

from p2pchan.errors import RemoteProtocolError
from p2pchan.wire.fields import Field, fail


def wire(validator: Field) -> Any:
    """Declare a record field and the validator that checks it when decoded."""
    return dataclasses.field(metadata={"wire": validator})


class Record:
    """Base of every wire record. Subclasses must be dataclasses whose fields all use `wire`."""

    __slots__ = ()
    _wire_names: ClassVar[tuple[str, ...]]
    _wire_validators: ClassVar[tuple[Field, ...]]
    _wire_plain: ClassVar[bool]  # True when no field needs converting on the way out

    @classmethod
    def _wire_layout(cls) -> None:
        if "_wire_names" in cls.__dict__:
            return
        names: list[str] = []
        validators: list[Field] = []
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            validator = field.metadata.get("wire")
            if validator is None:
                raise TypeError(f"{cls.__name__}.{field.name} has no wire validator")
            names.append(field.name)
            validators.append(validator)
        cls._wire_names = tuple(names)
        cls._wire_validators = tuple(validators)
        cls._wire_plain = all(validator.plain for validator in validators)

    def to_wire(self) -> list[Any]:
        cls = type(self)
        cls._wire_layout()
        if cls._wire_plain:
            return [getattr(self, name) for name in cls._wire_names]
        return [
            validator.to_wire(getattr(self, name))
            for name, validator in zip(cls._wire_names, cls._wire_validators, strict=True)
        ]

    @classmethod
    def from_wire(cls, value: object, path: str | None = None) -> Self:
        cls._wire_layout()
        where = path or cls.__name__
        if type(value) is not list:
            raise fail(where, f"{cls.__name__} array", value)
        if len(value) != len(cls._wire_names):
            raise RemoteProtocolError(
                f"{where}: expected {len(cls._wire_names)} fields, got {len(value)}"
            )
        checked = [
            validator.check(item, f"{where}.{name}")
            for name, validator, item in zip(
                cls._wire_names, cls._wire_validators, value, strict=True
            )
        ]
        return cls(*checked)


class Nested:
    """A field holding another record, as a nested array."""

    __slots__ = ("record",)
    plain = False

    def __init__(self, record: type[Record]) -> None:
        self.record = record

    def check(self, value: object, path: str) -> Record:
        return self.record.from_wire(value, path)

    def to_wire(self, value: Record) -> list[Any]:
        return value.to_wire()


class _NestedList:
    """A list of records; use `NestedList(cls, max_len)`."""

    __slots__ = ("max_len", "record")
    plain = False

    def __init__(self, record: type[Record], max_len: int) -> None:
        self.record = record
        self.max_len = max_len

    def check(self, value: object, path: str) -> tuple[Record, ...]:
        if type(value) is not list:
            raise fail(path, "list", value)
        if len(value) > self.max_len:
            raise RemoteProtocolError(f"field {path}: {len(value)} items, at most {self.max_len}")
        from_wire = self.record.from_wire
        return tuple(from_wire(item, f"{path}[{index}]") for index, item in enumerate(value))

    def to_wire(self, value: tuple[Record, ...] | list[Record]) -> list[Any]:
        return [item.to_wire() for item in value]


NestedList = _NestedList
