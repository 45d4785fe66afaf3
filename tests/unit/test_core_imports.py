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
PURE_CHAIN_MODULES = (
    "chain",
    "contract",
    "state",
    "transactions",
    "events",
    "blocks",
    "genesis",
    "plasma_contract",
    "plasma_state",
)
# The Plasma package is pure except for these shell modules; a new module is checked by default.
PLASMA_SHELL_MODULES = (
    "operator_server",
    "operator_l1",
    "operator_rpc",
    "operator_store",
    "client",
)


def pure_modules() -> list[str]:
    root = Path(p2pchan.__file__).parent
    modules = []
    for package in PURE_PACKAGES:
        modules.append(f"p2pchan.{package}")
        # Subpackages too (core/routing, core/payment, ...), at any depth.
        for info in pkgutil.walk_packages([str(root / package)], prefix=f"p2pchan.{package}."):
            modules.append(info.name)
    modules += [f"p2pchan.l1.{name}" for name in PURE_CHAIN_MODULES]
    modules += [
        f"p2pchan.plasma.{info.name}"
        for info in pkgutil.iter_modules([str(root / "plasma")])
        if info.name not in PLASMA_SHELL_MODULES
    ]
    return sorted(modules)


def imported_after(modules: list[str], prefixes: tuple[str, ...]) -> list[str]:
    """The modules under `prefixes` that importing `modules` pulls in (in a fresh interpreter)."""
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print('\\n'.join(m for m in sys.modules if m.startswith({prefixes!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


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


def _imports_of(package: str) -> dict[str, set[str]]:
    """Each module of a package, and the p2pchan modules its source imports."""
    root = Path(p2pchan.__file__).parent / package
    found: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        text = path.read_text()
        imported = set()
        for line in text.splitlines():
            words = line.split()
            if (
                len(words) >= 2
                and words[0] in ("from", "import")
                and words[1].startswith("p2pchan.")
            ):
                imported.add(words[1])
        found[str(path.relative_to(root.parent))] = imported
    return found


def test_the_shared_formats_and_layer_1_import_nothing_of_the_node() -> None:
    """Signed formats that layer 1, the core and Plasma all read live in wire/, below them;
    layer 1 and wire/ never reach up into the node's core or shell (DESIGN.md
    "Architecture")."""
    for package in ("wire", "l1", "crypto"):
        for module, imported in _imports_of(package).items():
            upward = {
                name
                for name in imported
                if name.startswith(("p2pchan.core", "p2pchan.net", "p2pchan.storage"))
            }
            assert not upward, f"{module} imports {sorted(upward)}"


def test_layer_1_never_imports_plasma_nor_the_node() -> None:
    """Layer 1 reads Plasma's byte formats from `wire/` and `crypto/`, never the Plasma core
    (which sits above it) nor the node's shell."""
    root = Path(p2pchan.__file__).parent
    l1_modules = [f"p2pchan.l1.{info.name}" for info in pkgutil.iter_modules([str(root / "l1")])]
    assert imported_after(l1_modules, ("p2pchan.plasma", "p2pchan.net")) == []
