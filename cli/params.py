"""What the command line accepts: argument types, and the command class every command uses.

Arguments are checked while click parses them, so a bad one is a usage error (exit 2) worded
the same wherever it appears: an amount is always `AMOUNT must be a whole number from 1 to
18446744073709551615, got -5`, whether the mistake is a negative, zero, fractional, too large
or garbled value. Checked values come out normalised (ids in lowercase hex).

A negative number is an argument, never an option: `open NODE_ID -5` gets the amount message,
not `No such option '-5'`. `Command.parse_args` moves the options (with their values) before a
`--`, so click reads every other word, negative numbers included, as an argument.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import click

from p2pchan.errors import UserError
from p2pchan.types import parse_positive_amount

_NEGATIVE_NUMBER = re.compile(r"-[0-9.]")
_HEX_ID = re.compile(r"[0-9a-fA-F]{64}")


class Command(click.Command):
    """A click command whose arguments may be negative numbers (see the module docstring)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, negatives_as_arguments(self.get_params(ctx), args))


command = functools.partial(click.command, cls=Command)


def negatives_as_arguments(params: Sequence[click.Parameter], args: list[str]) -> list[str]:
    """`args` with every option (and its value) first, then `--`, then the arguments in order,
    when a negative number is among them; else `args` unchanged."""
    if not any(_NEGATIVE_NUMBER.match(arg) for arg in args):
        return args
    takes_value = {
        name
        for param in params
        if isinstance(param, click.Option) and not param.is_flag and not param.count
        for name in (*param.opts, *param.secondary_opts)
    }
    options: list[str] = []
    arguments: list[str] = []
    words = iter(args)
    for word in words:
        if word == "--":
            arguments.extend(words)
            break
        if word.startswith("-") and len(word) > 1 and not _NEGATIVE_NUMBER.match(word):
            options.append(word)
            if word in takes_value:
                options.extend(_next(words))
        else:
            arguments.append(word)
    return [*options, "--", *arguments]


def _next(words: Iterator[str]) -> list[str]:
    word = next(words, None)
    return [] if word is None else [word]


def _name(param: click.Parameter | None, default: str) -> str:
    """How a message names the parameter: its metavar (`AMOUNT`) or its option (`--expiry`)."""
    if param is None:
        return default
    if isinstance(param, click.Option):
        return param.opts[-1]
    return param.human_readable_name


class AmountType(click.ParamType):
    """A positive amount that fits in u64: decimal digits only."""

    name = "amount"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        try:
            return parse_positive_amount(str(value), _name(param, "AMOUNT"))
        except UserError as error:
            raise click.UsageError(str(error), ctx) from None


class HexIdType(click.ParamType):
    """A node id or channel id: 64 hex digits, given back in lowercase."""

    name = "hex id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return check_hex_id(str(value), _name(param, "ID"), ctx)


def check_hex_id(text: str, what: str, ctx: click.Context | None) -> str:
    if not _HEX_ID.fullmatch(text):
        shown = text if len(text) <= 80 else text[:80] + "…"
        raise click.UsageError(f"{what} must be 64 hex digits, got {shown!r}", ctx)
    return text.lower()


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_host_port(text: str, what: str) -> HostPort:
    """`HOST:PORT` (an IPv6 host in brackets); `UserError` naming `what` if it is not."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UserError(f"{what} must be HOST:PORT with a port from 0 to 65535, got {text!r}")
    return HostPort(host.strip("[]"), int(port_text))


class HostPortType(click.ParamType):
    name = "HOST:PORT"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> HostPort:
        if isinstance(value, HostPort):
            return value
        try:
            return parse_host_port(str(value), _name(param, "HOST:PORT"))
        except UserError as error:
            raise click.UsageError(str(error), ctx) from None


@dataclass(frozen=True)
class PeerAddress:
    """`NODE_ID` alone, or `NODE_ID@HOST:PORT` (then `address` is set)."""

    node_id: str
    address: HostPort | None

    def __str__(self) -> str:
        return self.node_id if self.address is None else f"{self.node_id}@{self.address}"


class PeerType(click.ParamType):
    """`NODE_ID@HOST:PORT`; with `address_optional`, a bare `NODE_ID` too."""

    name = "peer"

    def __init__(self, *, address_optional: bool = False) -> None:
        self.address_optional = address_optional

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> PeerAddress:
        if isinstance(value, PeerAddress):
            return value
        text = str(value)
        node_id, sep, address = text.partition("@")
        what = _name(param, "PEER")
        if not sep and not self.address_optional:
            raise click.UsageError(f"{what} must be NODE_ID@HOST:PORT, got {text!r}", ctx)
        checked = check_hex_id(node_id, "NODE_ID", ctx)
        if not sep:
            return PeerAddress(checked, None)
        try:
            return PeerAddress(checked, parse_host_port(address, "the address after @"))
        except UserError as error:
            raise click.UsageError(str(error), ctx) from None


class CountType(click.ParamType):
    """A whole number in [minimum, maximum], worded like amounts."""

    name = "integer"

    def __init__(self, minimum: int, maximum: int) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number: int | None = value
        else:
            text = str(value)
            number = int(text) if text.isascii() and text.isdigit() and len(text) < 20 else None
        if number is None or not self.minimum <= number <= self.maximum:
            raise click.UsageError(
                f"{_name(param, 'N')} must be a whole number from {self.minimum} to "
                f"{self.maximum}, got {value}",
                ctx,
            )
        return number


class SecondsType(click.ParamType):
    """A positive number of seconds (fractions allowed)."""

    name = "seconds"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = float("nan")
        if not 0 < seconds < 10**9:  # also refuses nan and inf
            raise click.UsageError(
                f"{_name(param, 'SECONDS')} must be a number of seconds above 0, got {value}", ctx
            )
        return seconds


class DaysType(click.ParamType):
    """A positive number of days (fractions allowed: 0.5 is twelve hours)."""

    name = "days"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            days = float(value)
        except (TypeError, ValueError):
            days = float("nan")
        if not 0 < days <= 1_000_000:  # also refuses nan and inf
            raise click.UsageError(
                f"{_name(param, 'DAYS')} must be a number of days above 0, got {value}", ctx
            )
        return days


AMOUNT = AmountType()
DAYS = DaysType()
HEX_ID = HexIdType()
HOST_PORT = HostPortType()
PEER = PeerType()
NODE_ID_OR_PEER = PeerType(address_optional=True)
SECONDS = SecondsType()
