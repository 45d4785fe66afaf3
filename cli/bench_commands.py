"""`p2pchan bench` (placeholder)."""

import click


@click.group()
def bench() -> None:
    """Benchmarks."""
