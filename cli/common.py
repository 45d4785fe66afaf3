"""Shared CLI plumbing: global options, the layer-1 address, output, errors and exit codes.

`--datadir`, `--l1`, `--json` and `--timeout` are accepted before or after the command name.
Every command prints a human table by default or one JSON document with `--json`; every failure
is one line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import trio
from rich.console import Console

from p2pchan.errors import UserError
from p2pchan.log import configure_logging

T = TypeVar("T")

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PENDING = 3


@dataclass
class Settings:
    datadir: Path | None = None
    l1: str | None = None
    json: bool = False
    timeout: float | None = None
    log_format: str = "auto"
    log_level: str = "warning"
    log_level_given: bool = False


def settings(ctx: click.Context) -> Settings:
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = Settings()
    return root.obj


def _remember(field: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None and value is not False:
            setattr(settings(ctx), field, value)
        return value

    return callback


_DATADIR = click.option(
    "--datadir",
    type=click.Path(path_type=Path, file_okay=False),
    expose_value=False,
    callback=_remember("datadir"),
    help="Data directory of the process this command is about.",
)
_L1 = click.option(
    "--l1",
    metavar="HOST:PORT",
    expose_value=False,
    callback=_remember("l1"),
    help="Layer-1 node address (default: $P2PCHAN_L1, or DATADIR/l1.json).",
)
_JSON = click.option(
    "--json",
    "as_json",
    is_flag=True,
    expose_value=False,
    callback=_remember("json"),
    help="Print one JSON document instead of a table.",
)
_TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    expose_value=False,
    callback=_remember("timeout"),
    help="Give up waiting after this many seconds (exit 1).",
)


def global_options(command: Callable[..., T]) -> Callable[..., T]:
    """Accept --datadir, --l1, --json and --timeout on this command too."""
    for option in (_TIMEOUT, _JSON, _L1, _DATADIR):
        command = option(command)
    return command


def parse_host_port(text: str, what: str = "address") -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise UserError(f"{what} must be HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port_text)


def read_ready_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: is the process running?") from None
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object")
    return data


def l1_address(ctx: click.Context) -> tuple[str, int]:
    chosen = settings(ctx)
    if chosen.l1:
        return parse_host_port(chosen.l1, "--l1")
    if os.environ.get("P2PCHAN_L1"):
        return parse_host_port(os.environ["P2PCHAN_L1"], "$P2PCHAN_L1")
    if chosen.datadir is not None and (chosen.datadir / "l1.json").exists():
        ready = read_ready_file(chosen.datadir / "l1.json")
        return str(ready["host"]), int(ready["port"])
    raise UserError("no layer-1 address: give --l1 HOST:PORT")


def run(ctx: click.Context, main: Callable[[], Awaitable[T]]) -> T:
    """Run an async command under trio, honouring --timeout."""
    timeout = settings(ctx).timeout

    async def guarded() -> T:
        with trio.fail_after(timeout if timeout is not None else math.inf):
            return await main()

    try:
        return trio.run(guarded)
    except trio.TooSlowError:
        raise UserError(f"timed out after {timeout} s") from None


def emit(ctx: click.Context, document: Any, human: Callable[[Console], None] | None = None) -> None:
    """Print `document` as JSON with --json, else through `human` (or as a key/value table)."""
    if settings(ctx).json:
        click.echo(json.dumps(document, indent=2, sort_keys=False))
        return
    if human is not None:
        # Ids are never cut: tables get room for them even when stdout is not a terminal.
        human(Console(width=None if sys.stdout.isatty() else 200, soft_wrap=True))
    elif isinstance(document, dict):
        click.echo(key_value_text(document))
    else:
        click.echo(str(document))


def key_value_text(document: dict[str, Any]) -> str:
    """Aligned `key  value` lines; ids are never shortened."""
    width = max((len(key) for key in document), default=0)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in document.items())


def fail(message: str, code: int = EXIT_FAILURE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def server_logging(ctx: click.Context) -> None:
    """Long-running servers log at info unless --log-level says otherwise."""
    chosen = settings(ctx)
    if not chosen.log_level_given:
        configure_logging(chosen.log_format, "info")  # type: ignore[arg-type]
