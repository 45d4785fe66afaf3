"""Shared CLI plumbing: global options, the data dir and layer-1 address, output, exit codes.

`--datadir`, `--l1`, `--json` and `--timeout` are accepted before or after the command name.
A node's data dir defaults to `$P2PCHAN_DATADIR`, else `~/.p2pchan` (as `lncli` finds its
node); a layer-1 node's is always given. Every command prints text for a person by default
(sized to the terminal) or one JSON document with `--json`; every failure is one line on stderr
and a non-zero exit status (`EXIT_*` below, listed in `--help`).

Every command imports this module, `--help` and usage errors included, so trio, the RPC client
and the server's helpers are imported by the functions that use them, not here: `p2pchan X
--help` costs no more than click (docs/BENCHMARKS.md, "CLI start-up").
"""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import socket
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from p2pchan.errors import UserError
from p2pchan.log import configure_logging
from p2pchan_cli.params import HOST_PORT, SECONDS, HostPort, parse_host_port
from p2pchan_cli.render import plain_view

T = TypeVar("T")

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_CODES_HELP = (
    "Exit status: 0 done; 1 failed (one line on stderr says why); 2 usage error; "
    "3 still pending when --timeout ran out (a payment that may yet succeed or fail)."
)
DATADIR_ENV = "P2PCHAN_DATADIR"
DEFAULT_DATADIR = "~/.p2pchan"
UNLIMITED_WIDTH = 1000  # output that is not a terminal: nothing left out, nothing wrapped


@dataclass
class Settings:
    datadir: Path | None = None
    l1: HostPort | None = None
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
    help=f"Data directory of the node (default: ${DATADIR_ENV}, else {DEFAULT_DATADIR}).",
)
_L1 = click.option(
    "--l1",
    type=HOST_PORT,
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
    help="Print one JSON document instead of text.",
)
_TIMEOUT = click.option(
    "--timeout",
    type=SECONDS,
    metavar="SECONDS",
    expose_value=False,
    callback=_remember("timeout"),
    help="Give up waiting after this many seconds.",
)


def global_options(command: Callable[..., T]) -> Callable[..., T]:
    """Accept --datadir, --l1, --json and --timeout on this command too."""
    for option in (_TIMEOUT, _JSON, _L1, _DATADIR):
        command = option(command)
    return command


def node_datadir(ctx: click.Context) -> Path:
    """The node's data dir: --datadir, else $P2PCHAN_DATADIR, else ~/.p2pchan."""
    given = settings(ctx).datadir
    if given is not None:
        return given
    return Path(os.environ.get(DATADIR_ENV) or DEFAULT_DATADIR).expanduser()


def check_port_free(address: HostPort, option: str) -> None:
    """Fail at once, before a server starts and logs, if its port is taken. (The server's own
    listen says the same if the port is taken in between.)"""
    from p2pchan.concurrency import listen_error  # a server's: not on a client's start-up path

    if address.port == 0:
        return
    try:
        with socket.create_server((address.host, address.port)):
            pass
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise listen_error(address.host, address.port, option, error) from None
        # anything else (a host that is not ours, say): the server's listen reports it


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


def l1_address(ctx: click.Context, *, ready_file_fallback: bool = True) -> HostPort:
    """--l1, else $P2PCHAN_L1, else (for `l1` commands) the ready file of the layer-1 node
    whose --datadir is given."""
    chosen = settings(ctx)
    if chosen.l1 is not None:
        return chosen.l1
    if os.environ.get("P2PCHAN_L1"):
        return parse_host_port(os.environ["P2PCHAN_L1"], "$P2PCHAN_L1")
    if chosen.datadir is not None and ready_file_fallback:
        ready_file = chosen.datadir / "l1.json"
        if not ready_file.exists():
            raise UserError(
                f"no layer-1 node is running in {chosen.datadir} ({ready_file.name} is missing): "
                "start one with `p2pchan l1 start`, or give --l1 HOST:PORT"
            )
        ready = read_ready_file(ready_file)
        try:
            return HostPort(str(ready["host"]), int(ready["port"]))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{ready_file} holds no host and port") from None
    raise UserError("no layer-1 address: give --l1 HOST:PORT (or set $P2PCHAN_L1)")


class TimedOut(UserError):
    """--timeout ran out while the command waited."""


async def call_node(ctx: click.Context, method: str, params: dict[str, Any] | None = None) -> Any:
    """One call to the node of the data dir (see `node_datadir`) over its RPC socket."""
    from p2pchan.net.rpc_client import RpcClient  # only once a command runs, never for --help

    async with RpcClient.connect(node_datadir(ctx)) as rpc:
        return await rpc.call(method, params or {})


def run(ctx: click.Context, main: Callable[[], Awaitable[T]]) -> T:
    """Run an async command under trio, honouring --timeout (`TimedOut` when it runs out)."""
    import trio  # only once a command runs, never for --help

    timeout = settings(ctx).timeout

    async def guarded() -> T:
        with trio.fail_after(timeout if timeout is not None else math.inf):
            return await main()

    try:
        return trio.run(guarded)
    except trio.TooSlowError:
        if timeout is None:  # a deadline of the command's own, not --timeout
            raise
        raise TimedOut(f"timed out after {timeout:g} s") from None


def terminal_width() -> int:
    """The terminal's width ($COLUMNS wins), or no limit when stdout is not a terminal."""
    if not sys.stdout.isatty() and not os.environ.get("COLUMNS"):
        return UNLIMITED_WIDTH
    return shutil.get_terminal_size().columns


def emit(ctx: click.Context, document: Any, human: Callable[[int], str] | None = None) -> None:
    """Print `document` as JSON with --json, else as `human(width)` (or `plain_view`)."""
    if settings(ctx).json:
        click.echo(json.dumps(document, indent=2, sort_keys=False))
    elif human is not None:
        click.echo(human(terminal_width()))
    else:
        click.echo(plain_view(document))


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def server_logging(ctx: click.Context) -> None:
    """Long-running servers log at info unless --log-level says otherwise."""
    chosen = settings(ctx)
    if not chosen.log_level_given:
        configure_logging(chosen.log_format, "info")  # type: ignore[arg-type]
