"""Wall and CPU time of one `p2pchan` command, start to exit: what a script calling the CLI in a
loop pays per call.

Each source tree given (`--tree NAME=DIR`, DIR holding `p2pchan/` and `p2pchan_cli/`, e.g. an
export of another commit with `cli/` renamed) is run in turn, interleaved, so every tree sees
the same load; without `--tree` the installed package is timed. Bytecode is cached (one warm-up
run each), or with `--cold` every run compiles the trees' modules (PYTHONDONTWRITEBYTECODE=1 and
their `__pycache__` removed; installed dependencies keep theirs). Prints one JSON document.

Run: `.venv/bin/python benchmarks/cli_startup.py [--runs N] [--cold] [--tree NAME=DIR ...]
-- --datadir D payments --limit 20`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def command(tree: Path | None, args: list[str]) -> list[str]:
    prelude = "" if tree is None else f"import sys; sys.path.insert(0, {str(tree)!r}); "
    script = prelude + "from p2pchan_cli.main import main; main()"
    return [sys.executable, "-c", script, *args]


def clear_bytecode(tree: Path) -> None:
    for cache in tree.rglob("__pycache__"):
        shutil.rmtree(cache)


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and exit status of one run."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(process.pid, 0)
    return time.perf_counter() - started, usage.ru_utime + usage.ru_stime, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--cold", action="store_true", help="compile the trees on every run")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("args", nargs="+", help="the p2pchan command line, after --")
    options = parser.parse_args()
    trees: dict[str, Path | None] = {"installed": None}
    if options.tree:
        trees = {name: Path(path) for name, _, path in (t.partition("=") for t in options.tree)}
    env = dict(os.environ)
    if options.cold:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    walls: dict[str, list[float]] = {name: [] for name in trees}
    cpus: dict[str, list[float]] = {name: [] for name in trees}
    statuses: dict[str, set[int]] = {name: set() for name in trees}
    for tree in trees.values():  # warm-up: bytecode written, files in the page cache
        run_once(command(tree, options.args), env)
    for _ in range(options.runs):
        for name, tree in trees.items():
            if options.cold and tree is not None:
                clear_bytecode(tree)
            wall, cpu, status = run_once(command(tree, options.args), env)
            walls[name].append(wall)
            cpus[name].append(cpu)
            statuses[name].add(os.waitstatus_to_exitcode(status))
    result: dict[str, Any] = {
        "command": ["p2pchan", *options.args],
        "runs": options.runs,
        "bytecode": "compiled every run" if options.cold else "cached",
        "load_average_1m": os.getloadavg()[0],
    }
    for name in trees:
        result[name] = {
            "wall_ms_min": round(min(walls[name]) * 1000),
            "wall_ms_median": round(statistics.median(walls[name]) * 1000),
            "cpu_ms_median": round(statistics.median(cpus[name]) * 1000),
            "exit_statuses": sorted(statuses[name]),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
