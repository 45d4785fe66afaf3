"""Entry point of the `p2pchan` command."""

from __future__ import annotations


def main() -> None:
    raise SystemExit("not yet")
