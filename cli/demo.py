"""`p2pchan demo` (placeholder replaced below)."""

import click


@click.command()
def demo() -> None:
    """Demo."""
