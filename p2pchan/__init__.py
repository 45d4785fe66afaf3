"""p2pchan: an open payment-channel network over a toy layer-1 chain.

The version is the installed package's (pyproject.toml is its one source); "unknown" when the
code runs from a tree that was never installed.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("p2pchan")
except PackageNotFoundError:  # pragma: no cover - a source tree used without installing
    __version__ = "unknown"
