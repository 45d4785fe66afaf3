"""`p2pchan demo`: a guided tour of what p2pchan does today, for real, cleaned up afterwards.

A layer 1 and four nodes (Alice — Bob — Carol — Dave, in a line) run as real processes in a
temporary directory, brought up by the same code as `localnet up`. They pay their neighbours
(spontaneously and by invoice), then Alice pays Dave across three hops once gossip has taught
her a route, and the tour prints the route and each mediator's fee. Then Bob stops, and Alice
(a `--dev` node) cheats: she force-closes with none of her own sent proofs. Bob, restarted,
finds the close while re-scanning layer 1 and answers with Alice's newest proof; the channel
settles in his favour. Every channel is closed, and the chaos run's invariant checker judges
the result from layer 1 and every node's records; a summary table shows each node's funds.
Then Plasma on the same layer 1 (`demo_plasma.py`): a child chain, a withheld block, every coin
exited safely.

Nothing is left behind: every process is stopped and the directory removed, on success and on
Ctrl-C alike; after any other failure the logs are kept and their place printed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import click
import trio
from rich.console import Console
from rich.table import Table

from p2pchan.errors import P2pchanError
from p2pchan_cli.chaos.invariants import check
from p2pchan_cli.chaos.observe import observe_chain, records_of
from p2pchan_cli.common import global_options, run
from p2pchan_cli.demo_plasma import plasma_story
from p2pchan_cli.localnet.network import HOST, Network
from p2pchan_cli.localnet.supervisor import poll_until
from p2pchan_cli.localnet.topology import (
    DEFAULT_SETTLE_TIMEOUT,
    ChannelSpec,
    FeePolicy,
    NodeSpec,
    Topology,
)
from p2pchan_cli.processes import ChildProcess

FUNDS = 100_000
BLOCK_TIME = 0.2
SETTLE_TIMEOUT = DEFAULT_SETTLE_TIMEOUT  # 12 s for Bob to come back and answer the cheat
POLL = 0.05
SETTLE_WAIT = 30.0
HOP_AMOUNT = 2_000
DEMO = Topology(
    "demo",
    (
        NodeSpec("alice", FUNDS, dev=True),
        NodeSpec("bob", FUNDS),
        NodeSpec("carol", FUNDS),
        NodeSpec("dave", FUNDS),
    ),
    (
        ChannelSpec("alice", "bob", 10_000, 5_000, SETTLE_TIMEOUT),
        ChannelSpec("bob", "carol", 10_000, 5_000, SETTLE_TIMEOUT, fees_a=FeePolicy(2, 5_000)),
        ChannelSpec("carol", "dave", 10_000, 5_000, SETTLE_TIMEOUT, fees_a=FeePolicy(1, 2_500)),
    ),
    block_time=BLOCK_TIME,
)


class Tour:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.step_number = 0

    def step(self, text: str) -> None:
        self.step_number += 1
        self.console.print(f"\n[bold cyan]{self.step_number}.[/] [bold]{text}[/]")

    def say(self, text: str) -> None:
        self.console.print(f"   {text}")


async def _send(network: Network, payer: str, payee: str, amount: int) -> dict[str, Any]:
    return dict(
        await network.nodes[payer].call("send", node_id=network.nodes[payee].node_id, amount=amount)
    )


async def _tour(tour: Tour, workdir: Path) -> None:
    network = Network(workdir, DEMO)
    operator: list[ChildProcess] = []
    try:
        await _story(tour, network)
        alice, bob = network.nodes["alice"], network.nodes["bob"]
        l1 = (HOST, network.l1_port)
        await plasma_story(tour, workdir, operator, l1, alice, bob)
    finally:
        with trio.CancelScope(shield=True):
            for child in operator:
                await child.stop()
        await network.stop_all()
        tour.say("all processes stopped")


async def _story(tour: Tour, network: Network) -> None:
    tour.step("A layer 1 and four nodes, real processes: Alice — Bob — Carol — Dave")
    network.prepare()
    await network.start_l1()
    await network.start_nodes()
    await network.fund()
    tour.say(f"layer 1 at {network.l1_address}, a block every {BLOCK_TIME:g} s")
    tour.say(f"each node funded with {FUNDS} by the dev faucet")
    await network.connect(lambda _a, b: (HOST, network.nodes[b].port))
    await network.open_channels()
    tour.say("channels Alice-Bob, Bob-Carol, Carol-Dave open: 10000 + 5000 each")

    tour.step("Direct payments: balance proofs, counter-signed, stored before sent")
    for payer, payee, amount in (
        ("alice", "bob", 700),
        ("bob", "alice", 200),
        ("dave", "carol", 300),
    ):
        result = await _send(network, payer, payee, amount)
        tour.say(
            f"{payer:>5} → {payee:<5} {amount:>4}: {result['status']} in {result['duration_ms']} ms"
        )
    invoice = await network.nodes["carol"].call("invoice", amount=400, description="a book")
    result = await network.nodes["bob"].call("pay", invoice=invoice["invoice"])
    tour.say(f"  bob pays Carol's invoice of 400: {result['status']}")

    first_lock = await _multi_hop(tour, network)

    tour.step("Bob stops; Alice cheats: a forced close with none of her sent proofs")
    ab = network.channel_ids[frozenset(("alice", "bob"))]
    await _until_no_locks(network, "alice")
    bob = network.nodes["bob"]
    assert bob.child is not None
    await bob.child.stop()
    await network.nodes["alice"].call("close", channel_id=ab, force=True, cheat=True, wait=False)
    tour.say("as if she had never paid Bob the 700 she sent him")
    tour.step("Bob restarts, sees the close on layer 1, answers with Alice's newest proof")
    await network.start_node("bob")
    await _until_settled(network, "bob", ab)
    [settled] = [c for c in await bob.call("channels") if c["channel_id"] == ab]
    tour.say(
        f"settled after the {SETTLE_TIMEOUT}-block window: Bob got {settled['settled_balance']}"
    )
    tour.say(f"(his 5000 + 700 - 200, and the {first_lock} Alice paid him to pass on to Dave)")

    tour.step("Every other channel closes cooperatively; the invariants are checked")
    for ends in (("bob", "carol"), ("carol", "dave")):
        channel_id = network.channel_ids[frozenset(ends)]
        await network.nodes[ends[0]].call("close", channel_id=channel_id)
    for alias in network.nodes:
        await _until_settled(network, alias)
    records = {
        alias: records_of(await node.every_payment()) for alias, node in network.nodes.items()
    }
    observed = await observe_chain(network, {"bob", "carol", "dave"}, records, [])
    verdict = check(observed)
    _summary(tour, observed.granted, observed.balances, records)
    for name, detail in verdict.invariants.items():
        tour.say(f"invariant {name}: {'[green]ok[/]' if detail == 'ok' else f'[red]{detail}[/]'}")
    if not verdict.ok:
        raise P2pchanError(f"the demo broke an invariant: {verdict.violations[0]}")
    tour.say("the cheat gained Alice nothing: Bob got every coin he was owed")


async def _multi_hop(tour: Tour, network: Network) -> int:
    """Alice pays Dave over two mediators; the amount she locked to Bob, fees included."""
    tour.step("A multi-hop payment: Alice → Bob → Carol → Dave, fees to the mediators")
    names = {node.node_id: alias for alias, node in network.nodes.items()}
    await network.apply_fees()
    tour.say("fees: Bob charges 2 + 0.5 % to forward to Carol, Carol 1 + 0.25 % to Dave")
    await network.wait_for_gossip()
    dave = network.nodes["dave"].node_id
    found = await network.nodes["alice"].call("route", node_id=dave, amount=HOP_AMOUNT)
    hops = " → ".join(["alice", *(names[hop["node_id"]] for hop in found["hops"])])
    tour.say(f"gossip taught Alice a route: {hops}, fee {found['fee']}")
    result = await _send(network, "alice", "dave", HOP_AMOUNT)
    tour.say(
        f"alice → dave {HOP_AMOUNT}: {result['status']} in {result['duration_ms']} ms, "
        f"{HOP_AMOUNT} + {result['fee']} in fees"
    )
    if result["status"] != "succeeded":
        raise P2pchanError(f"the multi-hop payment {result['status']}: {result['error']}")
    for hop in result["route"]:
        name = names[hop["node_id"]]
        if hop["fee"]:
            tour.say(
                f"  {name:>5} is locked {hop['amount']}, keeps {hop['fee']}, "
                f"passes {hop['amount'] - hop['fee']} on"
            )
        else:
            tour.say(f"  {name:>5} is locked {hop['amount']}: the payee, paid in full")
    return int(result["route"][0]["amount"])


async def _until_no_locks(network: Network, alias: str) -> None:
    async def clear() -> bool:
        return not any(c["pending_locks"] for c in await network.nodes[alias].call("channels"))

    with trio.move_on_after(SETTLE_WAIT) as waited:
        await poll_until(clear, POLL)
    if waited.cancelled_caught:
        raise P2pchanError(f"{alias}'s locks did not clear within {SETTLE_WAIT:g} s")


async def _until_settled(network: Network, alias: str, channel_id: str | None = None) -> None:
    """Until the node's channels (or this one) are settled with nothing left to unlock."""

    async def settled() -> bool:
        channels = await network.nodes[alias].call("channels")
        return all(
            c["state"] == "settled" and not c["pending_locks"]
            for c in channels
            if channel_id in (None, c["channel_id"])
        )

    with trio.move_on_after(SETTLE_WAIT) as waited:
        await poll_until(settled, POLL)
    if waited.cancelled_caught:
        raise P2pchanError(f"{alias}'s channels did not settle within {SETTLE_WAIT:g} s")


def _summary(
    tour: Tour, granted: dict[str, int], balances: dict[str, int], records: dict[str, Any]
) -> None:
    table = Table(title="funds on layer 1", title_justify="left")
    for column in ("node", "start", "sent", "received", "fees earned", "end"):
        table.add_column(column, justify="left" if column == "node" else "right")
    for alias, start in granted.items():
        sent = sum(
            r.amount + r.fee
            for r in records[alias]
            if r.direction == "out" and r.status == "succeeded"
        )
        received = sum(
            r.amount for r in records[alias] if r.direction == "in" and r.status == "succeeded"
        )
        earned = sum(
            r.fee for r in records[alias] if r.direction == "forward" and r.status == "succeeded"
        )
        table.add_row(
            alias, str(start), str(sent), str(received), str(earned), str(balances[alias])
        )
    tour.console.print(table)


@click.command()
@global_options
@click.pass_context
def demo(ctx: click.Context) -> None:
    """A guided tour, with real processes, cleaned up afterwards.

    Layer 1 and four nodes in a line, payments direct and across hops (the route and its
    fees), a cheating close answered by a restarted partner, the invariants checked, a summary
    table; then a Plasma child chain: deposits, payments, a withheld block, every coin exited.

    \b
    Example:
      p2pchan demo
    """
    tour = Tour(Console(highlight=False))
    workdir = Path(tempfile.mkdtemp(prefix="p2pchan-demo-"))
    try:
        run(ctx, lambda: _tour(tour, workdir))
    except KeyboardInterrupt:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    except BaseException:
        tour.console.print(f"\n[red]demo failed; logs kept in {workdir}[/]")
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    tour.console.print("\n[bold green]demo complete[/] — temporary files removed")
