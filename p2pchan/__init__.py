"""p2pchan: an open payment-channel network over a toy layer-1 chain.

The version is the installed package's (pyproject.toml is its one source); "unknown" when the
code runs from a tree that was never installed. It is read on first use of `__version__`, not
on import: `importlib.metadata` costs every process that imports any of p2pchan about 20 ms,
and `p2pchan payments` never asks for it.
"""

from __future__ import annotations


def __getattr__(name: str) -> str:
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("p2pchan")
    except PackageNotFoundError:  # pragma: no cover - a source tree used without installing
        found = "unknown"
    globals()["__version__"] = found
    return found
