"""`p2pchan demo`: a guided tour of what p2pchan does today, for real, cleaned up afterwards.

It starts a real layer-1 process and two real nodes (Alice, started with --dev so she can try
the attack, and Bob) on free ports in a temporary directory. They connect over Noise, open and
fund a channel, pay each other both ways (spontaneously and with an invoice), and then Alice
cheats: she force-closes with none of her own sent proofs, as if she had never paid. Bob's node
sees the close on layer 1 and answers with Alice's newest proof by itself; after the window the
channel settles and every layer-1 balance is checked, as is the conservation of money.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import click
import trio
from rich.console import Console

from p2pchan.errors import P2pchanError
from p2pchan.l1.client import L1Client
from p2pchan.net.rpc_client import RpcClient
from p2pchan.types import Address
from p2pchan_cli.common import global_options, run
from p2pchan_cli.processes import ChildProcess, l1_process, node_process, p2pchan_argv

FUNDING = 10_000
SETTLE_TIMEOUT = 20
BLOCK_TIME = "0.1"


class Tour:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.step_number = 0

    def step(self, text: str) -> None:
        self.step_number += 1
        self.console.print(f"\n[bold cyan]{self.step_number}.[/] [bold]{text}[/]")

    def say(self, text: str) -> None:
        self.console.print(f"   {text}")


class Node:
    def __init__(self, name: str, child: ChildProcess) -> None:
        self.name = name
        self.child = child

    @property
    def node_id(self) -> str:
        return str(self.child.ready["node_id"])

    async def call(self, method: str, **params: Any) -> Any:
        async with RpcClient.connect(self.child.ready_file.parent) as rpc:
            return await rpc.call(method, params)


async def _start_node(workdir: Path, name: str, l1: str, children: list[ChildProcess]) -> Node:
    datadir = workdir / name
    await trio.run_process(
        p2pchan_argv("node", "init", "--datadir", str(datadir)), capture_stdout=True
    )
    child = node_process(datadir, l1, "--alias", name, "--dev", name=name)
    children.append(child)
    await child.start()
    return Node(name, child)


async def _tour(tour: Tour, workdir: Path) -> None:
    children: list[ChildProcess] = []
    try:
        await _network_story(tour, workdir, children)
    finally:
        for child in reversed(children):
            await child.stop()
        tour.say("all processes stopped")


async def _network_story(tour: Tour, workdir: Path, children: list[ChildProcess]) -> None:
    tour.step("Start a layer-1 node and two channel nodes (real processes)")
    chain = l1_process(workdir / "l1", "--port", "0", "--block-time", BLOCK_TIME, "--dev")
    children.append(chain)
    ready = await chain.start()
    l1 = f"{ready['host']}:{ready['port']}"
    alice = await _start_node(workdir, "alice", l1, children)
    bob = await _start_node(workdir, "bob", l1, children)
    tour.say(f"layer 1 at {l1}, a block every {BLOCK_TIME} s")
    tour.say(f"Alice {alice.node_id[:16]}…   Bob {bob.node_id[:16]}…")

    async with L1Client.connect(ready["host"], int(ready["port"])) as client:
        for node in (alice, bob):
            await client.faucet(Address(bytes.fromhex(node.node_id)), FUNDING, wait=True)
        tour.say(f"each funded with {FUNDING} by the dev faucet")

        tour.step("Alice connects to Bob (Noise XK) and opens a channel; Bob deposits too")
        await alice.call(
            "connect",
            node_id=bob.node_id,
            host=bob.child.ready["host"],
            port=bob.child.ready["port"],
        )
        channel = await alice.call(
            "open", node_id=bob.node_id, amount=1_000, settle_timeout=SETTLE_TIMEOUT
        )
        channel_id = channel["channel_id"]
        await bob.call("deposit", channel_id=channel_id, total=500)
        tour.say(f"channel {channel_id[:16]}…: Alice 1000 + Bob 500, open on layer 1")

        tour.step("Payments both ways: balance proofs, counter-signed, stored before sent")
        for amount in (100, 150, 50):
            result = await alice.call("send", node_id=bob.node_id, amount=amount)
            tour.say(f"Alice → Bob {amount:>4}: {result['status']} in {result['duration_ms']} ms")
        invoice = await bob.call("invoice", amount=200, description="a coffee and a cake")
        result = await alice.call("pay", invoice=invoice["invoice"])
        tour.say(
            f"Alice pays Bob's invoice of 200: {result['status']}, "
            f"preimage {result['preimage'][:16]}…"
        )
        result = await bob.call("send", node_id=alice.node_id, amount=70)
        tour.say(f"Bob → Alice   70: {result['status']}")
        alice_view, bob_view = await _settled_views(alice, bob)
        tour.say(
            f"Alice's view: local {alice_view['local_balance']}, remote "
            f"{alice_view['remote_balance']}; Bob's view: local {bob_view['local_balance']}, "
            f"remote {bob_view['remote_balance']}"
        )

        tour.step("Alice cheats: she force-closes with none of her sent proofs (--cheat)")
        await alice.call("close", channel_id=channel_id, force=True, cheat=True, wait=False)
        tour.say("as if she had never paid Bob the 500 she sent him")
        tour.step("Bob's node sees the close on layer 1 and answers with Alice's newest proof")
        settled = await bob.call("close", channel_id=channel_id, force=True, wait=True)
        tour.say(f"settled after the {SETTLE_TIMEOUT}-block window: state {settled['state']}")

        alice_final = (await client.account(Address(bytes.fromhex(alice.node_id)))).balance
        bob_final = (await client.account(Address(bytes.fromhex(bob.node_id)))).balance
        expected_alice = FUNDING - 1_000 + (1_000 - 500 + 70)
        expected_bob = FUNDING - 500 + (500 + 500 - 70)
        tour.say(f"Alice: {alice_final}  (10000 - 1000 deposited + 1000 - 500 paid + 70 received)")
        tour.say(f"Bob:   {bob_final}  (10000 - 500 deposited + 500 + 500 received - 70 paid)")
        if (alice_final, bob_final) != (expected_alice, expected_bob):
            raise P2pchanError(f"unexpected final balances {alice_final}, {bob_final}")
        status = await client.status()
        tour.say(
            f"conservation: {alice_final + bob_final} on accounts = {status.supply} granted, "
            f"{status.contract_holdings} left in the contract"
        )
        tour.say("the cheat gained Alice nothing: Bob got every coin he was owed")


async def _settled_views(*nodes: Node) -> list[dict[str, Any]]:
    """Each node's view of its channel once no lock is pending (the last unlock acked)."""
    with trio.fail_after(10):
        while True:
            views = [(await node.call("channels"))[0] for node in nodes]
            if not any(view["pending_locks"] for view in views):
                return views
            await trio.sleep(0.02)


@click.command()
@global_options
@click.pass_context
def demo(ctx: click.Context) -> None:
    """A guided tour, with real processes, cleaned up afterwards.

    Layer 1, two nodes, a channel, payments both ways, a cheating close defeated.

    \b
    Example:
      p2pchan demo
    """
    tour = Tour(Console(highlight=False))
    workdir = Path(tempfile.mkdtemp(prefix="p2pchan-demo-"))
    try:
        run(ctx, lambda: _tour(tour, workdir))
    except BaseException:
        tour.console.print(f"\n[red]demo failed; logs kept in {workdir}[/]")
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    tour.console.print("\n[bold green]demo complete[/] — temporary files removed")
