"""The pure layers never pull in trio (STYLE.md habit 1).

The core, the wire format, the crypto and the pure chain rules take time, heights and randomness
as inputs and do no IO; importing any of them must not import trio. The check runs in a fresh
interpreter, since this test process has trio loaded already. Modules are discovered at test
time, subpackages included, so a new module under these packages is checked without editing
this file.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import p2pchan

PURE_PACKAGES = ("core", "wire", "crypto")
PURE_CHAIN_MODULES = ("chain", "contract", "state", "transactions")


def pure_modules() -> list[str]:
    root = Path(p2pchan.__file__).parent
    modules = []
    for package in PURE_PACKAGES:
        modules.append(f"p2pchan.{package}")
        # Subpackages too (core/routing, core/payment, ...), at any depth.
        for info in pkgutil.walk_packages([str(root / package)], prefix=f"p2pchan.{package}."):
            modules.append(info.name)
    modules += [f"p2pchan.l1.{name}" for name in PURE_CHAIN_MODULES]
    return sorted(modules)


def test_the_pure_modules_are_found() -> None:
    modules = pure_modules()
    for expected in (
        "p2pchan.core.channel",
        "p2pchan.wire.codec",
        "p2pchan.crypto.noise",
        "p2pchan.core.routing.pathfind",
    ):
        assert expected in modules


def test_importing_the_pure_modules_does_not_import_trio() -> None:
    modules = pure_modules()
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('trio' in sys.modules)\n"
        "print(sorted(m for m in sys.modules if m == 'trio' or m.startswith('trio.'))[:5])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    imported_trio, which = result.stdout.splitlines()
    assert imported_trio == "False", f"a pure module imports trio: {which}"
