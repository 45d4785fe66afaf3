"""The root command loads each command's module only when it runs, yet `p2pchan --help` lists
every command as before, and a client command imports nothing of the servers, the bench or
chaos.

The import checks run `main()` in a fresh interpreter (this test process has everything
imported already), each client command with arguments that reach the node, so the imports made
while it runs count too; with no node in the data dir each ends at the RPC socket."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from p2pchan_cli.command_index import COMMANDS
from p2pchan_cli.lazy_group import CommandEntry, LazyGroup, load_command
from p2pchan_cli.main import cli

NODE = "b2" * 32
CHANNEL = "c3" * 32

# Each client command of the index, with arguments that make it call the node.
CLIENT_RUNS = {
    "info": ["info"],
    "connect": ["connect", f"{NODE}@127.0.0.1:9"],
    "peers": ["peers"],
    "disconnect": ["disconnect", NODE],
    "open": ["open", NODE, "5"],
    "deposit": ["deposit", CHANNEL, "5"],
    "channels": ["channels"],
    "close": ["close", CHANNEL],
    "send": ["send", NODE, "5"],
    "pay": ["pay", "p2pc1notchecked"],
    "decode": ["decode", "p2pc1notchecked"],
    "invoice": ["invoice", "5"],
    "payments": ["payments", "--limit", "20"],
    "invoices": ["invoices"],
    "graph": ["graph"],
    "route": ["route", NODE, "5"],
    "setfees": ["setfees", "--all", "--ppm", "5"],
    "pay-batch": ["pay-batch", "BATCH_FILE"],
}
SERVER_AND_TOOL_COMMANDS = {"l1", "node", "plasma", "localnet", "chaos", "demo", "bench"}

# What a client command must not import: the node, the servers, their stores, the tools that
# start processes, the numeric libraries of route finding, and structlog (it never logs).
FORBIDDEN = (
    "p2pchan.net.node",
    "p2pchan.net.driver",
    "p2pchan.net.peers",
    "p2pchan.net.api.payments",
    "p2pchan.l1.server",
    "p2pchan.l1.service",
    "p2pchan.plasma.operator_server",
    "p2pchan.storage",
    "p2pchan_cli.node_commands",
    "p2pchan_cli.l1_commands",
    "p2pchan_cli.plasma_commands",
    "p2pchan_cli.bench",
    "p2pchan_cli.chaos",
    "p2pchan_cli.localnet",
    "p2pchan_cli.demo",
    "numpy",
    "scipy",
    "structlog",
    "sqlite3",
)


def first_paragraph(help_text: str | None) -> str:
    return " ".join((help_text or "").split("\n\n")[0].split())


@pytest.mark.parametrize("entry", COMMANDS, ids=lambda entry: entry.name)
def test_every_indexed_command_loads_and_its_summary_is_its_own(entry: CommandEntry) -> None:
    command = load_command(entry)
    assert command.name == entry.name
    assert not command.hidden and not command.deprecated
    assert entry.summary == first_paragraph(command.help), (
        f"the summary of `{entry.name}` in command_index.py differs from its docstring"
    )


def test_the_index_names_each_command_once_and_sorts_client_from_server() -> None:
    names = [entry.name for entry in COMMANDS]
    assert len(names) == len(set(names))
    assert set(names) == set(CLIENT_RUNS) | SERVER_AND_TOOL_COMMANDS


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_help_lists_every_command_as_if_all_were_loaded(width: int) -> None:
    lazy = LazyGroup("p2pchan", index=COMMANDS)
    loaded = click.Group("p2pchan", commands={e.name: load_command(e) for e in COMMANDS})
    listings = []
    for group in (lazy, loaded):
        formatter = click.HelpFormatter(width=width)
        group.format_commands(click.Context(group), formatter)
        listings.append(formatter.getvalue())
    assert listings[0] == listings[1]
    assert lazy.list_commands(click.Context(lazy)) == sorted(e.name for e in COMMANDS)
    assert not lazy.commands  # listing imported nothing


def test_an_unknown_command_is_none_and_a_known_one_is_loaded_once() -> None:
    ctx = click.Context(cli)
    assert cli.get_command(ctx, "no-such-command") is None
    first = cli.get_command(ctx, "payments")
    assert first is not None and cli.get_command(ctx, "payments") is first


def test_an_index_entry_that_is_not_a_command_is_refused() -> None:
    with pytest.raises(TypeError, match="not a click command"):
        load_command(CommandEntry("bad", "p2pchan_cli.command_index", "COMMANDS", ""))


def run_fresh(script: str) -> dict[str, object]:
    """Run `script` in a fresh interpreter; it prints one JSON document last."""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    document: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return document


MAIN_RUNNER = """
import contextlib, io, json, sys
from p2pchan_cli.main import main
outcomes = {}
for name, args in %r:
    sys.argv = ["p2pchan", *args]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            main()
            code = 0
        except SystemExit as ended:
            code = ended.code
    outcomes[name] = [code, err.getvalue()]
print(json.dumps({"outcomes": outcomes, "modules": sorted(sys.modules)}))
"""


def test_client_commands_import_no_server_bench_or_chaos_code(tmp_path: Path) -> None:
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps({"to": NODE, "amount": 5}) + "\n")
    datadir = tmp_path / "no-node"
    datadir.mkdir()
    runs = [
        (name, ["--datadir", str(datadir), *[str(batch) if a == "BATCH_FILE" else a for a in args]])
        for name, args in CLIENT_RUNS.items()
    ]
    found = run_fresh(MAIN_RUNNER % (runs,))
    outcomes = found["outcomes"]
    assert isinstance(outcomes, dict)
    for name, (code, err) in outcomes.items():  # each got as far as the node's socket
        assert code == 1 and "no node is running" in err, (name, code, err)
    modules = found["modules"]
    assert isinstance(modules, list)
    imported = [m for m in modules if m.startswith(FORBIDDEN)]
    assert imported == [], f"client commands import {imported[:10]}"
    assert "trio" in modules and "p2pchan.net.rpc_client" in modules  # what they do need


def test_help_imports_no_command(tmp_path: Path) -> None:
    found = run_fresh(MAIN_RUNNER % ([("help", ["--help"])],))
    assert found["outcomes"] == {"help": [0, ""]}
    modules = found["modules"]
    assert isinstance(modules, list)
    command_modules = {entry.module for entry in COMMANDS}
    assert [m for m in modules if m in command_modules] == []
    assert [m for m in modules if m.startswith(("trio", "structlog", "rich.console"))] == []
