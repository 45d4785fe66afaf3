"""`p2pchan demo`: a guided tour of what p2pchan does today, for real, cleaned up afterwards.

It starts a real layer-1 process and two real nodes (Alice, started with --dev so she can try
the attack, and Bob) on free ports in a temporary directory. They connect over Noise, open and
fund a channel, pay each other both ways (spontaneously and with an invoice), and then Alice
cheats: she force-closes with none of her own sent proofs, as if she had never paid. Bob's node
sees the close on layer 1 and answers with Alice's newest proof by itself; after the window the
channel settles and every layer-1 balance is checked, as is the conservation of money.

Then Plasma: a real `--dev` operator starts a child chain; both nodes join it as wallets and
watchers, deposit and pay each other on the child chain; the operator withholds a block (with
a payment of Bob's in it); both nodes find the chain bad, exit everything they owned before it,
and are paid on layer 1 exactly that after the challenge period.
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
from p2pchan_cli.processes import (
    ChildProcess,
    l1_process,
    node_process,
    p2pchan_argv,
    plasma_operator_process,
)

FUNDING = 10_000
SETTLE_TIMEOUT = 20
BLOCK_TIME = "0.1"
CHALLENGE_PERIOD = 20  # blocks: the contract's minimum
WITHHOLD_TIMEOUT = 5  # blocks a committed child block may stay unserved


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
        await _plasma_story(tour, workdir, children, client, alice, bob, l1)


async def _plasma_story(
    tour: Tour,
    workdir: Path,
    children: list[ChildProcess],
    client: L1Client,
    alice: Node,
    bob: Node,
    l1: str,
) -> None:
    tour.step("Plasma: a --dev operator starts a child chain; both nodes join it")
    operator = plasma_operator_process(
        workdir / "operator",
        l1,
        "--listen",
        "127.0.0.1:0",
        "--block-interval",
        "0.2",
        "--challenge-period",
        str(CHALLENGE_PERIOD),
        "--dev",
    )
    children.append(operator)
    ready = await operator.start()
    for node in (alice, bob):
        await node.call(
            "plasma_join",
            host=ready["host"],
            port=ready["port"],
            withhold_timeout=WITHHOLD_TIMEOUT,
        )
    tour.say(f"child chain {ready['plasma_id'][:16]}…: each node now watches every block")
    before = {node.name: await _l1_balance(client, node) for node in (alice, bob)}

    tour.step("Deposits from layer 1, then payments on the child chain")
    await alice.call("plasma_deposit", amount=800)
    await bob.call("plasma_deposit", amount=200)
    tour.say("Alice deposits 800, Bob 200 (layer-1 transactions)")
    for payer, payee, amount in ((alice, bob, 300), (alice, bob, 150), (bob, alice, 100)):
        result = await payer.call("plasma_send", node_id=payee.node_id, amount=amount)
        tour.say(
            f"{payer.name.title()} → {payee.name.title()} {amount:>3}: {result['status']} "
            f"in block {result['block']}"
        )
    tour.say("(each payer's watcher checked the block on layer 1 and signed a confirmation)")
    alice_has = await _spendable(alice, 450)
    bob_has = await _spendable(bob, 550)
    tour.say(f"spendable: Alice {alice_has}, Bob {bob_has}")

    tour.step("The operator withholds its next block: only its root reaches layer 1")
    await _call_operator(workdir / "operator", attack="withhold-next")
    result = await bob.call("plasma_send", node_id=alice.node_id, amount=350, wait=False)
    tour.say(f"Bob's payment of 350 to Alice goes into that block ({result['block']})")
    for node in (alice, bob):
        status = await _until_bad(node)
        tour.say(f"{node.name.title()}'s watcher: chain bad, {status['reason']}")
    tour.say("both stop using the chain and exit at once everything they owned before it;")
    tour.say("Bob never saw his payment's block, so never confirmed it: its coins stay his")

    tour.step(f"After the {CHALLENGE_PERIOD}-block challenge period the exits are paid")
    for node in (alice, bob):
        await _until_exited(node)
    for node, owned in ((alice, alice_has), (bob, bob_has)):
        gained = await _l1_balance(client, node) - before[node.name]
        deposited = 800 if node is alice else 200
        tour.say(
            f"{node.name.title()}: {deposited} deposited, {owned} owned on the child chain, "
            f"{gained + deposited} back on layer 1"
        )
        if gained + deposited != owned:
            raise P2pchanError(f"{node.name} got {gained + deposited}, owned {owned}")
    tour.say("nothing lost to the withheld block")


async def _l1_balance(client: L1Client, node: Node) -> int:
    return (await client.account(Address(bytes.fromhex(node.node_id)))).balance


async def _spendable(node: Node, amount: int) -> int:
    """Once the node holds `amount` spendable (a received output needs its confirmation)."""
    with trio.fail_after(20):
        while True:  # another process's state: polled
            if (await node.call("plasma_balance"))["spendable"] == amount:
                return amount
            await trio.sleep(0.05)


async def _until_bad(node: Node) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            status: dict[str, Any] = await node.call("plasma_status")
            if not status["chain_ok"]:
                return status
            await trio.sleep(0.05)


async def _until_exited(node: Node) -> None:
    with trio.fail_after(60):
        while True:
            balance = await node.call("plasma_balance")
            if not balance["exiting"] and not balance["pending"]:
                return
            await trio.sleep(0.1)


async def _call_operator(datadir: Path, **params: Any) -> Any:
    async with RpcClient.connect(datadir) as rpc:
        return await rpc.call("plasma_attack", params)


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

    Layer 1, two nodes, a channel, payments both ways, a cheating close defeated; then a
    Plasma child chain: deposits, payments, a withheld block, every coin exited safely.

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
