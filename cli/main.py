"""Entry point of the `p2pchan` command: the root group, logging, and error handling."""

from __future__ import annotations

import sys

import click

from p2pchan.concurrency import single_error
from p2pchan.errors import P2pchanError
from p2pchan.log import configure_logging
from p2pchan_cli.bench_commands import bench
from p2pchan_cli.channel_commands import CHANNEL_COMMANDS
from p2pchan_cli.common import EXIT_FAILURE, global_options, settings
from p2pchan_cli.demo import demo
from p2pchan_cli.l1_commands import l1
from p2pchan_cli.node_commands import NODE_COMMANDS, node
from p2pchan_cli.pay_batch import pay_batch
from p2pchan_cli.plasma_commands import plasma


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


cli.add_command(l1)
cli.add_command(node)
for command in [*NODE_COMMANDS, *CHANNEL_COMMANDS, pay_batch]:
    cli.add_command(command)
cli.add_command(plasma)
cli.add_command(demo)
cli.add_command(bench)


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except BaseException as raised:  # every failure of ours is one line and exit 1
        cause = single_error(raised)
        if isinstance(cause, SystemExit):
            raise cause from None
        if isinstance(cause, P2pchanError):
            click.echo(f"error: {cause}", err=True)
            sys.exit(EXIT_FAILURE)
        raise


if __name__ == "__main__":
    main()
