"""Entry point of the `p2pchan` command: the root group, logging, and how failures end.

Every failure ends as one line on stderr, `error: ...`, and an exit status that says what kind
(see `EXIT_CODES_HELP`): a usage error (a bad argument, an unknown option) names the help to
read; an error of ours or of the operating system (a port in use, a missing file) is its
message; only a bug of ours shows a traceback.

The commands are listed in `command_index.py` and imported only when one runs (`LazyGroup`):
scripts call `p2pchan payments` in loops, and importing every command made each call pay for
the servers, the bench and chaos (docs/BENCHMARKS.md, "CLI start-up").
"""

from __future__ import annotations

import sys

import click

from p2pchan.errors import P2pchanError
from p2pchan.log import configure_logging
from p2pchan_cli.command_index import COMMANDS
from p2pchan_cli.common import (
    EXIT_CODES_HELP,
    EXIT_FAILURE,
    EXIT_USAGE,
    global_options,
    settings,
)
from p2pchan_cli.lazy_group import LazyGroup

PROG_NAME = "p2pchan"
EXIT_INTERRUPTED = 130


@click.group(
    cls=LazyGroup,
    index=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=(
        "Start with `p2pchan node init`, `p2pchan node start --l1 HOST:PORT`, then "
        "`p2pchan connect NODE_ID@HOST:PORT` and `p2pchan open NODE_ID AMOUNT`; "
        "`p2pchan COMMAND -h` shows an example of each command. " + EXIT_CODES_HELP
    ),
)
@click.version_option(package_name="p2pchan", prog_name=PROG_NAME, message="%(prog)s %(version)s")
@global_options
@click.option(
    "--log-format",
    type=click.Choice(["auto", "console", "json"]),
    default="auto",
    help="Log lines on stderr: console on a terminal, JSON lines otherwise (auto).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Lowest level logged (servers default to info, other commands to warning).",
)
@click.pass_context
def cli(ctx: click.Context, log_format: str, log_level: str | None) -> None:
    """p2pchan: a payment-channel network over a toy layer-1 chain."""
    chosen = settings(ctx)
    chosen.log_format = log_format
    if log_level is not None:
        chosen.log_level = log_level
        chosen.log_level_given = True
    configure_logging(log_format, chosen.log_level)  # type: ignore[arg-type]


def one_line(message: str) -> str:
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())


def usage_line(error: click.UsageError) -> str:
    """`No such option '--bogus'. (see `p2pchan open --help`)`: the problem, then where to look."""
    path = error.ctx.command_path if error.ctx is not None else PROG_NAME
    return f"{one_line(error.format_message()).rstrip('.')} (see `{path} --help`)"


def main() -> None:
    try:
        cli.main(prog_name=PROG_NAME, standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.UsageError as error:
        click.echo(f"error: {usage_line(error)}", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as error:
        click.echo(f"error: {one_line(error.format_message())}", err=True)
        sys.exit(error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("error: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BaseException as raised:  # every failure of ours is one line and exit 1
        from p2pchan.concurrency import single_error  # imports trio: only on this path

        cause = single_error(raised)
        if isinstance(cause, SystemExit):
            raise cause from None
        if isinstance(cause, KeyboardInterrupt):
            click.echo("error: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        if isinstance(cause, P2pchanError | OSError):  # ours, or the system's (a missing file)
            click.echo(f"error: {one_line(str(cause))}", err=True)
            sys.exit(EXIT_FAILURE)
        raise


if __name__ == "__main__":
    main()
