"""`p2pchan localnet up|status|down`: a topology's processes started, shown and stopped.

`up` refuses, before starting anything, a bad topology or a dir that is not empty; once
processes run, any failure or Ctrl-C stops every one of them again (logs are kept). It leaves
a working network running in the background, each process in its own session, and writes
`D/localnet.json` for the other commands. `down` stops whatever of it still runs (paused or
half-killed networks included) and is safe to repeat.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
import trio
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from p2pchan.errors import ChainError, UserError
from p2pchan.l1.client import L1Client
from p2pchan.net.rpc_client import RpcError
from p2pchan_cli.common import emit, global_options, run, settings
from p2pchan_cli.localnet.network import HOST, STATE_FILE, Network, NodeHandle
from p2pchan_cli.localnet.state import NetworkState, load_state
from p2pchan_cli.localnet.supervisor import is_ours, stop_processes, until_signalled
from p2pchan_cli.localnet.topology import Topology, load_topology
from p2pchan_cli.params import Command

DIR_OPTION = click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The network's directory: state, and each node's data and logs under DIR/<alias>/.",
)


@click.group()
def localnet() -> None:
    """A local network of real processes from a topology.

    \b
    Example:
      p2pchan localnet up --topology line3 --dir /tmp/ln
    """


def check_new_directory(directory: Path) -> None:
    """`up` needs a dir that is missing or empty (or holds only a stopped network's leftovers
    is still refused: its data would be mixed with a new one's)."""
    if (directory / STATE_FILE).exists():
        state = load_state(directory)
        if state.running():
            raise UserError(
                f"a network is already running in {directory}: `p2pchan localnet down --dir "
                f"{directory}` first"
            )
        raise UserError(f"{directory} holds a stopped network: remove it or choose another --dir")
    if directory.exists() and any(directory.iterdir()):
        raise UserError(f"{directory} is not empty and holds no network: choose another --dir")


def progress_bar(total: int, show: bool) -> Progress:
    return Progress(
        TextColumn("{task.description:<32}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=True,
    )


async def bring_up(network: Network, show: bool) -> float:
    """Start, fund, connect, open, set fees, wait for gossip; seconds it took. On any failure
    (or Ctrl-C) every process started is stopped before the error goes on."""
    topology = network.topology
    steps = 2 + len(topology.nodes) + 2 + len(topology.channels) + 1
    started = time.monotonic()
    with progress_bar(steps, show) as progress:
        task = progress.add_task("starting layer 1", total=steps)

        def advance(done: str) -> None:
            progress.update(task, advance=1, description=done)

        try:
            network.prepare()
            await network.start_l1()
            network.write_state()
            advance("layer 1 started")
            await network.start_nodes(advance)
            network.write_state()
            await network.fund(advance)
            await network.connect(lambda _a, b: (HOST, network.nodes[b].port), advance)
            await network.open_channels(advance)
            await network.apply_fees()
            advance("fees set")
            await network.wait_for_gossip(advance)
            network.write_state()
        except BaseException:
            await network.stop_all()
            network.write_state()
            raise
    return time.monotonic() - started


def up_view(document: dict[str, Any]) -> str:
    lines = [
        f"network {document['name']} up in {document['seconds']:.1f} s: "
        f"{len(document['nodes'])} nodes, {len(document['channels'])} channels, "
        f"layer 1 at {document['l1']}",
        *(f"note: {note}" for note in document["notes"]),
        "",
    ]
    width = max(len(node["alias"]) for node in document["nodes"])
    for node in document["nodes"]:
        lines.append(
            f"{node['alias']:<{width}}  {node['host']}:{node['port']}  "
            f"p2pchan --datadir {node['datadir']} info"
        )
    lines += ["", f"stop it with: p2pchan localnet down --dir {document['dir']}"]
    return "\n".join(lines)


@localnet.command(cls=Command)
@global_options
@click.option(
    "--topology",
    "topology_name",
    required=True,
    metavar="NAME|FILE",
    help="A shipped topology (line3, ring5, hub10, random30, random100) or a .toml/.json file.",
)
@DIR_OPTION
@click.pass_context
def up(ctx: click.Context, topology_name: str, directory: Path) -> None:
    """Start a layer 1 and a topology's nodes in the background, with their channels open.

    Funds the nodes, connects them, opens and funds every channel, sets fees, waits for
    gossip; then prints a line per node with its --datadir. Logs: DIR/<alias>/node.log.

    \b
    Example:
      p2pchan localnet up --topology ring5 --dir /tmp/ring
      p2pchan --datadir /tmp/ring/ann channels
    """
    topology: Topology = load_topology(topology_name)
    directory = directory.absolute()
    check_new_directory(directory)
    created = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    network = Network(directory, topology, detached=True)
    show = sys.stderr.isatty() and not settings(ctx).json
    try:
        seconds = run(ctx, lambda: until_signalled(lambda: bring_up(network, show)))
    except BaseException:
        if created and not any(p.is_dir() for p in directory.iterdir()):
            (directory / STATE_FILE).unlink(missing_ok=True)
            directory.rmdir()
        raise
    document = {
        "dir": str(directory),
        "name": topology.name,
        "seconds": round(seconds, 2),
        "l1": network.l1_address,
        "nodes": network.state_document()["nodes"],
        "channels": network.state_document()["channels"],
        "notes": network.notes,
    }
    emit(ctx, document, lambda _width: up_view(document))


async def gather_status(state: NetworkState) -> dict[str, Any]:
    alive = {process.name for process in state.running()}
    height = None
    if "l1" in alive:
        try:
            with trio.move_on_after(5):
                async with L1Client.connect(state.l1_host, state.l1_port) as client:
                    height = (await client.status()).height
        except (ChainError, OSError):
            height = None
    aliases = {entry.node_id: entry.alias for entry in state.nodes}
    nodes = []
    for entry in state.nodes:
        row: dict[str, Any] = {
            "alias": entry.alias,
            "node_id": entry.node_id,
            "alive": entry.alias in alive,
            "pid": state.pids.get(entry.alias),
            "datadir": str(entry.datadir),
            "peers": None,
            "channels": [],
        }
        if row["alive"]:
            handle = NodeHandle(entry.alias, entry.datadir, entry.node_id, entry.port)
            try:
                with trio.move_on_after(5) as waited:
                    row["peers"] = sum(p["connected"] for p in await handle.call("peers"))
                    row["channels"] = [
                        {
                            "channel_id": c["channel_id"],
                            "peer": aliases.get(c["peer"], c["peer"]),
                            "state": c["state"],
                            "local_balance": c["local_balance"],
                            "remote_balance": c["remote_balance"],
                            "pending_locks": c["pending_locks"],
                        }
                        for c in await handle.call("channels")
                    ]
                if waited.cancelled_caught:
                    row["alive"] = "not answering"  # paused (SIGSTOP), or stuck
            except (RpcError, UserError):
                row["alive"] = "not answering"
        nodes.append(row)
    return {
        "dir": str(state.directory),
        "name": state.name,
        "l1": {
            "address": f"{state.l1_host}:{state.l1_port}",
            "alive": "l1" in alive,
            "height": height,
        },
        "nodes": nodes,
    }


def status_view(document: dict[str, Any]) -> str:
    l1 = document["l1"]
    lines = [
        f"network {document['name']} in {document['dir']}",
        f"layer 1 {l1['address']}: " + (f"up, height {l1['height']}" if l1["alive"] else "down"),
        "",
    ]
    width = max(len(node["alias"]) for node in document["nodes"])
    for node in document["nodes"]:
        alive = node["alive"]
        state = "up" if alive is True else "down" if alive is False else alive
        lines.append(
            f"{node['alias']:<{width}}  {state:<4}"
            + (f"  peers {node['peers']}" if node["peers"] is not None else "")
        )
        for c in node["channels"]:
            lines.append(
                f"{'':<{width}}    → {c['peer']:<{width}} {c['state']:<8} "
                f"local {c['local_balance']:>10} remote {c['remote_balance']:>10} "
                f"locks {c['pending_locks']}"
            )
    return "\n".join(lines)


@localnet.command(cls=Command)
@global_options
@DIR_OPTION
@click.pass_context
def status(ctx: click.Context, directory: Path) -> None:
    """Each node up or down, its channels with balances and pending locks; layer-1 height.

    \b
    Example:
      p2pchan localnet status --dir /tmp/ring --json
    """
    state = load_state(directory.absolute())
    document = run(ctx, lambda: gather_status(state))
    emit(ctx, document, lambda _width: status_view(document))


@localnet.command(cls=Command)
@global_options
@DIR_OPTION
@click.pass_context
def down(ctx: click.Context, directory: Path) -> None:
    """Stop every process of the network (paused or not); nothing is left running.

    SIGTERM first, SIGKILL after 10 s. The data and logs stay in DIR.

    \b
    Example:
      p2pchan localnet down --dir /tmp/ring
    """
    state = load_state(directory.absolute())
    processes = state.processes()
    running = [p for p in processes if is_ours(p)]
    killed = run(ctx, lambda: stop_processes(running))
    left = [p.name for p in running if is_ours(p)]
    if left:
        raise UserError(f"could not stop {', '.join(left)}")
    document = {
        "dir": str(state.directory),
        "stopped": [p.name for p in running],
        "killed": killed,
        "already_gone": [p.name for p in processes if p not in running],
    }
    emit(
        ctx,
        document,
        lambda _width: (
            f"stopped {len(running)} processes"
            + (f" ({len(killed)} had to be killed)" if killed else "")
            + (
                f"; {len(document['already_gone'])} already gone"
                if document["already_gone"]
                else ""
            )
        ),
    )
